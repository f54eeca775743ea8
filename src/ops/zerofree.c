/*
 * zerofree: make the free space of the guest filesystems read as zeros.
 *
 * The walkers (src/fs) give the free byte ranges; block status splits each
 * range into what reads as zeros already (never read) and what is stored.
 * Stored ranges that cover whole release units (a VDI block, a VMDK grain,
 * 4 KiB of a raw file) are discarded, and block status is asked again:
 * what the format released counts as released, what it kept (fixed VDI,
 * flat VMDK, a host without hole punching) falls through to the careful
 * path, like the partly free units at the edges: read, and write zeros
 * only where the data is not already zero.  So preallocated images stay
 * allocated, sparse ones never grow, and a second run finds nothing to do.
 *
 * Every step leaves a valid image: a discard is one metadata update of
 * the format (the backends order it), a write of zeros only touches free
 * space.  Memory: one 1 MiB buffer.
 *
 * A dynamic VDI appends new blocks at slot cBlocksAllocated, so a released
 * block leaves a hole in the slot sequence that the header still counts.
 * When blocks were released (also when the run was cancelled), the
 * format's own repair (vd_check with REPAIR; for VDI: copy the last slots
 * into the holes, then one commit of map and count, then truncate: all or
 * nothing) closes those holes before the image is closed; it leaves an
 * image with corruption as it is.
 *
 * SPDX-License-Identifier: MIT
 */
#include "../core/ops.h"
#include "../fs/fs.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#define CHUNK (1u << 20)
#define ZERO_UNIT 4096u

struct zf {
	struct vd_image *img;
	const struct vd_zerofree_opts *o;
	struct vd_zerofree_part *p;  /* counters of the current partition */
	uint32_t unit;
	bool predict_release;        /* dry run: would a discard release? */
	bool released;               /* a discard released something */
	uint8_t *buf;
	uint64_t prog_base, prog_total, part_off;
	struct vd_error *err;
};

/* Stored range [OFF, OFF+LEN): read, zero what is not zero yet. */
static int zero_stored(struct zf *z, uint64_t off, uint64_t len)
{
	while (len > 0) {
		uint64_t n = VD_MIN(len, (uint64_t)CHUNK), pos = 0;
		int r;

		if (vd_cancelled(z->o->cancel))
			return vd_set_error(z->err, ECANCELED, "%s: interrupted", vd_path(z->img));
		r = vd_read(z->img, off, z->buf, (size_t)n, z->err);
		if (r < 0)
			return r;
		z->p->read_bytes += n;
		while (pos < n) {
			/* a run of units that are not zero, aligned to guest
			 * offsets so writes match the host's pages */
			uint64_t u = VD_MIN(ZERO_UNIT - (off + pos) % ZERO_UNIT, n - pos);
			uint64_t s = pos;

			if (vd_is_zero(z->buf + pos, (size_t)u)) {
				z->p->zero_bytes += u;
				pos += u;
				continue;
			}
			while (pos < n) {
				u = VD_MIN(ZERO_UNIT - (off + pos) % ZERO_UNIT, n - pos);
				if (vd_is_zero(z->buf + pos, (size_t)u))
					break;
				pos += u;
			}
			z->p->zeroed_bytes += pos - s;
			if (!z->o->dry_run) {
				r = vd_write_zeroes(z->img, off + s, pos - s, 0, z->err);
				if (r < 0)
					return r;
			}
		}
		off += n;
		len -= n;
	}
	return 0;
}

static bool reads_zero(const struct vd_extent *e)
{
	return !(e->flags & VD_BS_DATA) || (e->flags & VD_BS_ZERO);
}

/* Partly free units [OFF, END) (the edges of a free range): what is
 * stored and not known to read as zeros is read and zeroed. */
static int zero_edge(struct zf *z, uint64_t off, uint64_t end)
{
	while (off < end) {
		struct vd_extent e;
		int r;

		if (vd_cancelled(z->o->cancel))
			return vd_set_error(z->err, ECANCELED, "%s: interrupted", vd_path(z->img));
		r = vd_block_status(z->img, off, end - off, &e, z->err);
		if (r < 0)
			return r;
		if (reads_zero(&e))
			z->p->zero_bytes += e.length;
		else if ((r = zero_stored(z, off, e.length)) < 0)
			return r;
		off += e.length;
	}
	return 0;
}

