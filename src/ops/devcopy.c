/*
 * devcopy: an image onto a block device, in place.
 *
 * The device is a raw target written where it is: no temporary file, no
 * rename.  It is opened with O_EXCL (the kernel refuses devices that are
 * mounted or held by another exclusive opener), its size is checked before
 * anything is written, and it is never assumed to be zero: the convert
 * pipeline (block status, zero detection, large aligned writes) zeroes the
 * ranges the image has as zeros.  Requests are aligned to the device's
 * logical sector size by the block-I/O layer, which direct I/O needs and
 * which lets the zeroing calls (fallocate/BLKZEROOUT) take whole sectors.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "../core/ops.h"
#include "../core/stream-src.h"
#include "source.h"
#include "chash.h"

#define VERIFY_CHUNK (4u << 20)

#include <blkid/blkid.h>
#include <errno.h>
#include <stdlib.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool same_device(const struct vd_host *a, const struct vd_host *b)
{
	struct stat sa, sb;

	if (a->fd < 0 || b->fd < 0 || fstat(a->fd, &sa) < 0 || fstat(b->fd, &sb) < 0)
		return false;
	if (S_ISBLK(sa.st_mode))
		return sa.st_rdev == sb.st_rdev;
	/* an image file on a filesystem on this device is caught by O_EXCL
	 * (the device is mounted) */
	return false;
}

/* What libblkid finds on the device: "an ext4 filesystem", "a dos
 * partition table"; "" when nothing (or libblkid cannot tell). */
static void signature(int fd, char *out, size_t len)
{
	blkid_probe pr = blkid_new_probe();
	const char *v = NULL;

	out[0] = '\0';
	if (!pr)
		return;
	if (blkid_probe_set_device(pr, fd, 0, 0) == 0) {
		blkid_probe_enable_superblocks(pr, 1);
		blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_TYPE);
		blkid_probe_enable_partitions(pr, 1);
		blkid_probe_set_partitions_flags(pr, BLKID_PARTS_MAGIC);
		if (blkid_do_safeprobe(pr) == 0) {
			if (blkid_probe_lookup_value(pr, "TYPE", &v, NULL) == 0 && v)
				snprintf(out, len, "a %s signature (filesystem or volume)", v);
			else if (blkid_probe_lookup_value(pr, "PTTYPE", &v, NULL) == 0 && v)
				snprintf(out, len, "a %s partition table", v);
		}
	}
	blkid_free_probe(pr);
}

/* Read DST's first SIZE bytes back into a digest and compare it with the
 * one the copy made (WANT): 0 equal, 1 different, -errno.  *AT: 0 (a
 * digest cannot say where). */
static int verify_digest(struct vd_image *dst, uint64_t size, struct vd_chash *want,
			 const struct vd_devcopy_opts *o, uint64_t *at, struct vd_error *err)
{
	struct vd_chash got;
	uint8_t a[32], b[32], *buf;
	int r = 0;

	*at = 0;
	vd_chash_final(want, a);
	buf = vd_aligned_alloc(VERIFY_CHUNK, err);
	if (!buf)
		return -ENOMEM;
	if (vd_chash_init(&got) < 0) {
		free(buf);
		return vd_set_error(err, ENOMEM, "out of memory");
	}
	for (uint64_t off = 0; off < size && r == 0;) {
		size_t n = (size_t)VD_MIN((uint64_t)VERIFY_CHUNK, size - off);
		if (vd_cancelled(o->cancel)) {
			r = vd_set_error(err, ECANCELED, "interrupted");
			break;
		}
		r = vd_read(dst, off, buf, n, err);
		if (r < 0)
			break;
		vd_chash_data(&got, buf, n);
		off += n;
		if (o->progress)
			o->progress(o->progress_ctx, off, size);
	}
	if (r == 0) {
		vd_chash_final(&got, b);
		r = memcmp(a, b, sizeof(a)) ? 1 : 0;
	}
	vd_chash_free(&got);
	free(buf);
	return r;
}

int vd_devcopy(const char *src_path, const char *dev_path,
	       const struct vd_devcopy_opts *o, struct vd_devcopy_result *res,
	       struct vd_error *err)
{
	struct vd_image *src = NULL, *dst = NULL;
	struct vd_host *h = NULL;
	struct vd_convert_opts co = { 0 };
	struct vd_copy_stats st = { 0 };
	struct vd_chash ch = { 0 };
	unsigned hflags = VD_HOST_RDWR | VD_HOST_ALLOW_DEV | VD_HOST_EXCL;
	uint64_t isize, covered;
	double t0;
	int r, r2;

