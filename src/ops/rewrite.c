/*
 * rewrite: the engine behind compact and defrag.
 *
 * The image is rewritten into a new temporary file beside it: same format,
 * subformat, block size and identity (vd_get_identity: UUIDs, CID, the
 * hardware description), blocks in guest order.  What kind of rewrite an
 * image needs comes from vd_describe (how it allocates, which files hold
 * which guest range with which access), never from its format's name.  Before anything is written
 * the space the new file will take is known (compact reads every data block
 * once to find the all-zero ones; defrag keeps every allocated block), the
 * free space of the filesystem is checked against it, and the data area is
 * reserved with one fallocate per file, so the host can give the new file
 * few, large extents and the backends, which append in guest order, fill it
 * front to back.  Only then is the data copied; the new file is flushed and
 * renamed over the original (file mode and owner kept).  The original is
 * never written: killed at any moment, it is intact.
 *
 * A raw image is compacted in place instead: runs of zeros become holes, so
 * the contents never change.  A fixed VDI or flat VMDK has nothing to drop.
 *
 * Memory: one bit per block of the image plus one copy buffer.  Cost: block
 * status of the whole image, plus reading the allocated data (compact reads
 * up to the first non-zero bytes of each block to plan, then copies).
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "rewrite.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

void rw_progress(struct rw *w, uint64_t add)
{
	w->done += add;
	if (w->done > w->total)
		w->total = w->done;
	if (w->o->progress)
		w->o->progress(w->o->progress_ctx, w->done, w->total);
}

static uint64_t host_bytes_of(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (uint64_t)st.st_blocks * 512 : 0;
}

/* ---- space ---- */

static int check_space(struct rw *w, uint64_t needed, struct vd_error *err)
{
	struct statvfs sv;
	char *dup = strdup(w->path);
	int r;

	if (!dup)
		return vd_set_error(err, ENOMEM, "out of memory");
	r = statvfs(dirname(dup), &sv);
	free(dup);
	w->res->space_needed = needed;
	if (r < 0)
		return 0; /* cannot tell: the fallocate will */
	w->res->space_available = (uint64_t)sv.f_bavail * sv.f_frsize;
	if (needed > w->res->space_available)
		return vd_set_error(err, ENOSPC,
				    "%s: not enough free space for the new image: it needs %" PRIu64
				    " bytes (%.1f MiB), the filesystem has %" PRIu64 " bytes (%.1f MiB) available",
				    w->path, needed, needed / 1048576.0, w->res->space_available,
				    w->res->space_available / 1048576.0);
	return 0;
}

/* Reserve [off, off+len) of PATH; KEEP: do not change the file size (the
 * backends extend the file as they append into the reserved space). */
static int reserve(const char *path, uint64_t off, uint64_t len, bool keep,
		   struct vd_error *err)
{
	int fd, r = 0;

	if (len == 0)
		return 0;
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return vd_set_error(err, errno, "%s: %s", path, strerror(errno));
	if (fallocate(fd, keep ? FALLOC_FL_KEEP_SIZE : 0, (off_t)off, (off_t)len) < 0) {
		int e = errno;
		if (e == ENOSPC)
			r = vd_set_error(err, ENOSPC, "%s: not enough free space to allocate %" PRIu64 " bytes",
					 path, len);
		else if (e != EOPNOTSUPP && e != ENOSYS)
			r = vd_set_error(err, e, "%s: allocating %" PRIu64 " bytes: %s", path, len,
					 strerror(e));
		/* a host without fallocate: the file grows as it is written */
	}
	close(fd);
	return r;
}

/* ---- what to rewrite ---- */

static const char *access_name(int access)
{
	static const char *const names[] = {
		[VD_FILE_RW] = "RW", [VD_FILE_RDONLY] = "RDONLY",
		[VD_FILE_NOACCESS] = "NOACCESS", [VD_FILE_ZERO] = "ZERO",
	};
	return access >= 0 && access < (int)VD_ARRAY_SIZE(names) ? names[access] : "?";
}

/* Does file F of a description hold guest data (or a ZERO range)? */
static bool serves_guest(const struct vd_file_desc *f)
{
	return f->guest_len > 0;
}

