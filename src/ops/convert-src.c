/*
 * convert's source: an image, or a sequential source (src/core/stream-src.c:
 * a compressed raw disk, standard input, a raw window of a larger file or
 * device).
 *
 * A sequential source whose size is known (xz index, zstd frame header,
 * --size, a window) is read by convert's one pass like any image.  One
 * whose size only the end of the stream tells (gzip, bzip2, a pipe) is
 * first drained into a sparse spool file beside the destination (zero 4 KiB
 * blocks left as holes), which is then the source: the destination is
 * created at its final size, as for any other source, and the spool is
 * removed at the end, whatever happened.  That costs one more write of the
 * data, but keeps every output format and the temporary-file discipline
 * exactly as they are.
 *
 * SPDX-License-Identifier: MIT
 */
#include "../core/ops.h"
#include "../core/stream-src.h"
#include "convert-src.h"

#include <errno.h>
#include <stdlib.h>

int vd_convert_open_source(struct vd_image **src, const char *path, const char *dst_path,
			   const struct vd_convert_opts *o, struct vd_tmp *spool,
			   struct vd_error *err)
{
	struct vd_host *h = NULL;
	bool known = false;
	uint64_t size;
	int r;

	*src = NULL;
	memset(spool, 0, sizeof(*spool));
	if (o->source_offset || o->source_size) {
		if (o->src_format && !vd_format_reads_as_raw(o->src_format))
			return vd_set_error(err, EINVAL, "--source-offset and --source-size read the source as raw, not %s",
					    o->src_format);
		return vd_window_open(src, path, o->source_offset, o->source_size, err);
	}
	if (o->src_format && strcmp(path, "-"))
		return vd_open(src, path, o->src_format, o->src_open_flags, err);
	r = vd_stream_open(src, path, o->stream_size, &known, err);
	if (r == 0)
		return vd_open(src, path, o->src_format, o->src_open_flags, err);
	if (r < 0 || known)
		return r < 0 ? r : 0;
	if (!dst_path) {
		vd_close(*src, NULL);
		*src = NULL;
		return vd_set_error(err, EINVAL, "%s: the size of this %s stream is known only at its end: give --size",
				    strcmp(path, "-") ? path : "standard input", "compressed or piped");
	}
	/* the size comes at the end: spool */
	r = vd_tmp_begin(spool, dst_path, o->force, err);
	if (r == 0)
		r = vd_host_open_file(&h, spool->tmp, VD_HOST_RDWR | VD_HOST_NO_SYNC, err);
	if (r == 0)
		r = vd_stream_spool(*src, h, &size, o->cancel, err);
	vd_close(*src, NULL);
	*src = NULL;
	if (r < 0) {
		vd_host_close(h);
		vd_tmp_abort(spool);
		return r;
	}
	return vd_open_host(src, h, "raw", 0, err);
}

void vd_convert_end_source(struct vd_tmp *spool)
{
	if (spool->tmp)
		vd_tmp_abort(spool);
}
