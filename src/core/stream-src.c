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
 * SPDX-License-Identifier: MIT
 */
#include "vdisk-int.h"
#include "stream-src.h"

#include <bzlib.h>
#include <errno.h>
#include <fcntl.h>
#include <lzma.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#define INBUF (1u << 20)

enum kind { K_RAW, K_XZ, K_ZSTD, K_GZIP, K_BZIP2 };
static const char *const kind_name[] = { "raw", "xz", "zstd", "gzip", "bzip2" };

struct sdec {
	int fd;
	bool own_fd;
	char *path;
	enum kind kind;
	uint8_t *in;
	size_t in_len, in_pos;   /* buffered input: [in_pos, in_len) unused */
	uint64_t in_total;       /* compressed bytes read from fd */
	bool in_eof, done;
	uint64_t out_off;        /* decompressed bytes produced */
	uint64_t window_left;    /* K_RAW: bytes still to read (UINT64_MAX: all) */
	bool size_known;
	const char *size_from;
	lzma_stream xz;
	ZSTD_DStream *zs;
	size_t zret;             /* last ZSTD_decompressStream result (0: frame end) */
	z_stream gz;
	bz_stream bz;
	bool dec_live;
};

static uint64_t consumed(const struct sdec *d)
{
	return d->in_total - (d->in_len - d->in_pos);
}

static int fill(struct sdec *d, struct vd_error *err)
{
	ssize_t n;

	if (d->in_pos < d->in_len || d->in_eof)
		return 0;
	d->in_pos = d->in_len = 0;
	do
		n = read(d->fd, d->in, INBUF);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return vd_set_error(err, errno, "%s: read at compressed byte %llu: %s", d->path,
				    (unsigned long long)d->in_total, strerror(errno));
	if (n == 0)
		d->in_eof = true;
	d->in_len = (size_t)n;
	d->in_total += (uint64_t)n;
	return 0;
}

static int corrupt(struct sdec *d, const char *what, struct vd_error *err)
{
	return vd_set_error(err, EIO, "%s: %s data is corrupt (%s) at compressed byte %llu (decompressed %llu bytes)",
			    d->path, kind_name[d->kind], what, (unsigned long long)consumed(d),
			    (unsigned long long)d->out_off);
}

static int truncated(struct sdec *d, struct vd_error *err)
{
	return vd_set_error(err, EIO, "%s: %s data ends early at compressed byte %llu (decompressed %llu bytes; truncated?)",
			    d->path, kind_name[d->kind], (unsigned long long)d->in_total,
			    (unsigned long long)d->out_off);
}

static int dec_init(struct sdec *d, struct vd_error *err)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	switch (d->kind) {
	case K_XZ: {
		lzma_mt mt = { 0 };
		lzma_stream init = LZMA_STREAM_INIT;
		d->xz = init;
		mt.flags = LZMA_CONCATENATED;
		mt.threads = (uint32_t)VD_MAX(1L, VD_MIN(ncpu, 16L));
		mt.memlimit_threading = 1ull << 30;
		mt.memlimit_stop = UINT64_MAX;
		if (lzma_stream_decoder_mt(&d->xz, &mt) != LZMA_OK)
			return vd_set_error(err, ENOMEM, "%s: cannot start the xz decoder", d->path);
		break;
	}
	case K_ZSTD:
		d->zs = ZSTD_createDStream();
		if (!d->zs || ZSTD_isError(ZSTD_initDStream(d->zs)))
			return vd_set_error(err, ENOMEM, "%s: cannot start the zstd decoder", d->path);
		break;
	case K_GZIP:
		memset(&d->gz, 0, sizeof(d->gz));
		if (inflateInit2(&d->gz, 15 + 16) != Z_OK)
			return vd_set_error(err, ENOMEM, "%s: cannot start the gzip decoder", d->path);
		break;
	case K_BZIP2:
		memset(&d->bz, 0, sizeof(d->bz));
		if (BZ2_bzDecompressInit(&d->bz, 0, 0) != BZ_OK)
			return vd_set_error(err, ENOMEM, "%s: cannot start the bzip2 decoder", d->path);
		break;
	case K_RAW:
		break;
	}
	d->dec_live = true;
	return 0;
}