static int classify(struct rw *w, struct vd_error *err)
{
	const struct vd_describe *d = &w->sd;
	unsigned n = 0;

	if (!d->starts_zeroed)
		return vd_set_error(err, ENOTSUP,
				    "%s: a child image (it holds only the changes to its parent) cannot be rewritten yet: its blocks that read from the parent would be lost; flatten it with 'vdisk convert' first",
				    w->path);
	switch (d->alloc) {
	case VD_ALLOC_RAW:
		w->kind = KIND_RAW;
		break;
	case VD_ALLOC_BLOCKS:
		w->kind = KIND_BLOCKS;
		break;
	case VD_ALLOC_FULL:
		w->kind = KIND_FLAT;
		break;
	case VD_ALLOC_STREAM:
		return vd_set_error(err, ENOTSUP,
				    "%s: %s %s images are write-once compressed streams and hold no zero blocks; nothing to rewrite (convert to another subformat first)",
				    w->path, w->si->subformat, w->si->format);
	default:
		return vd_set_error(err, ENOTSUP,
				    "%s: the %s %s image keeps its data on block devices; only image files can be rewritten",
				    w->path, w->si->subformat, w->si->format);
	}
	/* every range must live in a plain read-write file: the new image
	 * would have nothing else */
	for (unsigned i = 0; i < d->nfiles; i++) {
		const struct vd_file_desc *f = &d->files[i];
		if (!serves_guest(f))
			continue;
		n++;
		if (f->access != VD_FILE_RW)
			return vd_set_error(err, ENOTSUP,
					    "%s: extent %u (%s) is %s, not a plain read-write extent; cannot rewrite it",
					    w->path, n, f->path ? f->path : "no file", access_name(f->access));
	}
	return 0;
}

/* "subformat=..." of the source (vd_info.subformat is what the backend's
 * create accepts for it); the rest is typed (identity, block size). */
static int create_options(struct rw *w, char *out, size_t len)
{
	int n = 0;

	out[0] = 0;
	if (w->si->subformat[0])
		n = snprintf(out, len, "subformat=%s", w->si->subformat);
	return n >= (int)len ? -ENAMETOOLONG : 0;
}

/* The files of the new image.  A multi-file image keeps its extent files in
 * T's extra list, in extent order; each must cover the same guest range as
 * the original's, so that the extent files can be replaced one by one with
 * every intermediate state valid. */
static int list_files(struct rw *w, struct vd_tmp *t, struct vd_error *err)
{
	const struct vd_describe *sd = &w->sd, *dd = &w->dd;
	unsigned n = t->nextra ? t->nextra : 1, ns = 0, nd = 0;
	const struct vd_file_desc **df;
	struct stat st;
	int r = 0;

	w->files = vd_calloc(n, sizeof(*w->files), err);
	df = vd_calloc(dd->nfiles + 1, sizeof(*df), err);
	if (!w->files || !df) {
		free(df);
		return -ENOMEM;
	}
	w->nfiles = n;
	for (unsigned i = 0; i < sd->nfiles; i++)
		ns += serves_guest(&sd->files[i]);
	for (unsigned i = 0; i < dd->nfiles; i++)
		if (serves_guest(&dd->files[i]))
			df[nd++] = &dd->files[i];
	if (nd != n || ns != nd) {
		r = vd_set_error(err, ENOTSUP,
				 "%s: the image has %u extent files but a new one would have %u; cannot replace them safely (use vdisk convert)",
				 w->path, ns, nd);
		goto out;
	}
	for (unsigned i = 0, k = 0; i < sd->nfiles; i++) {
		const struct vd_file_desc *a = &sd->files[i], *b;
		if (!serves_guest(a))
			continue;
		b = df[k++];
		if (a->guest_off != b->guest_off || a->guest_len != b->guest_len) {
			r = vd_set_error(err, ENOTSUP,
					 "%s: extent %u holds guest bytes %" PRIu64 "..%" PRIu64 " but a new image's would hold %" PRIu64 "..%" PRIu64 "; cannot replace the extent files safely (use vdisk convert)",
					 w->path, k, a->guest_off, a->guest_off + a->guest_len - 1,
					 b->guest_off, b->guest_off + b->guest_len - 1);
			goto out;
		}
	}
	for (unsigned i = 0; i < n; i++) {
		struct outfile *f = &w->files[i];
		f->path = t->nextra ? t->extra_tmp[i] : t->tmp;
		f->role = df[i]->role;
		f->gstart = df[i]->guest_off;
		f->glen = df[i]->guest_len;
		if (stat(f->path, &st) < 0) {
			r = vd_set_error(err, errno, "%s: %s", f->path, strerror(errno));
			goto out;
		}
		f->base = (uint64_t)st.st_size;
	}
out:
	free(df);
	return r;
}

