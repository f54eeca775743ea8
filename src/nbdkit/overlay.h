/*
 * nbdkit-vdisk-plugin, snapshot=true: writes go to a temporary overlay
 * (overlay.c), the image is only read.  Not installed.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef VDISK_NBDKIT_OVERLAY_H
#define VDISK_NBDKIT_OVERLAY_H

#include "vdisk.h"

#include <stdbool.h>
#include <stdint.h>

/* inside the plugin only: the .so exports nothing but plugin_init */
#pragma GCC visibility push(hidden)

struct overlay;

/* bytes one map bit covers: zeroing whole ones writes nothing */
#define OV_GRAN (64u << 10)

/* An empty overlay over IMG (SIZE bytes) in an unlinked file under DIR. */
int ov_open(struct overlay **out, struct vd_image *img, const char *dir, struct vd_error *err);
void ov_close(struct overlay *ov);
int ov_read(struct overlay *ov, uint64_t off, void *buf, size_t len, struct vd_error *err);
/* BUF NULL: zeros. */
int ov_write(struct overlay *ov, uint64_t off, const void *buf, size_t len, struct vd_error *err);
/* The extent at OFF (at most LEN): *WRITTEN true when the overlay holds
 * it (data), else what the image says is in E. */
int ov_status(struct overlay *ov, uint64_t off, uint64_t len, bool *written,
	      struct vd_extent *e, struct vd_error *err);

#pragma GCC visibility pop

#endif
