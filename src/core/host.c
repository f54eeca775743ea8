/*
 * Host layer: regular files and block devices, plus the full-transfer
 * helpers every backend uses.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "vdisk-int.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

/* O_DIRECT needs the buffer aligned too: copy a misaligned one through an
 * aligned bounce buffer (offsets and lengths are aligned by the block-I/O
 * layer, whose img->align the caller sets to the sector size). */
#define DIO_BOUNCE (1u << 20)

static bool dio_misaligned(const struct vd_host *h, const void *buf)
{
	return h->direct && ((uintptr_t)buf % VD_MAX(h->sector_size, 512u)) != 0;
}

static ssize_t file_pread(struct vd_host *h, void *buf, size_t len, uint64_t off)
{
	ssize_t n;

	if (dio_misaligned(h, buf)) {
		void *b;
		if (posix_memalign(&b, 4096, DIO_BOUNCE) != 0)
			return -ENOMEM;
		n = pread(h->fd, b, VD_MIN(len, (size_t)DIO_BOUNCE), (off_t)off);
		if (n > 0)
			memcpy(buf, b, (size_t)n);
		else if (n < 0)
			n = -errno;
		free(b);
		return n;
	}
	n = pread(h->fd, buf, len, (off_t)off);
	return n < 0 ? -errno : n;
}

/* Crash-consistency testing: with VDISK_TEST_KILL_AFTER=N in the
 * environment, the process kills itself with SIGKILL just before its
 * (N+1)th change to a host file (write, truncate, hole punch, zero range,
 * and the rename of a new file into place: vd_crash_point).
 * The tests step N through every change an in-place operation makes and
 * check that each state it can leave is a valid image.  Unset, this costs
 * one getenv. */
void vd_crash_point(void)
{
	static long left = -2; /* -2: not read yet, -1: off */

	if (__atomic_load_n(&left, __ATOMIC_RELAXED) == -2) {
		const char *e = getenv("VDISK_TEST_KILL_AFTER");
		__atomic_store_n(&left, e && *e ? strtol(e, NULL, 10) : -1, __ATOMIC_RELAXED);
	}
	if (__atomic_load_n(&left, __ATOMIC_RELAXED) >= 0 &&
	    __atomic_fetch_sub(&left, 1, __ATOMIC_RELAXED) == 0)
		raise(SIGKILL);
}

static ssize_t file_pwrite(struct vd_host *h, const void *buf, size_t len, uint64_t off)
{
	ssize_t n;

	vd_crash_point();
	if (dio_misaligned(h, buf)) {
		void *b;
		size_t m = VD_MIN(len, (size_t)DIO_BOUNCE);
		if (posix_memalign(&b, 4096, DIO_BOUNCE) != 0)
			return -ENOMEM;
		memcpy(b, buf, m);
		n = pwrite(h->fd, b, m, (off_t)off);
		if (n < 0)
			n = -errno;
		free(b);
		return n;
	}
	n = pwrite(h->fd, buf, len, (off_t)off);
	if (n < 0)
		return -errno;
	if (h->stream_writeback && !h->no_sync && !h->is_blockdev) {
		h->unsynced += (uint64_t)n;
		if (h->unsynced >= VD_WRITEBACK_STEP) {
			/* asynchronous: only starts writeback of dirty pages */
			sync_file_range(h->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
			h->unsynced = 0;
		}
	}
	return n;
}

static int file_get_size(struct vd_host *h, uint64_t *size)
{
	struct stat st;

	if (h->is_blockdev) {
		uint64_t sz;
		if (ioctl(h->fd, BLKGETSIZE64, &sz) < 0)
			return -errno;
		*size = sz;
		return 0;
	}
	if (fstat(h->fd, &st) < 0)
		return -errno;
	*size = (uint64_t)st.st_size;
	return 0;
}

static int file_truncate(struct vd_host *h, uint64_t size)
{
	vd_crash_point();
	if (h->is_blockdev)
		return -ENOTSUP;
	return ftruncate(h->fd, (off_t)size) < 0 ? -errno : 0;
}

static int file_punch_hole(struct vd_host *h, uint64_t off, uint64_t len)
{
	vd_crash_point();
	/* On a block device this is a discard that guarantees zeros (the
	 * kernel zeroes with unmap and without fallback, else EOPNOTSUPP);
	 * BLKDISCARD does not promise zeros and is never used. */
	if (fallocate(h->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)off, (off_t)len) < 0)
		return -errno;
	return 0;
}

