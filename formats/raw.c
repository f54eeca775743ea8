/*
 * raw: the guest disk byte for byte, in a regular file (sparse-aware) or on
 * a block device.
 *
 * SPDX-License-Identifier: MIT
 */
#include "../src/core/backend.h"

#include <errno.h>
#include <stdio.h>

static int raw_probe(const uint8_t *buf, size_t len, uint64_t file_size)
{
	(void)buf;
	(void)len;
	(void)file_size;
	return 1; /* anything is a raw image; every real format scores higher */
}

static int raw_open(struct vd_image *img, struct vd_error *err)
{
	return vd_host_size(img->host, &img->size, err);
}

static void raw_close(struct vd_image *img)
{
	(void)img;
}

static int raw_read(struct vd_image *img, uint64_t off, void *buf, size_t len,
		    struct vd_error *err)
{
	return vd_host_pread(img->host, buf, len, off, err);
}

static int raw_write(struct vd_image *img, uint64_t off, const void *buf,
		     size_t len, struct vd_error *err)
{
	return vd_host_pwrite(img->host, buf, len, off, err);
}

static int raw_write_zeroes(struct vd_image *img, uint64_t off, uint64_t len,
			    unsigned flags, struct vd_error *err)
{
	return vd_host_write_zeroes(img->host, off, len,
				    (flags & VD_ZERO_MAY_UNMAP) != 0, err);
}

static int raw_discard(struct vd_image *img, uint64_t off, uint64_t len,
		       struct vd_error *err)
{
	struct vd_host *h = img->host;
	int r;

	if (!h->ops->punch_hole)
		return -ENOTSUP;
	r = h->ops->punch_hole(h, off, len);
	if (r == -ENOTSUP || r == -EOPNOTSUPP)
		return -ENOTSUP;
	if (r < 0)
		return vd_set_error(err, -r, "%s: discard: %s", h->path, strerror(-r));
	return 0;
}

static int raw_block_status(struct vd_image *img, uint64_t off, uint64_t len,
			    struct vd_extent *ext, struct vd_error *err)
{
	struct vd_host *h = img->host;
	uint64_t data, hole;
	int r = -ENOTSUP;

	ext->offset = off;
	ext->flags = VD_BS_OFFSET_VALID;
	if (h->ops->seek_data)
		r = h->ops->seek_data(h, off, &data);
	if (r == -ENXIO) { /* no data from OFF to EOF */
		ext->length = len;
		ext->flags |= VD_BS_ZERO;
		return 0;
	}
	if (r < 0) { /* cannot tell: all data */
		ext->length = len;
		ext->flags |= VD_BS_DATA | VD_BS_ALLOCATED;
		return 0;
	}
	if (data > off) {
		ext->length = VD_MIN(len, data - off);
		ext->flags |= VD_BS_ZERO;
		return 0;
	}
	r = h->ops->seek_hole(h, off, &hole);
	if (r < 0 || hole <= off)
		hole = off + len;
	ext->length = VD_MIN(len, hole - off);
	ext->flags |= VD_BS_DATA | VD_BS_ALLOCATED;
	(void)err;
	return 0;
}

static int raw_create(struct vd_host *h, const struct vd_create_params *p,
		      struct vd_error *err)
{
	const char *prealloc = vd_opts_get(p->opts, "preallocation");
	int r;

	r = vd_opts_check_used(p->opts, "raw", err);
	if (r < 0)
		return r;
	if (prealloc && strcmp(prealloc, "off") && strcmp(prealloc, "falloc"))
		return vd_set_error(err, EINVAL,
				    "raw: preallocation must be 'off' or 'falloc', not '%s'", prealloc);
	r = vd_host_truncate(h, p->size, err);
	if (r < 0)
		return r;
	if (prealloc && !strcmp(prealloc, "falloc") && p->size) {
		r = vd_host_allocate(h, 0, p->size, err);
		if (r == -ENOTSUP)
			return vd_set_error(err, ENOTSUP, "%s: the host filesystem cannot preallocate",
					    h->path);
		if (r < 0)
			return r;
	}
	return 0;
}

static int raw_info(struct vd_image *img, struct vd_info *info, struct vd_error *err)
{
	uint64_t off = 0;

	while (off < img->size) {
		struct vd_extent e;
		int r = raw_block_status(img, off, img->size - off, &e, err);
		if (r < 0)
			return r;
		if (e.flags & VD_BS_DATA)
			info->allocated_bytes += e.length;
		off += e.length;
	}
	if (img->host->is_blockdev)
		snprintf(info->subformat, sizeof(info->subformat), "device");
	return 0;
}

/* Guest offset = file offset.  A regular file releases discarded ranges
 * (holes); a block device is a device layer whose discards free nothing in
 * an image. */
static int raw_describe(struct vd_image *img, struct vd_describe *d, struct vd_error *err)
{
	bool dev = img->host->is_blockdev;

	d->alloc = dev ? VD_ALLOC_DEVICE : VD_ALLOC_RAW;
	d->discard_releases = !dev && img->host->ops->punch_hole != NULL;
	return vd_describe_add(d, img->host->path, VD_FILE_IMAGE, VD_FILE_RW, 0, img->size, 0,
			       dev, err);
}

const struct vd_driver vd_driver_raw = {
	.name = "raw",
	.probe = raw_probe,
	.open = raw_open,
	.close = raw_close,
	.read = raw_read,
	.write = raw_write,
	.write_zeroes = raw_write_zeroes,
	.discard = raw_discard,
	.block_status = raw_block_status,
	.create = raw_create,
	.info = raw_info,
	.describe = raw_describe,
	.zero_init = true,
};
