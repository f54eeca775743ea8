/*
 * Operations on snapshot chains: commit (merge a child into its parent)
 * and rebase (link a child to another parent, keeping or not keeping the
 * guest view).  They use only the chain contract: vd_backing, block status
 * depths, and the backends' set_parent / new_modification.
 *
 * Crash safety.  commit writes the child's blocks into the parent in place
 * (the backends' writes leave a valid image at every point), then gives the
 * parent a new modification identity, then relinks the child (and, asked
 * to, rewrites it as an empty child in a new file renamed over it) or
 * removes it:
 * killed while copying, the child is intact and still linked, its guest view
 * unchanged, and commit can simply be run again.  Safe rebase writes into
 * the child, where the guest view is the same before and after each write,
 * then changes the link in one metadata write.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "../core/ops.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define CHUNK (1u << 20)

/* The parent of CHILD as the chain finds it (opened and closed again, so
 * that it can be opened for writing). */
static int parent_path(const char *child, const char *format, char **out, struct vd_error *err)
{
	struct vd_image *img;
	int r;

	*out = NULL;
	r = vd_open(&img, child, format, 0, err);
	if (r < 0)
		return r;
	if (!vd_backing(img))
		r = vd_set_error(err, EINVAL, "%s: not a child image: it has no parent", child);
	else if (!(*out = strdup(vd_path(vd_backing(img)))))
		r = vd_set_error(err, ENOMEM, "out of memory");
	vd_close(img, NULL);
	return r;
}

static void progress(vd_progress_fn fn, void *ctx, uint64_t done, uint64_t total)
{
	if (fn)
		fn(ctx, done, total);
}

int vd_commit(const char *child, const char *format, const struct vd_commit_opts *o,
	      struct vd_commit_result *res, struct vd_error *err)
{
	struct vd_image *c = NULL, *p = NULL;
	struct vd_identity pid;
	struct vd_describe d = { 0 };
	char *ppath = NULL;
	uint8_t *buf = NULL;
	uint64_t off = 0, size;
	bool empty = false;
	int r;

	memset(res, 0, sizeof(*res));
	if (o->remove_child && o->empty_child)
		return vd_set_error(err, EINVAL, "remove and empty exclude each other");
	r = parent_path(child, format, &ppath, err);
	if (r < 0)
		return r;
	snprintf(res->parent, sizeof(res->parent), "%s", ppath);
	if (o->empty_child) {
		/* what emptying needs, checked before anything is written */
		r = vd_rewrite_child_empty(child, format, true, o->cancel, err);
		if (r < 0) {
			vd_prefix_error(err, "cannot empty the child after the commit (nothing was written; commit without --empty, or with --remove)");
			goto out;
		}
	}
	/* the parent for writing (exclusive), the child alone (its own layer:
	 * what it does not hold is not copied) and guarded against writers */
	r = vd_open(&p, ppath, NULL, VD_OPEN_RDWR, err);
	if (r == 0)
		r = vd_open(&c, child, format, VD_OPEN_NO_BACKING | VD_OPEN_RDWR, err);
	if (r < 0)
		goto out;
	size = vd_size(c);
	if (size > vd_size(p)) {
		r = vd_set_error(err, EINVAL, "%s: the child (%llu bytes) is larger than its parent %s (%llu bytes)",
				 child, (unsigned long long)size, ppath, (unsigned long long)vd_size(p));
		goto out;
	}
	if (o->remove_child) {
		r = vd_describe(c, &d, err);
		if (r < 0)
			goto out;
	}
	buf = vd_aligned_alloc(CHUNK, err);
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
		r = vd_block_status(c, off, VD_MIN(size - off, (uint64_t)CHUNK), &e, err);
		if (r < 0)
			goto out;
		if (e.flags & VD_BS_ALLOCATED) {
			if ((e.flags & VD_BS_ZERO) || !(e.flags & VD_BS_DATA)) {
				r = vd_write_zeroes(p, off, e.length, 0, err);
				res->zero_bytes += e.length;
			} else {
				r = vd_read(c, off, buf, (size_t)e.length, err);
				if (r == 0)
					r = vd_write(p, off, buf, (size_t)e.length, err);
				res->data_bytes += e.length;
			}
			if (r < 0)
				goto out;
		}
		off += e.length;
		progress(o->progress, o->progress_ctx, off, size);
	}
	r = vd_flush(p, err);
	/* children made before this commit (siblings of CHILD) must see that
	 * their parent changed */
	if (r == 0)
		r = vd_chain_new_modification(p, err);
	if (r == 0)
		r = vd_flush(p, err);
	if (r == 0)
		r = vd_get_identity(p, &pid, err);
	if (r < 0)
		goto out;
	if (!o->remove_child) {
		/* the child keeps what it held (now also the parent's): linked to
		 * the parent as it is now, its guest view unchanged */
		r = vd_chain_relink(c, &pid, NULL, err);
		if (r == 0)
			r = vd_flush(c, err);
		empty = r == 0 && o->empty_child;
		goto out;
	}
	vd_close(c, NULL);
	c = NULL;
	for (unsigned i = 0; i < d.nfiles; i++) {
		const struct vd_file_desc *f = &d.files[i];
		if (f->role == VD_FILE_PARENT || !f->path || f->block_device)
			continue;
		if (unlink(f->path) < 0 && errno != ENOENT) {
			r = vd_set_error(err, errno, "%s: committed, but removing %s failed: %s", child,
					 f->path, strerror(errno));
			goto out;
		}
	}
	res->removed = true;
