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
#include "../core/ops.h"

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

#define FM_BATCH 256u

/* ---- host extents ---- */

struct hostmap {
	const char *path;
	int fd;
	int mode;               /* enum vd_frag_host */
	bool synced;            /* FIEMAP_FLAG_SYNC was passed once */
	struct fiemap *fm;      /* FM_BATCH extents */
	uint64_t cstart, cend;  /* file range the window describes */
	bool valid;
};

static const char *fs_name(long type)
{
	static const struct { unsigned long magic; const char *name; } t[] = {
		{ 0xEF53, "ext2/3/4" },      { 0x58465342, "xfs" },
		{ 0x9123683E, "btrfs" },     { 0x01021994, "tmpfs" },
		{ 0x6969, "nfs" },           { 0xFF534D42, "cifs" },
		{ 0xFE534D42, "smb2" },      { 0x794C7630, "overlayfs" },
		{ 0x2FC12FC1, "zfs" },       { 0xF2F52010, "f2fs" },
		{ 0x65735546, "fuse" },      { 0x4D44, "vfat" },
		{ 0x5346544E, "ntfs" },      { 0x858458F6, "ramfs" },
		{ 0x2011BAB0, "exfat" },     { 0xCA451A4E, "bcachefs" },
		{ 0x3153464A, "jfs" },       { 0x52654973, "reiserfs" },
		{ 0x9FA0, "proc" },          { 0x62656572, "sysfs" },
		{ 0x01021997, "9p" },        { 0x47504653, "gpfs" },
		{ 0x0BD00BD0, "lustre" },    { 0x00C36400, "ceph" },
	};
	for (size_t i = 0; i < VD_ARRAY_SIZE(t); i++)
		if ((unsigned long)(unsigned int)type == t[i].magic)
			return t[i].name;
	return NULL;
}

static void host_fs_type(int fd, char *out, size_t len)
{
	struct statfs sf;
	const char *n;

	out[0] = 0;
	if (fd < 0 || fstatfs(fd, &sf) < 0)
		return;
	n = fs_name((long)sf.f_type);
	if (n)
		snprintf(out, len, "%s", n);
	else
		snprintf(out, len, "0x%lx", (unsigned long)(unsigned int)sf.f_type);
}

static int hostmap_init(struct hostmap *hm, const char *path, int fd,
			struct vd_error *err)
{
	struct stat st;

	memset(hm, 0, sizeof(*hm));
	hm->path = path;
	hm->fd = fd;
	if (fd < 0 || fstat(fd, &st) < 0) {
		hm->mode = VD_FRAG_HOST_NONE;
		return 0;
	}
	if (S_ISBLK(st.st_mode)) {
		hm->mode = VD_FRAG_HOST_DEVICE;
		return 0;
	}
	hm->fm = vd_calloc(1, sizeof(struct fiemap) + FM_BATCH * sizeof(struct fiemap_extent), err);
	if (!hm->fm)
		return err ? err->code : -ENOMEM;
	hm->mode = VD_FRAG_HOST_FIEMAP;
	return 0;
}

static void hostmap_free(struct hostmap *hm)
{
	free(hm->fm);
	hm->fm = NULL;
}

static bool fiemap_unsupported(int e)
{
	return e == EOPNOTSUPP || e == ENOTTY || e == ENOSYS || e == EBADR || e == EINVAL;
}

/* Fill the window with the extents at or after file offset START. */
static int fm_query(struct hostmap *hm, uint64_t start, struct vd_error *err)
{
	struct fiemap *fm = hm->fm;
	unsigned n;
	char fs[32];

	memset(fm, 0, sizeof(*fm));
	fm->fm_start = start;
	fm->fm_length = ~0ULL - start;
	fm->fm_flags = hm->synced ? 0 : FIEMAP_FLAG_SYNC;
	fm->fm_extent_count = FM_BATCH;
	if (ioctl(hm->fd, FS_IOC_FIEMAP, fm) < 0) {
		int e = errno;
		hm->valid = false;
		host_fs_type(hm->fd, fs, sizeof(fs));
		if (fiemap_unsupported(e))
			return vd_set_error(err, EOPNOTSUPP,
					    "%s: the host filesystem (%s) does not support FIEMAP, so the host extents are unknown",
					    hm->path, fs[0] ? fs : "unknown type");
		return vd_set_error(err, e, "%s: FIEMAP at file offset %llu: %s", hm->path,
				    (unsigned long long)start, strerror(e));
	}
	hm->synced = true;
	n = fm->fm_mapped_extents;
	if (n > FM_BATCH)
		return vd_set_error(err, EIO, "%s: FIEMAP returned %u extents for %u slots",
				    hm->path, n, FM_BATCH);
	hm->cstart = start;
	if (n == 0 || n < FM_BATCH || (fm->fm_extents[n - 1].fe_flags & FIEMAP_EXTENT_LAST))
		hm->cend = UINT64_MAX;
	else
		hm->cend = fm->fm_extents[n - 1].fe_logical + fm->fm_extents[n - 1].fe_length;
	if (hm->cend <= start) /* cannot happen with a sane kernel; avoid looping */
		hm->cend = UINT64_MAX;
	hm->valid = true;
	return 0;
}

