/*
 * build: a partitioned image filled from partition images, written in one
 * pass straight into the target format.
 *
 * Everything goes out in increasing guest order (the MBR, then each
 * partition's content with the EBRs at their places), because a
 * streamOptimized VMDK accepts nothing else.  The plan is a sorted list of
 * pieces: table sectors and input images.  Inputs are read by block status
 * (zero and unallocated ranges are never read), in 4 KiB units counted from
 * the start of the input; units that read as zeros are not written.  So the
 * output depends only on what the inputs contain, not on how they store it
 * (holes of a raw file, VDI blocks): that, and identifiers derived from a
 * SHA-256 over the inputs (build-id.c), gives byte-identical images on any
 * machine.
 *
 * A reader thread reads chunks; the calling thread splits them into units
 * and writes.  Memory is bounded by VD_PIPE_DEPTH * CHUNK.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "build.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>

#define MIB_SECTORS 2048u
#define PROBE_DISK_SECTORS 0xffffffffull /* the largest MBR disk */

/* ---- inputs and the plan ---- */

/* The partition number each spec of S gets: lay out growing prefixes. */
static int spec_numbers(struct build *b, uint64_t disk, uint32_t id,
			struct vd_error *err)
{
	struct vd_mbr_script *pre = malloc(sizeof(*pre));
	struct vd_mbr *prev = calloc(1, sizeof(*prev)), *cur = malloc(sizeof(*cur));
	int r = 0;

	if (!pre || !prev || !cur) {
		r = vd_set_error(err, ENOMEM, "out of memory");
		goto out;
	}
	*pre = b->script;
	for (unsigned k = 1; k <= b->script.n && r == 0; k++) {
		pre->n = k;
		r = vd_mbr_layout(pre, disk, b->o->align, b->o->heads, b->o->sectors, id, cur, err);
		if (r < 0)
			break;
		b->spec_num[k - 1] = 0;
		for (unsigned i = 0; i < cur->nparts; i++) {
			bool old = false;
			for (unsigned j = 0; j < prev->nparts; j++)
				old |= prev->part[j].number == cur->part[i].number;
			if (!old)
				b->spec_num[k - 1] = cur->part[i].number;
		}
		*prev = *cur;
	}
out:
	free(pre);
	free(prev);
	free(cur);
	return r;
}

/* PATH as an input, opened once (a stream cannot be opened twice): an
 * image, or a compressed raw disk or standard input (vd_open_source).
 * Streams are spooled when the inputs are read twice (--deterministic
 * hashes them first) or their size is known only at their end. */
static int open_input(struct build *b, const char *path, const char *fmt,
		      struct vd_image **img, struct vd_error *err)
{
	struct vd_source_opts so = { 0 };
	int r;

	for (unsigned i = 0; i < b->nopened; i++)
		if (!strcmp(b->opened[i].path, path)) {
			*img = b->opened[i].img;
			return 0;
		}
	if (b->nopened == VD_MBR_MAX_PARTS)
		return vd_set_error(err, EINVAL, "%s: too many partition contents", path);
	so.format = fmt;
	so.spool_dir = vd_spool_dir_default();
	so.spool = b->o->deterministic;
	so.cancel = b->o->cancel;
	r = vd_open_source(img, path, &so, err);
	if (r < 0)
		return r;
	b->opened[b->nopened].path = path;
	b->opened[b->nopened++].img = *img;
	return 0;
}

static int part_index(const struct vd_mbr *m, unsigned number)
{
	for (unsigned i = 0; i < m->nparts; i++)
		if (m->part[i].number == number)
			return (int)i;
	return -1;
}

static const char *sname(const struct build *b)
{
	return b->o->script_name ? b->o->script_name : "script";
}

/* Lay the table out on a disk of DISK sectors (0: as small as the script
 * allows) and give each input its partition. */