/* ---- planning: which blocks to keep ---- */

/* Does [off, end) of the source hold a non-zero byte?  With free pieces
 * (--fs-aware), FREE_PARTS false looks only at what the guest uses, true
 * only at the free pieces. */
static int has_data(struct rw *w, uint64_t off, uint64_t end, bool free_parts,
		    bool *found, struct vd_error *err)
{
	size_t i = rw_piece_at(w, off);
	uint64_t step = SCAN_FIRST;
	int r;

	*found = false;
	while (off < end) {
		uint64_t n;

		/* the next range to look at: up to the next piece boundary */
		if (i < w->npieces && w->pieces[i].off <= off) {
			uint64_t pe = w->pieces[i].off + w->pieces[i].len;
			if (!free_parts) {
				off = pe;
				i++;
				continue;
			}
			n = VD_MIN(step, VD_MIN(end, pe) - off);
		} else {
			uint64_t ne = i < w->npieces ? VD_MIN(end, w->pieces[i].off) : end;
			if (free_parts) {
				off = ne;
				continue;
			}
			n = VD_MIN(step, ne - off);
		}
		if (vd_cancelled(w->o->cancel))
			return vd_set_error(err, ECANCELED, "interrupted");
		r = vd_read(w->src, off, w->buf, (size_t)n, err);
		if (r < 0)
			return r;
		if (!vd_is_zero(w->buf, (size_t)n)) {
			*found = true;
			return 0;
		}
		off += n;
		if (i < w->npieces && off >= w->pieces[i].off + w->pieces[i].len)
			i++;
		step = CHUNK;
	}
	return 0;
}

/* Which units to keep (and, --fs-aware, which kept units have free pieces
 * that are not zero yet). */
static int plan_blocks(struct rw *w, struct vd_error *err)
{
	uint64_t off = 0;
	size_t bytes = (size_t)((w->nunits + 7) / 8);
	int r;

	w->keep = vd_calloc(bytes, 1, err);
	w->had = vd_calloc(bytes, 1, err);
	w->dirty = vd_calloc(bytes, 1, err);
	if (!w->keep || !w->had || !w->dirty)
		return -ENOMEM;
	while (off < w->size) {
		struct vd_extent e;
		uint64_t end;

		if (vd_cancelled(w->o->cancel))
			return vd_set_error(err, ECANCELED, "interrupted");
		r = vd_block_status(w->src, off, w->size - off, &e, err);
		if (r < 0)
			return r;
		end = off + e.length;
		if (e.flags & VD_BS_DATA) {
			for (uint64_t u = off / w->unit; u * w->unit < end; u++) {
				uint64_t a = VD_MAX(off, u * w->unit), b = VD_MIN(end, (u + 1) * w->unit);
				/* a hole in the host file reads as zeros: no need to
				 * look, and no reason to allocate it (defrag too) */
				bool found = !(e.flags & VD_BS_ZERO);
				set_bit(w->had, u);
				if (w->freeb && bit(w->freeb, u)) {
					found = false; /* free in the guest: never read */
				} else if (found && w->mode == MODE_COMPACT) {
					bool dirty;
					if (!bit(w->keep, u)) {
						r = has_data(w, a, b, false, &found, err);
						if (r < 0)
							return r;
					}
					if (w->npieces && !bit(w->dirty, u)) {
						r = has_data(w, a, b, true, &dirty, err);
						if (r < 0)
							return r;
						if (dirty)
							set_bit(w->dirty, u);
					}
				}
				if (found)
					set_bit(w->keep, u);
				if (w->mode == MODE_COMPACT && !(e.flags & VD_BS_ZERO))
					rw_progress(w, b - a);
			}
		}
		off = end;
	}
	for (uint64_t u = 0; u < w->nunits; u++) {
		if (bit(w->had, u))
			w->res->blocks_before++;
		if (bit(w->keep, u)) {
			w->res->blocks_kept++;
			w->res->bytes_kept += VD_MIN(w->unit, w->size - u * w->unit);
			if (bit(w->dirty, u))
				w->res->blocks_free_zeroed++;
		} else if (bit(w->had, u)) {
			if (w->freeb && bit(w->freeb, u))
				w->res->blocks_free++;
			else
				w->res->blocks_zero++;
		}
	}
	for (size_t i = 0; i < w->npieces; i++)
		if (bit(w->keep, w->pieces[i].off / w->unit))
			w->res->bytes_free_zeroed += w->pieces[i].len;
	return 0;
}

