/*
 * fragmap: the host side.  FIEMAP of an image file in windows of FM_BATCH
 * extents (refilled only when an offset falls outside), the host
 * filesystem's name, and vd_host_extents, the public walk of one file's
 * extents.
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

void host_fs_type(int fd, char *out, size_t len)
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

int hostmap_init(struct hostmap *hm, const char *path, int fd,
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

void hostmap_free(struct hostmap *hm)
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


/* Where file offset F (at most LEN bytes) lives on the host. */
int host_lookup(struct hostmap *hm, uint64_t f, uint64_t len,
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


int host_count_extents(struct hostmap *hm, struct vd_frag_summary *sum,
		       const volatile int *cancel, struct vd_error *err)
{
	struct count_ctx cc = { .sum = sum };

	return walk_host_extents(hm, count_extent, &cc, cancel, err);
}
