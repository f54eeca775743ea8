/*
 * Sequential output host: an image written front to back into a file
 * descriptor that cannot seek (a pipe, standard output).
 *
 * The first HOLD bytes are kept in memory until a write or a size goes
 * past them, so that creating and opening an image (its header written,
 * read back, rewritten) works as on a file; they are then sent, and stay
 * readable (a stream VMDK's footer repeats its header).  From there on
 * writes must come in increasing order; a gap before a write is sent as
 * zeros, so the writer may skip what reads as zeros (a raw image starts
 * zeroed), and vd_host_seq_finish sends what is held and the zeros after
 * the last write up to the image's size.  A write that goes back behind
 * what was sent, or a read past the held bytes, fails with ESPIPE: the
 * writer is not a front-to-back one.
 *
 * Written here rather than through a staging file so that a pipe gets its
 * bytes at once and needs no temporary space of the image's size.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "vdisk-int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#define HOLD (1u << 20)

struct seq_host {
	struct vd_host h; /* first: the host layer sees only this */
	uint8_t *held;    /* the first HOLD bytes */
	uint64_t held_len;  /* bytes of HELD written or sized (<= HOLD) */
	bool released;    /* HELD has been sent */
	uint64_t pos;     /* bytes sent */
	uint64_t size;    /* the image's size (truncate) */
};

static struct seq_host *sh(struct vd_host *h)
{
	return (struct seq_host *)h;
}