/* The kept units of each file of the new image. */
static void count_files(struct rw *w)
{
	for (uint64_t u = 0; u < w->nunits; u++) {
		uint64_t gs = u * w->unit;
		if (!bit(w->keep, u))
			continue;
		for (unsigned i = 0; i < w->nfiles; i++)
			if (gs >= w->files[i].gstart && gs < w->files[i].gstart + w->files[i].glen)
				w->files[i].kept++;
	}
}

/* ---- copying ---- */

/* Fill BUF with the source's [off, off+n): data read, the rest zeros. */
static int fill(struct rw *w, uint64_t off, uint64_t n, struct vd_error *err)
{
	for (uint64_t p = off; p < off + n;) {
		struct vd_extent e;
		int r = vd_block_status(w->src, p, off + n - p, &e, err);
		if (r < 0)
			return r;
		if ((e.flags & VD_BS_DATA) && !(e.flags & VD_BS_ZERO)) {
			r = vd_read(w->src, p, w->buf + (p - off), (size_t)e.length, err);
			if (r < 0)
				return r;
		} else {
			memset(w->buf + (p - off), 0, (size_t)e.length);
		}
		p += e.length;
	}
	/* --fs-aware: the free pieces of kept units are written as zeros */
	rw_zero_pieces(w, off, n, w->buf);
	return 0;
}

static int copy_range(struct rw *w, uint64_t off, uint64_t end, struct vd_error *err)
{
	while (off < end) {
		uint64_t n = VD_MIN(end - off, (uint64_t)CHUNK - off % CHUNK);
		int r;
		if (vd_cancelled(w->o->cancel))
			return vd_set_error(err, ECANCELED, "interrupted");
		r = fill(w, off, n, err);
		if (r == 0)
			r = vd_write(w->dst, off, w->buf, (size_t)n, err);
		if (r < 0)
			return r;
		rw_progress(w, n);
		off += n;
	}
	return 0;
}

/* Blocks: runs of kept blocks, in guest order.  Every kept block is written
 * whole (zeros included), so the backend allocates exactly the planned
 * blocks, one after the other, into the reserved space. */
static int copy_blocks(struct rw *w, struct vd_error *err)
{
	vd_image_set_allocate_zero_writes(w->dst, true);
	for (uint64_t u = 0; u < w->nunits;) {
		uint64_t v = u;
		int r;
		if (!bit(w->keep, u)) {
			u++;
			continue;
		}
		while (v < w->nunits && bit(w->keep, v))
			v++;
		r = copy_range(w, u * w->unit, VD_MIN(v * w->unit, w->size), err);
		if (r < 0)
			return r;
		u = v;
	}
	return 0;
}

