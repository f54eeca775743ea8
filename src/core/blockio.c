/*
 * The block-I/O layer: opens images (probing the format), checks bounds,
 * aligns and splits requests, does read-modify-write for unaligned I/O and
 * supplies the fallbacks for optional backend operations.  Backends trust
 * what reaches them.
 *
 * SPDX-License-Identifier: MIT
 */
#include "vdisk-int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#define PROBE_BYTES 4096u
/* Largest single request handed to a backend. */
#define MAX_TRANSFER (8u << 20)

const struct vd_driver *vd_driver_find(const char *name)
{
	for (unsigned i = 0; vd_drivers[i]; i++)
		if (!strcmp(vd_drivers[i]->name, name))
			return vd_drivers[i];
	return NULL;
}

const char *const *vd_formats(void)
{
	static const char *names[16];
	unsigned i;

	for (i = 0; vd_drivers[i] && i + 1 < VD_ARRAY_SIZE(names); i++)
		names[i] = vd_drivers[i]->name;
	names[i] = NULL;
	return names;
}

bool vd_format_can_create(const char *format)
{
	const struct vd_driver *d = vd_driver_find(format);
	return d && d->create;
}

static int probe(struct vd_host *h, const struct vd_driver **out,
		 struct vd_error *err)
{
	uint8_t buf[PROBE_BYTES];
	uint64_t size;
	size_t len;
	int r, best = -1;

	r = vd_host_size(h, &size, err);
	if (r < 0)
		return r;
	len = (size_t)VD_MIN(size, (uint64_t)sizeof(buf));
	r = vd_host_pread(h, buf, len, 0, err);
	if (r < 0)
		return r;
	*out = NULL;
	for (unsigned i = 0; vd_drivers[i]; i++) {
		int score = vd_drivers[i]->probe(buf, len, size);
		if (score > best) {
			best = score;
			*out = vd_drivers[i];
		}
	}
	if (!*out)
		return vd_set_error(err, EINVAL, "%s: unknown image format", h->path);
	if (*out == vd_driver_find("raw")) {
		/* No backend claimed it: refuse formats vdisk cannot read rather
		 * than copy their container bytes as a raw disk.  A fixed VHD
		 * has its only magic in the last 512 (or 511) bytes. */
		uint8_t tail[VD_SECTOR];
		const uint8_t *t = buf + len - VD_MIN(len, sizeof(tail));
		size_t tlen = VD_MIN(len, sizeof(tail));

		if (size > len) {
			r = vd_host_pread(h, tail, sizeof(tail), size - sizeof(tail), err);
			if (r < 0)
				return r;
			t = tail;
			tlen = sizeof(tail);
		}
		r = vd_foreign_refuse(h->path, buf, len, t, tlen, err);
		if (r < 0)
			return r;
	}
	return 0;
}

int vd_open_host(struct vd_image **out, struct vd_host *h, const char *format,
		 unsigned flags, struct vd_error *err)
{
	const struct vd_driver *drv;
	struct vd_image *img;
	int r;

	*out = NULL;
	if (format) {
		drv = vd_driver_find(format);
		if (!drv) {
			r = vd_set_error(err, EINVAL, "unknown format '%s'", format);
			goto fail;
		}
	} else {
		r = probe(h, &drv, err);
		if (r < 0)
			goto fail;
	}
	img = vd_calloc(1, sizeof(*img), err);
	if (!img) {
		r = -ENOMEM;
		goto fail;
	}
	img->drv = drv;
	img->host = h;
	img->flags = flags;
	if (flags & VD_OPEN_NO_SYNC)
		h->no_sync = true;
	img->writable = (flags & VD_OPEN_RDWR) != 0;
	img->align = 1;
	r = drv->open(img, err);
	if (r < 0) {
		free(img);
		goto fail;
	}
	if (!vd_is_pow2(img->align) || img->size % img->align ||
	    (img->split && (!vd_is_pow2(img->split) || img->split < img->align))) {
		/* a backend bug, not bad input */
		drv->close(img);
		free(img);
		r = vd_set_error(err, EINVAL, "%s: backend %s set inconsistent alignment",
				 h->path, drv->name);
		goto fail;
	}
	r = vd_chain_attach(img, err);
	if (r < 0) {
		vd_close(img, NULL);
		return r;
	}
	*out = img;
	return 0;
fail:
	vd_host_close(h);
	return r;
}

