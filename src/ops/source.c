/*
 * Sources read once, front to back (convert, compare, create --part,
 * devcopy): an image, or a sequential source (src/core/stream-src.c: a
 * compressed raw disk, standard input, a raw window of a larger file or
 * device).
 *
 * A sequential source whose size is known (xz index, zstd frame header,
 * --size, a window) is read by the command's one pass like any image.  One
 * whose size only the end of the stream tells (gzip, bzip2, a pipe) is
 * first drained into a sparse spool file (zero 4 KiB blocks left as holes)
 * in the directory the caller names (convert: beside the destination, on
 * the filesystem that will hold the output anyway; compare and create:
 * $TMPDIR), which is then the source.  The spool is unlinked as soon as it
 * is open, so nothing is left behind whatever happens to the process.
 * That costs one more write of the data, but keeps every consumer exactly
 * as it is for an image.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "../core/ops.h"
#include "../core/stream-src.h"
#include "source.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char *src_name(const char *path)
{
	return strcmp(path, "-") ? path : "standard input";
}

/* An empty, already unlinked file in DIR, as a host. */
static int spool_host(struct vd_host **h, const char *dir, struct vd_error *err)
{
	char *tmpl;
	int fd, r;

	if (asprintf(&tmpl, "%s/.vdisk-spool-%ld-XXXXXX", dir, (long)getpid()) < 0)
		return vd_set_error(err, ENOMEM, "out of memory");
	fd = mkstemp(tmpl);
	if (fd < 0) {
		r = vd_set_error(err, errno, "%s: cannot create a spool file: %s", dir, strerror(errno));
		free(tmpl);
		return r;
	}
	close(fd);
	r = vd_host_open_file(h, tmpl, VD_HOST_RDWR | VD_HOST_NO_SYNC, err);
	unlink(tmpl);
	free(tmpl);
	return r;
}

int vd_open_source(struct vd_image **out, const char *path, const struct vd_source_opts *o,
		   struct vd_error *err)
{
	static const struct vd_source_opts defaults;
	struct vd_image *s = NULL;
	struct vd_host *h = NULL;
	const char *dir;
	bool known = false;
	uint64_t size;
	int r;

	*out = NULL;
	if (!o)
		o = &defaults;
	if (o->window_offset || o->window_size) {
		if (o->format && !vd_format_reads_as_raw(o->format))
			return vd_set_error(err, EINVAL, "--source-offset and --source-size read the source as raw, not %s",
					    o->format);
		return vd_window_open(out, path, o->window_offset, o->window_size, err);
	}
	if (o->format && strcmp(path, "-"))
		return vd_open(out, path, o->format, o->flags, err);
	r = vd_stream_open(&s, path, o->size, &known, err);
	if (r == 0)
		return vd_open(out, path, o->format, o->flags, err);
	if (r < 0)
		return r;
	if (known && !o->spool) {
		*out = s;
		return 0;
	}
	dir = o->spool_dir;
	if (!dir) {
		vd_close(s, NULL);
		return vd_set_error(err, EINVAL, "%s: the size of this %s stream is known only at its end: give --size",
				    src_name(path), "compressed or piped");
	}
	/* the size comes at the end, or the consumer reads twice: spool */
	r = spool_host(&h, dir, err);
	if (r == 0)
		r = vd_stream_spool(s, h, &size, o->cancel, err);
	vd_close(s, NULL);
	if (r < 0) {
		vd_host_close(h);
		return r;
	}
	return vd_open_host(out, h, "raw", 0, err);
}

const char *vd_spool_dir_default(void)
{
	const char *t = getenv("TMPDIR");
	return t && *t ? t : "/tmp";
}

int vd_convert_open_source(struct vd_image **src, const char *path, const char *dst_path,
			   const struct vd_convert_opts *o, struct vd_error *err)
{
	struct vd_source_opts so = { 0 };
	char *dir = NULL, *slash;
	int r;

	so.format = o->src_format;
	so.flags = o->src_open_flags;
	so.size = o->stream_size;
	so.window_offset = o->source_offset;
	so.window_size = o->source_size;
	so.cancel = o->cancel;
	if (o->dst_is_fd) {
		/* a stream of unknown size sent on: spooled in $TMPDIR */
		dir = strdup(vd_spool_dir_default());
		if (!dir)
			return vd_set_error(err, ENOMEM, "out of memory");
	} else if (dst_path) {
		dir = strdup(dst_path);
		if (!dir)
			return vd_set_error(err, ENOMEM, "out of memory");
		slash = strrchr(dir, '/');
		if (!slash)
			strcpy(dir, ".");
		else if (slash == dir)
			slash[1] = '\0';
		else
			*slash = '\0';
	}
	so.spool_dir = dir;
	r = vd_open_source(src, path, &so, err);
	free(dir);
	return r;
}
