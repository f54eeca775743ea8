/*
 * Sequential sources: a compressed raw disk (xz, zstd, gzip, bzip2, told
 * apart by their magic), standard input ("-"), or a raw window of a file
 * or device (--source-offset/--source-size), opened as a read-only image
 * that convert reads front to back in one pass.
 *
 * The image is not registered (nothing probes it): vd_stream_open decides.
 * Reads must come in increasing order (convert's reader does that; a gap
 * is decoded and dropped); a read that goes back is refused with a message
 * saying the command needs random access, so commands that seek fail
 * clearly instead of reading wrong data.
 *
 * The virtual size is known when the container records it (the xz index of
 * a seekable file, read with liblzma's file-info decoder; the first zstd
 * frame's content size), when the caller gives it (--size), or for a
 * window; then the stream must hold exactly that many bytes, else the last
 * read fails.  Otherwise the size is unknown (gzip, bzip2, a pipe) and the
 * caller drains the stream into a sparse spool file (vd_stream_spool) and
 * reads that instead: see src/ops/source.c.
 *
 * The decoders, and the thread that runs them ahead of the reader, are in
 * stream-dec.c.
 *
 * SPDX-License-Identifier: MIT
 */
#include "vdisk-int.h"
#include "stream-src.h"
#include "stream-dec.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- virtual size from the container ---- */

/* The xz index of the seekable file FD (SIZE bytes): *OUT, 0 = found. */
static int xz_size(int fd, uint64_t file_size, uint64_t *out)
{
	lzma_stream s = LZMA_STREAM_INIT;
	lzma_index *idx = NULL;
	uint8_t *buf = malloc(1 << 16);
	uint64_t pos = 0;
	int r = -1;

	if (!buf || lzma_file_info_decoder(&s, &idx, 64ull << 20, file_size) != LZMA_OK)
		goto out;
	for (unsigned steps = 0; steps < 100000; steps++) {
		lzma_ret x;
		if (s.avail_in == 0) {
			ssize_t n = pread(fd, buf, 1 << 16, (off_t)pos);
			if (n < 0)
				break;
			s.next_in = buf;
			s.avail_in = (size_t)n;
			pos += (uint64_t)n;
		}
		x = lzma_code(&s, LZMA_RUN);
		if (x == LZMA_SEEK_NEEDED) {
			pos = s.seek_pos;
			s.avail_in = 0;
			continue;
		}
		if (x == LZMA_STREAM_END) {
			*out = lzma_index_uncompressed_size(idx);
			lzma_index_end(idx, NULL);
			r = 0;
			break;
		}
		if (x != LZMA_OK)
			break;
	}
out:
	lzma_end(&s);
	free(buf);
	return r;
}

/* ---- the image ---- */

static int s_open(struct vd_image *img, struct vd_error *err)
{
	(void)img;
	(void)err;
	return 0;
}

static void s_close(struct vd_image *img)
{
	struct sdec *d = img->priv;

	if (!d)
		return;
	sdec_end(d);
	if (d->own_fd && d->fd >= 0)
		close(d->fd);
	free(d->in);
	free(d->path);
	free(d);
}

static int s_read(struct vd_image *img, uint64_t off, void *buf, size_t len, struct vd_error *err)
{
	struct sdec *d = img->priv;
	size_t got;
	int r;

	if (off < d->cpos)
		return vd_set_error(err, ESPIPE,
				    "%s: a %s source is read once, front to back (read at byte %llu after %llu): this needs random access; decompress it to a file first",
				    d->path, d->fd == 0 ? "piped" : d->kind == K_RAW ? "windowed" : "compressed",
				    (unsigned long long)off, (unsigned long long)d->cpos);
	while (d->cpos < off) {
		uint8_t scratch[65536];
		size_t n = (size_t)VD_MIN(off - d->cpos, (uint64_t)sizeof(scratch));
		r = sdec_pull(d, scratch, n, &got, err);
		if (r < 0)
			return r;
		if (got < n)
			goto short_stream;
	}
	r = sdec_pull(d, buf, len, &got, err);
	if (r < 0)
		return r;
	if (got < len)
		goto short_stream;
	if (off + len == img->size && d->window_left == UINT64_MAX) {
		/* the end: the stream must end here too */
		uint8_t extra;
		r = sdec_pull(d, &extra, 1, &got, err);
		if (r < 0)
			return r;
		if (got)
			return vd_set_error(err, EFBIG, "%s: the %s stream holds more than the %llu bytes %s says%s",
					    d->path, sdec_kind_name[d->kind], (unsigned long long)img->size,
					    d->size_from, d->kind == K_ZSTD ? " (several frames?): give --size" : "");
	}
	return 0;
short_stream:
	return vd_set_error(err, EIO, "%s: the %s stream ends after %llu bytes, but %s says %llu",
			    d->path, sdec_kind_name[d->kind], (unsigned long long)d->cpos, d->size_from,
			    (unsigned long long)img->size);
}

