/*
 * The free-space dispatcher: reads the start of the partition once, asks
 * each walker whether it recognises its superblock, and runs the one that
 * does.  Walkers report partition-relative ranges through vd_fs_emit,
 * which checks them and merges neighbours, so callers see each free run
 * once however the filesystem splits it (block groups, bitmap chunks).
 *
 * SPDX-License-Identifier: MIT
 */
#include "fs.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

/* Probing order: the strongest signatures first.  FAT has no magic number
 * of its own, so it comes last (after NTFS, whose boot sector also ends in
 * 55 AA).  mkfs.xfs rewrites the sectors where an
 * ext superblock would be, so the two never both match. */
static const struct vd_fs_walker *const walkers[] = {
	&vd_fs_ext,
	&vd_fs_xfs,
	&vd_fs_swap,
	&vd_fs_ntfs,
	&vd_fs_fat,
};

int vd_fs_cancelled(struct vd_fs_walk *w)
{
	if (!vd_cancelled(w->cancel))
		return 0;
	return vd_set_error(w->err, ECANCELED, "%s: interrupted while walking the filesystem at offset %" PRIu64,
			    vd_path(w->img), w->part_off);
}

int vd_fs_read(struct vd_fs_walk *w, uint64_t off, void *buf, size_t len,
	       const char *what)
{
	int r = vd_fs_cancelled(w);

	if (r < 0)
		return r;
	if (off > w->part_len || len > w->part_len - off)
		return vd_set_error(w->err, EINVAL,
				    "%s: %s at partition offset %" PRIu64 " (+%zu) is beyond the partition (%" PRIu64 " bytes at %" PRIu64 ")",
				    vd_path(w->img), what, off, len, w->part_len, w->part_off);
	r = vd_read(w->img, w->part_off + off, buf, len, w->err);
	if (r < 0)
		vd_prefix_error(w->err, "reading the %s", what);
	return r;
}

static int flush_pending(struct vd_fs_walk *w)
{
	int r;

	if (w->pend_len == 0)
		return 0;
	w->info->free_bytes += w->pend_len;
	r = w->cb ? w->cb(w->ctx, w->pend_off, w->pend_len) : 0;
	w->pend_len = 0;
	return r;
}

int vd_fs_emit(struct vd_fs_walk *w, uint64_t off, uint64_t len)
{
	uint64_t lim = VD_MIN(w->info->total_bytes, w->part_len);
	int r = vd_fs_cancelled(w);

	if (r < 0)
		return r;
	if (off >= lim || len == 0)
		return 0;
	len = VD_MIN(len, lim - off);
	if (off < w->last_end)
		return vd_set_error(w->err, EINVAL,
				    "%s: %s: free range at %" PRIu64 " before the previous one's end %" PRIu64 " (walker bug)",
				    vd_path(w->img), w->info->type, off, w->last_end);
	w->last_end = off + len;
	off += w->part_off;
	if (w->pend_len && w->pend_off + w->pend_len == off) {
		w->pend_len += len;
		return 0;
	}
	r = flush_pending(w);
	if (r)
		return r;
	w->pend_off = off;
	w->pend_len = len;
	return 0;
}

int vd_fs_recognise(struct vd_image *img, uint64_t off, uint64_t len,
		    struct vd_error *err)
{
	uint8_t *buf;
	size_t n;
	int r;

	if (off > vd_size(img))
		return 0;
	if (len == 0 || len > vd_size(img) - off)
		len = vd_size(img) - off;
	n = (size_t)VD_MIN((uint64_t)VD_FS_PROBE_LEN, len);
	buf = vd_calloc(1, VD_FS_PROBE_LEN, err);
	if (!buf)
		return -ENOMEM;
	r = n ? vd_read(img, off, buf, n, err) : 0;
	for (size_t i = 0; r == 0 && i < VD_ARRAY_SIZE(walkers); i++)
		if (walkers[i]->probe(buf, n))
			r = 1;
	free(buf);
	return r;
}

int vd_fs_free_ranges(struct vd_image *img, uint64_t part_off, uint64_t part_len,
		      unsigned flags, vd_fs_free_fn cb, void *ctx,
		      struct vd_fs_info *info, struct vd_error *err)
{
	return vd_fs_free_ranges_cancel(img, part_off, part_len, flags, NULL, cb, ctx, info, err);
}

int vd_fs_free_ranges_cancel(struct vd_image *img, uint64_t part_off, uint64_t part_len,
			     unsigned flags, const volatile int *cancel,
			     vd_fs_free_fn cb, void *ctx,
			     struct vd_fs_info *info, struct vd_error *err)
{
	struct vd_fs_info local;
	struct vd_fs_walk w = { 0 };
	struct vd_content c;
	uint8_t *buf;
	size_t n;
	int r;

	if (!info)
		info = &local;
	memset(info, 0, sizeof(*info));
	if (part_off > vd_size(img))
		return vd_set_error(err, EINVAL, "%s: partition offset %" PRIu64 " is beyond the disk (%" PRIu64 " bytes)",
				    vd_path(img), part_off, vd_size(img));
	if (part_len == 0)
		part_len = vd_size(img) - part_off;
	if (part_len > vd_size(img) - part_off)
		return vd_set_error(err, EINVAL, "%s: partition at %" PRIu64 " (%" PRIu64 " bytes) ends beyond the disk (%" PRIu64 " bytes)",
				    vd_path(img), part_off, part_len, vd_size(img));
	w.img = img;
	w.part_off = part_off;
	w.part_len = part_len;
	w.flags = flags;
	w.cancel = cancel;
	w.cb = cb;
	w.ctx = ctx;
	w.info = info;
	w.err = err;

	n = (size_t)VD_MIN((uint64_t)VD_FS_PROBE_LEN, part_len);
	buf = vd_malloc(VD_FS_PROBE_LEN, err);
	if (!buf)
		return -ENOMEM;
	memset(buf, 0, VD_FS_PROBE_LEN);
	r = n ? vd_read(img, part_off, buf, n, err) : 0;
	for (size_t i = 0; r == 0 && i < VD_ARRAY_SIZE(walkers); i++) {
		if (!walkers[i]->probe(buf, n))
			continue;
		free(buf);
		r = walkers[i]->walk(&w);
		if (r == 0)
			r = flush_pending(&w);
		return r;
	}
	free(buf);
	if (r < 0)
		return r;
	/* say what is there, if libblkid knows */
	if (vd_probe_content(img, part_off, part_len, &c, NULL) == 0 && c.type[0])
		return vd_set_error(err, ENOTSUP, "%s: %s at offset %" PRIu64 ": vdisk has no free-space walker for it",
				    vd_path(img), c.type, part_off);
	return vd_set_error(err, ENOTSUP, "%s: no filesystem vdisk knows at offset %" PRIu64 " (ext2/3/4, XFS, NTFS, FAT, swap)",
			    vd_path(img), part_off);
}
