/*
 * fragmap: the fragmentation map.  Joins the guest address space (block
 * status) with the image file (file offsets) and the host device (FIEMAP of
 * the image file), in guest order, and sums up what a sequential guest read
 * costs on the host.
 *
 * Streaming: one block-status query at a time, split at host extent
 * boundaries; host extents come from a window of FM_BATCH extents that is
 * refilled only when a file offset falls outside it, so memory is bounded
 * and the cost grows with the number of ranges and extents, not with the
 * virtual size.  The median host run length is exact up to VD_FRAG_SAMPLE
 * runs; beyond that it is read from a power-of-two histogram.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "hostmap.h"

#include <errno.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sys/vfs.h>

/* ---- the join ---- */

struct walk {
	vd_frag_fn fn;
	void *ctx;
	struct vd_frag_summary *sum;
	struct vd_frag_run cur;
	bool have_cur;
	/* the current host run of a sequential read */
	bool in_run;
	bool run_pos_known;
	uint64_t run_key;  /* which address space run_end is in */
	uint64_t run_end;  /* host position where it ends */
	uint64_t run_len;
	uint64_t run_file; /* file (index) and file offset where it ends */
	uint64_t run_file_end;
	uint64_t *sample;  /* VD_FRAG_SAMPLE run lengths */
};

static unsigned log2u64(uint64_t v)
{
	return 63u - (unsigned)__builtin_clzll(v);
}

static void close_run(struct walk *w)
{
	struct vd_frag_summary *s = w->sum;
	uint64_t l = w->run_len;

	if (!w->in_run)
		return;
	w->in_run = false;
	if (l == 0)
		return;
	if (s->host_runs < VD_FRAG_SAMPLE)
		w->sample[s->host_runs] = l;
	s->host_runs++;
	s->host_run_bytes += l;
	s->host_run_max = VD_MAX(s->host_run_max, l);
	s->run_hist[log2u64(l)]++;
	if (l >= (1ull << 20))
		s->bytes_in_runs_1m += l;
	if (l >= (64ull << 20))
		s->bytes_in_runs_64m += l;
}

static int emit(struct walk *w)
{
	if (!w->have_cur)
		return 0;
	w->have_cur = false;
	w->sum->runs++;
	return w->fn ? w->fn(w->ctx, &w->cur) : 0;
}

static bool mergeable(const struct vd_frag_run *a, const struct vd_frag_run *b)
{
	unsigned pos = VD_FRAG_FILE_OFF | VD_FRAG_PHYS;

	if (a->kind != b->kind || a->guest_off + a->len != b->guest_off || a->file != b->file)
		return false;
	if ((a->flags & pos) != (b->flags & pos) || a->host_flags != b->host_flags)
		return false;
	if (b->flags & (VD_FRAG_DISCONT | VD_FRAG_SEEK))
		return false;
	if ((a->flags & VD_FRAG_FILE_OFF) && a->file_off + a->len != b->file_off)
		return false;
	if ((a->flags & VD_FRAG_PHYS) && a->host_physical + a->len != b->host_physical)
		return false;
	return true;
}

/* KEY names the address space of the run's position: host positions of one
 * device, or file offsets of one file; FILE the file (index) whose offsets
 * file_off are, NO_FILE when the run has none. */
#define NO_FILE UINT64_MAX