static int layout(struct build *b, uint64_t disk, uint32_t id, struct vd_error *err)
{
	const struct vd_build_opts *o = b->o;
	int r;

	if (!disk) {
		/* partitions without a size take their file's size */
		uint64_t end = 0;
		struct vd_mbr *probe;

		/* partitions without a size take their file's size: first
		 * the script's file= (no numbers needed), then --part */
		for (int pass = 0; pass < 2; pass++) {
			if (pass == 1) {
				r = spec_numbers(b, PROBE_DISK_SECTORS, id, err);
				if (r < 0)
					return vd_prefix_error(err, "%s", sname(b));
			}
			for (unsigned i = 0; i < b->script.n; i++) {
				struct vd_mbr_spec *sp = &b->script.spec[i];
				const char *f = b->spec_file[i], *fmt = NULL;
				struct vd_image *im;

				for (unsigned j = 0; j < o->nparts && !f && pass == 1; j++)
					if (o->parts[j].number == b->spec_num[i]) {
						f = o->parts[j].path;
						fmt = o->parts[j].format;
					}
				if (sp->size_mode != VD_SIZE_REST || vd_mbr_is_extended(sp->type))
					continue;
				if (!f && pass == 0)
					continue;
				if (!f)
					return vd_set_error(err, EINVAL, "%s: line %u: partition %u has no size and no file; give one, or the disk size",
							    sname(b), sp->line, b->spec_num[i]);
				/* its size is needed now */
				r = open_input(b, f, fmt, &im, err);
				if (r < 0)
					return r;
				sp->size = VD_ALIGN_UP(vd_size(im), VD_SECTOR) / VD_SECTOR;
				sp->size_mode = VD_SIZE_SECTORS;
				if (!sp->size)
					return vd_set_error(err, EINVAL, "%s: empty, so it cannot size its partition", f);
			}
		}
		probe = malloc(sizeof(*probe));
		if (!probe)
			return vd_set_error(err, ENOMEM, "out of memory");
		r = vd_mbr_layout(&b->script, PROBE_DISK_SECTORS, o->align, o->heads, o->sectors, id, probe, err);
		for (unsigned i = 0; r == 0 && i < probe->nparts; i++)
			if (!vd_mbr_is_extended(probe->part[i].type))
				end = VD_MAX(end, probe->part[i].start + probe->part[i].size);
		if (r == 0 && !end)
			r = vd_set_error(err, EINVAL, "%s: no partition with a size: give the disk size", sname(b));
		/* the smallest whole-MiB disk on which every partition keeps
		 * its place (sized ends may snap to the disk's last grain) */
		for (disk = VD_ALIGN_UP(end, MIB_SECTORS); r == 0; disk += MIB_SECTORS) {
			bool same = true;
			r = vd_mbr_layout(&b->script, disk, o->align, o->heads, o->sectors, id, &b->mbr, err);
			if (r < 0 && disk < end + 8 * MIB_SECTORS) {
				r = 0;
				continue;
			}
			for (unsigned i = 0; r == 0 && i < probe->nparts && same; i++) {
				const struct vd_mbr_part *p = &probe->part[i];
				int k = part_index(&b->mbr, p->number);
				if (!vd_mbr_is_extended(p->type))
					same = k >= 0 && b->mbr.part[k].start == p->start &&
					       b->mbr.part[k].size == p->size;
			}
			if (r == 0 && same)
				break;
		}
		free(probe);
		if (r < 0)
			return vd_prefix_error(err, "%s", sname(b));
	} else {
		if (disk > PROBE_DISK_SECTORS)
			disk = PROBE_DISK_SECTORS; /* the table cannot address more */
		r = vd_mbr_layout(&b->script, disk, o->align, o->heads, o->sectors, id, &b->mbr, err);
		if (r < 0)
			return vd_prefix_error(err, "%s", sname(b));
	}
	r = spec_numbers(b, b->mbr.disk_sectors, id, err);
	if (r < 0)
		return vd_prefix_error(err, "%s", sname(b));

	for (unsigned i = 0; i < b->script.n; i++) {
		int k;
		if (!b->spec_file[i])
			continue;
		k = part_index(&b->mbr, b->spec_num[i]);
		if (k < 0)
			return vd_set_error(err, EINVAL, "%s: line %u: no partition for file=%s", sname(b),
					    b->script.spec[i].line, b->spec_file[i]);
		b->path[k] = b->spec_file[i];
	}
	for (unsigned j = 0; j < o->nparts; j++) {
		int k = part_index(&b->mbr, o->parts[j].number);
		if (k < 0)
			return vd_set_error(err, EINVAL, "%s: partition %u is not in the table", o->parts[j].path,
					    o->parts[j].number);
		if (b->path[k])
			return vd_set_error(err, EINVAL, "partition %u: two contents given (%s and %s)",
					    o->parts[j].number, b->path[k], o->parts[j].path);
		b->path[k] = o->parts[j].path;
	}
	return 0;
}