struct host_piece {
	uint64_t len;
	bool mapped;      /* inside a host extent */
	bool phys_valid;
	uint64_t phys;
	uint32_t flags;
};

/* Where file offset F (at most LEN bytes) lives on the host. */
static int host_lookup(struct hostmap *hm, uint64_t f, uint64_t len,
		       struct host_piece *p, struct vd_error *err)
{
	const struct fiemap_extent *x;
	unsigned lo, hi, n;
	uint64_t next;
	int r;

	if (!hm->valid || f < hm->cstart || f >= hm->cend) {
		r = fm_query(hm, f, err);
		if (r < 0)
			return r;
	}
	x = hm->fm->fm_extents;
	n = hm->fm->fm_mapped_extents;
	/* first extent that ends after F */
	lo = 0;
	hi = n;
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		if (x[mid].fe_logical + x[mid].fe_length <= f)
			lo = mid + 1;
		else
			hi = mid;
	}
	memset(p, 0, sizeof(*p));
	if (lo < n && x[lo].fe_logical <= f) {
		uint64_t d = f - x[lo].fe_logical;
		p->mapped = true;
		p->len = VD_MIN(len, x[lo].fe_length - d);
		p->flags = x[lo].fe_flags & ~(uint32_t)FIEMAP_EXTENT_LAST;
		p->phys_valid = !(x[lo].fe_flags & (FIEMAP_EXTENT_UNKNOWN | FIEMAP_EXTENT_DELALLOC));
		p->phys = x[lo].fe_physical + d;
		return 0;
	}
	next = lo < n ? x[lo].fe_logical : hm->cend;
	p->len = VD_MIN(len, next - f);
	return 0;
}

struct count_ctx {
	struct vd_frag_summary *sum;
	bool have;
	uint64_t pend, lend;
};

static int walk_host_extents(struct hostmap *hm, vd_host_extent_fn fn, void *ctx,
			     const volatile int *cancel, struct vd_error *err)
{
	uint64_t start = 0;
	int r;

	for (;;) {
		const struct fiemap_extent *x;
		unsigned n;

		if (vd_cancelled(cancel))
			return vd_set_error(err, ECANCELED, "%s: cancelled", hm->path);
		r = fm_query(hm, start, err);
		if (r < 0)
			return r;
		x = hm->fm->fm_extents;
		n = hm->fm->fm_mapped_extents;
		if (n == 0)
			return 0;
		for (unsigned i = 0; i < n; i++) {
			struct vd_host_extent e = {
				.logical = x[i].fe_logical,
				.physical = x[i].fe_physical,
				.length = x[i].fe_length,
				.flags = x[i].fe_flags,
			};
			/* the first extent of a later window may overlap the
			 * last one of the previous window: report it once */
			if (e.logical + e.length <= start && start != 0)
				continue;
			r = fn(ctx, &e);
			if (r != 0)
				return r;
			if (x[i].fe_flags & FIEMAP_EXTENT_LAST)
				return 0;
		}
		if (n < FM_BATCH)
			return 0;
		if (x[n - 1].fe_logical + x[n - 1].fe_length <= start)
			return vd_set_error(err, EIO, "%s: FIEMAP does not advance at %llu",
					    hm->path, (unsigned long long)start);
		start = x[n - 1].fe_logical + x[n - 1].fe_length;
	}
}

int vd_host_extents(struct vd_image *img, vd_host_extent_fn fn, void *ctx,
		    struct vd_error *err)
{
	struct hostmap hm;
	int r;

	r = hostmap_init(&hm, vd_image_host(img)->path, vd_image_host(img)->fd, err);
	if (r < 0)
		return r;
	switch (hm.mode) {
	case VD_FRAG_HOST_DEVICE: {
		struct vd_host_extent e = { 0 };
		r = vd_host_size(vd_image_host(img), &e.length, err);
		if (r == 0 && e.length)
			r = fn(ctx, &e);
		break;
	}
	case VD_FRAG_HOST_FIEMAP:
		r = walk_host_extents(&hm, fn, ctx, NULL, err);
		break;
	default:
		r = vd_set_error(err, EOPNOTSUPP, "%s: not a host file: no host extents",
				 vd_image_host(img)->path);
	}
	hostmap_free(&hm);
	return r;
}

static int count_extent(void *ctx, const struct vd_host_extent *e)
{
	struct count_ctx *c = ctx;

	/* as filefrag counts: a hole in the file followed by data at the
	 * physical position the hole would have had does not start a new one */
	c->sum->host_extents++;
	if (!c->have || e->logical < c->lend || e->physical != c->pend + (e->logical - c->lend))
		c->sum->host_fragments++;
	c->have = true;
	c->pend = e->physical + e->length;
	c->lend = e->logical + e->length;
	return 0;
}

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
		struct count_ctx cc = { .sum = sum };
		struct vd_error e2 = { 0 };

		r = walk_host_extents(&hf->hm, count_extent, &cc, fs->cancel, &e2);
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