int vd_open(struct vd_image **out, const char *path, const char *format,
	    unsigned flags, struct vd_error *err)
{
	struct vd_host *h;
	unsigned hflags = 0;
	int r;

	*out = NULL;
	if (flags & VD_OPEN_RDWR)
		hflags |= VD_HOST_RDWR;
	if (flags & VD_OPEN_ALLOW_DEVICES)
		hflags |= VD_HOST_ALLOW_DEV;
	if (flags & (VD_OPEN_RDWR | VD_OPEN_EXCLUSIVE))
		hflags |= VD_HOST_GUARD;
	r = vd_host_open_file(&h, path, hflags, err);
	if (r < 0)
		return r;
	return vd_open_host(out, h, format, flags, err);
}

int vd_close(struct vd_image *img, struct vd_error *err)
{
	int r = 0;

	if (!img)
		return 0;
	if (img->writable)
		r = img->drv->finish ? vd_finish(img, err) : vd_flush(img, err);
	img->drv->close(img);
	vd_host_close(img->host);
	vd_close(img->backing, NULL);
	free(img->parent_hint);
	free(img);
	return r;
}

uint64_t vd_size(const struct vd_image *img)
{
	return img->size;
}

const char *vd_format(const struct vd_image *img)
{
	return img->drv->name;
}

const char *vd_path(const struct vd_image *img)
{
	return img->host->path;
}

static int check_request(struct vd_image *img, uint64_t off, uint64_t len,
			 bool write, struct vd_error *err)
{
	if (write && !img->writable)
		return vd_set_error(err, EROFS, "%s: image is open read-only", img->host->path);
	if (write && img->finished)
		return vd_set_error(err, EROFS, "%s: the image was finished; it takes no more writes",
				    img->host->path);
	if (write && img->has_parent && !img->backing)
		return vd_set_error(err, EROFS, "%s: a child image opened without its parent cannot be written (what it does not hold would be lost)",
				    img->host->path);
	if (off > img->size || len > img->size - off)
		return vd_set_error(err, EINVAL,
				    "%s: request of %llu bytes at offset %llu is beyond the end of the image (%llu bytes)",
				    img->host->path, (unsigned long long)len,
				    (unsigned long long)off, (unsigned long long)img->size);
	return 0;
}

/* Length of the piece starting at OFF that stays inside one split unit and
 * under MAX_TRANSFER. */
static uint64_t piece_len(const struct vd_image *img, uint64_t off, uint64_t len)
{
	uint64_t n = VD_MIN(len, (uint64_t)MAX_TRANSFER);

	if (img->split) {
		uint64_t to_boundary = img->split - (off % img->split);
		n = VD_MIN(n, to_boundary);
	}
	return n;
}

/* Aligned, in-bounds read split into backend-sized pieces. */
static int read_aligned(struct vd_image *img, uint64_t off, uint8_t *buf,
			uint64_t len, struct vd_error *err)
{
	while (len > 0) {
		uint64_t n = piece_len(img, off, len);
		int r = img->drv->read(img, off, buf, (size_t)n, err);
		if (r < 0)
			return r;
		off += n;
		buf += n;
		len -= n;
	}
	return 0;
}

static int write_plain(struct vd_image *img, uint64_t off, const uint8_t *buf,
		       uint64_t len, struct vd_error *err)
{
	while (len > 0) {
		uint64_t n = piece_len(img, off, len);
		int r = img->drv->write(img, off, buf, (size_t)n, err);
		if (r < 0)
			return r;
		off += n;
		buf += n;
		len -= n;
	}
	return 0;
}

/* True when IMG's own layer holds the allocation unit at OFF (a unit it
 * does not hold reads from the parent). */
static int layer_holds(struct vd_image *img, uint64_t off, uint64_t len, bool *holds,
		       struct vd_error *err)
{
	struct vd_extent e;
	int r;

	*holds = true;
	if (!img->drv->block_status)
		return 0;
	memset(&e, 0, sizeof(e));
	e.start = off;
	r = img->drv->block_status(img, off, len, &e, err);
	if (r < 0)
		return r;
	*holds = (e.flags & VD_BS_ALLOCATED) != 0;
	return 0;
}

/* Writes into a child: a write that covers only part of an allocation unit
 * the child does not hold yet is widened to the whole unit, the rest read
 * through the chain (copy-on-write), so the backend's new block holds the
 * parent's bytes around the write, never zeros. */