static const char *part_format(const struct build *b, unsigned k)
{
	for (unsigned j = 0; j < b->o->nparts; j++)
		if (b->o->parts[j].number == b->mbr.part[k].number && b->o->parts[j].path == b->path[k])
			return b->o->parts[j].format;
	return NULL;
}

/* Open every input and check that it fits its partition. */
static int open_inputs(struct build *b, struct vd_error *err)
{
	for (unsigned k = 0; k < b->mbr.nparts; k++) {
		const struct vd_mbr_part *p = &b->mbr.part[k];
		uint64_t need, room = p->size * VD_SECTOR;
		int r;

		if (!b->path[k])
			continue;
		if (vd_mbr_is_extended(p->type))
			return vd_set_error(err, EINVAL, "%s: partition %u is the extended partition, which holds the logical ones and no content",
					    b->path[k], p->number);
		r = open_input(b, b->path[k], part_format(b, k), &b->img[k], err);
		if (r < 0)
			return r;
		need = VD_ALIGN_UP(vd_size(b->img[k]), VD_SECTOR);
		if (need > room)
			return vd_set_error(err, EFBIG, "%s: %" PRIu64 " bytes do not fit partition %u (%" PRIu64 " sectors, %" PRIu64 " bytes)",
					    b->path[k], vd_size(b->img[k]), p->number, p->size, room);
	}
	return 0;
}

static int cmp_piece(const void *a, const void *c)
{
	const struct piece *x = a, *y = c;
	return x->off < y->off ? -1 : x->off > y->off;
}

static int make_plan(struct build *b, struct vd_error *err)
{
	b->npieces = 0;
	for (unsigned i = 0; i < b->nsectors; i++)
		b->pieces[b->npieces++] = (struct piece){
			.kind = PIECE_SECTOR, .off = b->sectors[i].lba * VD_SECTOR,
			.len = VD_SECTOR, .data = b->sectors[i].data,
		};
	for (unsigned k = 0; k < b->mbr.nparts; k++) {
		if (!b->img[k] || !vd_size(b->img[k]))
			continue;
		b->pieces[b->npieces++] = (struct piece){
			.kind = PIECE_IMAGE, .off = b->mbr.part[k].start * VD_SECTOR,
			.len = VD_ALIGN_UP(vd_size(b->img[k]), VD_SECTOR), .img = b->img[k], .part = k,
		};
	}
	qsort(b->pieces, b->npieces, sizeof(b->pieces[0]), cmp_piece);
	for (unsigned i = 1; i < b->npieces; i++)
		if (b->pieces[i - 1].off + b->pieces[i - 1].len > b->pieces[i].off)
			return vd_set_error(err, EINVAL, "internal: pieces at %" PRIu64 " and %" PRIu64 " overlap",
					    b->pieces[i - 1].off, b->pieces[i].off);
	return 0;
}

/* ---- walking the plan: chunks in guest order ---- */

/* The next range of IMG at or after *OFF to read: a data range widened to
 * whole units (so what is read does not depend on how the input stores its
 * zeros).  Returns 0 with *LEN 0 at the end. */
static int next_range(struct vd_image *img, uint64_t *off, uint64_t *len,
		      struct vd_error *err)
{
	uint64_t size = vd_size(img), pos = *off;

	while (pos < size) {
		struct vd_extent e;
		int r = vd_block_status(img, pos, size - pos, &e, err);
		if (r < 0)
			return r;
		if (e.flags & VD_BS_ZERO) {
			pos += e.length;
			continue;
		}
		uint64_t start = VD_MAX(VD_ALIGN_DOWN(pos, UNIT), *off);
		uint64_t end = pos + e.length;
		/* extend over following data extents */
		while (end < size) {
			r = vd_block_status(img, end, size - end, &e, err);
			if (r < 0)
				return r;
			if (e.flags & VD_BS_ZERO)
				break;
			end += e.length;
		}
		*off = start;
		*len = VD_MIN(VD_ALIGN_UP(end, UNIT), size) - start;
		return 0;
	}
	*off = size;
	*len = 0;
	return 0;
}

