/*
 * convert: copy the guest contents of one image into another.
 *
 * Block status drives everything: ranges the source reports as zero or
 * unallocated are never read.  Data ranges are read in chunks by a reader
 * thread, which also finds runs of zeros (-S); the calling thread writes.
 * Memory is bounded by QUEUE_DEPTH * CHUNK whatever the image size.
 *
 * A new destination is built in a temporary file beside it and renamed into
 * place only after everything was written and flushed.
 *
 * SPDX-License-Identifier: MIT
 */
#include "../core/ops.h"
#include "source.h"
#include "chash.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#define CHUNK (2u << 20)
#define ZERO_UNIT 4096u

/* Items: VD_PIPE_DATA (BUF holds LEN bytes for OFF), VD_PIPE_ZERO (a zero
 * range), VD_PIPE_END; AUX is the source bytes the item accounts for. */
struct pipeline {
	struct vd_image *src;
	uint64_t min_sparse;
	const volatile int *cancel;
	struct vd_pipe q;
	/* writer */
	struct vd_image *dst;
	bool fill_zeros, target_zero;
	struct vd_copy_stats *st;
	const struct vd_convert_opts *o;
	uint64_t done, total;
};

static int push(struct pipeline *p, int kind, uint64_t off, uint64_t len,
		uint64_t progress, uint8_t *buf)
{
	return vd_pipe_push(&p->q, (struct vd_pipe_item){ kind, off, len, progress, 0, buf });
}

/* Split a chunk that was read into data pieces and zero runs of at least
 * min_sparse bytes, and push them.  A chunk without such a run is handed
 * over whole with BUF; otherwise each data piece gets a buffer of its own
 * and BUF goes back to the free list. */
static int push_chunk(struct pipeline *p, uint64_t off, uint64_t len, uint8_t *buf)
{
	uint64_t pos = 0, unit;

	if (p->min_sparse == 0)
		return push(p, VD_PIPE_DATA, off, len, len, buf);
	unit = VD_MIN((uint64_t)ZERO_UNIT, p->min_sparse);
	if (unit < VD_SECTOR)
		unit = VD_SECTOR;
	while (pos < len) {
		/* find the next zero run of >= min_sparse bytes, unit-aligned */
		uint64_t zs = pos, ze = len;
		bool found = false;
		while (zs < len) {
			uint64_t n = VD_MIN(unit - (off + zs) % unit, len - zs);
			if (vd_is_zero(buf + zs, (size_t)n)) {
				ze = zs + n;
				while (ze < len) {
					uint64_t m = VD_MIN(unit, len - ze);
					if (!vd_is_zero(buf + ze, (size_t)m))
						break;
					ze += m;
				}
				if (ze - zs >= p->min_sparse || (zs == 0 && ze == len)) {
					found = true;
					break;
				}
				zs = ze;
			} else {
				zs += n;
			}
		}
		if (!found)
			zs = ze = len;
		if (zs > pos) {
			/* data piece [pos, zs): copy into its own buffer unless it
			 * is the whole chunk */
			uint8_t *b;
			int r;
			if (pos == 0 && zs == len && !found) /* hand BUF over */
				return push(p, VD_PIPE_DATA, off, len, len, buf);
			b = vd_pipe_get_buf(&p->q);
			if (!b) {
				vd_pipe_put_buf(&p->q, buf);
				return -ECANCELED;
			}
			memcpy(b, buf + pos, (size_t)(zs - pos));
			r = push(p, VD_PIPE_DATA, off + pos, zs - pos, zs - pos, b);
			if (r < 0) {
				vd_pipe_put_buf(&p->q, buf);
				return r;
			}
		}
		if (found) {
			int r = push(p, VD_PIPE_ZERO, off + zs, ze - zs, ze - zs, NULL);
			if (r < 0) {
				vd_pipe_put_buf(&p->q, buf);
				return r;
			}
		}
		pos = ze;
	}
	vd_pipe_put_buf(&p->q, buf);
	return 0;
}

/* Reader: the source in guest order, skipping what block status says
 * reads as zeros. */
