/*
 * VMDK sparse extents: check and repair (what read would trip over, found
 * without reading the guest data twice: grain directory and tables against
 * the file, cross-linked tables and grains, compressed grains inflated,
 * the stream's footer and end marker), apart from reading and writing in
 * vmdk-sparse.c.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "vmdk.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BAD(...) vd_set_error(err, EINVAL, __VA_ARGS__)

/* The redundant directory entry D disagrees with the primary one (a run
 * stopped between the two updates).  Reads use the primary: make the
 * redundant side match it.  PRIMARY holds the primary table when gd[D]. */
static int fix_rgd_entry(struct vmdk_sparse *sp, uint32_t d, const uint32_t *primary,
			 struct vd_error *err)
{
	uint64_t bytes = VD_ALIGN_UP(sp->gtes * 4ull, VD_SECTOR), at = 0;
	int r;

	if (sp->gd[d]) {
		/* a new redundant table at the end, filled before it is linked */
		at = sp->alloc_end;
		if (at / VD_SECTOR > UINT32_MAX)
			return vd_set_error(err, EFBIG, "%s: VMDK file too large for 32-bit table offsets",
					    sp->h->path);
		r = vd_host_truncate(sp->h, at + bytes, err);
		if (r == 0)
			r = vd_host_pwrite(sp->h, primary, sp->gtes * 4ull, at, err);
		if (r < 0)
			return r;
		sp->alloc_end += bytes;
		sp->file_size = VD_MAX(sp->file_size, sp->alloc_end);
	}
	r = vd_host_flush(sp->h, err);
	if (r == 0)
		r = vmdk_sparse_write_u32(sp, sp->rgd_off * VD_SECTOR + 4ull * d, (uint32_t)(at / VD_SECTOR), err);
	if (r == 0)
		sp->rgd[d] = (uint32_t)(at / VD_SECTOR);
	return r;
}

#define NOTE_BAD(...)                                                   \
	do {                                                            \
		res->corruptions++;                                     \
		vd_check_note(res, VD_CHECK_NOTE_ERROR, __VA_ARGS__);   \
	} while (0)

/* The end of a GD-at-end stream: footer marker, footer, end-of-stream
 * marker (the footer itself was validated at open). */
