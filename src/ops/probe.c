/*
 * What is inside a range of the guest disk, found by libblkid.
 *
 * libblkid reads from a file descriptor, and the guest contents of a VDI or
 * VMDK image are not a contiguous range of the image file.  So the range is
 * copied through the block-I/O layer into a sparse memory file
 * (memfd_create) of the range's full length: the first PROBE_HEAD bytes
 * (every superblock libblkid looks for in the filesystems vdisk cares about
 * lives there: FAT, ext2/3/4, XFS, swap, btrfs, NTFS, ISO 9660, LVM, LUKS)
 * and the last PROBE_TAIL bytes (RAID and other end-of-device signatures).
 * Ranges that read as zeros are not copied, so memory stays bounded by
 * PROBE_HEAD + PROBE_TAIL whatever the partition size, and libblkid sees
 * the real size.  The same path serves every format, raw included.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "../core/ops.h"

#include <blkid/blkid.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define PROBE_HEAD (4u << 20)
#define PROBE_TAIL (1u << 20)
#define PROBE_CHUNK (256u << 10)

static int copy_range(struct vd_image *img, int fd, uint64_t base, uint64_t from,
		      uint64_t to, uint8_t *buf, struct vd_error *err)
{
	while (from < to) {
		struct vd_extent ext;
		size_t n = (size_t)VD_MIN((uint64_t)PROBE_CHUNK, to - from);
		int r = vd_block_status(img, base + from, n, &ext, err);

		if (r < 0)
			return r;
		n = (size_t)VD_MIN((uint64_t)n, ext.length);
		if (!(ext.flags & VD_BS_ZERO) || (ext.flags & VD_BS_DATA)) {
			r = vd_read(img, base + from, buf, n, err);
			if (r < 0)
				return r;
			if (!vd_is_zero(buf, n)) {
				ssize_t w = pwrite(fd, buf, n, (off_t)from);
				if (w != (ssize_t)n)
					return vd_set_error(err, w < 0 ? errno : EIO,
							    "probe: writing the memory copy: %s",
							    strerror(w < 0 ? errno : EIO));
			}
		}
		from += n;
	}
	return 0;
}

static void copy_value(blkid_probe pr, const char *name, char *out, size_t len)
{
	const char *v = NULL;

	out[0] = '\0';
	if (blkid_probe_lookup_value(pr, name, &v, NULL) == 0 && v)
		snprintf(out, len, "%s", v);
}

int vd_probe_content(struct vd_image *img, uint64_t off, uint64_t len,
		     struct vd_content *c, struct vd_error *err)
{
	blkid_probe pr = NULL;
	uint8_t *buf = NULL;
	int fd, r;

	memset(c, 0, sizeof(*c));
	if (off > vd_size(img) || len > vd_size(img) - off)
		return vd_set_error(err, EINVAL, "%s: probe range %" PRIu64 "+%" PRIu64 " is past the end of the disk (%" PRIu64 " bytes)",
				    vd_path(img), off, len, vd_size(img));
	if (len < 1024)
		return 0;
	fd = memfd_create("vdisk-probe", MFD_CLOEXEC);
	if (fd < 0)
		return vd_set_error(err, errno, "probe: memfd_create: %s", strerror(errno));
	if (ftruncate(fd, (off_t)len) < 0) {
		r = vd_set_error(err, errno, "probe: sizing the memory copy to %" PRIu64 " bytes: %s",
				 len, strerror(errno));
		goto out;
	}
	buf = vd_malloc(PROBE_CHUNK, err);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	r = copy_range(img, fd, off, 0, VD_MIN(len, (uint64_t)PROBE_HEAD), buf, err);
	if (r == 0 && len > PROBE_HEAD)
		r = copy_range(img, fd, off, VD_MAX((uint64_t)PROBE_HEAD, len - PROBE_TAIL), len, buf, err);
	if (r < 0)
		goto out;

	pr = blkid_new_probe();
	if (!pr) {
		r = vd_set_error(err, ENOMEM, "probe: blkid_new_probe failed");
		goto out;
	}
	if (blkid_probe_set_device(pr, fd, 0, (blkid_loff_t)len) != 0) {
		r = vd_set_error(err, EIO, "probe: blkid_probe_set_device failed");
		goto out;
	}
	blkid_probe_enable_superblocks(pr, 1);
	blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_LABEL | BLKID_SUBLKS_UUID |
						      BLKID_SUBLKS_TYPE | BLKID_SUBLKS_USAGE |
						      BLKID_SUBLKS_VERSION);
	blkid_probe_enable_partitions(pr, 1);
	r = blkid_do_safeprobe(pr);
	if (r == -2) {
		snprintf(c->type, sizeof(c->type), "ambivalent");
		snprintf(c->usage, sizeof(c->usage), "unknown");
		r = 0;
		goto out;
	}
	if (r < 0) {
		r = vd_set_error(err, EIO, "%s: libblkid failed to probe %" PRIu64 "+%" PRIu64,
				 vd_path(img), off, len);
		goto out;
	}
	if (r == 0) {
		char bs[32];

		copy_value(pr, "TYPE", c->type, sizeof(c->type));
		copy_value(pr, "USAGE", c->usage, sizeof(c->usage));
		if (!c->type[0]) {
			copy_value(pr, "PTTYPE", c->type, sizeof(c->type));
			if (c->type[0])
				snprintf(c->usage, sizeof(c->usage), "partition table");
		}
		copy_value(pr, "VERSION", c->version, sizeof(c->version));
		copy_value(pr, "LABEL", c->label, sizeof(c->label));
		copy_value(pr, "UUID", c->uuid, sizeof(c->uuid));
		if (!c->uuid[0])
			copy_value(pr, "PTUUID", c->uuid, sizeof(c->uuid));
		copy_value(pr, "BLOCK_SIZE", bs, sizeof(bs));
		c->block_size = strtoull(bs, NULL, 10);
	}
	r = 0;
out:
	if (pr)
		blkid_free_probe(pr);
	free(buf);
	close(fd);
	return r;
}