/* Send LEN bytes of BUF (NULL: zeros): 0 or -errno. */
static int send_all(struct seq_host *s, const uint8_t *buf, uint64_t len)
{
	while (len) {
		size_t n = (size_t)VD_MIN(len, (uint64_t)VD_ZERO_BUF_SIZE);
		ssize_t w = write(s->h.fd, buf ? (const void *)buf : vd_zero_buf(), n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		if (w == 0)
			return -EIO;
		s->pos += (uint64_t)w;
		len -= (uint64_t)w;
		if (buf)
			buf += w;
	}
	return 0;
}

/* Send the held bytes (all of HOLD when the image goes on past it). */
static int release(struct seq_host *s, uint64_t upto)
{
	int r;

	if (s->released)
		return 0;
	s->released = true;
	r = send_all(s, s->held, VD_MIN(s->held_len, upto));
	if (r == 0 && upto > s->held_len)
		r = send_all(s, NULL, VD_MIN((uint64_t)HOLD, upto) - s->held_len);
	return r;
}

static ssize_t seq_pread(struct vd_host *h, void *buf, size_t len, uint64_t off)
{
	struct seq_host *s = sh(h);
	uint64_t end = VD_MAX(s->size, s->released ? s->pos : s->held_len);

	if (off >= end)
		return 0;
	len = (size_t)VD_MIN((uint64_t)len, end - off);
	if (off + len > HOLD)
		return -ESPIPE;
	if (off + len <= s->held_len) {
		memcpy(buf, s->held + off, len);
	} else {
		size_t n = off < s->held_len ? (size_t)(s->held_len - off) : 0;
		memcpy(buf, s->held + off, n);
		memset((uint8_t *)buf + n, 0, len - n);
	}
	return (ssize_t)len;
}

static ssize_t seq_pwrite(struct vd_host *h, const void *buf, size_t len, uint64_t off)
{
	struct seq_host *s = sh(h);
	const uint8_t *p = buf;
	size_t n = len;
	int r;

	if (!s->released && off < HOLD) {
		/* what falls in the held bytes is kept there */
		size_t k = (size_t)VD_MIN((uint64_t)n, HOLD - off);
		if (off > s->held_len)
			memset(s->held + s->held_len, 0, (size_t)(off - s->held_len));
		memcpy(s->held + off, p, k);
		s->held_len = VD_MAX(s->held_len, off + k);
		if (k == n)
			return (ssize_t)len;
		p += k;
		n -= k;
		off += k;
	}
	if (!s->released) {
		r = release(s, HOLD);
		if (r < 0)
			return r;
	}
	if (off < s->pos)
		return -ESPIPE;
	r = send_all(s, NULL, off - s->pos);
	if (r == 0)
		r = send_all(s, p, n);
	return r < 0 ? r : (ssize_t)len;
}

static int seq_get_size(struct vd_host *h, uint64_t *size)
{
	struct seq_host *s = sh(h);

	*size = VD_MAX(s->size, s->released ? s->pos : s->held_len);
	return 0;
}

static int seq_truncate(struct vd_host *h, uint64_t size)
{
	struct seq_host *s = sh(h);

	if (s->released && size < s->pos)
		return -ESPIPE;
	if (!s->released && size < s->held_len)
		s->held_len = size;
	s->size = size;
	return 0;
}

/* Zeros ahead of what was sent are sent as the gap before the next write
 * (or held); zeros over what was sent cannot be. */
static int seq_zero_range(struct vd_host *h, uint64_t off, uint64_t len)
{
	struct seq_host *s = sh(h);

	if (!s->released) {
		if (off < s->held_len)
			memset(s->held + off, 0, (size_t)(VD_MIN(off + len, s->held_len) - off));
		return 0;
	}
	return off < s->pos ? -ESPIPE : 0;
}

static int seq_seek_data(struct vd_host *h, uint64_t off, uint64_t *data_off)
{
	(void)h; (void)off; (void)data_off;
	return -ENOTSUP;
}

static int seq_flush(struct vd_host *h)
{
	(void)h;
	return 0;
}

static void seq_close(struct vd_host *h)
{
	free(sh(h)->held);
	free(h->path);
	free(sh(h));
}

static const struct vd_host_ops seq_ops = {
	.pread = seq_pread,
	.pwrite = seq_pwrite,
	.get_size = seq_get_size,
	.truncate = seq_truncate,
	.zero_range = seq_zero_range,
	.seek_data = seq_seek_data,
	.seek_hole = seq_seek_data,
	.flush = seq_flush,
	.close = seq_close,
};

int vd_host_open_seq(struct vd_host **out, int fd, const char *name, struct vd_error *err)
{
	struct seq_host *s = vd_calloc(1, sizeof(*s), err);

	*out = NULL;
	if (!s)
		return -ENOMEM;
	s->held = vd_malloc(HOLD, err);
	if (!s->held) {
		free(s);
		return -ENOMEM;
	}
	s->h.ops = &seq_ops;
	s->h.fd = fd;
	s->h.writable = true;
	s->h.sequential = true;
	s->h.no_sync = true; /* nothing to write back or fsync on a pipe */
	/* a 1 MiB pipe buffer (pipe-max-size's default) rather than 64 KiB:
	 * fewer switches between vdisk and the reader, 3 GiB through cat in
	 * 1.2-1.8 s instead of 2.9-4.5 s; a hint, other descriptors refuse it */
	(void)fcntl(fd, F_SETPIPE_SZ, 1 << 20);
	s->h.path = strdup(name ? name : "standard output");
	if (!s->h.path) {
		free(s->held);
		free(s);
		return vd_set_error(err, ENOMEM, "out of memory");
	}
	*out = &s->h;
	return 0;
}

int vd_host_seq_finish(struct vd_host *h, struct vd_error *err)
{
	struct seq_host *s = sh(h);
	uint64_t end;
	int r;

	if (h->ops != &seq_ops)
		return 0;
	end = VD_MAX(s->size, s->released ? s->pos : s->held_len);
	r = release(s, end);
	if (r == 0 && s->pos < end)
		r = send_all(s, NULL, end - s->pos);
	if (r < 0)
		return vd_set_error(err, -r, "%s: write at offset %llu: %s", h->path,
				    (unsigned long long)s->pos, strerror(-r));
	return 0;
}
