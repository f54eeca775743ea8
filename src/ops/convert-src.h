/*
 * convert's source (convert-src.c): an image or a sequential source.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef VDISK_CONVERT_SRC_H
#define VDISK_CONVERT_SRC_H

#include "../core/ops.h"

/* Open PATH as convert's source; SPOOL (for vd_convert_end_source) may
 * hold a spool file beside DST_PATH (NULL: no spool possible, a size is
 * then required). */
int vd_convert_open_source(struct vd_image **src, const char *path, const char *dst_path,
			   const struct vd_convert_opts *o, struct vd_tmp *spool,
			   struct vd_error *err);
/* After closing the source: remove the spool file, if any. */
void vd_convert_end_source(struct vd_tmp *spool);

#endif