	memset(res, 0, sizeof(*res));
	co.src_format = o->src_format;
	co.src_open_flags = o->src_open_flags;
	co.stream_size = o->stream_size;
	co.source_offset = o->source_offset;
	co.source_size = o->source_size;
	/* an image, or a compressed, piped or windowed one (no spool: a
	 * stream of unknown size needs --size) */
	r = vd_convert_open_source(&src, src_path, NULL, &co, err);
	if (r < 0)
		return r;
	/* a source read once is verified against the digest of what the
	 * copy wrote (chash.c), not read a second time */
	if (o->verify && vd_stream_kind(src)) {
		if (vd_chash_init(&ch) < 0) {
			vd_close(src, NULL);
			return vd_set_error(err, ENOMEM, "out of memory");
		}
		st.hash = &ch;
	}
	isize = vd_size(src);
	res->image_size = isize;
	if (o->direct)
		hflags |= VD_HOST_DIRECT;
	/* the guard (mounted, swap, holders, other openers, a loop device on
	 * a file of the source) before anything is opened for writing */
	hflags |= VD_HOST_GUARD | (o->force ? VD_HOST_FORCE_BUSY : 0);
	r = vd_host_open_file(&h, dev_path, hflags, err);
	if (r < 0) {
		char msg[VD_ERROR_MSG_MAX];
		snprintf(msg, sizeof(msg), "%s", err ? err->msg : "");
		r = vd_set_error(err, -r, "%s; nothing was written", msg);
		goto out;
	}
	if (!h->is_blockdev) {
		vd_host_close(h);
		r = vd_set_error(err, ENOTBLK, "%s: not a block device", dev_path);
		goto out;
	}
	if (same_device(vd_image_host(src), h)) {
		vd_host_close(h);
		r = vd_set_error(err, EINVAL, "%s: source and target are the same device", dev_path);
		goto out;
	}
	snprintf(res->warning, sizeof(res->warning), "%s", h->warning);
	{
		char sig[128];
		signature(h->fd, sig, sizeof(sig));
		if (sig[0] && !o->force) {
			vd_host_close(h);
			r = vd_set_error(err, EEXIST,
					 "%s: the device holds %s; --force overwrites it; nothing was written",
					 dev_path, sig);
			goto out;
		}
		if (sig[0]) {
			size_t n = strlen(res->warning);
			snprintf(res->warning + n, sizeof(res->warning) - n, "%s%s: overwriting %s (--force)",
				 n ? "; " : "", dev_path, sig);
		}
	}
	r = vd_open_host(&dst, h, "raw", VD_OPEN_RDWR | VD_OPEN_ALLOW_DEVICES, err);
	if (r < 0)
		goto out;
	res->device_size = vd_size(dst);
	res->sector_size = h->sector_size;
	if (vd_size(dst) < isize) {
		r = vd_set_error(err, ENOSPC,
				 "%s: device is smaller (%llu bytes) than the image %s (%llu bytes); nothing was written",
				 dev_path, (unsigned long long)vd_size(dst), src_path,
				 (unsigned long long)isize);
		goto out;
	}
	if (vd_size(dst) % h->sector_size == 0)
		vd_image_set_align(dst, h->sector_size);
	covered = VD_MIN(VD_ALIGN_UP(isize, (uint64_t)VD_SECTOR), vd_size(dst));
	res->tail_kept = vd_size(dst) - covered;

	co.min_sparse = 4096;
	co.progress = o->progress;
	co.progress_ctx = o->progress_ctx;
	co.cancel = o->cancel;
	t0 = now();
	res->started = true;
	r = vd_copy_image(src, dst, o->target_is_zero, &co, &st, err);
	if (r == 0 && !o->target_is_zero && covered > isize) {
		/* the rest of the sector holding the image's last byte */
		r = vd_write_zeroes(dst, isize, covered - isize, 0, err);
		if (r == 0)
			st.zero_bytes += covered - isize;
	}
	res->data_bytes = st.data_bytes;
	res->zero_bytes = st.zero_bytes;
	res->zeroed_fast = VD_MIN(h->zeroed_fast, st.zero_bytes);
	res->reached = r == 0 ? isize : st.reached;
	res->copy_seconds = now() - t0;
	if (r < 0)
		goto out;
	t0 = now();
	r = vd_flush(dst, err);
	res->flush_seconds = now() - t0;
	if (r < 0) {
		res->reached = 0; /* nothing is known to be on the device */
		goto out;
	}
	if (o->verify && st.hash) {
		t0 = now();
		posix_fadvise(h->fd, 0, 0, POSIX_FADV_DONTNEED);
		r = verify_digest(dst, isize, &ch, o, &res->verify_diff, err);
		res->verify_seconds = now() - t0;
		if (r == 1)
			r = vd_set_error(err, EIO,
					 "%s: verification failed: what the device holds differs from what was written from %s (compared by content digest, which cannot say where)",
					 dev_path, src_path);
		else if (r == 0)
			res->verified = true;
		else if (r != -ECANCELED)
			vd_prefix_error(err, "%s: verification", dev_path);
	} else if (o->verify) {
		struct vd_compare_opts cmp = { 0 };
		uint64_t diff = 0;

		/* read the device, not the page cache */
		posix_fadvise(h->fd, 0, 0, POSIX_FADV_DONTNEED);
		cmp.progress = o->progress;
		cmp.progress_ctx = o->progress_ctx;
		cmp.cancel = o->cancel;
		t0 = now();
		cmp.length = isize; /* the image's range only */
		r = vd_compare(src, dst, &cmp, &diff, err);
		res->verify_seconds = now() - t0;
		if (r == 1) {
			res->verify_diff = diff;
			r = vd_set_error(err, EIO,
					 "%s: verification failed: the device differs from %s at offset %llu",
					 dev_path, src_path, (unsigned long long)diff);
		} else if (r == 0) {
			res->verified = true;
		} else if (r != -ECANCELED) {
			vd_prefix_error(err, "%s: verification", dev_path);
		}
	}
out:
	r2 = vd_close(dst, r < 0 ? NULL : err);
	if (r == 0)
		r = r2;
	vd_close(src, NULL);
	vd_chash_free(&ch);
	return r;
}
