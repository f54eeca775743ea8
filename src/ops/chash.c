/*
 * The content digest of a guest view: SHA-256 over the number and bytes of
 * every 64 KiB block that is not all zeros (the last block padded with
 * zeros), then the number of blocks.  Zero blocks cost no hashing, so a sparse image of any size is
 * cheap; and the digest is the same however the view is cut into reads
 * and zero ranges, so the copy's first pass and devcopy's read-back of the
 * device agree exactly when the bytes do.
 *
 * SPDX-License-Identifier: MIT
 */
#include "chash.h"
#include "../core/base.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int vd_chash_init(struct vd_chash *h)
{
	memset(h, 0, sizeof(*h));
	h->blk = malloc(VD_CHASH_BLOCK);
	if (!h->blk)
		return -ENOMEM;
	vd_sha256_init(&h->sha);
	return 0;
}

static void hash_index(struct vd_chash *h)
{
	uint8_t n[8];

	for (int i = 0; i < 8; i++)
		n[i] = (uint8_t)(h->index >> (8 * i));
	vd_sha256_update(&h->sha, n, sizeof(n));
}

static void put_block(struct vd_chash *h, const uint8_t *b)
{
	if (!vd_is_zero(b, VD_CHASH_BLOCK)) {
		hash_index(h);
		vd_sha256_update(&h->sha, b, VD_CHASH_BLOCK);
	}
	h->index++;
}

void vd_chash_data(struct vd_chash *h, const uint8_t *buf, size_t len)
{
	while (len) {
		if (h->fill == 0 && len >= VD_CHASH_BLOCK) {
			put_block(h, buf); /* whole blocks straight from BUF */
			buf += VD_CHASH_BLOCK;
			len -= VD_CHASH_BLOCK;
			continue;
		}
		size_t n = VD_MIN(len, VD_CHASH_BLOCK - h->fill);
		memcpy(h->blk + h->fill, buf, n);
		h->fill += n;
		buf += n;
		len -= n;
		if (h->fill == VD_CHASH_BLOCK) {
			put_block(h, h->blk);
			h->fill = 0;
		}
	}
}

void vd_chash_zero(struct vd_chash *h, uint64_t len)
{
	if (h->fill && len) {
		size_t n = (size_t)VD_MIN(len, (uint64_t)(VD_CHASH_BLOCK - h->fill));
		memset(h->blk + h->fill, 0, n);
		h->fill += n;
		len -= n;
		if (h->fill == VD_CHASH_BLOCK) {
			put_block(h, h->blk);
			h->fill = 0;
		}
	}
	h->index += len / VD_CHASH_BLOCK; /* zero blocks: nothing to hash */
	len %= VD_CHASH_BLOCK;
	if (len) {
		memset(h->blk, 0, (size_t)len);
		h->fill = (size_t)len;
	}
}

void vd_chash_final(struct vd_chash *h, uint8_t out[32])
{
	if (h->fill) {
		memset(h->blk + h->fill, 0, VD_CHASH_BLOCK - h->fill);
		put_block(h, h->blk);
		h->fill = 0;
	}
	hash_index(h); /* the number of blocks: the length counts */
	vd_sha256_final(&h->sha, out);
}

void vd_chash_free(struct vd_chash *h)
{
	free(h->blk);
	h->blk = NULL;
}