/* Whole free units [OFF, OFF+LEN), each holding stored data somewhere:
 * discard, then see what the format released.  Released is what no
 * longer holds data; what still does (fixed VDI, flat VMDK) is zeroed
 * where it does not read as zeros already. */
static int release(struct zf *z, uint64_t off, uint64_t len)
{
	uint64_t end = off + len;
	int r;

	if (z->o->dry_run) {
		if (!z->predict_release)
			return zero_edge(z, off, end);
		z->p->released_bytes += len;
		z->p->released_blocks += len / z->unit;
		return 0;
	}
	r = vd_discard(z->img, off, len, z->err);
	if (r < 0)
		return r;
	while (off < end) {
		struct vd_extent e;

		r = vd_block_status(z->img, off, end - off, &e, z->err);
		if (r < 0)
			return r;
		if (!(e.flags & VD_BS_DATA)) {
			z->released = true;
			z->p->released_bytes += e.length;
			z->p->released_blocks += e.length / z->unit;
		} else {
			r = zero_edge(z, off, off + e.length);
			if (r < 0)
				return r;
		}
		off += e.length;
	}
	return 0;
}

/* One free range from the walker.  The decision to release is taken per
 * whole unit, from whether the unit stores data anywhere, not from the
 * extents block status returns: those split a unit where its host file
 * has a hole, and a unit kept for that reason would be released by the
 * next run once something (the slot moves of reclaim) filled the hole.
 * So one run reaches the fixed point. */
static int free_range(void *ctx, uint64_t off, uint64_t len)
{
	struct zf *z = ctx;
	uint64_t end = off + len, ws, we, pos, rs = 0, re = 0, rel = 0;
	int r;

	z->p->free_bytes += len;
	if (z->o->range)
		z->o->range(z->o->range_ctx, off, len);
	ws = VD_ALIGN_UP(off, z->unit);
	we = VD_ALIGN_DOWN(end, z->unit);
	if (ws >= we)
		ws = we = end;
	r = zero_edge(z, off, ws);
	/* runs of whole units that store data: [rs, re) pending */
	for (pos = ws; r == 0 && pos < we;) {
		struct vd_extent e;
		uint64_t s, t;

		if (vd_cancelled(z->o->cancel))
			return vd_set_error(z->err, ECANCELED, "%s: interrupted", vd_path(z->img));
		r = vd_block_status(z->img, pos, we - pos, &e, z->err);
		if (r < 0)
			return r;
		if (!(e.flags & VD_BS_DATA)) {
			pos += e.length;
			continue;
		}
		s = VD_ALIGN_DOWN(pos, z->unit);
		t = VD_MIN(VD_ALIGN_UP(pos + e.length, z->unit), we);
		if (re == s && re > rs) {
			re = t;
		} else {
			if (re > rs) {
				r = release(z, rs, re - rs);
				rel += re - rs;
			}
			rs = s;
			re = t;
		}
		pos = t;
	}
	if (r == 0 && re > rs) {
		r = release(z, rs, re - rs);
		rel += re - rs;
	}
	if (r == 0) {
		z->p->zero_bytes += (we - ws) - rel; /* whole units not stored */
		r = zero_edge(z, we, end);
	}
	if (r < 0)
		return r;
	if (z->o->progress)
		z->o->progress(z->o->progress_ctx, z->prog_base + (end - z->part_off), z->prog_total);
	return 0;
}

static void add(struct vd_zerofree_part *t, const struct vd_zerofree_part *p)
{
	t->free_bytes += p->free_bytes;
	t->zero_bytes += p->zero_bytes;
	t->zeroed_bytes += p->zeroed_bytes;
	t->released_bytes += p->released_bytes;
	t->released_blocks += p->released_blocks;
	t->read_bytes += p->read_bytes;
}

/* Walk one filesystem.  ALONE_OK: unknown content is reported and left
 * alone instead of failing. */