int build_walk(struct build *b, const struct sink *s, struct vd_error *err)
{
	int r = 0;

	for (unsigned i = 0; i < b->npieces && r == 0; i++) {
		const struct piece *pc = &b->pieces[i];
		uint64_t off = 0, len, size;
		uint8_t *buf;

		if (pc->kind == PIECE_SECTOR) {
			if (!(buf = s->get(s->ctx)))
				return -ECANCELED;
			memcpy(buf, pc->data, VD_SECTOR);
			r = s->put(s->ctx, pc->off, 0, buf, VD_SECTOR, true, 0);
			continue;
		}
		size = vd_size(pc->img);
		for (;;) {
			r = next_range(pc->img, &off, &len, err);
			if (r < 0 || !len)
				break;
			for (uint64_t end = off + len; off < end && r == 0;) {
				uint64_t n = VD_MIN(end - off, CHUNK - off % CHUNK);
				size_t padded = (size_t)VD_ALIGN_UP(n, VD_SECTOR);
				if (vd_cancelled(b->o->cancel))
					return vd_set_error(err, ECANCELED, "interrupted");
				if (!(buf = s->get(s->ctx)))
					return -ECANCELED;
				r = vd_read(pc->img, off, buf, (size_t)n, err);
				if (r < 0) {
					vd_prefix_error(err, "%s", vd_path(pc->img));
					s->put(s->ctx, 0, 0, buf, 0, false, 0); /* give back */
					return r;
				}
				/* the input's last sector goes on past its end as zeros */
				memset(buf + n, 0, padded - (size_t)n);
				r = s->put(s->ctx, pc->off + off, off, buf, padded, false, pc->part);
				off += n;
			}
			if (r < 0 || off >= size)
				break;
		}
	}
	return r;
}

/* Call FN for each run of units of BUF that are not all zeros. */
int build_data_runs(uint64_t in_off, const uint8_t *buf, size_t len,
		    int (*fn)(void *ctx, size_t pos, size_t n), void *ctx)
{
	size_t pos = 0, run = 0;
	bool in_run = false;

	while (pos < len) {
		size_t n = (size_t)VD_MIN((uint64_t)(len - pos), UNIT - (in_off + pos) % UNIT);
		bool zero = vd_is_zero(buf + pos, n);
		if (!zero && !in_run) {
			run = pos;
			in_run = true;
		} else if (zero && in_run) {
			int r = fn(ctx, run, pos - run);
			if (r < 0)
				return r;
			in_run = false;
		}
		pos += n;
	}
	return in_run ? fn(ctx, run, len - run) : 0;
}

/* ---- pass 2: writing ---- */

/* Items: VD_PIPE_SECTOR (a table sector in BUF) or VD_PIPE_DATA (bytes of
 * partition input TAG, from its offset AUX), then VD_PIPE_END. */
struct pipe {
	struct build *b;
	struct vd_pipe q;
	/* writer */
	struct vd_image *dst;
	const struct vd_pipe_item *cur;
	struct vd_error *werr;
	uint64_t done, total;
};

static uint8_t *pipe_get(void *ctx)
{
	return vd_pipe_get_buf(&((struct pipe *)ctx)->q);
}

static int pipe_put(void *ctx, uint64_t off, uint64_t in_off, uint8_t *buf,
		    size_t len, bool sector, unsigned part)
{
	struct pipe *p = ctx;

	if (!len) {
		vd_pipe_put_buf(&p->q, buf);
		return 0;
	}
	return vd_pipe_push(&p->q, (struct vd_pipe_item){ sector ? VD_PIPE_SECTOR : VD_PIPE_DATA,
							  off, len, in_off, part, buf });
}

static int produce(void *ctx, struct vd_error *err)
{
	struct pipe *p = ctx;
	struct sink s = { pipe_get, pipe_put, p };

	return build_walk(p->b, &s, err);
}

static int write_run(void *ctx, size_t pos, size_t n)
{
	struct pipe *p = ctx;
	const struct vd_pipe_item *it = p->cur;
	int r = vd_write(p->dst, it->off + pos, it->buf + pos, n, p->werr);

	if (r == 0) {
		p->b->written += n;
		if (it->kind == VD_PIPE_DATA)
			p->b->part_data[it->tag] += n;
	}
	return r;
}

