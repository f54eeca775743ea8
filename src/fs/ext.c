/* placeholder until the ext walker lands: recognises nothing.
 * SPDX-License-Identifier: MIT */
#include "fs.h"

#include <errno.h>

static bool ext_probe(const uint8_t *buf, size_t len)
{
	(void)buf;
	(void)len;
	return false;
}

static int ext_walk(struct vd_fs_walk *w)
{
	(void)w;
	return -ENOTSUP;
}

const struct vd_fs_walker vd_fs_ext = {
	.name = "ext",
	.probe = ext_probe,
	.walk = ext_walk,
};
