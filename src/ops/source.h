/*
 * convert's and devcopy's source (source.c): vd_open_source with the
 * fields of struct vd_convert_opts.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef VDISK_SOURCE_H
#define VDISK_SOURCE_H

#include "../core/ops.h"

/* Open PATH as convert's source; a stream of unknown size is spooled
 * beside DST_PATH (NULL: not spooled, a size is then required). */
int vd_convert_open_source(struct vd_image **src, const char *path, const char *dst_path,
			   const struct vd_convert_opts *o, struct vd_error *err);

#endif
