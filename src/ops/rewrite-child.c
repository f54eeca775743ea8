/*
 * compact and defrag of a child image (differencing VDI, VMDK delta): a
 * new child of the same parent, with the same identity (UUIDs, CID, link,
 * hardware description) and block size, holding the child's own blocks in
 * guest order: data blocks as data, blocks that read as zeros (zero entries,
 * or data that is all zeros) as zero entries, which hide the parent's data;
 * what the child does not hold is left to the parent.  With --fs-aware,
 * the guest filesystems are read through the chain: a block of the child
 * that they do not use becomes a zero entry (its space is released and the
 * parent's stale data stays hidden), and the free parts of the blocks they
 * do use are written as zeros.  Renamed over the image only when complete,
 * the file mode kept.
 *
 * SPDX-License-Identifier: MIT
 */
#include "rewrite.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#define CCHUNK (1u << 20)

static void sizes(struct vd_image *img, uint64_t *file, uint64_t *host)
{
	struct vd_info in;
	struct vd_error e = { 0 };

	if (vd_get_info(img, &in, &e) == 0) {
		*file = in.file_size;
		*host = in.host_bytes;
	}
}

/* A child kept in several files (a descriptor and its extents) is replaced
 * file by file, the extents first: safe only if each new extent takes the
 * place of the old one serving the same guest range, so that every state
 * between the renames is a valid child with the same view. */
static int same_files(const char *path, const struct vd_describe *sd, struct vd_image *dst,
		      const struct vd_tmp *t, struct vd_error *err)
{
	struct vd_describe dd = { 0 };
	unsigned ns = 0, nd = 0;
	int r = vd_describe(dst, &dd, err);

	for (unsigned i = 0; r == 0 && i < sd->nfiles; i++)
		ns += sd->files[i].guest_len > 0;
	for (unsigned i = 0; r == 0 && i < dd.nfiles; i++)
		nd += dd.files[i].guest_len > 0;
	if (r == 0 && (ns != nd || (t->nextra && t->nextra != nd)))
		r = vd_set_error(err, ENOTSUP, "%s: the child has %u extent files but a new one would have %u; cannot replace them safely (use vdisk convert)",
				 path, ns, t->nextra ? t->nextra : nd);
	for (unsigned i = 0, j = 0, k = 0; r == 0 && i < sd->nfiles; i++) {
		const struct vd_file_desc *a = &sd->files[i], *b;
		struct stat s1, s2;

		if (!a->guest_len)
			continue;
		while (!dd.files[j].guest_len)
			j++;
		b = &dd.files[j++];
		if (a->guest_off != b->guest_off || a->guest_len != b->guest_len)
			r = vd_set_error(err, ENOTSUP, "%s: extent %u holds guest bytes %" PRIu64 "..%" PRIu64 " but a new child's would hold %" PRIu64 "..%" PRIu64 "; cannot replace the extent files safely (use vdisk convert)",
					 path, k + 1, a->guest_off, a->guest_off + a->guest_len - 1,
					 b->guest_off, b->guest_off + b->guest_len - 1);
		else if (t->nextra && (stat(a->path, &s1) < 0 || stat(t->extra_final[k], &s2) < 0 ||
				       s1.st_dev != s2.st_dev || s1.st_ino != s2.st_ino))
			r = vd_set_error(err, ENOTSUP, "%s: extent file %s would be replaced by %s; cannot replace the extent files safely (use vdisk convert)",
					 path, a->path, t->extra_final[k]);
		k++;
	}
	vd_describe_free(&dd);
	return r;
}

/* EMPTY: keep none of the child's blocks; PROBE: only make sure that the
 * child can be rewritten (the new child is begun, checked and removed). */
static int rewrite_child(const char *path, bool compact, bool empty, bool probe,
			 const struct vd_rewrite_opts *o, struct vd_rewrite_result *res,
			 struct vd_error *err)
{
	static const struct vd_rewrite_opts none = { 0 };
	struct vd_image *src = NULL, *par = NULL, *dst = NULL;
	struct vd_identity id;
	struct vd_create_like like = { 0 };
	struct vd_describe d = { 0 };
	struct vd_info in;
	struct vd_host *h = NULL;
	struct vd_tmp t = { 0 };
	struct stat st;
	char opts[64];
	uint8_t *buf = NULL;
	uint64_t off = 0, size, unit, nzero = 0, ndrop = 0;
	struct rw w = { 0 };
	int r, r2;