static const struct vd_driver stream_driver = {
	.name = "raw",
	.open = s_open,
	.close = s_close,
	.read = s_read,
};

static void host_close(struct vd_host *h)
{
	free(h->path);
	free(h);
}

static const struct vd_host_ops stream_host_ops = {
	.close = host_close,
};

static int kind_of(const uint8_t *m, size_t n)
{
	if (n >= 6 && !memcmp(m, "\xfd" "7zXZ\0", 6))
		return K_XZ;
	if (n >= 4 && le32dec(m) == 0xfd2fb528u)
		return K_ZSTD;
	if (n >= 3 && m[0] == 0x1f && m[1] == 0x8b && m[2] == 8)
		return K_GZIP;
	if (n >= 4 && !memcmp(m, "BZh", 3) && m[3] >= '1' && m[3] <= '9')
		return K_BZIP2;
	return K_RAW;
}

static int make_image(struct vd_image **out, struct sdec *d, uint64_t size, struct vd_error *err)
{
	struct vd_image *img = vd_calloc(1, sizeof(*img), err);
	struct vd_host *h = vd_calloc(1, sizeof(*h), err);

	if (!img || !h || !(h->path = strdup(d->path))) {
		free(img);
		free(h);
		return -ENOMEM;
	}
	h->ops = &stream_host_ops;
	h->fd = -1; /* never "the same file" as a destination */
	img->drv = &stream_driver;
	img->host = h;
	img->priv = d;
	img->size = size;
	img->align = 1;
	*out = img;
	return 0;
}

int vd_stream_open(struct vd_image **out, const char *path, uint64_t size, bool *size_known,
		   struct vd_error *err)
{
	struct sdec *d;
	struct stat st;
	uint64_t csize = 0;
	int r;

	*out = NULL;
	if (vd_is_nbd_uri(path))
		return 0; /* an export is read as an image */
	d = vd_calloc(1, sizeof(*d), err);
	if (!d)
		return -ENOMEM;
	d->window_left = UINT64_MAX;
	d->path = strdup(strcmp(path, "-") ? path : "standard input");
	d->in = malloc(INBUF);
	if (!d->path || !d->in) {
		r = vd_set_error(err, ENOMEM, "out of memory");
		goto fail;
	}
	if (!strcmp(path, "-")) {
		d->fd = 0;
	} else {
		d->fd = open(path, O_RDONLY | O_CLOEXEC);
		if (d->fd < 0) {
			r = vd_set_error(err, errno, "%s: %s", path, strerror(errno));
			goto fail;
		}
		d->own_fd = true;
	}
	/* the magic: at least 6 bytes unless the stream is shorter */
	while (d->in_len < 6 && !d->in_eof) {
		ssize_t n = read(d->fd, d->in + d->in_len, INBUF - d->in_len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = vd_set_error(err, errno, "%s: %s", d->path, strerror(errno));
			goto fail;
		}
		if (n == 0)
			d->in_eof = true;
		d->in_len += (size_t)n;
		d->in_total += (uint64_t)n;
	}
	d->kind = kind_of(d->in, d->in_len);
	if (d->kind == K_RAW && d->own_fd) {
		r = 0; /* an ordinary file: not ours */
		goto fail;
	}
	r = sdec_init(d, err);
	if (r < 0)
		goto fail;
	if (size) {
		d->size_known = true;
		d->size_from = "--size";
	} else if (d->kind == K_XZ && d->own_fd && fstat(d->fd, &st) == 0 && S_ISREG(st.st_mode) &&
		   xz_size(d->fd, (uint64_t)st.st_size, &csize) == 0) {
		size = csize;
		d->size_known = true;
		d->size_from = "the xz index";
	} else if (d->kind == K_ZSTD) {
		unsigned long long fc = ZSTD_getFrameContentSize(d->in, d->in_len);
		if (fc != ZSTD_CONTENTSIZE_UNKNOWN && fc != ZSTD_CONTENTSIZE_ERROR) {
			size = fc;
			d->size_known = true;
			d->size_from = "the zstd frame header";
		}
	}
	*size_known = d->size_known;
	r = make_image(out, d, size, err);
	if (r < 0)
		goto fail;
	return 1;
fail:
	if (d->own_fd && d->fd >= 0)
		close(d->fd);
	sdec_end(d);
	free(d->in);
	free(d->path);
	free(d);
	return r;
}