out:
	if (c)
		vd_close(c, NULL);
	if (p) {
		int r2 = vd_close(p, r < 0 ? NULL : err);
		if (r == 0)
			r = r2;
	}
	if (r == 0 && empty) {
		/* the child's blocks are all in the parent now: killed before the
		 * rename, CHILD is the relinked child that still holds them */
		r = vd_rewrite_child_empty(child, format, false, o->cancel, err);
		if (r < 0)
			vd_prefix_error(err, "committed into %s and relinked, but emptying failed", ppath);
		res->emptied = r == 0;
	}
	vd_describe_free(&d);
	free(buf);
	free(ppath);
	return r;
}

/* IMG's bytes at [OFF, OFF+LEN), zeros past its end. */
static int read_padded(struct vd_image *img, uint64_t off, uint8_t *buf, size_t len,
		       struct vd_error *err)
{
	size_t n = off < vd_size(img) ? (size_t)VD_MIN((uint64_t)len, vd_size(img) - off) : 0;
	int r = n ? vd_read(img, off, buf, n, err) : 0;

	if (r == 0 && n < len)
		memset(buf + n, 0, len - n);
	return r;
}

/* NEW as opened: relative to CHILD's folder, as it will be stored. */
static char *beside(const char *child, const char *name)
{
	char *dup = strdup(child), *out = NULL;

	if (!dup)
		return NULL;
	if (name[0] == '/' || !strcmp(dirname(dup), "."))
		out = strdup(name);
	else if (asprintf(&out, "%s/%s", dup, name) < 0)
		out = NULL;
	free(dup);
	return out;
}

int vd_rebase(const char *child, const char *format, const struct vd_rebase_opts *o,
	      struct vd_rebase_result *res, struct vd_error *err)
{
	struct vd_image *c = NULL, *np = NULL;
	struct vd_identity pid;
	char *npath;
	uint8_t *a = NULL, *b = NULL;
	uint64_t off = 0, size;
	int r;

	memset(res, 0, sizeof(*res));
	if (!o->backing || !o->backing[0])
		return vd_set_error(err, EINVAL, "%s: rebase needs the new parent (-b FILE)", child);
	npath = beside(child, o->backing);
	if (!npath)
		return vd_set_error(err, ENOMEM, "out of memory");
	r = vd_open(&np, npath, o->backing_format, 0, err);
	if (r < 0) {
		vd_prefix_error(err, "%s: the new parent", child);
		goto out;
	}
	/* safe: the child with its old chain, to read the view to keep;
	 * unsafe: the child alone (its old parent may be gone) */
	r = vd_open(&c, child, format, VD_OPEN_RDWR | (o->unsafe ? VD_OPEN_NO_BACKING : 0), err);
	if (r < 0)
		goto out;
	if (!vd_has_parent_link(c)) {
		r = vd_set_error(err, EINVAL, "%s: not a child image: it has no parent link", child);
		goto out;
	}
	size = vd_size(c);
	if (!o->unsafe) {
		a = vd_aligned_alloc(CHUNK, err);
		b = a ? vd_aligned_alloc(CHUNK, err) : NULL;
		if (!b) {
			r = -ENOMEM;
			goto out;
		}
	}
	/* what the child does not hold and the new parent holds differently:
	 * copied into the child, so the guest sees the same disk */
	while (!o->unsafe && off < size) {
		struct vd_extent e;
		uint64_t n;

		if (vd_cancelled(o->cancel)) {
			r = vd_set_error(err, ECANCELED, "interrupted");
			goto out;
		}
		r = vd_block_status(c, off, VD_MIN(size - off, (uint64_t)CHUNK), &e, err);
		if (r < 0)
			goto out;
		n = e.length;
		if (e.depth > 0 || !(e.flags & VD_BS_ALLOCATED)) {
			r = vd_read(c, off, a, (size_t)n, err);
			if (r == 0)
				r = read_padded(np, off, b, (size_t)n, err);
			if (r == 0 && memcmp(a, b, (size_t)n)) {
				r = vd_write(c, off, a, (size_t)n, err);
				res->copied_bytes += n;
			}
			if (r < 0)
				goto out;
		}
		off += n;
		progress(o->progress, o->progress_ctx, off, size);
	}
	r = vd_flush(c, err);
	if (r == 0)
		r = vd_get_identity(np, &pid, err);
	if (r == 0)
		r = vd_chain_relink(c, &pid, o->backing, err);
	if (r == 0)
		r = vd_flush(c, err);
out:
	if (c) {
		int r2 = vd_close(c, r < 0 ? NULL : err);
		if (r == 0)
			r = r2;
	}
	vd_close(np, NULL);
	free(a);
	free(b);
	free(npath);
	return r;
}
