/*
 * rewrite: what may be dropped besides zero blocks.  With --fs-aware, the
 * free space of the guest filesystems (read from their own allocation maps
 * by the walkers in src/fs): whole units entirely free are not copied into
 * the new image; a raw image is compacted in place instead, its zero runs
 * and free ranges punched as holes (the contents never change).
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "rewrite.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- --fs-aware: what the guest filesystems do not use ---- */

static void note_add(struct rw *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

struct fsctx {
	struct rw *w;
	struct vd_image *img;
	bool raw;              /* punch the free ranges in place */
	struct vd_error *err;
};

static int on_free(void *ctx, uint64_t off, uint64_t len)
{
	struct fsctx *c = ctx;
	struct rw *w = c->w;

	if (vd_cancelled(w->o->cancel))
		return vd_set_error(c->err, ECANCELED, "interrupted");
	if (c->raw) {
		uint64_t a = VD_ALIGN_UP(off, PUNCH_UNIT), b = VD_ALIGN_DOWN(off + len, PUNCH_UNIT);
		int r;

		/* only what is stored: a hole already is one (and is not
		 * counted as punched) */
		while (a < b) {
			struct vd_extent e;
			r = vd_block_status(c->img, a, b - a, &e, c->err);
			if (r < 0)
				return r;
			if ((e.flags & VD_BS_DATA) && !(e.flags & VD_BS_ZERO)) {
				r = vd_write_zeroes(c->img, a, e.length, VD_ZERO_MAY_UNMAP, c->err);
				if (r < 0)
					return r;
				w->res->bytes_punched += e.length;
			}
			a += e.length;
		}
		return 0;
	}
	/* whole units are dropped; the free pieces of units partly in use
	 * are remembered, to be written as zeros */
	if (off >= w->size)
		return 0;
	len = VD_MIN(len, w->size - off);
	for (uint64_t u = off / w->unit; u < w->nunits && u * w->unit < off + len; u++) {
		uint64_t us = u * w->unit, ue = VD_MIN(us + w->unit, w->size);
		uint64_t a = VD_MAX(off, us), b = VD_MIN(off + len, ue);

		if (a == us && b == ue) {
			set_bit(w->freeb, u);
			continue;
		}
		if (w->npieces == w->cap_pieces) {
			size_t cap = w->cap_pieces ? w->cap_pieces * 2 : 1024;
			struct rw_piece *np;

			if (w->cap_pieces >= RW_MAX_PIECES) {
				w->pieces_full = true;
				continue;
			}
			np = realloc(w->pieces, cap * sizeof(*np));
			if (!np)
				return vd_set_error(c->err, ENOMEM, "out of memory");
			w->pieces = np;
			w->cap_pieces = cap;
		}
		w->pieces[w->npieces].off = a;
		w->pieces[w->npieces].len = b - a;
		w->npieces++;
	}
	return 0;
}

static int cmp_piece(const void *a, const void *b)
{
	const struct rw_piece *x = a, *y = b;
	return x->off < y->off ? -1 : x->off > y->off;
}

int rw_pieces_finish(struct rw *w, struct vd_error *err)
{
	size_t n = 0;

	(void)err;
	if (w->npieces == 0)
		return 0;
	qsort(w->pieces, w->npieces, sizeof(*w->pieces), cmp_piece);
	for (size_t i = 0; i < w->npieces; i++) {
		struct rw_piece p = w->pieces[i];
		struct rw_piece *q = n ? &w->pieces[n - 1] : NULL;

		/* merge overlapping or touching pieces of the same unit */
		if (q && q->off / w->unit == p.off / w->unit && p.off <= q->off + q->len) {
			q->len = VD_MAX(q->off + q->len, p.off + p.len) - q->off;
			continue;
		}
		w->pieces[n++] = p;
	}
	w->npieces = n;
	n = 0;
	for (size_t i = 0; i < w->npieces; i++) {
		struct rw_piece p = w->pieces[i];
		uint64_t u = p.off / w->unit, us = u * w->unit;

		if (bit(w->freeb, u))
			continue;
		if (p.off == us && p.len == VD_MIN(w->unit, w->size - us)) {
			set_bit(w->freeb, u);
			continue;
		}
		w->pieces[n++] = p;
	}
	w->npieces = n;
	if (w->pieces_full)
		note_add(w, "the free space is in more than %u pieces inside blocks in use: the rest of those blocks was kept as it was",
			 RW_MAX_PIECES);
	return 0;
}

size_t rw_piece_at(const struct rw *w, uint64_t off)
{
	size_t lo = 0, hi = w->npieces;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (w->pieces[mid].off + w->pieces[mid].len <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void note_add(struct rw *w, const char *fmt, ...)
{
	size_t n = strlen(w->res->note);
	va_list ap;

	if (n + 3 >= sizeof(w->res->note))
		return;
	if (n)
		n += (size_t)snprintf(w->res->note + n, sizeof(w->res->note) - n, "; ");
	va_start(ap, fmt);
	vsnprintf(w->res->note + n, sizeof(w->res->note) - n, fmt, ap);
	va_end(ap);
}

/* Walk the filesystem of the whole disk, or of each partition of the MBR
 * or GPT.  Unknown content is left alone (and said so in the note); a
 * filesystem that needs recovery or has errors, or a partition table that
 * fails validation, stops the run. */
int rw_walk_fs(struct rw *w, struct vd_image *img, bool raw, struct vd_error *err)
{
	struct fsctx c = { .w = w, .img = img, .raw = raw, .err = err };
	struct vd_ptable *pt = vd_calloc(1, sizeof(*pt), err);
	struct vd_error e2 = { 0 };
	unsigned n = 0;
	int r;

	if (!pt)
		return -ENOMEM;
	r = vd_ptable_read(img, pt, &e2);
	if (r == -ENOENT) {
		pt->nparts = 0;
	} else if (r < 0) {
		*err = e2;
		free(pt);
		return vd_prefix_error(err, "--fs-aware");
	}
	if (pt->note[0])
		note_add(w, "%s", pt->note);
	for (unsigned i = 0; i <= pt->nparts; i++) {
		struct vd_fs_info fi;
		uint64_t off = 0, len = 0;
		char name[24];

		if (i == pt->nparts && pt->nparts)
			break;
		if (pt->nparts) {
			const struct vd_ptable_part *p = &pt->part[i];
			if (p->extended || p->size == 0 ||
			    (p->start + p->size) * VD_SECTOR > vd_size(img))
				continue;
			off = p->start * VD_SECTOR;
			len = p->size * VD_SECTOR;
			snprintf(name, sizeof(name), "partition %u", p->number);
		} else {
			snprintf(name, sizeof(name), "whole disk");
		}
		vd_error_clear(&e2);
		r = vd_fs_free_ranges_cancel(img, off, len, 0, w->o->cancel, on_free, &c, &fi, &e2);
		if (r == -ENOTSUP) {
			note_add(w, "%s: no filesystem vdisk can read, left alone", name);
			continue;
		}
		if (r < 0) {
			if (e2.code)
				*err = e2;
			free(pt);
			return vd_prefix_error(err, "--fs-aware: %s", name);
		}
		n++;
		note_add(w, "%s: %s, %.1f MiB free", name, fi.type, fi.free_bytes / 1048576.0);
	}
	free(pt);
	if (n == 0)
		note_add(w, "--fs-aware found no filesystem it can read: only zero blocks were dropped");
	return 0;
}

int rw_free_map(struct rw *w, struct vd_image *img, struct vd_error *err)
{
	int r;

	w->freeb = vd_calloc((size_t)((w->nunits + 7) / 8), 1, err);
	r = w->freeb ? rw_walk_fs(w, img, false, err) : -ENOMEM;
	return r < 0 ? r : rw_pieces_finish(w, err);
}

bool rw_zero_pieces(const struct rw *w, uint64_t off, uint64_t len, uint8_t *buf)
{
	bool dirty = false;

	for (size_t i = rw_piece_at(w, off); i < w->npieces && w->pieces[i].off < off + len; i++) {
		uint64_t a = VD_MAX(off, w->pieces[i].off);
		uint64_t b = VD_MIN(off + len, w->pieces[i].off + w->pieces[i].len);
		if (!vd_is_zero(buf + (a - off), (size_t)(b - a))) {
			memset(buf + (a - off), 0, (size_t)(b - a));
			dirty = true;
		}
	}
	return dirty;
}

/* ---- raw compact: in place ---- */

static int punch(struct rw *w, struct vd_image *img, uint64_t zs, uint64_t ze, struct vd_error *err)
{
	int r;

	if (ze <= zs)
		return 0;
	r = vd_write_zeroes(img, zs, ze - zs, VD_ZERO_MAY_UNMAP, err);
	if (r == 0)
		w->res->bytes_punched += ze - zs;
	return r;
}

int rw_compact_raw(struct rw *w, struct vd_error *err)
{
	struct vd_image *img = NULL;
	uint64_t off = 0, size;
	int r, r2;

	w->res->method = VD_REWRITE_IN_PLACE;
	r = vd_open(&img, w->path, "raw", VD_OPEN_RDWR | w->o->open_flags, err);
	if (r < 0)
		return r;
	size = vd_size(img);
	w->total = w->data_bytes;
	if (w->o->fs_aware) {
		r = rw_walk_fs(w, img, true, err);
		if (r < 0) {
			vd_close(img, NULL);
			return r;
		}
	}
	while (off < size && r == 0) {
		struct vd_extent e;
		uint64_t end, zs = UINT64_MAX, punched0;

		r = vd_block_status(img, off, size - off, &e, err);
		if (r < 0)
			break;
		end = off + e.length;
		if (!(e.flags & VD_BS_DATA) || (e.flags & VD_BS_ZERO)) {
			off = end;
			continue;
		}
		w->res->blocks_before++;
		punched0 = w->res->bytes_punched;
		/* whole PUNCH_UNITs of zeros become holes; a run goes on across
		 * chunks and is punched when data (or the range end) follows */
		for (uint64_t p = off; p < end && r == 0;) {
			uint64_t n = VD_MIN(end - p, (uint64_t)CHUNK - p % CHUNK);
			if (vd_cancelled(w->o->cancel)) {
				r = vd_set_error(err, ECANCELED, "interrupted");
				break;
			}
			r = vd_read(img, p, w->buf, (size_t)n, err);
			for (uint64_t q = p; q < p + n && r == 0;) {
				uint64_t ue = VD_MIN(VD_ALIGN_DOWN(q, PUNCH_UNIT) + PUNCH_UNIT, p + n);
				bool whole = q % PUNCH_UNIT == 0 && ue - q == PUNCH_UNIT;
				if (whole && vd_is_zero(w->buf + (q - p), PUNCH_UNIT)) {
					if (zs == UINT64_MAX)
						zs = q;
				} else if (zs != UINT64_MAX) {
					r = punch(w, img, zs, q, err);
					zs = UINT64_MAX;
				}
				q = ue;
			}
			if (r == 0)
				rw_progress(w, n);
			p += n;
		}
		if (r == 0 && zs != UINT64_MAX)
			r = punch(w, img, zs, end, err);
		/* what stays stored of this range */
		w->res->bytes_kept += e.length - (w->res->bytes_punched - punched0);
		off = end;
	}
	r2 = vd_close(img, r < 0 ? NULL : err);
	return r < 0 ? r : r2;
}