static int write_aligned(struct vd_image *img, uint64_t off, const uint8_t *buf,
			 uint64_t len, struct vd_error *err)
{
	uint64_t unit = img->cow_unit ? img->cow_unit : img->split;
	uint8_t *bounce = NULL;
	int r = 0;

	if (!img->has_parent || !unit)
		return write_plain(img, off, buf, len, err);
	while (len > 0 && r == 0) {
		uint64_t ustart = VD_ALIGN_DOWN(off, unit);
		uint64_t uend = VD_MIN(ustart + unit, img->size);
		uint64_t n = VD_MIN(len, uend - off);
		bool holds = true;

		if (off == ustart && (len >= unit || off + len == img->size)) {
			/* whole units: one write, the backend may batch them */
			n = off + len == img->size ? len : VD_ALIGN_DOWN(len, unit);
		} else {
			r = layer_holds(img, ustart, uend - ustart, &holds, err);
		}
		if (r == 0 && holds) {
			r = write_plain(img, off, buf, n, err);
		} else if (r == 0) {
			if (!bounce && !(bounce = vd_aligned_alloc((size_t)unit, err)))
				return -ENOMEM;
			r = read_aligned(img, ustart, bounce, uend - ustart, err);
			if (r == 0) {
				memcpy(bounce + (off - ustart), buf, (size_t)n);
				r = write_plain(img, ustart, bounce, uend - ustart, err);
			}
		}
		off += n;
		buf += n;
		len -= n;
	}
	free(bounce);
	return r;
}

int vd_read(struct vd_image *img, uint64_t off, void *buf, size_t len,
	    struct vd_error *err)
{
	uint32_t a = img->align;
	uint8_t *p = buf;
	uint8_t *bounce;
	int r;

	r = check_request(img, off, len, false, err);
	if (r < 0 || len == 0)
		return r;
	if (off % a == 0 && len % a == 0)
		return read_aligned(img, off, p, len, err);

	bounce = vd_aligned_alloc(a, err);
	if (!bounce)
		return -ENOMEM;
	if (off % a) { /* head */
		uint64_t base = VD_ALIGN_DOWN(off, a);
		size_t skip = (size_t)(off - base);
		size_t n = VD_MIN(len, (size_t)a - skip);
		r = read_aligned(img, base, bounce, a, err);
		if (r < 0)
			goto out;
		memcpy(p, bounce + skip, n);
		p += n;
		off += n;
		len -= n;
	}
	if (len >= a) { /* middle */
		size_t n = VD_ALIGN_DOWN(len, a);
		r = read_aligned(img, off, p, n, err);
		if (r < 0)
			goto out;
		p += n;
		off += n;
		len -= n;
	}
	if (len > 0) { /* tail */
		r = read_aligned(img, off, bounce, a, err);
		if (r < 0)
			goto out;
		memcpy(p, bounce, len);
	}
	r = 0;
out:
	free(bounce);
	return r;
}

/* Read-modify-write of the single aligned unit at BASE. */
static int rmw_unit(struct vd_image *img, uint8_t *bounce, uint64_t base,
		    size_t skip, const uint8_t *src, size_t n, struct vd_error *err)
{
	int r = read_aligned(img, base, bounce, img->align, err);
	if (r < 0)
		return r;
	if (src)
		memcpy(bounce + skip, src, n);
	else
		memset(bounce + skip, 0, n);
	return write_aligned(img, base, bounce, img->align, err);
}

/* Write SRC (or zeros when SRC is NULL, through the unaligned edges only). */
static int write_unaligned(struct vd_image *img, uint64_t off, const uint8_t *src,
			   uint64_t len, uint64_t *mid_off, uint64_t *mid_len,
			   struct vd_error *err)
{
	uint32_t a = img->align;
	uint8_t *bounce;
	int r = 0;

	bounce = vd_aligned_alloc(a, err);
	if (!bounce)
		return -ENOMEM;
	if (off % a) {
		uint64_t base = VD_ALIGN_DOWN(off, a);
		size_t skip = (size_t)(off - base);
		size_t n = (size_t)VD_MIN(len, (uint64_t)(a - skip));
		r = rmw_unit(img, bounce, base, skip, src, n, err);
		if (r < 0)
			goto out;
		if (src)
			src += n;
		off += n;
		len -= n;
	}
	*mid_off = off;
	*mid_len = VD_ALIGN_DOWN(len, a);
	off += *mid_len;
	len -= *mid_len;
	if (len > 0)
		r = rmw_unit(img, bounce, off, 0, src ? src + *mid_len : NULL, (size_t)len, err);
out:
	free(bounce);
	return r;
}

int vd_write(struct vd_image *img, uint64_t off, const void *buf, size_t len,
	     struct vd_error *err)
{
	uint64_t mid_off, mid_len;
	int r;