static int file_zero_range(struct vd_host *h, uint64_t off, uint64_t len)
{
	vd_crash_point();
	if (h->is_blockdev) {
		uint64_t r[2] = { off, len };
		return ioctl(h->fd, BLKZEROOUT, r) < 0 ? -errno : 0;
	}
	if (fallocate(h->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
		      (off_t)off, (off_t)len) < 0)
		return -errno;
	return 0;
}

static int file_allocate(struct vd_host *h, uint64_t off, uint64_t len)
{
	if (h->is_blockdev)
		return 0; /* a device is allocated by definition */
	if (fallocate(h->fd, 0, (off_t)off, (off_t)len) < 0)
		return -errno;
	return 0;
}

static int file_seek(struct vd_host *h, int whence, uint64_t off, uint64_t *res)
{
	off_t r;

	if (h->is_blockdev)
		return -ENOTSUP;
	r = lseek(h->fd, (off_t)off, whence);
	if (r < 0)
		return errno == EINVAL ? -ENOTSUP : -errno;
	*res = (uint64_t)r;
	return 0;
}

static int file_seek_data(struct vd_host *h, uint64_t off, uint64_t *data_off)
{
	return file_seek(h, SEEK_DATA, off, data_off);
}

static int file_seek_hole(struct vd_host *h, uint64_t off, uint64_t *hole_off)
{
	return file_seek(h, SEEK_HOLE, off, hole_off);
}

static int file_flush(struct vd_host *h)
{
	return fdatasync(h->fd) < 0 ? -errno : 0;
}

static int file_allocated_bytes(struct vd_host *h, uint64_t *bytes)
{
	struct stat st;

	if (h->is_blockdev)
		return file_get_size(h, bytes);
	if (fstat(h->fd, &st) < 0)
		return -errno;
	*bytes = (uint64_t)st.st_blocks * 512u;
	return 0;
}

static void file_close(struct vd_host *h)
{
	if (h->fd >= 0)
		close(h->fd);
	vd_guard_drop(h->guard);
	free(h->path);
	free(h);
}

static const struct vd_host_ops file_ops = {
	.pread = file_pread,
	.pwrite = file_pwrite,
	.get_size = file_get_size,
	.truncate = file_truncate,
	.punch_hole = file_punch_hole,
	.zero_range = file_zero_range,
	.allocate = file_allocate,
	.seek_data = file_seek_data,
	.seek_hole = file_seek_hole,
	.flush = file_flush,
	.allocated_bytes = file_allocated_bytes,
	.close = file_close,
};

int vd_host_open_file(struct vd_host **out, const char *path, unsigned flags,
		      struct vd_error *err)
{
	struct vd_guard *guard = NULL;
	struct vd_host *h;
	struct stat st;
	int oflags = O_CLOEXEC | O_NONBLOCK; /* a FIFO must not hang the open */
	char warn[256] = "";
	int fd, r;

