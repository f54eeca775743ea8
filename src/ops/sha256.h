/*
 * SHA-256 (FIPS 180-4), for build identifiers and output checksums.
 * Internal to libvdisk.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef VDISK_SHA256_H
#define VDISK_SHA256_H

#include <stddef.h>
#include <stdint.h>

struct vd_sha256 {
	uint32_t h[8];
	uint64_t len;      /* bytes hashed so far */
	uint8_t buf[64];
	unsigned nbuf;
};

void vd_sha256_init(struct vd_sha256 *s);
void vd_sha256_update(struct vd_sha256 *s, const void *data, size_t len);
void vd_sha256_final(struct vd_sha256 *s, uint8_t out[32]);
/* 64 lowercase hex digits and a NUL */
void vd_sha256_hex(const uint8_t d[32], char out[65]);

#endif