static int do_part(struct zf *z, struct vd_zerofree_result *res, struct vd_zerofree_part *p,
		   bool alone_ok)
{
	int r;

	z->p = p;
	z->part_off = p->offset;
	r = vd_fs_free_ranges_cancel(z->img, p->offset, p->length, z->o->force ? VD_FS_FORCE : 0,
				     z->o->cancel, free_range, z, &p->fs, z->err);
	if (r == -ENOTSUP && alone_ok) {
		p->status = r;
		snprintf(p->note, sizeof(p->note), "%s", z->err->msg);
		vd_error_clear(z->err);
		memset(&p->fs, 0, sizeof(p->fs));
		p->free_bytes = p->zero_bytes = p->zeroed_bytes = 0;
		p->released_bytes = p->released_blocks = p->read_bytes = 0;
		res->skipped++;
		r = 0;
	} else if (r < 0) {
		return r;
	} else {
		res->parts++;
		add(&res->total, p);
	}
	z->prog_base += p->length;
	if (z->o->progress)
		z->o->progress(z->o->progress_ctx, z->prog_base, z->prog_total);
	if (z->o->report)
		z->o->report(z->o->report_ctx, p);
	return 0;
}

/* Overlapping partitions: a stale entry over another partition would
 * have that partition's data zeroed as its own free space.  Walking every
 * partition is refused; one partition named explicitly is walked alone,
 * with a warning when it is one of the overlapping ones. */
static int overlaps(struct zf *z, const struct vd_ptable *pt, const char *tname,
		    struct vd_zerofree_result *res)
{
	char t[200];
	size_t n;

	if (pt->noverlaps == 0)
		return 0;
	if (z->o->part == 0) {
		vd_ptable_overlap_text(pt, &pt->overlap[0], t, sizeof(t));
		return vd_set_error(z->err, EINVAL, "%s: overlapping partitions in the %s: %s%s; refusing to walk them all (name one with --partition N)",
				    vd_path(z->img), tname, t, pt->noverlaps > 1 ? " (and more)" : "");
	}
	for (unsigned i = 0; i < VD_MIN(pt->noverlaps, (unsigned)VD_PTABLE_MAX_OVERLAPS); i++) {
		const struct vd_ptable_overlap *o = &pt->overlap[i];

		if (o->a != z->o->part && (o->b != z->o->part || o->b_ebr))
			continue;
		vd_ptable_overlap_text(pt, o, t, sizeof(t));
		n = strlen(res->table_note);
		snprintf(res->table_note + n, sizeof(res->table_note) - n, "%s%s (only partition %u is touched)",
			 n ? "; " : "", t, z->o->part);
		break;
	}
	return 0;
}

static int run(struct zf *z, struct vd_zerofree_result *res)
{
	struct vd_zerofree_part p;
	struct vd_fs_info info;
	struct vd_ptable *pt;
	const char *tname;
	int r;

	pt = vd_malloc(sizeof(*pt), z->err);
	if (!pt)
		return -ENOMEM;
	if (z->o->part == 0) {
		/* a filesystem on the whole disk? */
		r = vd_fs_recognise(z->img, 0, 0, z->err);
		if (r < 0)
			goto out;
		if (r == 1) {
			memset(&p, 0, sizeof(p));
			p.length = vd_size(z->img);
			z->prog_total = p.length;
			r = do_part(z, res, &p, false);
			goto out;
		}
	}
	r = vd_ptable_read_overlaps(z->img, pt, z->err);
	if (r == -ENOENT && z->o->part == 0) {
		r = vd_fs_free_ranges(z->img, 0, 0, 0, NULL, NULL, &info, z->err);
		goto out; /* -ENOTSUP with the walker's message */
	}
	if (r < 0)
		goto out;
	snprintf(res->table_note, sizeof(res->table_note), "%s", pt->note);
	tname = strcmp(pt->label, "gpt") ? "MBR" : "GPT";
	z->prog_total = 0;
	for (unsigned i = 0; i < pt->nparts; i++)
		if (!pt->part[i].extended && (z->o->part == 0 || pt->part[i].number == z->o->part))
			z->prog_total += pt->part[i].size * VD_SECTOR;
	r = overlaps(z, pt, tname, res);
	if (r < 0)
		goto out;
	if (z->o->part) {
		const struct vd_ptable_part *sel = vd_ptable_find(pt, z->o->part);
		if (!sel) {
			r = vd_set_error(z->err, ENOENT, "%s: no partition %u in the %s", vd_path(z->img), z->o->part, tname);
			goto out;
		}
		if (sel->extended) {
			r = vd_set_error(z->err, EINVAL, "%s: partition %u is an extended partition (type 0x%02x): name a logical one",
					 vd_path(z->img), z->o->part, sel->mbr_type);
			goto out;
		}
	}
	r = 0;
	for (unsigned i = 0; i < pt->nparts && r == 0; i++) {
		const struct vd_ptable_part *mp = &pt->part[i];

		if (mp->extended || (z->o->part && mp->number != z->o->part))
			continue;
		memset(&p, 0, sizeof(p));
		p.number = mp->number;
		p.offset = mp->start * VD_SECTOR;
		p.length = mp->size * VD_SECTOR;
		p.mbr_type = mp->mbr_type;
		snprintf(p.type_guid, sizeof(p.type_guid), "%s", mp->type_guid);
		if (p.offset > vd_size(z->img) || p.length > vd_size(z->img) - p.offset) {
			r = vd_set_error(z->err, EINVAL, "%s: partition %u (sectors %" PRIu64 "+%" PRIu64 ") ends beyond the disk",
					 vd_path(z->img), mp->number, mp->start, mp->size);
			break;
		}
		r = do_part(z, res, &p, z->o->part == 0);
		if (r < 0)
			vd_prefix_error(z->err, "partition %u", mp->number);
	}
out:
	free(pt);
	return r;
}

