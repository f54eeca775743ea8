/*
 * nbdkit-vdisk-plugin, snapshot=true: the image is opened read-only and
 * every write goes to a temporary overlay, thrown away when the server
 * stops (what qemu-nbd --snapshot does).  The overlay is a sparse file,
 * unlinked at once, at the image's offsets, and a map of the 64 KiB
 * granules written; a write that covers part of a granule first copies the
 * rest from the image.  The map is allocated per GiB of the disk as it is
 * written, so its memory follows what was written, not the virtual size.
 *
 * Written here rather than left to nbdkit's cow filter so that
 * "nbdkit vdisk IMAGE snapshot=true" is one command, as with qemu-nbd, and
 * block status stays exact: the image's holes stay holes.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "overlay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GRAN OV_GRAN
#define CHUNK_GRANS (16384u)             /* granules per chunk: 1 GiB */
#define CHUNK_BYTES (CHUNK_GRANS / 8)

struct overlay {
	struct vd_image *img;
	uint64_t size;
	int fd;
	uint8_t **chunk;   /* per GiB: NULL until something in it is written */
	uint64_t nchunks;
	uint8_t *buf;      /* one granule */
};

static int seterr(struct vd_error *err, int e, const char *what)
{
	if (err) {
		err->code = -e;
		snprintf(err->msg, sizeof(err->msg), "snapshot overlay: %s: %s", what, strerror(e));
	}
	return -e;
}

static bool written(const struct overlay *ov, uint64_t g)
{
	const uint8_t *c = ov->chunk[g / CHUNK_GRANS];
	uint64_t i = g % CHUNK_GRANS;

	return c && (c[i / 8] & (1u << (i % 8)));
}

static int mark(struct overlay *ov, uint64_t g, struct vd_error *err)
{
	uint8_t **c = &ov->chunk[g / CHUNK_GRANS];
	uint64_t i = g % CHUNK_GRANS;

	if (!*c && !(*c = calloc(1, CHUNK_BYTES)))
		return seterr(err, ENOMEM, "map");
	(*c)[i / 8] |= (uint8_t)(1u << (i % 8));
	return 0;
}

int ov_open(struct overlay **out, struct vd_image *img, const char *dir, struct vd_error *err)
{
	struct overlay *ov = calloc(1, sizeof(*ov));
	char path[4096];

	*out = NULL;
	if (!ov)
		return seterr(err, ENOMEM, "setup");
	ov->img = img;
	ov->size = vd_size(img);
	ov->nchunks = (ov->size + (uint64_t)GRAN * CHUNK_GRANS - 1) / ((uint64_t)GRAN * CHUNK_GRANS);
	ov->chunk = calloc(ov->nchunks ? ov->nchunks : 1, sizeof(*ov->chunk));
	ov->buf = malloc(GRAN);
	snprintf(path, sizeof(path), "%s/.vdisk-snapshot-%ld-XXXXXX", dir, (long)getpid());
	ov->fd = ov->chunk && ov->buf ? mkostemp(path, O_CLOEXEC) : -1;
	if (ov->fd < 0) {
		int e = ov->chunk && ov->buf ? errno : ENOMEM;
		ov_close(ov);
		return seterr(err, e, path);
	}
	unlink(path);
	if (ftruncate(ov->fd, (off_t)ov->size) < 0) {
		int e = errno;
		ov_close(ov);
		return seterr(err, e, "sizing the overlay file");
	}
	*out = ov;
	return 0;
}

void ov_close(struct overlay *ov)
{
	if (!ov)
		return;
	for (uint64_t i = 0; ov->chunk && i < ov->nchunks; i++)
		free(ov->chunk[i]);
	free(ov->chunk);
	free(ov->buf);
	if (ov->fd >= 0)
		close(ov->fd);
	free(ov);
}

/* All of [off, off+len) of the overlay file, read or (WR) written. */
static int fd_io(struct overlay *ov, bool wr, void *buf, size_t len, uint64_t off,
		 struct vd_error *err)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = wr ? pwrite(ov->fd, p, len, (off_t)off) : pread(ov->fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return seterr(err, n < 0 ? errno : EIO, wr ? "write" : "read");
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int fd_write(struct overlay *ov, const void *buf, size_t len, uint64_t off, struct vd_error *err)
{
	return fd_io(ov, true, (void *)buf, len, off, err);
}

/* The end of the run of granules from OFF (at most OFF+LEN) that are all
 * written (*W) or all not. */
static uint64_t run_end(const struct overlay *ov, uint64_t off, uint64_t len, bool *w)
{
	uint64_t end = off;

	*w = written(ov, off / GRAN);
	while (end < off + len && written(ov, end / GRAN) == *w)
		end = (end / GRAN + 1) * GRAN;
	return end < off + len ? end : off + len;
}

int ov_read(struct overlay *ov, uint64_t off, void *buf, size_t len, struct vd_error *err)
{
	uint8_t *p = buf;

	while (len) {
		bool w;
		size_t n = (size_t)(run_end(ov, off, len, &w) - off);
		int r = w ? fd_io(ov, false, p, n, off, err) : vd_read(ov->img, off, p, n, err);

		if (r < 0)
			return r;
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

int ov_write(struct overlay *ov, uint64_t off, const void *buf, size_t len, struct vd_error *err)
{
	const uint8_t *p = buf;

	while (len) {
		uint64_t g = off / GRAN, gs = g * GRAN;
		uint64_t ge = gs + GRAN < ov->size ? gs + GRAN : ov->size;
		size_t n = (size_t)((off + len < ge ? off + len : ge) - off);
		int r;

		if (!written(ov, g) && (off != gs || off + n != ge)) {
			/* part of a granule: the rest comes from the image */
			r = vd_read(ov->img, gs, ov->buf, (size_t)(ge - gs), err);
			if (r == 0)
				r = fd_write(ov, ov->buf, (size_t)(ge - gs), gs, err);
			if (r < 0)
				return r;
		}
		if (p) {
			r = fd_write(ov, p, n, off, err);
		} else if (off == gs && off + n == ge) {
			/* a whole granule of zeros: a hole in the overlay */
			r = 0;
			if (fallocate(ov->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)n) < 0) {
				memset(ov->buf, 0, n);
				r = fd_write(ov, ov->buf, n, off, err);
			}
		} else {
			memset(ov->buf, 0, n);
			r = fd_write(ov, ov->buf, n, off, err);
		}
		if (r == 0)
			r = mark(ov, g, err);
		if (r < 0)
			return r;
		if (p)
			p += n;
		off += n;
		len -= n;
	}
	return 0;
}

int ov_status(struct overlay *ov, uint64_t off, uint64_t len, bool *w, struct vd_extent *e,
	      struct vd_error *err)
{
	uint64_t end = run_end(ov, off, len, w);

	if (*w) {
		memset(e, 0, sizeof(*e));
		e->start = off;
		e->length = end - off;
		e->flags = VD_BS_DATA | VD_BS_ALLOCATED;
		return 0;
	}
	return vd_block_status(ov->img, off, end - off, e, err);
}
