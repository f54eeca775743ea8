/*
 * A digest of a guest view that does not depend on how it was read
 * (chash.c): for devcopy --verify of a source that can be read only once.
 * Internal to libvdisk.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef VDISK_CHASH_H
#define VDISK_CHASH_H

#include "sha256.h"

#include <stdbool.h>

#define VD_CHASH_BLOCK (64u << 10)

struct vd_chash {
	struct vd_sha256 sha;
	uint8_t *blk;   /* the block being filled */
	size_t fill;    /* bytes of it so far */
	uint64_t index; /* its number */
};

int vd_chash_init(struct vd_chash *h);
/* The next LEN bytes of the view. */
void vd_chash_data(struct vd_chash *h, const uint8_t *buf, size_t len);
/* The next LEN bytes of the view read as zeros. */
void vd_chash_zero(struct vd_chash *h, uint64_t len);
void vd_chash_final(struct vd_chash *h, uint8_t out[32]);
void vd_chash_free(struct vd_chash *h);

#endif
