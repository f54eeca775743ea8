/*
 * Sequential sources (stream-src.c): compressed raw disks, standard input,
 * raw windows of a file or device, as read-only images read front to back.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef VDISK_STREAM_SRC_H
#define VDISK_STREAM_SRC_H

#include "vdisk-int.h"

/* PATH "-" (standard input, raw or compressed) or a file starting with
 * the magic of xz, zstd, gzip or bzip2: 1 with *OUT; 0 when PATH is an
 * ordinary file (nothing opened); -errno.  SIZE (0: from the container)
 * is the virtual size; *SIZE_KNOWN false: vd_size is 0, drain the stream
 * with vd_stream_spool. */
int vd_stream_open(struct vd_image **out, const char *path, uint64_t size, bool *size_known,
		   struct vd_error *err);
/* SIZE bytes of PATH from OFFSET as a raw disk (SIZE 0: to the end). */
int vd_window_open(struct vd_image **out, const char *path, uint64_t offset, uint64_t size,
		   struct vd_error *err);
/* Write the whole stream of IMG into the empty host H, zero 4 KiB blocks
 * left as holes; *SIZE = its length. */
int vd_stream_spool(struct vd_image *img, struct vd_host *h, uint64_t *size,
		    const volatile int *cancel, struct vd_error *err);
/* "xz", "zstd", "gzip", "bzip2", "raw" for a stream image, else NULL. */
const char *vd_stream_kind(const struct vd_image *img);

#endif