static int check_stream_end(struct vmdk_sparse *sp, struct vd_check *res, struct vd_error *err)
{
	uint8_t m[VD_SECTOR];
	int r;

	if (sp->stream_incomplete) {
		NOTE_BAD("%s: streamOptimized VMDK ends after its header: no grain directory, footer or end-of-stream marker (its writer did not finish)",
			 sp->h->path);
		return 0;
	}
	if (!sp->gd_at_end)
		return 0; /* QEMU's and VMware's layouts: directory in the header area */
	r = vd_host_pread(sp->h, m, VD_SECTOR, sp->file_size - 3 * VD_SECTOR, err);
	if (r < 0)
		return r;
	if (le64dec(m) != 1 || le32dec(m + 8) != 0 || le32dec(m + 12) != VMDK_MARKER_FOOTER)
		NOTE_BAD("%s: streamOptimized VMDK: no footer marker at offset %llu (numSectors %llu, size %u, type %u; expected 1, 0, 3)",
			 sp->h->path, (unsigned long long)(sp->file_size - 3 * VD_SECTOR),
			 (unsigned long long)le64dec(m), le32dec(m + 8), le32dec(m + 12));
	r = vd_host_pread(sp->h, m, VD_SECTOR, sp->file_size - VD_SECTOR, err);
	if (r < 0)
		return r;
	if (le64dec(m) != 0 || le32dec(m + 8) != 0 || le32dec(m + 12) != VMDK_MARKER_EOS)
		NOTE_BAD("%s: streamOptimized VMDK: the last sector is not an end-of-stream marker (numSectors %llu, size %u, type %u; expected 0, 0, 0)",
			 sp->h->path, (unsigned long long)le64dec(m), le32dec(m + 8), le32dec(m + 12));
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Grain tables shared or overlapping between directory entries: each
 * entry after the first of such a group is marked in SKIP (its grains are
 * then not checked again).  Memory: one u64 per directory entry. */
static int check_gt_overlap(struct vmdk_sparse *sp, bool *skip, struct vd_check *res,
			    struct vd_error *err)
{
	uint64_t gt_sectors = VD_ALIGN_UP(sp->gtes * 4ull, VD_SECTOR) / VD_SECTOR;
	uint64_t *v = vd_malloc((size_t)sp->gd_entries * 8 + 8, err);
	uint32_t n = 0;

	if (!v)
		return -ENOMEM;
	for (uint32_t d = 0; d < sp->gd_entries; d++)
		if (sp->gd[d])
			v[n++] = (uint64_t)sp->gd[d] << 32 | d; /* sector, then entry */
	qsort(v, n, sizeof(*v), cmp_u64);
	for (uint32_t i = 1; i < n; i++) {
		uint64_t prev = v[i - 1] >> 32, cur = v[i] >> 32;
		if (cur < prev + gt_sectors) {
			NOTE_BAD("%s: grain directory entries %u and %u point to overlapping grain tables (sectors %llu and %llu): the tables are cross-linked",
				 sp->h->path, (uint32_t)v[i - 1], (uint32_t)v[i],
				 (unsigned long long)prev, (unsigned long long)cur);
			skip[(uint32_t)v[i]] = true;
		}
	}
	free(v);
	return 0;
}

/* A compressed grain: its record must name its own guest sector (two table
 * entries pointing at one record are cross-linked) and inflate as read
 * would inflate it. */
static int check_zgrain(struct vmdk_sparse *sp, uint64_t gi, uint32_t e, struct vd_check *res,
			struct vd_error *err)
{
	uint8_t hdr[12];
	struct vd_error ze = { 0 };
	int r;

	if ((uint64_t)e * VD_SECTOR + sizeof(hdr) > sp->file_size) {
		NOTE_BAD("%s: grain %llu is at sector %u, past the end of the file (truncated?)",
			 sp->h->path, (unsigned long long)gi, e);
		return 0;
	}
	r = vd_host_pread(sp->h, hdr, sizeof(hdr), (uint64_t)e * VD_SECTOR, err);
	if (r < 0)
		return r;
	if (le64dec(hdr) != gi * sp->grain) {
		NOTE_BAD("%s: grain %llu points to sector %u, whose grain record is for sector %llu, not %llu (cross-linked or misplaced)",
			 sp->h->path, (unsigned long long)gi, e, (unsigned long long)le64dec(hdr),
			 (unsigned long long)(gi * sp->grain));
		return 0;
	}
	r = vmdk_sparse_inflate(sp, gi, e, &ze);
	if (r == -ENOMEM)
		return vd_set_error(err, ENOMEM, "%s", ze.msg);
	if (r < 0)
		NOTE_BAD("%s", ze.msg);
	return 0;
}

/* Plain grains must not overlap: a bitmap over the file in grain-sized
 * units, offset by the phase of the first grain (writers align grains, so
 * every grain starts a unit); two grains starting in one unit overlap.
 * (Grains at another phase are checked against the unit they start in: no
 * false alarm, at worst a missed overlap between oddly placed grains.) */
struct grain_map {
	uint8_t *bits;
	uint64_t units, phase;
	bool have_phase;
};

static bool grain_map_mark(struct grain_map *m, const struct vmdk_sparse *sp, uint32_t e)
{
	uint64_t u;

	if (!m->have_phase) {
		m->phase = e % sp->grain;
		m->have_phase = true;
	}
	u = (e >= m->phase ? e - m->phase : 0) / sp->grain;
	if (u >= m->units)
		return false;
	if (m->bits[u / 8] & (1u << (u % 8)))
		return true;
	m->bits[u / 8] |= (uint8_t)(1u << (u % 8));
	return false;
}

/* The metadata of a hosted sparse extent (header, descriptor, grain
 * directories and tables) as sector ranges sorted by start, with the
 * running maximum of their ends: a grain [E, E + grain) overlaps some
 * metadata exactly when the largest end among the ranges starting before
 * E + grain is past E.  A grain there is overwritten by the next table
 * update (make fuzz found one). */
struct meta_map {
	uint64_t *start, *maxend;
	uint32_t n;
};

static void meta_add(uint64_t *st, uint64_t *en, uint32_t *n, uint64_t s, uint64_t len)
{
	if (len) {
		st[*n] = s;
		en[*n] = s + len;
		(*n)++;
	}
}

static int meta_build(struct meta_map *m, const struct vmdk_sparse *sp, struct vd_error *err)
{
	uint64_t gt_sectors = VD_ALIGN_UP(sp->gtes * 4ull, VD_SECTOR) / VD_SECTOR;
	uint64_t gd_sectors = VD_ALIGN_UP(sp->gd_entries * 4ull, VD_SECTOR) / VD_SECTOR;
	size_t cap = 2 * (size_t)sp->gd_entries + 4;
	uint64_t *st = vd_malloc(cap * 8, err), *en = vd_malloc(cap * 8, err), *pair;
	uint32_t n = 0;

	memset(m, 0, sizeof(*m));
	pair = vd_malloc(cap * 16, err);
	if (!st || !en || !pair) {
		free(st);
		free(en);
		free(pair);
		return -ENOMEM;
	}
	meta_add(st, en, &n, 0, 1);
	meta_add(st, en, &n, sp->desc_off, sp->desc_off ? sp->desc_size : 0);
	if (sp->gd)
		meta_add(st, en, &n, sp->gd_off, gd_sectors);
	if (sp->rgd)
		meta_add(st, en, &n, sp->rgd_off, gd_sectors);
	for (uint32_t d = 0; d < sp->gd_entries; d++) {
		if (sp->gd && sp->gd[d])
			meta_add(st, en, &n, sp->gd[d], gt_sectors);
		if (sp->rgd && sp->rgd[d])
			meta_add(st, en, &n, sp->rgd[d], gt_sectors);
	}
	/* sort (start, end) pairs by start */
	for (uint32_t i = 0; i < n; i++) {
		pair[2 * i] = st[i];
		pair[2 * i + 1] = en[i];
	}
	qsort(pair, n, 16, cmp_u64); /* the first u64 of each pair is the key */
	for (uint32_t i = 0; i < n; i++) {
		st[i] = pair[2 * i];
		en[i] = VD_MAX(pair[2 * i + 1], i ? en[i - 1] : 0);
	}
	free(pair);
	m->start = st;
	m->maxend = en;
	m->n = n;
	return 0;
}

static bool meta_overlaps(const struct meta_map *m, uint64_t e, uint64_t len)
{
	uint32_t lo = 0, hi = m->n;

	/* the first range starting at or after e + len */
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (m->start[mid] < e + len)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo > 0 && m->maxend[lo - 1] > e;
}

/* Validate the grain directory and tables.  Entries must point inside the
 * data area; the redundant copies must equal the primary ones.  A redundant
 * copy that is out of date (a writer stopped between updating the primary
 * and the redundant table) does not change what the image reads, since
 * every reader uses the primary: it is counted with the leaks, and REPAIR
 * copies the primary over it. */
int vmdk_sparse_check(struct vmdk_sparse *sp, bool repair, struct vd_check *res,
		      struct vd_error *err)
{
	size_t bytes = (size_t)sp->gtes * 4;
	uint32_t *a = vd_malloc(bytes, err), *b = vd_malloc(bytes, err);
	bool *skip = vd_calloc((size_t)sp->gd_entries + 1, 1, err);
	struct grain_map map = { 0 };
	struct meta_map meta = { 0 };
	int r = 0;

	if (!a || !b || !skip) {
		r = -ENOMEM;
		goto out;
	}
	if (sp->compressed) {
		r = check_stream_end(sp, res, err);
		if (r < 0)
			goto out;
	} else {
		r = meta_build(&meta, sp, err);
		if (r < 0)
			goto out;
		map.units = sp->file_size / vmdk_grain_bytes(sp) + 1;
		map.bits = vd_calloc((size_t)(map.units / 8 + 1), 1, err);
		if (!map.bits) {
			r = -ENOMEM;
			goto out;
		}
	}
	if (sp->gd) {
		r = check_gt_overlap(sp, skip, res, err);
		if (r < 0)
			goto out;
	}
	repair = repair && sp->h->writable && !sp->compressed;
	for (uint32_t d = 0; sp->gd && d < sp->gd_entries; d++) {
		uint64_t first = (uint64_t)d * sp->gtes;
		bool rgd_stale = sp->rgd && !sp->gd[d] != !sp->rgd[d];
		uint32_t differ = 0;

		if (sp->gd[d]) {
			r = vd_host_pread(sp->h, a, bytes, (uint64_t)sp->gd[d] * VD_SECTOR, err);
			if (r < 0)
				goto out;
		}
		if (rgd_stale && repair) {
			uint32_t old = sp->rgd[d];
			r = fix_rgd_entry(sp, d, a, err);
			if (r < 0)
				goto out;
			res->leaks_fixed++;
			vd_check_note(res, VD_CHECK_NOTE_FIXED,
				      "%s: redundant grain directory entry %u set from %u to %u, as the primary",
				      sp->h->path, d, old, sp->rgd[d]);
		} else if (rgd_stale) {
			res->leaks++;
			vd_check_note(res, VD_CHECK_NOTE_LEAK,
				      "%s: grain directory entry %u is %u but the redundant one is %u (out of date)",
				      sp->h->path, d, sp->gd[d], sp->rgd[d]);
		}
		if (!sp->gd[d] || skip[d])
			continue;
		for (uint32_t i = 0; i < sp->gtes; i++) {
			uint32_t e = le32dec(&a[i]);
			uint64_t gi = first + i, need;
			if (e == 0 || (e == 1 && (sp->flags & VMDK_FLAG_ZERO_GRAIN)))
				continue;
			if (gi * sp->grain >= sp->capacity) {
				NOTE_BAD("%s: grain table %u entry %u maps a grain past the capacity",
					 sp->h->path, d, i);
				continue;
			}
			if (sp->compressed) {
				r = check_zgrain(sp, gi, e, res, err);
				if (r < 0)
					goto out;
				continue;
			}
			/* as much as a read of the grain needs (vmdk_sparse_lookup) */
			need = VD_MIN(vmdk_grain_bytes(sp), (sp->capacity - gi * sp->grain) * VD_SECTOR);
			if ((uint64_t)e * VD_SECTOR + need > sp->file_size) {
				NOTE_BAD("%s: grain table %u entry %u points to sector %u, but the grain (%llu bytes) goes past the end of the file (%llu bytes; truncated?)",
					 sp->h->path, d, i, e, (unsigned long long)need,
					 (unsigned long long)sp->file_size);
			} else if (e < sp->overhead && sp->overhead * VD_SECTOR <= sp->file_size) {
				NOTE_BAD("%s: grain table %u entry %u points to sector %u, outside the data area (from sector %llu)",
					 sp->h->path, d, i, e, (unsigned long long)sp->overhead);
			} else if (meta_overlaps(&meta, e, sp->grain)) {
				NOTE_BAD("%s: grain table %u entry %u points to sector %u, which overlaps the extent's metadata (header, descriptor, grain directory or a grain table)",
					 sp->h->path, d, i, e);
			} else if (grain_map_mark(&map, sp, e)) {
				NOTE_BAD("%s: grain table %u entry %u points to sector %u, a grain another entry uses too (cross-linked grains)",
					 sp->h->path, d, i, e);
			}
		}
		if (!sp->rgd || !sp->rgd[d] || rgd_stale)
			continue;
		r = vd_host_pread(sp->h, b, bytes, (uint64_t)sp->rgd[d] * VD_SECTOR, err);
		if (r < 0)
			goto out;
		for (uint32_t i = 0; i < sp->gtes; i++)
			differ += a[i] != b[i];
		if (!differ)
			continue;
		if (repair) {
			r = vd_host_pwrite(sp->h, a, bytes, (uint64_t)sp->rgd[d] * VD_SECTOR, err);
			if (r < 0)
				goto out;
			res->leaks_fixed++;
			vd_check_note(res, VD_CHECK_NOTE_FIXED,
				      "%s: redundant grain table %u: %u entries copied from the primary",
				      sp->h->path, d, differ);
		} else {
			res->leaks++;
			vd_check_note(res, VD_CHECK_NOTE_LEAK,
				      "%s: redundant grain table %u differs from the primary in %u entries (out of date)",
				      sp->h->path, d, differ);
		}
	}
	if (repair)
		r = vd_host_flush(sp->h, err);
out:
	free(a);
	free(b);
	free(skip);
	free(map.bits);
	free(meta.start);
	free(meta.maxend);
	return r;
}