int vd_window_open(struct vd_image **out, const char *path, uint64_t offset, uint64_t size,
		   struct vd_error *err)
{
	struct sdec *d;
	int r;

	*out = NULL;
	d = vd_calloc(1, sizeof(*d), err);
	if (!d)
		return -ENOMEM;
	d->kind = K_RAW;
	d->window_left = size;
	d->size_known = true;
	d->size_from = "--source-size";
	d->path = strdup(path);
	d->in = malloc(INBUF);
	if (!d->path || !d->in) {
		r = vd_set_error(err, ENOMEM, "out of memory");
		goto fail;
	}
	d->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (d->fd < 0) {
		r = vd_set_error(err, errno, "%s: %s", path, strerror(errno));
		goto fail;
	}
	d->own_fd = true;
	if (!size) {
		off_t end = lseek(d->fd, 0, SEEK_END);
		if (end < 0 || (uint64_t)end <= offset) {
			r = vd_set_error(err, EINVAL, "%s: --source-offset %llu is not inside the file (%lld bytes)",
					 path, (unsigned long long)offset, (long long)end);
			goto fail;
		}
		size = (uint64_t)end - offset;
		d->window_left = size;
	}
	if (lseek(d->fd, (off_t)offset, SEEK_SET) < 0) {
		r = vd_set_error(err, errno, "%s: cannot seek to --source-offset %llu: %s", path,
				 (unsigned long long)offset, strerror(errno));
		goto fail;
	}
	r = make_image(out, d, size, err);
	if (r < 0)
		goto fail;
	return 0;
fail:
	if (d->own_fd && d->fd >= 0)
		close(d->fd);
	free(d->in);
	free(d->path);
	free(d);
	return r;
}

int vd_stream_spool(struct vd_image *img, struct vd_host *h, uint64_t *size,
		    const volatile int *cancel, struct vd_error *err)
{
	struct sdec *d = img->priv;
	uint8_t *buf = vd_malloc(INBUF, err);
	uint64_t off = 0;
	int r = 0;

	if (!buf)
		return -ENOMEM;
	for (;;) {
		size_t got;
		if (vd_cancelled(cancel)) {
			r = vd_set_error(err, ECANCELED, "interrupted");
			break;
		}
		r = sdec_pull(d, buf, INBUF, &got, err);
		if (r < 0 || got == 0)
			break;
		/* zero blocks of 4 KiB stay holes */
		for (size_t p = 0; p < got && r == 0;) {
			size_t n = VD_MIN((size_t)4096, got - p);
			if (!vd_is_zero(buf + p, n)) {
				size_t e = p + n;
				while (e < got && !vd_is_zero(buf + e, VD_MIN((size_t)4096, got - e)))
					e += VD_MIN((size_t)4096, got - e);
				r = vd_host_pwrite(h, buf + p, e - p, off + p, err);
				n = e - p;
			}
			p += n;
		}
		off += got;
		if (r < 0)
			break;
	}
	free(buf);
	if (r == 0)
		r = vd_host_truncate(h, off, err);
	if (r == 0)
		*size = off;
	return r;
}

const char *vd_stream_kind(const struct vd_image *img)
{
	return img->drv == &stream_driver ? sdec_kind_name[((struct sdec *)img->priv)->kind] : NULL;
}