	r = check_request(img, off, len, true, err);
	if (r < 0 || len == 0)
		return r;
	if (!img->drv->write)
		return vd_set_error(err, ENOTSUP, "%s: format %s cannot be written",
				    img->host->path, img->drv->name);
	if (off % img->align == 0 && len % img->align == 0)
		return write_aligned(img, off, buf, len, err);
	r = write_unaligned(img, off, buf, len, &mid_off, &mid_len, err);
	if (r < 0)
		return r;
	return write_aligned(img, mid_off, (const uint8_t *)buf + (mid_off - off), mid_len, err);
}

static int zeroes_aligned(struct vd_image *img, uint64_t off, uint64_t len,
			  unsigned flags, struct vd_error *err)
{
	while (len > 0) {
		uint64_t n = img->split ? piece_len(img, off, len) : len;
		int r = -ENOTSUP;

		if (!img->split && n > (1ull << 30))
			n = 1ull << 30;
		/* a child's backend would leave what it does not hold to the
		 * parent: write zero buffers, which hide the parent's data */
		if (img->drv->write_zeroes && !img->has_parent)
			r = img->drv->write_zeroes(img, off, n, flags, err);
		if (r == -ENOTSUP) {
			/* fallback: write zero buffers */
			uint64_t o = off, left = n;
			vd_error_clear(err);
			while (left > 0) {
				uint64_t m = VD_MIN(left, (uint64_t)VD_ZERO_BUF_SIZE);
				r = write_aligned(img, o, vd_zero_buf(), m, err);
				if (r < 0)
					return r;
				o += m;
				left -= m;
			}
			r = 0;
		}
		if (r < 0)
			return r;
		off += n;
		len -= n;
	}
	return 0;
}

int vd_write_zeroes(struct vd_image *img, uint64_t off, uint64_t len,
		    unsigned flags, struct vd_error *err)
{
	uint64_t mid_off = off, mid_len = len;
	int r;

	r = check_request(img, off, len, true, err);
	if (r < 0 || len == 0)
		return r;
	if (!img->drv->write)
		return vd_set_error(err, ENOTSUP, "%s: format %s cannot be written",
				    img->host->path, img->drv->name);
	if (off % img->align || len % img->align) {
		r = write_unaligned(img, off, NULL, len, &mid_off, &mid_len, err);
		if (r < 0)
			return r;
	}
	return zeroes_aligned(img, mid_off, mid_len, flags, err);
}

int vd_discard(struct vd_image *img, uint64_t off, uint64_t len,
	       struct vd_error *err)
{
	uint64_t end;
	int r;

	r = check_request(img, off, len, true, err);
	if (r < 0 || len == 0 || !img->drv->discard)
		return r;
	/* discarding a child's block must not expose the parent's data */
	if (img->has_parent && !img->drv->discard_hides_parent)
		return 0;
	/* Only whole aligned units can be discarded; the edges are left as is. */
	end = VD_ALIGN_DOWN(off + len, img->align);
	off = VD_ALIGN_UP(off, img->align);
	while (off < end) {
		uint64_t n = img->split ? piece_len(img, off, end - off) : end - off;
		r = img->drv->discard(img, off, n, err);
		if (r == -ENOTSUP) {
			vd_error_clear(err);
			return 0;
		}
		if (r < 0)
			return r;
		off += n;
	}
	return 0;
}

int vd_flush(struct vd_image *img, struct vd_error *err)
{
	int r;

	if (!img->writable)
		return 0;
	if (img->drv->flush) {
		r = img->drv->flush(img, err);
		if (r < 0)
			return r;
	}
	return vd_host_flush(img->host, err);
}

int vd_finish(struct vd_image *img, struct vd_error *err)
{
	int r;

	if (!img->writable)
		return 0;
	if (img->drv->finish) {
		/* again after a failure: the backend reports it again */
		r = img->drv->finish(img, err);
		if (r < 0)
			return r;
		img->finished = true;
	}
	return vd_flush(img, err);
}

int vd_block_status(struct vd_image *img, uint64_t off, uint64_t len,
		    struct vd_extent *ext, struct vd_error *err)
{
	int r;