/* Bytes the reader will hand over, for progress. */
static int plan_total(struct build *b, uint64_t *total, struct vd_error *err)
{
	*total = 0;
	for (unsigned i = 0; i < b->npieces; i++) {
		uint64_t off = 0, len;
		if (b->pieces[i].kind == PIECE_SECTOR) {
			*total += VD_SECTOR;
			continue;
		}
		for (;;) {
			int r = next_range(b->pieces[i].img, &off, &len, err);
			if (r < 0)
				return r;
			if (!len)
				break;
			*total += len;
			off += len;
		}
	}
	return 0;
}

static int consume(void *ctx, const struct vd_pipe_item *it, struct vd_error *err)
{
	struct pipe *p = ctx;
	const struct vd_build_opts *o = p->b->o;
	int r;

	p->cur = it;
	p->werr = err;
	if (it->kind == VD_PIPE_SECTOR)
		r = write_run(p, 0, it->len);
	else
		r = build_data_runs(it->aux, it->buf, it->len, write_run, p);
	if (r < 0)
		return r;
	p->done += it->len;
	if (o->progress)
		o->progress(o->progress_ctx, VD_MIN(p->done, p->total), p->total);
	return 0;
}

static int write_all(struct build *b, struct vd_image *dst, struct vd_error *err)
{
	const struct vd_build_opts *o = b->o;
	struct pipe *p;
	int r;

	p = vd_calloc(1, sizeof(*p), err);
	if (!p)
		return -ENOMEM;
	p->b = b;
	p->dst = dst;
	r = plan_total(b, &p->total, err);
	if (r == 0)
		r = vd_pipe_init(&p->q, CHUNK, err);
	if (r < 0) {
		free(p);
		return r;
	}
	if (o->progress)
		o->progress(o->progress_ctx, 0, p->total);
	r = vd_pipe_run(&p->q, produce, p, consume, p, o->cancel, err);
	vd_pipe_destroy(&p->q);
	free(p);
	return r;
}

int vd_build(const char *dst_path, const struct vd_build_opts *o,
	     struct vd_build_summary *sum, struct vd_error *err)
{
	struct build *b;
	struct line_file *lf = NULL;
	unsigned nlf = 0;
	char *clean = NULL, *copts = NULL;
	struct vd_tmp tmp = { 0 };
	struct vd_host *h = NULL;
	struct vd_image *dst = NULL;
	uint8_t c[32], d[32];
	uint32_t id = 0;
	unsigned cflags;
	int r, r2;

	memset(sum, 0, sizeof(*sum));
	if (!o->format)
		return vd_set_error(err, EINVAL, "no output format given");
	if (!vd_driver_find(o->format))
		return vd_set_error(err, EINVAL, "unknown format '%s'", o->format);
	if (!o->script && (o->nparts || o->bootcode || o->label_id_set))
		return vd_set_error(err, EINVAL, "partition contents, boot code and a disk identifier need a partition table script");
	if (!o->script && !o->size)
		return vd_set_error(err, EINVAL, "no size given and no script to take it from");
	b = vd_calloc(1, sizeof(*b), err);
	if (!b)
		return -ENOMEM;
	b->o = o;

	/* 1. the table, the inputs and their sizes: all checked before
	 *    anything is created */
	if (o->script) {
		r = build_strip_files(o->script, sname(b), &clean, &lf, &nlf, err);
		if (r < 0)
			goto out;
		r = vd_mbr_parse_script(clean, &b->script, err);
		if (r < 0) {
			vd_prefix_error(err, "%s", sname(b));
			goto out;
		}
		for (unsigned i = 0; i < nlf; i++) {
			bool found = false;
			for (unsigned j = 0; j < b->script.n; j++)
				if (b->script.spec[j].line == lf[i].line) {
					b->spec_file[j] = lf[i].path;
					found = true;
				}
			if (!found) {
				r = vd_set_error(err, EINVAL, "%s: line %u: file= outside a partition line",
						 sname(b), lf[i].line);
				goto out;
			}
		}
		r = layout(b, VD_ALIGN_DOWN(o->size, VD_SECTOR) / VD_SECTOR, 0, err);
		if (r < 0)
			goto out;
		if (o->label_id_set)
			b->mbr.disk_id = o->label_id;
		r = open_inputs(b, err);
		if (r < 0)
			goto out;
		r = vd_mbr_encode(&b->mbr, o->bootcode, o->heads, o->sectors, b->sectors,
				  &b->nsectors, err);
		if (r < 0)
			goto out;
		sum->has_table = true;
	}
	sum->size = o->size ? o->size : b->mbr.disk_sectors * VD_SECTOR;
	r = make_plan(b, err);
	if (r < 0)
		goto out;

