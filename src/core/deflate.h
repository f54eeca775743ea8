/*
 * Whole-buffer deflate with the zlib wrapper (RFC 1950), as VMDK grains
 * (and qcow2 compressed clusters) store it: libdeflate when the build found
 * it (HAVE_LIBDEFLATE), else zlib's one-shot calls.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef VDISK_DEFLATE_H
#define VDISK_DEFLATE_H

#include <stddef.h>

#define VD_DEFLATE_LEVEL_MIN 1
#define VD_DEFLATE_LEVEL_MAX 12
/* the default: chosen by measurement (tests/bench), see deflate.c */
int vd_deflate_default_level(void);
/* "libdeflate" or "zlib" */
const char *vd_deflate_impl(void);

/* One compressor per thread.  LEVEL 1..12 (zlib caps it at 9), 0: default. */
struct vd_deflater;
struct vd_deflater *vd_deflater_new(int level);
void vd_deflater_free(struct vd_deflater *d);
/* Worst-case compressed size of LEN bytes (any level). */
size_t vd_deflate_bound(size_t len);
/* Compress LEN bytes of IN into OUT (CAP bytes, at least the bound):
 * 0 with *OUT_LEN, or -EIO. */
int vd_deflate(struct vd_deflater *d, const void *in, size_t len, void *out, size_t cap,
	       size_t *out_len);

enum { VD_INFLATE_OK = 0, VD_INFLATE_BAD = 1, VD_INFLATE_TOO_BIG = 2 };
/* Inflate one zlib stream IN (LEN bytes) into OUT (CAP bytes): VD_INFLATE_OK
 * with *OUT_LEN; VD_INFLATE_BAD (not a valid stream, checksum wrong or the
 * data ends early: *WHY says which) or VD_INFLATE_TOO_BIG (more than CAP
 * bytes), or -ENOMEM. */
int vd_inflate(const void *in, size_t len, void *out, size_t cap, size_t *out_len,
	       const char **why);

#endif