static int produce(void *ctx, struct vd_error *err)
{
	struct pipeline *p = ctx;
	struct vd_image *src = p->src;
	uint64_t off = 0, end, size = vd_size(src);
	int r = 0;

	while (off < size && r == 0) {
		struct vd_extent e;

		if (vd_cancelled(p->cancel)) {
			r = vd_set_error(err, ECANCELED, "interrupted");
			break;
		}
		r = vd_block_status(src, off, size - off, &e, err);
		if (r < 0)
			break;
		if (e.flags & VD_BS_ZERO) {
			r = push(p, VD_PIPE_ZERO, off, e.length, 0, NULL);
			off += e.length;
			continue;
		}
		end = off + e.length;
		/* data extents that follow are read in the same chunks: a
		 * streamOptimized VMDK reports each grain on its own, and
		 * 64 KiB reads and writes cost a system call and a queue
		 * handover each */
		while (end < size && end - off < CHUNK) {
			r = vd_block_status(src, end, size - end, &e, err);
			if (r < 0 || (e.flags & VD_BS_ZERO))
				break;
			end += e.length;
		}
		for (; off < end && r == 0;) {
			/* chunks aligned to CHUNK in the guest */
			uint64_t n = VD_MIN(end - off, CHUNK - off % CHUNK);
			uint8_t *buf = vd_pipe_get_buf(&p->q);
			if (!buf) {
				r = -ECANCELED;
				break;
			}
			if (vd_cancelled(p->cancel)) {
				vd_pipe_put_buf(&p->q, buf);
				r = vd_set_error(err, ECANCELED, "interrupted");
				break;
			}
			r = vd_read(src, off, buf, (size_t)n, err);
			if (r < 0) {
				vd_pipe_put_buf(&p->q, buf);
				break;
			}
			r = push_chunk(p, off, n, buf);
			off += n;
		}
	}
	return r;
}

/* Bytes of work: data to read plus zero ranges that must be written. */
static int plan(struct vd_image *src, bool write_zero_ranges, uint64_t *total,
		struct vd_error *err)
{
	uint64_t off = 0, size = vd_size(src);

	*total = 0;
	while (off < size) {
		struct vd_extent e;
		int r = vd_block_status(src, off, size - off, &e, err);
		if (r < 0)
			return r;
		if (!(e.flags & VD_BS_ZERO) || write_zero_ranges)
			*total += e.length;
		off += e.length;
	}
	return 0;
}

/* Writer: one item into the target. */
static int consume(void *ctx, const struct vd_pipe_item *it, struct vd_error *err)
{
	struct pipeline *p = ctx;
	uint64_t progress = it->aux;
	int r = 0;

	if (it->kind == VD_PIPE_DATA) {
		r = vd_write(p->dst, it->off, it->buf, (size_t)it->len, err);
		if (r == 0 && p->st)
			p->st->data_bytes += it->len;
	} else if (p->fill_zeros) {
		for (uint64_t o2 = 0; o2 < it->len && r == 0;) {
			uint64_t n = VD_MIN(it->len - o2, (uint64_t)VD_ZERO_BUF_SIZE);
			r = vd_write(p->dst, it->off + o2, vd_zero_buf(), (size_t)n, err);
			o2 += n;
		}
		progress = it->len;
	} else if (!p->target_zero) {
		r = vd_write_zeroes(p->dst, it->off, it->len, VD_ZERO_MAY_UNMAP, err);
		progress = it->len;
		if (r == 0 && p->st)
			p->st->zero_bytes += it->len;
	}
	if (r < 0)
		return r;
	if (p->st && p->st->hash) {
		if (it->off > p->st->reached) /* nothing skips a range; be sure */
			vd_chash_zero(p->st->hash, it->off - p->st->reached);
		if (it->kind == VD_PIPE_DATA)
			vd_chash_data(p->st->hash, it->buf, (size_t)it->len);
		else
			vd_chash_zero(p->st->hash, it->len);
	}
	if (p->st)
		p->st->reached = it->off + it->len; /* items come in guest order */
	p->done += progress;
	if (p->o->progress && progress)
		p->o->progress(p->o->progress_ctx, p->done, p->total);
	return 0;
}

/* ST (may be NULL) counts what was done. */
static int copy(struct vd_image *src, struct vd_image *dst, bool target_zero,
		const struct vd_convert_opts *o, struct vd_copy_stats *st,
		struct vd_error *err)
{
	struct pipeline *p;
	int r;