/* Flat and raw outputs: the data ranges of the source. */
static int copy_data(struct rw *w, bool only_reserve, struct vd_error *err)
{
	uint64_t off = 0, last_unit = UINT64_MAX;
	int r;

	while (off < w->size) {
		struct vd_extent e;
		r = vd_block_status(w->src, off, w->size - off, &e, err);
		if (r < 0)
			return r;
		if (e.flags & VD_BS_DATA) {
			if (only_reserve) {
				r = vd_host_allocate(vd_image_host(w->dst), off, e.length, err);
				if (r < 0 && r != -ENOTSUP)
					return r;
			} else {
				r = copy_range(w, off, off + e.length, err);
				if (r < 0)
					return r;
				w->res->bytes_kept += e.length;
				if (w->unit) {
					for (uint64_t u = off / w->unit; u * w->unit < off + e.length; u++)
						if (u != last_unit) {
							w->res->blocks_kept++;
							last_unit = u;
						}
				} else {
					w->res->blocks_kept++;
				}
			}
		}
		off += e.length;
	}
	if (!only_reserve)
		w->res->blocks_before = w->res->blocks_kept;
	return 0;
}

/* ---- the rewrite ---- */

/* Keep the original's mode and owner on the new file(s). */
static void copy_mode(const char *tmp, const char *final, const struct stat *fallback)
{
	struct stat st;
	const struct stat *s = stat(final, &st) == 0 ? &st : fallback;

	if (chmod(tmp, s->st_mode & 07777) < 0) {
		/* the new file keeps the default mode */
	}
	if (geteuid() == 0 && chown(tmp, s->st_uid, s->st_gid) < 0) {
		/* not fatal either */
	}
}

/* MSG first in the result's note, before what the walks said. */
static void note_prepend(struct rw *w, const char *msg)
{
	char *old = strdup(w->res->note);

	snprintf(w->res->note, sizeof(w->res->note), "%s%s%s", msg,
		 old && old[0] ? "; " : "", old ? old : "");
	free(old);
}