static void count_moves(void *ctx, int kind, const char *msg)
{
	if (kind == VD_CHECK_NOTE_FIXED && !strncmp(msg, "moved slot", 10))
		((struct vd_zerofree_result *)ctx)->slots_moved++;
}

/* Give back the slots released blocks left behind (see the top). */
static int reclaim(struct zf *z, struct vd_zerofree_result *res)
{
	struct vd_check c = { 0 };
	struct vd_info info;
	int r;

	/* formats without metadata (raw) have no slots to give back; the
	 * repair changes nothing when it finds no leak, or finds corruption
	 * (then it leaves everything as it is) */
	if (!vd_image_checkable(z->img))
		return 0;
	c.note = count_moves;
	c.ctx = res;
	r = vd_check(z->img, true, &c, z->err);
	if (r < 0) {
		vd_prefix_error(z->err, "reclaiming released slots");
		return r;
	}
	memset(&info, 0, sizeof(info));
	r = vd_get_info(z->img, &info, z->err);
	if (r == 0)
		res->file_size_after = info.file_size;
	return r;
}

int vd_zerofree(const char *path, const struct vd_zerofree_opts *opts,
		struct vd_zerofree_result *res, struct vd_error *err)
{
	struct vd_zerofree_opts none = { 0 };
	struct vd_image *img = NULL;
	struct vd_info info;
	struct zf z = { 0 };
	int r, r2;

	if (!opts)
		opts = &none;
	memset(res, 0, sizeof(*res));
	/* the guard (every file of the image) is taken by the open, before
	 * anything is opened for writing; a dry run takes it too, so it
	 * reports the same refusals */
	r = vd_open(&img, path, opts->format, opts->dry_run ? VD_OPEN_EXCLUSIVE : VD_OPEN_RDWR, err);
	if (r < 0)
		goto out;
	memset(&info, 0, sizeof(info));
	r = vd_get_info(img, &info, err);
	if (r < 0)
		goto out;
	res->format = vd_format(img);
	snprintf(res->subformat, sizeof(res->subformat), "%s", info.subformat);
	z.img = img;
	z.o = opts;
	z.err = err;
	z.unit = info.block_size && vd_is_pow2(info.block_size) ? info.block_size : ZERO_UNIT;
	/* What a discard does is only known by trying; a dry run asks the
	 * backend: preallocated, stream and device images keep their blocks. */
	{
		struct vd_describe d;
		r = vd_describe(img, &d, err);
		if (r < 0)
			goto out;
		z.predict_release = d.discard_releases;
		vd_describe_free(&d);
	}
	res->unit = z.unit;
	z.buf = vd_malloc(CHUNK, err);
	if (!z.buf) {
		r = -ENOMEM;
		goto out;
	}
	res->file_size_before = res->file_size_after = info.file_size;
	r = run(&z, res);
	/* Interrupted or not, what was released is reclaimed before the image
	 * is closed: the backend does it in one commit, completely or not at
	 * all, so a cancelled run leaves a consistent image holding what it
	 * released so far (and a signal during the reclaim lets it finish). */
	if ((r == 0 || r == -ECANCELED) && !opts->dry_run && z.released) {
		r2 = reclaim(&z, res);
		if (r == 0)
			r = r2;
	}
out:
	free(z.buf);
	r2 = vd_close(img, r < 0 ? NULL : err);
	if (r == 0)
		r = r2;
	return r;
}