	*out = NULL;
	if (vd_is_nbd_uri(path))
		return vd_host_open_nbd(out, path, flags, err);
	if (flags & VD_HOST_CREATE)
		oflags |= O_RDWR | O_CREAT | O_EXCL;
	else
		oflags |= (flags & VD_HOST_RDWR) ? O_RDWR : O_RDONLY;
	if (flags & VD_HOST_DIRECT)
		oflags |= O_DIRECT;
	/* The guard before the file is opened for writing: its checks look
	 * for other writers, which our own descriptor would count as. */
	if ((flags & VD_HOST_GUARD) && !(flags & VD_HOST_CREATE)) {
		r = vd_guard_take(path, NULL,
				  VD_GUARD_EXCL | (flags & VD_HOST_FORCE_BUSY ? VD_GUARD_FORCE_BUSY : 0),
				  &guard, warn, sizeof(warn), err);
		if (r < 0)
			return r;
	}
	/* O_EXCL without O_CREAT is only defined for block devices */
	if ((flags & VD_HOST_EXCL) && stat(path, &st) == 0 && S_ISBLK(st.st_mode))
		oflags |= O_EXCL;
	fd = open(path, oflags, 0666);
	if (fd < 0) {
		int e = errno;
		vd_guard_drop(guard);
		if (e == EBUSY && (oflags & O_EXCL))
			return vd_set_error(err, EBUSY,
					    "%s: device is in use (mounted, or held open exclusively by another program)",
					    path);
		if (e == EINVAL && (oflags & O_DIRECT))
			return vd_set_error(err, EINVAL, "%s: direct I/O (O_DIRECT) is not supported here", path);
		return vd_set_error(err, e, "%s: %s", path, strerror(e));
	}
	if (fstat(fd, &st) < 0) {
		r = vd_set_error(err, errno, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		r = vd_set_error(err, EINVAL, "%s: not a regular file or block device", path);
		goto fail;
	}
	if (S_ISBLK(st.st_mode) && !(flags & VD_HOST_ALLOW_DEV)) {
		r = vd_set_error(err, EPERM,
				 "%s: is a block device (pass --allow-devices to use it)", path);
		goto fail;
	}
	if (guard && !vd_guard_same(guard, &st)) {
		r = vd_set_error(err, EAGAIN, "%s: the file changed while it was being opened", path);
		goto fail;
	}
	/* readers keep out of an image a vdisk process is changing */
	if (!guard && !(oflags & (O_RDWR | O_CREAT))) {
		r = vd_guard_take(path, &st, 0, &guard, NULL, 0, err);
		if (r < 0)
			goto fail;
	}
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0) {
		r = vd_set_error(err, errno, "%s: %s", path, strerror(errno));
		goto fail;
	}
	h = calloc(1, sizeof(*h));
	if (!h || !(h->path = strdup(path))) {
		free(h);
		r = vd_set_error(err, ENOMEM, "out of memory");
		goto fail;
	}
	h->ops = &file_ops;
	h->fd = fd;
	h->guard = guard;
	snprintf(h->warning, sizeof(h->warning), "%s", warn);
	h->is_blockdev = S_ISBLK(st.st_mode);
	h->writable = (oflags & O_ACCMODE) == O_RDWR;
	h->direct = (oflags & O_DIRECT) != 0;
	h->no_sync = (flags & VD_HOST_NO_SYNC) != 0;
	h->sector_size = 512;
	if (h->is_blockdev) {
		int ss = 0;
		if (ioctl(fd, BLKSSZGET, &ss) == 0 && ss >= 512 && vd_is_pow2((uint64_t)ss))
			h->sector_size = (uint32_t)ss;
	}
	*out = h;
	return 0;
fail:
	close(fd);
	vd_guard_drop(guard);
	return r;
}

void vd_host_close(struct vd_host *h)
{
	if (h)
		h->ops->close(h);
}

/* ---- full-transfer helpers ---- */

