/* placeholder until the fat walker lands: recognises nothing.
 * SPDX-License-Identifier: MIT */
#include "fs.h"

#include <errno.h>

static bool fat_probe(const uint8_t *buf, size_t len)
{
	(void)buf;
	(void)len;
	return false;
}

static int fat_walk(struct vd_fs_walk *w)
{
	(void)w;
	return -ENOTSUP;
}

const struct vd_fs_walker vd_fs_fat = {
	.name = "fat",
	.probe = fat_probe,
	.walk = fat_walk,
};
