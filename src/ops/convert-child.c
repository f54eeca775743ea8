/*
 * convert -B PARENT: copy SRC as a new child of PARENT holding only what
 * differs (qemu-img convert -B).  Each range where SRC's guest view and
 * PARENT's differ is written into the child (zeros too: they must hide
 * PARENT's data); ranges where both read as zeros by block status, or whose
 * bytes are equal, are left to the parent.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "../core/ops.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>

#define CHUNK (1u << 20)

static bool reads_zero(struct vd_image *img, uint64_t off, uint64_t len, struct vd_error *err)
{
	struct vd_extent e;

	if (off >= vd_size(img))
		return true;
	return vd_block_status(img, off, VD_MIN(len, vd_size(img) - off), &e, err) == 0 &&
	       (e.flags & VD_BS_ZERO) && e.length >= VD_MIN(len, vd_size(img) - off);
}

static int read_padded(struct vd_image *img, uint64_t off, uint8_t *buf, size_t len,
		       struct vd_error *err)
{
	size_t n = off < vd_size(img) ? (size_t)VD_MIN((uint64_t)len, vd_size(img) - off) : 0;
	int r = n ? vd_read(img, off, buf, n, err) : 0;

	if (r == 0 && n < len)
		memset(buf + n, 0, len - n);
	return r;
}

int vd_convert_child(const char *src_path, const char *dst_path, const struct vd_convert_opts *o,
		     struct vd_error *err)
{
	struct vd_image *src = NULL, *par = NULL, *par2 = NULL, *dst = NULL;
	struct vd_host *h = NULL;
	struct vd_tmp tmp = { 0 };
	uint8_t *a = NULL, *b = NULL;
	char *ppath = NULL, *dup;
	uint64_t off = 0, size, unit;
	int r, r2;

	if (o->existing_target)
		return vd_set_error(err, EINVAL, "-B (a new child) does not go with -n");
	dup = strdup(dst_path);
	if (!dup)
		return vd_set_error(err, ENOMEM, "out of memory");
	if (o->backing[0] == '/' || !strcmp(dirname(dup), "."))
		ppath = strdup(o->backing);
	else if (asprintf(&ppath, "%s/%s", dup, o->backing) < 0)
		ppath = NULL;
	free(dup);
	if (!ppath)
		return vd_set_error(err, ENOMEM, "out of memory");
	r = vd_open(&src, src_path, o->src_format, o->src_open_flags, err);
	if (r == 0) {
		r = vd_open(&par, ppath, NULL, 0, err);
		if (r < 0)
			vd_prefix_error(err, "%s: its parent", dst_path);
	}
	if (r == 0 && vd_size(src) != vd_size(par))
		r = vd_set_error(err, EINVAL, "%s: the source (%llu bytes) and the parent %s (%llu bytes) differ in size",
				 dst_path, (unsigned long long)vd_size(src), ppath,
				 (unsigned long long)vd_size(par));
	if (r == 0)
		r = vd_tmp_begin(&tmp, dst_path, o->force, err);
	if (r < 0)
		goto out;
	tmp.no_sync = o->no_sync;
	r = vd_host_open_file(&h, tmp.tmp, VD_HOST_RDWR | (o->no_sync ? VD_HOST_NO_SYNC : 0), err);
	if (r == 0) {
		r = vd_create_child_in_tmp(h, &tmp, o->dst_format, par, o->backing, o->dst_opts,
					   o->create_flags, err);
		if (r < 0) {
			vd_host_close(h);
			goto out;
		}
		/* the child as written, with its parent attached directly (a
		 * child in a temporary file is not found by name) */
		r = vd_open_host(&dst, h, o->dst_format, VD_OPEN_RDWR | VD_OPEN_NO_BACKING, err);
	}
	if (r == 0)
		r = vd_open(&par2, ppath, NULL, 0, err);
	if (r == 0)
		r = vd_chain_set_backing(dst, par2, err);
	if (r < 0)
		goto out;
	a = vd_aligned_alloc(CHUNK, err);
	b = a ? vd_aligned_alloc(CHUNK, err) : NULL;
	if (!b) {
		r = -ENOMEM;
		goto out;
	}
	size = vd_size(src);
	unit = vd_chain_unit(dst) ? vd_chain_unit(dst) : CHUNK;
	unit = VD_MIN(unit, (uint64_t)CHUNK);
	while (off < size) {
		uint64_t n = VD_MIN(size - off, (uint64_t)CHUNK);

		if (vd_cancelled(o->cancel)) {
			r = vd_set_error(err, ECANCELED, "interrupted");
			goto out;
		}
		if (!(reads_zero(src, off, n, err) && reads_zero(par, off, n, err))) {
			vd_error_clear(err);
			r = read_padded(src, off, a, (size_t)n, err);
			if (r == 0)
				r = read_padded(par, off, b, (size_t)n, err);
			/* only the allocation units that differ */
			for (uint64_t u = 0; r == 0 && u < n; u += unit) {
				size_t m = (size_t)VD_MIN(unit, n - u);
				if (!memcmp(a + u, b + u, m))
					continue;
				r = vd_is_zero(a + u, m) ? vd_write_zeroes(dst, off + u, m, 0, err)
							 : vd_write(dst, off + u, a + u, m, err);
			}
			if (r < 0)
				goto out;
		}
		off += n;
		if (o->progress)
			o->progress(o->progress_ctx, off, size);
	}
out:
	r2 = vd_close(dst, r < 0 ? NULL : err);
	if (r == 0)
		r = r2;
	vd_close(src, NULL);
	vd_close(par, NULL);
	if (tmp.tmp) {
		if (r == 0)
			r = vd_tmp_commit(&tmp, o->force, err);
		else
			vd_tmp_abort(&tmp);
	}
	free(a);
	free(b);
	free(ppath);
	return r;
}