	/* 2. identifiers: derived from everything above and the inputs'
	 *    contents, or given, or random */
	if (o->deterministic) {
		r = build_digest(b, sum->size, c, d, err);
		if (r < 0)
			goto out;
	}
	if (o->script && !o->label_id_set && !b->script.label_id_set) {
		if (o->deterministic) {
			uint8_t x[32];
			build_derive(c, "label-id", x);
			id = le32dec(x);
		} else if (getrandom(&id, sizeof(id), 0) != sizeof(id)) {
			r = vd_set_error(err, errno, "getrandom: %s", strerror(errno));
			goto out;
		}
		b->mbr.disk_id = id ? id : 1;
		le32enc(b->sectors[0].data + 440, b->mbr.disk_id);
	}
	r = build_identity(b, o->deterministic ? d : NULL, &copts, sum, err);
	if (r < 0)
		goto out;

	/* 3. the image, written front to back */
	r = vd_tmp_begin(&tmp, dst_path, o->force, err);
	if (r < 0)
		goto out;
	r = vd_host_open_file(&h, tmp.tmp, VD_HOST_RDWR, err);
	if (r < 0)
		goto out;
	cflags = o->deterministic ? VD_CREATE_DETERMINISTIC : 0;
	r = vd_create_in_tmp(h, &tmp, o->format, sum->size, copts, cflags, o->cancel, err);
	if (r < 0) {
		vd_prefix_error(err, "%s", dst_path);
		vd_host_close(h);
		goto out;
	}
	r = vd_open_host(&dst, h, o->format, VD_OPEN_RDWR, err);
	if (r < 0)
		goto out;
	if (!vd_image_zero_init(dst)) {
		r = vd_set_error(err, ENOTSUP, "%s: new %s images do not read as zeros", dst_path, o->format);
		goto out;
	}
	vd_image_set_stream_writeback(dst, true);
	r = write_all(b, dst, err);
	if (r == 0)
		r = build_record_files(&tmp, sum, err);
out:
	r2 = vd_close(dst, r < 0 ? NULL : err);
	if (r == 0)
		r = r2;
	if (tmp.tmp) {
		if (r == 0)
			r = vd_tmp_commit(&tmp, o->force, err);
		else
			vd_tmp_abort(&tmp);
	}
	if (r == 0)
		r = build_read_identity(dst_path, sum, err);
	if (r == 0) {
		sum->mbr = b->mbr;
		sum->data_bytes = b->written;
		for (unsigned k = 0; k < b->mbr.nparts && r == 0; k++) {
			sum->part_data[k] = b->part_data[k];
			if (!b->path[k])
				continue;
			sum->part_file_size[k] = vd_size(b->img[k]);
			if (!(sum->part_file[k] = strdup(b->path[k])))
				r = vd_set_error(err, ENOMEM, "out of memory");
		}
		for (unsigned i = 0; r == 0 && o->checksums && i < sum->nfiles; i++)
			r = build_file_sha256(sum->files[i].path, &sum->files[i], err);
		for (unsigned i = 0; r == 0 && !o->checksums && i < sum->nfiles; i++) {
			struct vd_host *fh;
			r = vd_host_open_file(&fh, sum->files[i].path, 0, err);
			if (r == 0) {
				r = vd_host_size(fh, &sum->files[i].size, err);
				vd_host_close(fh);
			}
		}
	}
	if (r < 0)
		vd_build_summary_free(sum);
	for (unsigned i = 0; i < b->nopened; i++)
		vd_close(b->opened[i].img, NULL);
	for (unsigned i = 0; i < nlf; i++)
		free(lf[i].path);
	free(lf);
	free(clean);
	free(copts);
	free(b);
	return r;
}