	r = check_request(img, off, len, false, err);
	if (r < 0)
		return r;
	if (len == 0)
		return vd_set_error(err, EINVAL, "%s: block status of an empty range",
				    img->host->path);
	memset(ext, 0, sizeof(*ext));
	ext->start = off;
	if (!img->drv->block_status) {
		ext->length = len;
		ext->flags = VD_BS_DATA | VD_BS_ALLOCATED;
		return 0;
	}
	r = img->drv->block_status(img, off, len, ext, err);
	if (r < 0)
		return r;
	if (ext->length == 0 || ext->start != off)
		return vd_set_error(err, EIO, "%s: backend %s returned an empty extent at %llu",
				    img->host->path, img->drv->name, (unsigned long long)off);
	if (ext->length > len)
		ext->length = len;
	ext->depth = 0;
	/* not in this layer: the chain decides what it reads as */
	if (!(ext->flags & VD_BS_ALLOCATED)) {
		if (!img->backing)
			ext->flags |= VD_BS_ZERO;
		else
			return vd_chain_status(img, ext, err);
	}
	return 0;
}

int vd_get_info(struct vd_image *img, struct vd_info *info, struct vd_error *err)
{
	int r;

	memset(info, 0, sizeof(*info));
	info->format = img->drv->name;
	info->virtual_size = img->size;
	r = vd_host_size(img->host, &info->file_size, err);
	if (r < 0)
		return r;
	if (img->host->ops->allocated_bytes)
		img->host->ops->allocated_bytes(img->host, &info->host_bytes);
	else
		info->host_bytes_unknown = true;
	if (img->drv->info) {
		r = img->drv->info(img, info, err);
		if (r < 0)
			return r;
	} else {
		/* Generic: sum of data extents, cost grows with the extent count. */
		uint64_t off = 0;
		while (off < img->size) {
			struct vd_extent e;
			r = vd_block_status(img, off, img->size - off, &e, err);
			if (r < 0)
				return r;
			if ((e.flags & VD_BS_DATA) && e.depth == 0)
				info->allocated_bytes += e.length;
			off += e.length;
		}
	}
	return 0;
}

void vd_info_add(struct vd_info *info, const char *key, bool is_number,
		 const char *fmt, ...)
{
	struct vd_info_kv *kv;
	va_list ap;

	if (info->nextra >= VD_INFO_MAX_EXTRA)
		return;
	kv = &info->extra[info->nextra++];
	snprintf(kv->key, sizeof(kv->key), "%s", key);
	kv->is_number = is_number;
	va_start(ap, fmt);
	vsnprintf(kv->value, sizeof(kv->value), fmt, ap);
	va_end(ap);
}

void vd_check_note(struct vd_check *res, int kind, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (!res || !res->note)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	res->note(res->ctx, kind, msg);
}

int vd_check(struct vd_image *img, bool repair, struct vd_check *res,
	     struct vd_error *err)
{
	if (repair && !img->writable)
		return vd_set_error(err, EROFS, "%s: repair needs the image open read-write",
				    img->host->path);
	res->corruptions = res->leaks = res->corruptions_fixed = res->leaks_fixed = 0;
	res->leaked_bytes = 0;
	int r;

	if (!img->drv->check)
		return vd_set_error(err, ENOTSUP, "%s: format %s has no metadata to check",
				    img->host->path, img->drv->name);
	r = img->drv->check(img, repair, res, err);
	if (r == 0 && img->backing_problem[0]) {
		/* a broken link: a missing parent, or one changed since */
		vd_check_note(res, VD_CHECK_NOTE_ERROR, "%s", img->backing_problem);
		res->corruptions++;
	}
	return r;
}

bool vd_image_zero_init(const struct vd_image *img)
{
	return img->drv->zero_init;
}

bool vd_image_checkable(const struct vd_image *img)
{
	return img->drv->check != NULL;
}

bool vd_image_is_format(const struct vd_image *img, const char *format)
{
	return format && vd_driver_find(format) == img->drv;
}

struct vd_host *vd_image_host(const struct vd_image *img)
{
	return img->host;
}

bool vd_image_same_file(const struct vd_image *a, const struct vd_image *b)
{
	struct stat sa, sb;

	if (a->host->fd < 0 || b->host->fd < 0 || fstat(a->host->fd, &sa) < 0 ||
	    fstat(b->host->fd, &sb) < 0)
		return false;
	if (S_ISBLK(sa.st_mode) && S_ISBLK(sb.st_mode))
		return sa.st_rdev == sb.st_rdev;
	return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

void vd_image_set_stream_writeback(struct vd_image *img, bool on)
{
	img->host->stream_writeback = on;
}

void vd_image_set_allocate_zero_writes(struct vd_image *img, bool on)
{
	img->allocate_zero_writes = on;
}

void vd_image_set_align(struct vd_image *img, uint32_t align)
{
	img->align = align;
}

bool vd_format_reads_as_raw(const char *format)
{
	const struct vd_driver *d = vd_driver_find(format);
	return d && d == vd_driver_find("raw");
}