static void dec_end(struct sdec *d)
{
	if (!d->dec_live)
		return;
	switch (d->kind) {
	case K_XZ: lzma_end(&d->xz); break;
	case K_ZSTD: ZSTD_freeDStream(d->zs); d->zs = NULL; break;
	case K_GZIP: inflateEnd(&d->gz); break;
	case K_BZIP2: BZ2_bzDecompressEnd(&d->bz); break;
	case K_RAW: break;
	}
	d->dec_live = false;
}

/* Decode up to LEN bytes into BUF; *GOT < LEN only at the end. */
static int dec_read(struct sdec *d, uint8_t *buf, size_t len, size_t *got, struct vd_error *err)
{
	size_t done = 0;
	int r = 0;

	while (done < len && !d->done) {
		size_t avail, before;
		const char *why = NULL;
		r = fill(d, err);
		if (r < 0)
			return r;
		r = 0;
		avail = d->in_len - d->in_pos;
		before = done;
		switch (d->kind) {
		case K_RAW: {
			size_t n = (size_t)VD_MIN((uint64_t)VD_MIN(avail, len - done), d->window_left);
			memcpy(buf + done, d->in + d->in_pos, n);
			d->in_pos += n;
			done += n;
			if (d->window_left != UINT64_MAX)
				d->window_left -= n;
			if (d->window_left == 0 || (d->in_eof && avail == 0))
				d->done = true;
			break;
		}
		case K_XZ: {
			lzma_ret x;
			d->xz.next_in = d->in + d->in_pos;
			d->xz.avail_in = avail;
			d->xz.next_out = buf + done;
			d->xz.avail_out = len - done;
			x = lzma_code(&d->xz, d->in_eof ? LZMA_FINISH : LZMA_RUN);
			d->in_pos = d->in_len - d->xz.avail_in;
			done = len - d->xz.avail_out;
			if (x == LZMA_STREAM_END)
				d->done = true;
			else if (x == LZMA_BUF_ERROR && d->in_eof)
				r = 1;
			else if (x == LZMA_MEM_ERROR || x == LZMA_MEMLIMIT_ERROR)
				return vd_set_error(err, ENOMEM, "%s: xz decoder out of memory", d->path);
			else if (x != LZMA_OK)
				r = 2;
			if (r == 2)
				why = x == LZMA_FORMAT_ERROR ? "not an xz stream" :
				      x == LZMA_OPTIONS_ERROR ? "unsupported options" : "bad block or check";
			break;
		}
		case K_ZSTD: {
			ZSTD_inBuffer zin = { d->in + d->in_pos, avail, 0 };
			ZSTD_outBuffer zout = { buf + done, len - done, 0 };
			if (avail == 0 && d->in_eof) {
				if (d->zret != 0)
					r = 1; /* a frame begun, not ended */
				else
					d->done = true;
				break;
			}
			d->zret = ZSTD_decompressStream(d->zs, &zout, &zin);
			d->in_pos += zin.pos;
			done += zout.pos;
			if (ZSTD_isError(d->zret)) {
				r = 2;
				why = ZSTD_getErrorName(d->zret);
			}
			break;
		}
		case K_GZIP: {
			int z;
			if (avail == 0 && d->in_eof) {
				if (d->gz.total_in || d->gz.total_out)
					r = 1; /* a member begun, not ended */
				else
					d->done = true;
				break;
			}
			d->gz.next_in = d->in + d->in_pos;
			d->gz.avail_in = (uInt)avail;
			d->gz.next_out = buf + done;
			d->gz.avail_out = (uInt)(len - done);
			z = inflate(&d->gz, Z_NO_FLUSH);
			d->in_pos = d->in_len - d->gz.avail_in;
			done = len - d->gz.avail_out;
			if (z == Z_STREAM_END)
				inflateReset(&d->gz); /* another member may follow */
			else if (z == Z_DATA_ERROR || z == Z_NEED_DICT) {
				r = 2;
				why = d->gz.msg ? d->gz.msg : "bad data";
			}
			else if (z == Z_MEM_ERROR)
				return vd_set_error(err, ENOMEM, "%s: gzip decoder out of memory", d->path);
			break;
		}
		case K_BZIP2: {
			int z;
			bool begun = d->bz.total_in_lo32 || d->bz.total_in_hi32;
			if (avail == 0 && d->in_eof) {
				if (begun)
					r = 1;
				else
					d->done = true;
				break;
			}
			d->bz.next_in = (char *)d->in + d->in_pos;
			d->bz.avail_in = (unsigned)avail;
			d->bz.next_out = (char *)buf + done;
			d->bz.avail_out = (unsigned)(len - done);
			z = BZ2_bzDecompress(&d->bz);
			d->in_pos = d->in_len - d->bz.avail_in;
			done = len - d->bz.avail_out;
			if (z == BZ_STREAM_END) {
				/* another stream may follow (pbzip2, cat a.bz2 b.bz2) */
				BZ2_bzDecompressEnd(&d->bz);
				memset(&d->bz, 0, sizeof(d->bz));
				if (BZ2_bzDecompressInit(&d->bz, 0, 0) != BZ_OK) {
					d->dec_live = false;
					return vd_set_error(err, ENOMEM, "%s: cannot restart the bzip2 decoder", d->path);
				}
			} else if (z == BZ_MEM_ERROR) {
				return vd_set_error(err, ENOMEM, "%s: bzip2 decoder out of memory", d->path);
			} else if (z != BZ_OK) {
				r = 2;
				why = z == BZ_DATA_ERROR_MAGIC ? "not a bzip2 stream" : "bad block or CRC";
			}
			break;
		}
		}
		d->out_off += done - before;
		if (r == 1)
			return truncated(d, err);
		if (r == 2)
			return corrupt(d, why, err);
	}
	*got = done;
	return 0;
}

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
	dec_end(d);
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

	if (off < d->out_off)
		return vd_set_error(err, ESPIPE,
				    "%s: a %s source is read once, front to back (read at byte %llu after %llu): this needs random access; decompress it to a file first",
				    d->path, d->fd == 0 ? "piped" : d->kind == K_RAW ? "windowed" : "compressed",
				    (unsigned long long)off, (unsigned long long)d->out_off);
	while (d->out_off < off) {
		uint8_t scratch[65536];
		size_t n = (size_t)VD_MIN(off - d->out_off, (uint64_t)sizeof(scratch));
		r = dec_read(d, scratch, n, &got, err);
		if (r < 0)
			return r;
		if (got < n)
			goto short_stream;
	}
	r = dec_read(d, buf, len, &got, err);
	if (r < 0)
		return r;
	if (got < len)
		goto short_stream;
	if (off + len == img->size && d->window_left == UINT64_MAX) {
		/* the end: the stream must end here too */
		uint8_t extra;
		r = dec_read(d, &extra, 1, &got, err);
		if (r < 0)
			return r;
		if (got)
			return vd_set_error(err, EFBIG, "%s: the %s stream holds more than the %llu bytes %s says%s",
					    d->path, kind_name[d->kind], (unsigned long long)img->size,
					    d->size_from, d->kind == K_ZSTD ? " (several frames?): give --size" : "");
	}
	return 0;
short_stream:
	return vd_set_error(err, EIO, "%s: the %s stream ends after %llu bytes, but %s says %llu",
			    d->path, kind_name[d->kind], (unsigned long long)d->out_off, d->size_from,
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
	r = dec_init(d, err);
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
	dec_end(d);
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
		r = dec_read(d, buf, INBUF, &got, err);
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
	return img->drv == &stream_driver ? kind_name[((struct sdec *)img->priv)->kind] : NULL;
}