int vd_host_pread(struct vd_host *h, void *buf, size_t len, uint64_t off,
		  struct vd_error *err)
{
	uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = h->ops->pread(h, p, len, off);
		if (n == -EINTR)
			continue;
		if (n < 0)
			return vd_set_error(err, (int)-n, "%s: read of %zu bytes at offset %llu: %s",
					    h->path, len, (unsigned long long)off, strerror((int)-n));
		if (n == 0)
			return vd_set_error(err, EIO,
					    "%s: unexpected end of file reading %zu bytes at offset %llu",
					    h->path, len, (unsigned long long)off);
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

int vd_host_pwrite(struct vd_host *h, const void *buf, size_t len, uint64_t off,
		   struct vd_error *err)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = h->ops->pwrite(h, p, len, off);
		if (n == -EINTR)
			continue;
		if (n < 0) {
			if (n == -ENOSPC)
				return vd_set_error(err, ENOSPC,
						    "%s: no space left on device writing at offset %llu",
						    h->path, (unsigned long long)off);
			return vd_set_error(err, (int)-n, "%s: write of %zu bytes at offset %llu: %s",
					    h->path, len, (unsigned long long)off, strerror((int)-n));
		}
		if (n == 0)
			return vd_set_error(err, EIO, "%s: write made no progress at offset %llu",
					    h->path, (unsigned long long)off);
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

int vd_host_size(struct vd_host *h, uint64_t *size, struct vd_error *err)
{
	int r = h->ops->get_size(h, size);
	if (r < 0)
		return vd_set_error(err, -r, "%s: cannot get size: %s", h->path, strerror(-r));
	return 0;
}

int vd_host_truncate(struct vd_host *h, uint64_t size, struct vd_error *err)
{
	int r = h->ops->truncate ? h->ops->truncate(h, size) : -ENOTSUP;
	if (r == -ENOSPC)
		return vd_set_error(err, ENOSPC, "%s: no space left on device extending the file to %llu bytes",
				    h->path, (unsigned long long)size);
	if (r < 0)
		return vd_set_error(err, -r, "%s: cannot set size to %llu: %s", h->path,
				    (unsigned long long)size, strerror(-r));
	return 0;
}

int vd_host_flush(struct vd_host *h, struct vd_error *err)
{
	int r;

	if (!h->writable || !h->ops->flush || h->no_sync)
		return 0;
	r = h->ops->flush(h);
	if (r < 0)
		return vd_set_error(err, -r, "%s: flush: %s", h->path, strerror(-r));
	return 0;
}

int vd_host_write_zeroes(struct vd_host *h, uint64_t off, uint64_t len,
			 bool may_unmap, struct vd_error *err)
{
	int r = -ENOTSUP;

	if (len == 0)
		return 0;
	if (may_unmap && h->ops->punch_hole)
		r = h->ops->punch_hole(h, off, len);
	if (r < 0 && h->ops->zero_range)
		r = h->ops->zero_range(h, off, len);
	if (r == 0) {
		h->zeroed_fast += len;
		return 0;
	}
	if (r != -ENOTSUP && r != -EOPNOTSUPP && r != -EINVAL)
		return vd_set_error(err, -r, "%s: zeroing %llu bytes at offset %llu: %s",
				    h->path, (unsigned long long)len,
				    (unsigned long long)off, strerror(-r));
	/* Fallback: write zeros. */
	while (len > 0) {
		size_t n = (size_t)VD_MIN(len, (uint64_t)VD_ZERO_BUF_SIZE);
		r = vd_host_pwrite(h, vd_zero_buf(), n, off, err);
		if (r < 0)
			return r;
		h->zeroed_written += n;
		off += n;
		len -= n;
	}
	return 0;
}

int vd_host_allocate(struct vd_host *h, uint64_t off, uint64_t len,
		     struct vd_error *err)
{
	int r = h->ops->allocate ? h->ops->allocate(h, off, len) : -ENOTSUP;

	if (r == -EOPNOTSUPP)
		r = -ENOTSUP;
	if (r < 0 && r != -ENOTSUP) {
		if (r == -ENOSPC)
			return vd_set_error(err, ENOSPC,
					    "%s: not enough free space to allocate %llu bytes",
					    h->path, (unsigned long long)len);
		return vd_set_error(err, -r, "%s: allocating %llu bytes: %s", h->path,
				    (unsigned long long)len, strerror(-r));
	}
	return r;
}

void vd_host_refine_extent(struct vd_host *h, struct vd_extent *ext)
{
	uint64_t fo = ext->offset, data, hole;
	int r;

	if (!h->ops->seek_data || !h->ops->seek_hole)
		return;
	r = h->ops->seek_data(h, fo, &data);
	if (r == -ENXIO) {
		ext->flags |= VD_BS_ZERO;
		return;
	}
	if (r < 0)
		return;
	if (data > fo) {
		ext->flags |= VD_BS_ZERO;
		ext->length = VD_MIN(ext->length, data - fo);
		return;
	}
	if (h->ops->seek_hole(h, fo, &hole) == 0 && hole > fo)
		ext->length = VD_MIN(ext->length, hole - fo);
}