static int feed(struct walk *w, struct vd_frag_run r, uint64_t key, uint64_t file)
{
	struct vd_frag_summary *s = w->sum;
	int rc;

	switch (r.kind) {
	case VD_FRAG_DATA: s->data_bytes += r.len; break;
	case VD_FRAG_ZERO: s->zero_bytes += r.len; break;
	case VD_FRAG_HOLE: s->hole_bytes += r.len; break;
	default: s->unallocated_bytes += r.len; break;
	}
	if (r.kind == VD_FRAG_DATA) {
		bool known = r.flags & (VD_FRAG_PHYS | VD_FRAG_FILE_OFF);
		uint64_t pos = (r.flags & VD_FRAG_PHYS) ? r.host_physical : r.file_off;

		if (!w->in_run ||
		    (known && (!w->run_pos_known || key != w->run_key || pos != w->run_end))) {
			close_run(w);
			w->in_run = true;
			w->run_len = 0;
			r.flags |= VD_FRAG_SEEK;
		}
		w->run_len += r.len;
		w->run_pos_known = known;
		w->run_key = key;
		w->run_end = pos + r.len;
		w->run_file = (r.flags & VD_FRAG_FILE_OFF) ? file : NO_FILE;
		w->run_file_end = r.file_off + r.len;
	} else if (w->in_run && w->run_pos_known && file != NO_FILE &&
		   (r.flags & VD_FRAG_FILE_OFF) && file == w->run_file &&
		   r.file_off == w->run_file_end) {
		/* A range the read skips (it reads as zero: a hole or an
		 * unwritten extent) right after the run in the same file: data
		 * after it that lies where the file's layout puts it continues
		 * the run (as filefrag counts; a fixed image's preallocated
		 * zero blocks do not cost a seek each). */
		w->run_end += r.len;
		w->run_file_end += r.len;
	}
	if (w->have_cur && mergeable(&w->cur, &r)) {
		w->cur.len += r.len;
		return 0;
	}
	rc = emit(w);
	if (rc != 0)
		return rc;
	w->cur = r;
	w->have_cur = true;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void finish_median(struct walk *w)
{
	struct vd_frag_summary *s = w->sum;
	uint64_t n = s->host_runs, want, acc = 0;

	if (n == 0)
		return;
	if (n <= VD_FRAG_SAMPLE) {
		qsort(w->sample, (size_t)n, sizeof(uint64_t), cmp_u64);
		if (n % 2)
			s->host_run_median = w->sample[n / 2];
		else
			s->host_run_median = w->sample[n / 2 - 1] / 2 + w->sample[n / 2] / 2 +
					     (w->sample[n / 2 - 1] % 2 + w->sample[n / 2] % 2) / 2;
		s->host_run_median_exact = true;
		return;
	}
	want = (n + 1) / 2;
	for (unsigned i = 0; i < VD_FRAG_HIST; i++) {
		acc += s->run_hist[i];
		if (acc >= want) {
			s->host_run_median = 1ull << i;
			break;
		}
	}
}

static int frag_kind(unsigned f)
{
	if ((f & VD_BS_DATA) && (f & VD_BS_ZERO))
		return VD_FRAG_HOLE;
	if (f & VD_BS_DATA)
		return VD_FRAG_DATA;
	if (f & VD_BS_ALLOCATED)
		return VD_FRAG_ZERO;
	return VD_FRAG_UNALLOCATED;
}

/* ---- the files of an image: the image file and, for split VMDKs, the
 * extent files block status names ---- */

#define MAX_OPEN_FILES 32

struct hostfile {
	char *path;        /* NULL: the image file (its main host) */
	struct hostmap hm; /* hm.fd < 0 while closed */
	bool open;
	uint64_t key;      /* address space of host positions (device) */
	uint64_t used;     /* for closing the least recently used */
};

struct files {
	struct vd_image *img;
	struct vd_frag_summary *sum;
	const volatile int *cancel;
	struct hostfile *f;
	unsigned n, cap, nopen;
	uint64_t tick;
	bool seen_none, seen_fiemap;
};

static void file_close(struct files *fs, struct hostfile *hf)
{
	if (!hf->open)
		return;
	hostmap_free(&hf->hm);
	if (hf->path && hf->hm.fd >= 0)
		close(hf->hm.fd);
	hf->hm.fd = -1;
	hf->open = false;
	fs->nopen--;
}

static void files_free(struct files *fs)
{
	for (unsigned i = 0; i < fs->n; i++) {
		file_close(fs, &fs->f[i]);
		free(fs->f[i].path);
	}
	free(fs->f);
	fs->f = NULL;
	fs->n = fs->cap = 0;
}

/* Open HF (closing the least recently used file if too many are open). */
static int file_open(struct files *fs, struct hostfile *hf, struct vd_error *err)
{
	const char *path = hf->path ? hf->path : vd_image_host(fs->img)->path;
	struct stat st;
	int fd, r;

	if (hf->open)
		return 0;
	if (fs->nopen >= MAX_OPEN_FILES) {
		struct hostfile *lru = NULL;
		for (unsigned i = 1; i < fs->n; i++)
			if (fs->f[i].open && (!lru || fs->f[i].used < lru->used))
				lru = &fs->f[i];
		if (lru)
			file_close(fs, lru);
	}
	if (hf->path) {
		fd = open(hf->path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return vd_set_error(err, errno, "%s: %s", hf->path, strerror(errno));
	} else {
		fd = vd_image_host(fs->img)->fd;
	}
	r = hostmap_init(&hf->hm, path, fd, err);
	if (r < 0) {
		if (hf->path)
			close(fd);
		return r;
	}
	hf->key = 0;
	if (fd >= 0 && fstat(fd, &st) == 0)
		hf->key = (uint64_t)(S_ISBLK(st.st_mode) ? st.st_rdev : st.st_dev);
	hf->open = true;
	fs->nopen++;
	return 0;
}

/* First use of a file: open it and count its host extents. */
static int file_setup(struct files *fs, struct hostfile *hf, struct vd_error *err)
{
	struct vd_frag_summary *sum = fs->sum;
	int r;

	r = file_open(fs, hf, err);
	if (r < 0)
		return r;
	if (hf->hm.mode == VD_FRAG_HOST_DEVICE) {
		sum->host_extents++;
		sum->host_fragments++;
	} else if (hf->hm.mode == VD_FRAG_HOST_FIEMAP) {
		struct vd_error e2 = { 0 };

		r = host_count_extents(&hf->hm, sum, fs->cancel, &e2);
		if (r == -EOPNOTSUPP) {
			hf->hm.mode = VD_FRAG_HOST_NONE;
			if (!sum->host_note[0])
				snprintf(sum->host_note, sizeof(sum->host_note), "%s", e2.msg);
		} else if (r < 0) {
			if (err)
				*err = e2;
			return r;
		}
		hf->hm.valid = false;
		if (hf->hm.mode == VD_FRAG_HOST_FIEMAP)
			fs->seen_fiemap = true;
	} else if (!sum->host_note[0]) {
		snprintf(sum->host_note, sizeof(sum->host_note),
			 "%s: not a file on a host filesystem, so the host extents are unknown",
			 hf->path ? hf->path : vd_image_host(fs->img)->path);
	}
	if (hf->hm.mode == VD_FRAG_HOST_NONE)
		fs->seen_none = true;
	return 0;
}

/* The file holding an extent: NAME NULL (or the image file's own path) is
 * the image file. */
static int file_get(struct files *fs, const char *name, struct hostfile **out,
		    struct vd_error *err)
{
	struct hostfile *hf = NULL;
	int r;

	if (!name || !strcmp(name, vd_image_host(fs->img)->path)) {
		hf = &fs->f[0];
	} else {
		for (unsigned i = 1; i < fs->n; i++)
			if (!strcmp(fs->f[i].path, name)) {
				hf = &fs->f[i];
				break;
			}
	}
	if (!hf) {
		if (fs->n == fs->cap) {
			unsigned cap = fs->cap ? fs->cap * 2 : 8;
			struct hostfile *nf = realloc(fs->f, cap * sizeof(*nf));
			if (!nf)
				return vd_set_error(err, ENOMEM, "out of memory");
			fs->f = nf;
			fs->cap = cap;
		}
		hf = &fs->f[fs->n];
		memset(hf, 0, sizeof(*hf));
		hf->hm.fd = -1;
		hf->path = strdup(name);
		if (!hf->path)
			return vd_set_error(err, ENOMEM, "out of memory");
		fs->n++;
		r = file_setup(fs, hf, err);
		if (r < 0)
			return r;
	} else if (!hf->open) {
		r = file_open(fs, hf, err);
		if (r < 0)
			return r;
	}
	hf->used = ++fs->tick;
	*out = hf;
	return 0;
}

int vd_fragmap(struct vd_image *img, const struct vd_fragmap_opts *opts,
	       vd_frag_fn fn, void *ctx, struct vd_frag_summary *sum,
	       struct vd_error *err)
{
	const volatile int *cancel = opts ? opts->cancel : NULL;
	uint64_t start = opts ? opts->start : 0, length = opts ? opts->length : 0;
	uint64_t size = vd_size(img), off, end;
	uint64_t prev_file_end = 0, last_block = UINT64_MAX;
	const char *prev_file = NULL;
	bool have_prev = false;
	struct files fs;
	struct vd_info *info;
	struct walk w;
	int r;

	memset(sum, 0, sizeof(*sum));
	memset(&fs, 0, sizeof(fs));
	memset(&w, 0, sizeof(w));
	if (start > size || (length && length > size - start))
		return vd_set_error(err, EINVAL, "%s: range %llu+%llu is outside the virtual size %llu",
				    vd_image_host(img)->path, (unsigned long long)start,
				    (unsigned long long)length, (unsigned long long)size);
	end = length ? start + length : size;
	sum->guest_start = start;
	sum->guest_length = end - start;

	info = vd_malloc(sizeof(*info), err);
	if (!info)
		return err ? err->code : -ENOMEM;
	r = vd_get_info(img, info, err);
	sum->block_size = info->block_size;
	free(info);
	if (r < 0)
		return r;
	r = vd_host_size(vd_image_host(img), &sum->file_size, err);
	if (r < 0)
		return r;

	w.fn = fn;
	w.ctx = ctx;
	w.sum = sum;
	w.sample = vd_calloc(VD_FRAG_SAMPLE, sizeof(uint64_t), err);
	if (!w.sample)
		return err ? err->code : -ENOMEM;
	fs.img = img;
	fs.sum = sum;
	fs.cancel = cancel;
	fs.f = vd_calloc(8, sizeof(*fs.f), err);
	if (!fs.f) {
		r = err ? err->code : -ENOMEM;
		goto out;
	}
	fs.cap = 8;
	fs.n = 1;
	fs.f[0].hm.fd = -1;
	host_fs_type(vd_image_host(img)->fd, sum->host_fs, sizeof(sum->host_fs));
	r = file_setup(&fs, &fs.f[0], err);
	if (r < 0)
		goto out;

	for (off = start; off < end;) {
		struct vd_extent e;
		struct hostfile *hf = NULL;
		bool discont = false;
		int kind;

		if (vd_cancelled(cancel)) {
			r = vd_set_error(err, ECANCELED, "%s: cancelled", vd_image_host(img)->path);
			goto out;
		}
		r = vd_block_status(img, off, end - off, &e, err);
		if (r < 0)
			goto out;
		if (e.depth > 0) {
			/* a child: what its parents hold is not in this image's
			 * files (inspect the parent for those) */
			e.flags = 0;
			e.file = NULL;
		}
		kind = frag_kind(e.flags);
		if (e.flags & VD_BS_OFFSET_VALID) {
			r = file_get(&fs, e.file, &hf, err);
			if (r < 0)
				goto out;
		}
		/* Every range with a file offset continues the chain, so the
		 * holes of a raw file (file offset = guest offset) do not break
		 * it, while a VDI block after unallocated ones must sit in the
		 * slot right after the previous data.  A change of file (split
		 * VMDK) is a discontinuity. */
		if (hf) {
			if (kind == VD_FRAG_DATA && have_prev &&
			    (e.offset != prev_file_end || hf->path != prev_file)) {
				discont = true;
				sum->discontinuities++;
			}
			have_prev = true;
			prev_file_end = e.offset + e.length;
			prev_file = hf->path;
		}
		if (kind == VD_FRAG_DATA) {
			if (sum->block_size) {
				uint64_t b0 = e.start / sum->block_size;
				uint64_t b1 = (e.start + e.length - 1) / sum->block_size;
				sum->data_blocks += b1 - b0 + 1 - (b0 == last_block);
				if (discont && b0 != last_block)
					sum->out_of_order_blocks++;
				last_block = b1;
			} else {
				sum->data_blocks++;
				if (discont)
					sum->out_of_order_blocks++;
			}
		}

		if (kind == VD_FRAG_DATA && hf && hf->hm.mode == VD_FRAG_HOST_FIEMAP) {
			uint64_t g = e.start, f = e.offset, rem = e.length;
			while (rem) {
				struct host_piece p;
				struct vd_frag_run run = { 0 };

				r = host_lookup(&hf->hm, f, rem, &p, err);
				if (r < 0)
					goto out;
				run.guest_off = g;
				run.len = p.len;
				run.kind = p.mapped ? VD_FRAG_DATA : VD_FRAG_HOLE;
				run.flags = VD_FRAG_FILE_OFF;
				run.file_off = f;
				run.file = hf->path;
				if (p.mapped && p.phys_valid) {
					run.flags |= VD_FRAG_PHYS;
					run.host_physical = p.phys;
				}
				run.host_flags = p.flags;
				if (discont && p.mapped) {
					run.flags |= VD_FRAG_DISCONT;
					discont = false;
				}
				r = feed(&w, run, (run.flags & VD_FRAG_PHYS) ? hf->key | (1ull << 63) : (uint64_t)(hf - fs.f),
					 (uint64_t)(hf - fs.f));
				if (r != 0)
					goto out;
				g += p.len;
				f += p.len;
				rem -= p.len;
			}
		} else {
			struct vd_frag_run run = { 0 };
			uint64_t key = 0, file = NO_FILE;

			run.guest_off = e.start;
			run.len = e.length;
			run.kind = kind;
			if (hf) {
				run.flags |= VD_FRAG_FILE_OFF;
				run.file_off = e.offset;
				run.file = hf->path;
				key = file = (uint64_t)(hf - fs.f);
				if (hf->hm.mode == VD_FRAG_HOST_DEVICE && kind == VD_FRAG_DATA) {
					run.flags |= VD_FRAG_PHYS;
					run.host_physical = e.offset;
					key = hf->key | (1ull << 63);
				}
			}
			if (discont)
				run.flags |= VD_FRAG_DISCONT;
			r = feed(&w, run, key, file);
			if (r != 0)
				goto out;
		}
		off += e.length;
	}
	close_run(&w);
	r = emit(&w);
	if (r != 0)
		goto out;
	finish_median(&w);
	r = 0;
out:
	sum->host_map = fs.seen_none ? VD_FRAG_HOST_NONE :
			fs.seen_fiemap ? VD_FRAG_HOST_FIEMAP : VD_FRAG_HOST_DEVICE;
	if (sum->host_map != VD_FRAG_HOST_NONE)
		sum->host_note[0] = 0;
	files_free(&fs);
	free(w.sample);
	return r;
}