	p = vd_calloc(1, sizeof(*p), err);
	if (!p)
		return -ENOMEM;
	p->src = src;
	p->min_sparse = o->min_sparse;
	p->cancel = o->cancel;
	p->dst = dst;
	p->fill_zeros = o->min_sparse == 0; /* allocate everything */
	p->target_zero = target_zero;
	p->st = st;
	p->o = o;
	r = plan(src, p->fill_zeros || !target_zero, &p->total, err);
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

/* A new destination.  Of the same format as the source it keeps the
 * source's description of the virtual hardware (VD_ID_HARDWARE: VMDK
 * adapter type, hardware and tools version, geometry; VDI geometry and
 * comment), so the guest sees the same disk; -o options win.  Never its
 * identifiers (UUIDs, CID, content id): the copy is another disk, and
 * VirtualBox refuses two media with one UUID.  Another format gets its
 * defaults: geometry and adapter conventions differ between formats. */
static int create_like_source(struct vd_image *src, struct vd_host *h, struct vd_tmp *tmp,
			      const struct vd_convert_opts *o, struct vd_error *err)
{
	struct vd_identity id;
	struct vd_create_like like = { 0 };
	int r;

	if (vd_image_is_format(src, o->dst_format)) {
		r = vd_get_identity(src, &id, err);
		if (r < 0)
			return r;
		vd_identity_keep(&id, VD_ID_HARDWARE);
		like.identity = &id;
	}
	return vd_create_in_tmp_like(h, tmp, o->dst_format, vd_size(src), o->dst_opts,
				     o->create_flags, &like, o->cancel, err);
}

int vd_convert(const char *src_path, const char *dst_path,
	       const struct vd_convert_opts *o, struct vd_error *err)
{
	struct vd_image *src = NULL, *dst = NULL;
	struct vd_host *h = NULL;
	struct vd_tmp tmp = { 0 };
	bool target_zero;
	unsigned nosync = o->no_sync ? VD_OPEN_NO_SYNC : 0;
	int r, r2;

	if (!o->dst_format && !o->existing_target)
		return vd_set_error(err, EINVAL, "no output format given");
	if (o->backing)
		return vd_convert_child(src_path, dst_path, o, err);
	/* an image, or a compressed, piped or windowed one (source.c) */
	r = vd_convert_open_source(&src, src_path, o->existing_target ? NULL : dst_path, o, err);
	if (r < 0)
		return r;

	if (o->existing_target) {
		r = vd_open(&dst, dst_path, o->dst_format, VD_OPEN_RDWR | o->src_open_flags | nosync, err);
		if (r < 0)
			goto out;
		if (vd_image_same_file(src, dst)) {
			r = vd_set_error(err, EINVAL, "%s: source and target are the same file",
					 dst_path);
			goto out;
		}
		if (vd_size(dst) < vd_size(src)) {
			r = vd_set_error(err, EINVAL,
					 "%s: target is smaller (%llu bytes) than the source (%llu bytes)",
					 dst_path, (unsigned long long)vd_size(dst),
					 (unsigned long long)vd_size(src));
			goto out;
		}
		target_zero = o->target_is_zero;
	} else if (o->dst_is_fd) {
		/* a format that goes back to what it wrote (tables, headers)
		 * fails on its first such write, with ESPIPE */
		r = vd_host_open_seq(&h, o->dst_fd, dst_path, err);
		if (r == 0)
			r = vd_create_on_host(h, o->dst_format, vd_size(src), o->dst_opts, o->create_flags,
					      o->cancel, err);
		if (r == 0)
			r = vd_open_host(&dst, h, o->dst_format, VD_OPEN_RDWR | VD_OPEN_NO_SYNC, err);
		else
			vd_host_close(h);
		if (r < 0)
			goto out;
		target_zero = true; /* what is not written goes as zeros */
	} else {
		r = vd_tmp_begin(&tmp, dst_path, o->force, err);
		if (r < 0)
			goto out;
		tmp.no_sync = o->no_sync;
		r = vd_host_open_file(&h, tmp.tmp, VD_HOST_RDWR | (o->no_sync ? VD_HOST_NO_SYNC : 0), err);
		if (r < 0)
			goto out;
		r = create_like_source(src, h, &tmp, o, err);
		if (r < 0) {
			vd_prefix_error(err, "%s", dst_path);
			vd_host_close(h);
			goto out;
		}
		r = vd_open_host(&dst, h, o->dst_format, VD_OPEN_RDWR | nosync, err);
		if (r < 0)
			goto out;
		target_zero = vd_image_zero_init(dst);
	}

	vd_image_set_stream_writeback(dst, true);
	vd_image_set_allocate_zero_writes(dst, o->min_sparse == 0);
	r = copy(src, dst, target_zero, o, NULL, err);
	if (r == 0 && !target_zero && vd_size(dst) > vd_size(src) && vd_size(src) % VD_SECTOR) {
		/* The target's sector that holds the source's last bytes goes
		 * on past the source: that part must read as zeros too. */
		uint64_t end = VD_MIN(VD_ALIGN_UP(vd_size(src), VD_SECTOR), vd_size(dst));
		r = vd_write_zeroes(dst, vd_size(src), end - vd_size(src), 0, err);
	}
	if (r == 0 && o->dst_is_fd) {
		/* the image's last bytes (a stream's tables), then what the
		 * host still holds and the zeros up to the size */
		r = vd_finish(dst, err);
		if (r == 0)
			r = vd_host_seq_finish(vd_image_host(dst), err);
	}
out:
	r2 = vd_close(dst, r < 0 ? NULL : err);
	if (r == 0)
		r = r2;
	vd_close(src, NULL);
	if (tmp.tmp) {
		if (r == 0)
			r = vd_tmp_commit(&tmp, o->force, err);
		else
			vd_tmp_abort(&tmp);
	}
	return r;
}

int vd_copy_image(struct vd_image *src, struct vd_image *dst, bool target_zero,
		  const struct vd_convert_opts *o, struct vd_copy_stats *st,
		  struct vd_error *err)
{
	return copy(src, dst, target_zero, o, st, err);
}