static int rewrite_new(struct rw *w, const struct stat *orig, struct vd_error *err)
{
	struct vd_tmp t = { 0 };
	struct vd_host *h = NULL;
	struct vd_create_like like = { .identity = &w->id, .block_size = w->sd.block_size };
	char opts[768];
	uint64_t needed = 0;
	int r;

	r = create_options(w, opts, sizeof(opts));
	if (r < 0)
		return vd_set_error(err, -r, "%s: the image's identity does not fit the create options", w->path);

	/* fully allocated outputs: check before the create reserves the space */
	if (w->kind == KIND_FLAT) {
		uint64_t bs = w->sd.block_size ? w->sd.block_size : VD_SECTOR;
		needed = VD_ALIGN_UP(w->size, bs);
		/* a block map (fixed VDI): header and 4 bytes a block, 1 MiB
		 * aligned; the exact figure is the backend's, this is close */
		if (w->sd.block_size)
			needed += VD_ALIGN_UP((1u << 20) + 4 * (needed / bs), 1u << 20);
		r = check_space(w, needed, err);
	} else if (w->kind == KIND_RAW) {
		r = check_space(w, w->data_bytes, err);
	}
	if (r < 0)
		return r;

	/* blocks: decide what to keep before anything is created, so that an
	 * image with nothing to drop and nothing to zero is left alone */
	if (w->kind == KIND_BLOCKS) {
		w->unit = w->si->block_size ? w->si->block_size : (1u << 20);
		w->res->block_size = (uint32_t)w->unit;
		w->nunits = (w->size + w->unit - 1) / w->unit;
		if (w->o->fs_aware) {
			r = rw_free_map(w, w->src, err);
			if (r < 0)
				return r;
		}
		r = plan_blocks(w, err);
		if (r < 0)
			return r;
		if (w->mode == MODE_COMPACT && w->res->blocks_kept == w->res->blocks_before &&
		    w->res->blocks_free_zeroed == 0) {
			w->res->method = VD_REWRITE_NOTHING;
			note_prepend(w, w->o->fs_aware ?
				     "every allocated block holds data the guest filesystems use, and their free parts already read as zeros: the image is left as it was" :
				     "every allocated block holds data: the image is left as it was");
			return 0;
		}
	}

	r = vd_tmp_begin(&t, w->path, true, err);
	if (r < 0)
		return r;
	r = vd_host_open_file(&h, t.tmp, VD_HOST_RDWR, err);
	if (r < 0)
		goto out;
	r = vd_create_in_tmp_like(h, &t, w->si->format, w->size, opts[0] ? opts : NULL, 0,
				  &like, w->o->cancel, err);
	if (r < 0) {
		vd_host_close(h);
		if (r == -ENOSPC && needed) {
			check_space(w, needed, err);
			r = -ENOSPC;
		}
		goto out;
	}
	r = vd_open_host(&w->dst, h, w->si->format, VD_OPEN_RDWR, err);
	if (r < 0)
		goto out;
	vd_image_set_stream_writeback(w->dst, true);
	r = vd_get_info(w->dst, w->di, err);
	if (r == 0)
		r = vd_describe(w->dst, &w->dd, err);
	if (r == 0 && w->dd.block_size != w->sd.block_size)
		r = vd_set_error(err, ENOTSUP,
				 "%s: the image has blocks of %" PRIu32 " bytes but a new %s image would have %" PRIu32 "; cannot keep them (use vdisk convert)",
				 w->path, w->sd.block_size, w->si->format, w->dd.block_size);
	if (r == 0)
		r = list_files(w, &t, err);
	if (r < 0)
		goto out;

	switch (w->kind) {
	case KIND_BLOCKS:
		if ((w->di->block_size ? w->di->block_size : (1u << 20)) != w->unit) {
			r = vd_set_error(err, ENOTSUP,
					 "%s: the image has blocks of %" PRIu64 " bytes but a new %s image would have %" PRIu32 "; cannot keep them (use vdisk convert)",
					 w->path, w->unit, w->si->format, w->di->block_size);
			goto out;
		}
		count_files(w);
		needed = 0;
		for (unsigned i = 0; i < w->nfiles; i++)
			needed += w->files[i].kept * w->unit;
		r = check_space(w, needed, err);
		for (unsigned i = 0; i < w->nfiles && r == 0; i++)
			r = reserve(w->files[i].path, w->files[i].base, w->files[i].kept * w->unit,
				    true, err);
		if (r == 0) {
			/* the total stays what it was at the start: the part of
			 * the copy that the dropped blocks would have taken is
			 * counted as done */
			uint64_t rest = w->res->bytes_kept;
			uint64_t target = w->total > rest ? w->total - rest : 0;
			if (w->done < target)
				rw_progress(w, target - w->done);
			r = copy_blocks(w, err);
		}
		break;
	case KIND_FLAT:
		w->unit = w->sd.block_size;
		w->res->block_size = w->sd.block_size;
		/* the image file reserved its blocks at create (fixed VDI);
		 * extent files holding the data (flat VMDK) now */
		for (unsigned i = 0; i < w->nfiles && r == 0; i++)
			if (w->files[i].role == VD_FILE_EXTENT)
				r = reserve(w->files[i].path, 0, w->files[i].glen, false, err);
		if (r == 0)
			r = copy_data(w, false, err);
		break;
	case KIND_RAW:
		/* only the data ranges, in guest order, before writing: the
		 * zero ranges stay holes */
		r = copy_data(w, true, err);
		if (r == 0)
			r = copy_data(w, false, err);
		break;
	}
	if (r < 0)
		goto out;
	r = vd_close(w->dst, err);
	w->dst = NULL;
	if (r < 0)
		goto out;
	vd_close(w->src, NULL);
	w->src = NULL;
	if (vd_cancelled(w->o->cancel)) {
		r = vd_set_error(err, ECANCELED, "interrupted");
		goto out;
	}
	copy_mode(t.tmp, t.final, orig);
	for (unsigned i = 0; i < t.nextra; i++)
		copy_mode(t.extra_tmp[i], t.extra_final[i], orig);
	w->res->files = 1 + t.nextra;
	return vd_tmp_commit(&t, true, err);
out:
	vd_close(w->dst, NULL);
	w->dst = NULL;
	vd_tmp_abort(&t);
	return r;
}

static int rewrite(const char *path, int mode, const struct vd_rewrite_opts *o,
		   struct vd_rewrite_result *res, struct vd_error *err)
{
	static const struct vd_rewrite_opts none = { 0 };
	struct rw w = { 0 };
	struct stat st;
	int r;

