/*
 * compare: are the guest contents of two images equal?  Ranges both images
 * report as zero are not read; a range one side reports as zero is checked
 * by reading only the other side.
 *
 * SPDX-License-Identifier: MIT
 */
#include "../core/ops.h"

#include <errno.h>
#include <stdlib.h>

#define CMP_CHUNK (1u << 20)

static bool is_zero_extent(const struct vd_extent *e)
{
	return (e->flags & VD_BS_ZERO) != 0;
}

static uint64_t first_nonzero(const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (b[i])
			return i;
	return n;
}

static uint64_t first_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (a[i] != b[i])
			return i;
	return n;
}

/* Check that [off, end) of IMG reads as zeros. 1 = not (sets *diff). */
static int check_zero_tail(struct vd_image *img, uint64_t off, uint64_t end,
			   uint8_t *buf, const struct vd_compare_opts *o,
			   uint64_t *diff, struct vd_error *err)
{
	while (off < end) {
		struct vd_extent e;
		int r;

		if (o->cancel && *o->cancel)
			return vd_set_error(err, ECANCELED, "interrupted");
		r = vd_block_status(img, off, end - off, &e, err);
		if (r < 0)
			return r;
		if (!is_zero_extent(&e)) {
			for (uint64_t p = off; p < off + e.length;) {
				size_t n = (size_t)VD_MIN((uint64_t)CMP_CHUNK, off + e.length - p);
				r = vd_read(img, p, buf, n, err);
				if (r < 0)
					return r;
				if (!vd_is_zero(buf, n)) {
					*diff = p + first_nonzero(buf, n);
					return 1;
				}
				p += n;
			}
		}
		off += e.length;
	}
	return 0;
}

int vd_compare(struct vd_image *a, struct vd_image *b,
	       const struct vd_compare_opts *o, uint64_t *diff_off,
	       struct vd_error *err)
{
	static const struct vd_compare_opts defaults;
	uint64_t sa = vd_size(a), sb = vd_size(b), common = VD_MIN(sa, sb);
	uint64_t off = 0, done = 0;
	uint8_t *ba, *bb;
	int r = 0;

	if (!o)
		o = &defaults;
	if (o->length) {
		if (sa < o->length || sb < o->length)
			return vd_set_error(err, EINVAL, "compare: %s or %s is smaller than the %llu bytes to compare",
					    vd_path(a), vd_path(b), (unsigned long long)o->length);
		sa = sb = common = o->length;
	}
	if (o->strict && sa != sb) {
		*diff_off = common;
		return 1;
	}
	ba = vd_malloc(CMP_CHUNK, err);
	bb = vd_malloc(CMP_CHUNK, err);
	if (!ba || !bb) {
		r = -ENOMEM;
		goto out;
	}
	while (off < common) {
		struct vd_extent ea, eb;
		uint64_t len;

		if (o->cancel && *o->cancel) {
			r = vd_set_error(err, ECANCELED, "interrupted");
			goto out;
		}
		r = vd_block_status(a, off, common - off, &ea, err);
		if (r == 0)
			r = vd_block_status(b, off, common - off, &eb, err);
		if (r < 0)
			goto out;
		len = VD_MIN(ea.length, eb.length);
		if (!(is_zero_extent(&ea) && is_zero_extent(&eb))) {
			for (uint64_t p = off; p < off + len;) {
				size_t n = (size_t)VD_MIN((uint64_t)CMP_CHUNK, off + len - p);
				uint64_t d;
				if (is_zero_extent(&ea) || is_zero_extent(&eb)) {
					struct vd_image *other = is_zero_extent(&ea) ? b : a;
					r = vd_read(other, p, ba, n, err);
					if (r < 0)
						goto out;
					d = vd_is_zero(ba, n) ? n : first_nonzero(ba, n);
				} else {
					r = vd_read(a, p, ba, n, err);
					if (r == 0)
						r = vd_read(b, p, bb, n, err);
					if (r < 0)
						goto out;
					d = memcmp(ba, bb, n) ? first_diff(ba, bb, n) : n;
				}
				if (d < n) {
					*diff_off = p + d;
					r = 1;
					goto out;
				}
				p += n;
			}
		}
		off += len;
		done += len;
		if (o->progress)
			o->progress(o->progress_ctx, done, VD_MAX(sa, sb));
	}
	if (sa != sb)
		r = check_zero_tail(sa > sb ? a : b, common, VD_MAX(sa, sb), ba, o, diff_off, err);
out:
	free(ba);
	free(bb);
	return r;
}