	if (!o)
		o = &none;
	memset(res, 0, sizeof(*res));
	r = vd_open(&src, path, o->format, o->open_flags | VD_OPEN_EXCLUSIVE, err);
	if (r < 0)
		return r;
	if (!vd_has_parent_link(src)) {
		vd_close(src, NULL);
		return 1;
	}
	r = vd_describe(src, &d, err);
	if (r == 0)
		r = vd_get_info(src, &in, err);
	if (r == 0)
		r = vd_get_identity(src, &id, err);
	if (r < 0)
		goto out;
	if (!d.rewritable || d.alloc != VD_ALLOC_BLOCKS) {
		r = vd_set_error(err, ENOTSUP, "%s: this child image%s%s%s cannot be rewritten (vdisk reads it only)",
				 path, d.subformat ? " (" : "", d.subformat ? d.subformat : "", d.subformat ? ")" : "");
		goto out;
	}
	for (unsigned i = 0; i < d.nfiles; i++)
		if (d.files[i].guest_len && (!d.files[i].path || d.files[i].access != VD_FILE_RW)) {
			r = vd_set_error(err, ENOTSUP, "%s: the child has a %s extent; it cannot be rewritten (use vdisk convert)",
					 path, d.files[i].path ? "read-only" : "zero");
			goto out;
		}
	if (stat(path, &st) < 0) {
		r = vd_set_error(err, errno, "%s: %s", path, strerror(errno));
		goto out;
	}
	size = vd_size(src);
	unit = d.block_size ? VD_MIN((uint64_t)d.block_size, (uint64_t)CCHUNK) : CCHUNK;
	if (o->fs_aware && compact) {
		/* the guest's view, through the chain: units of the child's
		 * block size, as in a flat image */
		w.path = path;
		w.o = o;
		w.res = res;
		w.src = src;
		w.size = size;
		w.unit = unit;
		w.nunits = (size + unit - 1) / unit;
		r = rw_free_map(&w, src, err);
		if (r < 0)
			goto out;
	}
	res->method = VD_REWRITE_NEW_FILE;
	res->format = vd_format(src);
	snprintf(res->subformat, sizeof(res->subformat), "%s", in.subformat);
	res->block_size = d.block_size;
	sizes(src, &res->file_size_before, &res->host_bytes_before);
	like.identity = &id;
	like.block_size = d.block_size;
	opts[0] = 0;
	/* the layout the new child is created with: the format's own name
	 * of it (VMDK createType), none where the format has one layout of
	 * children (VDI) */
	if (d.subformat)
		snprintf(opts, sizeof(opts), "subformat=%s", d.subformat);
	r = vd_open(&par, vd_path(vd_backing(src)), vd_format(vd_backing(src)), 0, err);
	if (r == 0)
		r = vd_tmp_begin(&t, path, true, err);
	if (r == 0)
		r = vd_host_open_file(&h, t.tmp, VD_HOST_RDWR, err);
	if (r == 0) {
		r = vd_create_child_in_tmp_like(h, &t, vd_format(src), par, vd_parent_hint(src),
						opts[0] ? opts : NULL, 0, &like, err);
		if (r < 0) {
			vd_host_close(h);
			vd_prefix_error(err, "%s: a new child like this one cannot be made", path);
		} else {
			r = vd_open_host(&dst, h, vd_format(src), VD_OPEN_RDWR | VD_OPEN_NO_BACKING, err);
		}
	}
	if (r == 0) {
		r = vd_chain_set_backing(dst, par, err);
		par = NULL; /* dst's now, also on failure */
	}
	if (r == 0 && chmod(t.tmp, st.st_mode & 07777) < 0)
		r = vd_set_error(err, errno, "%s: %s", t.tmp, strerror(errno));
	if (r == 0)
		r = same_files(path, &d, dst, &t, err);
	if (r < 0 || probe)
		goto out;
	res->files = 1 + t.nextra;
	buf = vd_aligned_alloc(CCHUNK, err);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	while (off < size) {
			struct vd_extent e;

		if (vd_cancelled(o->cancel)) {
			r = vd_set_error(err, ECANCELED, "interrupted");
			goto out;
		}
		r = vd_block_status(src, off, VD_MIN(size - off, unit - off % unit), &e, err);
		if (r < 0)
			goto out;
		if (e.depth == 0 && (e.flags & VD_BS_ALLOCATED) && empty) {
			res->blocks_before++;
		} else if (e.depth == 0 && (e.flags & VD_BS_ALLOCATED)) {
			bool zero = (e.flags & VD_BS_ZERO) != 0;
			bool unused = w.freeb && bit(w.freeb, off / unit);
			if (unused && !zero)
				res->blocks_free++;
			if (unused && !d.zero_entries) {
				/* zeros would take as much room as the data: the
				 * block is dropped, like a discard, and reads the
				 * parent's (unused) data from now on */
				res->blocks_before++;
				ndrop++;
				goto next;
			}
			if (!zero && !unused) {
				r = vd_read(src, off, buf, (size_t)e.length, err);
				if (r == 0 && w.freeb && rw_zero_pieces(&w, off, e.length, buf))
					res->blocks_free_zeroed++;
				zero = r == 0 && compact && vd_is_zero(buf, (size_t)e.length);
			}
			zero = zero || unused;
			if (r == 0 && zero) {
				/* kept as zeros (a zero entry where the format has
				 * them): it hides the parent's data, never dropped */
				r = vd_write_zeroes(dst, off, e.length, 0, err);
				if (!unused)
					res->blocks_kept++;
				nzero++;
			} else if (r == 0) {
				r = vd_write(dst, off, buf, (size_t)e.length, err);
				res->blocks_kept++;
				res->bytes_kept += e.length;
			}
			res->blocks_before++;
			if (r < 0)
				goto out;
		}
next:
		off += e.length;
		if (o->progress)
			o->progress(o->progress_ctx, off, size);
	}
	if (nzero) {
		size_t n = strlen(res->note);
		snprintf(res->note + n, sizeof(res->note) - n,
			 "%sa child image: %llu block(s) that read as zeros%s are kept as zeros (they hide the parent's data); what the child does not hold stays in the parent",
			 n ? "; " : "", (unsigned long long)nzero, w.freeb && d.zero_entries ? " or are free in the guest" : "");
	}
	if (ndrop) {
		size_t n = strlen(res->note);
		snprintf(res->note + n, sizeof(res->note) - n,
			 "%s%llu block(s) free in the guest were dropped from the child (this format stores zeros as data): they now read the parent's data, which the guest filesystems do not use",
			 n ? "; " : "", (unsigned long long)ndrop);
	}
	r = vd_close(dst, err);
	dst = NULL;
	if (r == 0) {
		vd_close(src, NULL);
		src = NULL;
		r = vd_tmp_commit(&t, true, err);
	}
	if (r == 0) {
		struct vd_image *img;
		struct vd_error e2 = { 0 };
		if (vd_open(&img, path, res->format, VD_OPEN_NO_BACKING, &e2) == 0) {
			sizes(img, &res->file_size_after, &res->host_bytes_after);
			vd_close(img, NULL);
		}
	}
out:
	r2 = vd_close(dst, NULL);
	(void)r2;
	vd_close(par, NULL);
	vd_close(src, NULL);
	if (t.tmp)
		vd_tmp_abort(&t);
	vd_describe_free(&d);
	free(w.freeb);
	free(w.pieces);
	free(buf);
	return r;
}

int vd_rewrite_child(const char *path, bool compact, const struct vd_rewrite_opts *o,
		     struct vd_rewrite_result *res, struct vd_error *err)
{
	return rewrite_child(path, compact, false, false, o, res, err);
}

int vd_rewrite_child_empty(const char *path, const char *format, bool probe,
			   const volatile int *cancel, struct vd_error *err)
{
	struct vd_rewrite_opts o = { 0 };
	struct vd_rewrite_result res;
	int r;

	o.format = format;
	o.cancel = cancel;
	r = rewrite_child(path, true, true, probe, &o, &res, err);
	return r == 1 ? vd_set_error(err, EINVAL, "%s: not a child image", path) : r;
}