	memset(res, 0, sizeof(*res));
	w.path = path;
	w.mode = mode;
	w.o = o ? o : &none;
	w.res = res;
	w.si = vd_calloc(1, sizeof(*w.si), err);
	w.di = vd_calloc(1, sizeof(*w.di), err);
	w.buf = vd_aligned_alloc(CHUNK, err);
	if (!w.si || !w.di || !w.buf) {
		r = -ENOMEM;
		goto out;
	}
	if (stat(path, &st) < 0) {
		r = vd_set_error(err, errno, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = vd_set_error(err, EINVAL, "%s: not a regular file; only image files can be %s",
				 path, mode == MODE_COMPACT ? "compacted" : "defragmented");
		goto out;
	}
	/* the in-use guard on every file of the image, held until the new
	 * image has replaced it */
	r = vd_open(&w.src, path, w.o->format, w.o->open_flags | VD_OPEN_EXCLUSIVE, err);
	if (r < 0)
		goto out;
	w.size = vd_size(w.src);
	r = vd_get_info(w.src, w.si, err);
	if (r == 0)
		r = vd_describe(w.src, &w.sd, err);
	if (r == 0)
		r = vd_get_identity(w.src, &w.id, err);
	if (r == 0)
		r = classify(&w, err);
	if (r < 0)
		goto out;
	res->format = w.si->format;
	snprintf(res->subformat, sizeof(res->subformat), "%s", w.si->subformat);
	res->block_size = w.si->block_size;
	res->file_size_before = w.si->file_size;
	res->host_bytes_before = w.si->host_bytes;
	res->file_size_after = res->file_size_before;
	res->host_bytes_after = res->host_bytes_before;
	if (mode == MODE_COMPACT && w.kind == KIND_FLAT) {
		res->method = VD_REWRITE_NOTHING;
		snprintf(res->note, sizeof(res->note),
			 "a %s %s image is fully allocated: there are no blocks to drop (vdisk defrag reallocates it%s)",
			 w.si->subformat, w.si->format,
			 w.o->fs_aware ? "; vdisk zerofree makes free space read as zeros" : "");
		r = 0;
		goto out;
	}
	w.data_bytes = w.si->allocated_bytes;
	w.total = mode == MODE_COMPACT && w.kind == KIND_BLOCKS ? 2 * w.data_bytes : w.data_bytes;
	if (w.o->progress)
		w.o->progress(w.o->progress_ctx, 0, w.total);

	if (mode == MODE_COMPACT && w.kind == KIND_RAW) {
		vd_close(w.src, NULL);
		w.src = NULL;
		r = rw_compact_raw(&w, err);
	} else {
		r = rewrite_new(&w, &st, err);
	}
	if (r < 0)
		goto out;
	/* the last progress report is the whole total (never a smaller one) */
	if (w.done < w.total)
		rw_progress(&w, w.total - w.done);
	{
		/* what the image is now */
		struct vd_image *img = NULL;
		struct vd_error e2 = { 0 };
		if (vd_open(&img, path, w.si->format, w.o->open_flags, &e2) == 0 &&
		    vd_get_info(img, w.di, &e2) == 0) {
			res->file_size_after = w.di->file_size;
			res->host_bytes_after = w.di->host_bytes;
		} else {
			res->host_bytes_after = host_bytes_of(path);
		}
		vd_close(img, NULL);
	}
out:
	vd_close(w.dst, NULL);
	vd_close(w.src, NULL);
	free(w.keep);
	free(w.had);
	free(w.freeb);
	free(w.dirty);
	free(w.pieces);
	free(w.files);
	free(w.buf);
	free(w.si);
	free(w.di);
	vd_describe_free(&w.sd);
	vd_describe_free(&w.dd);
	return r;
}

int vd_compact(const char *path, const struct vd_rewrite_opts *opts,
	       struct vd_rewrite_result *res, struct vd_error *err)
{
	int r = vd_rewrite_child(path, true, opts, res, err);
	return r == 1 ? rewrite(path, MODE_COMPACT, opts, res, err) : r;
}

int vd_defrag(const char *path, const struct vd_rewrite_opts *opts,
	      struct vd_rewrite_result *res, struct vd_error *err)
{
	int r = vd_rewrite_child(path, false, opts, res, err);
	return r == 1 ? rewrite(path, MODE_DEFRAG, opts, res, err) : r;
}
