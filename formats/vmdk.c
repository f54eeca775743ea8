/*
 * VMDK: a descriptor (text, or embedded in a sparse file) listing extents:
 * FLAT (also VMFS, raw devices), SPARSE (hosted KDMV files, including
 * streamOptimized) and ZERO, each RW, RDONLY or NOACCESS.
 *
 * Extent files named by a descriptor are untrusted: they are resolved in
 * the descriptor's directory, and absolute paths, ".." components, paths
 * leaving the directory through symlinks and block devices are refused
 * unless the image is opened with VD_OPEN_ALLOW_DEVICES.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "vmdk.h"

/* the words of the path policy's messages (vd_related_resolve) */
static const struct vd_related_words VMDK_RELATED_WORDS = { "extent file", "descriptor", "extent", false };
#define VMDK_RELATED (&VMDK_RELATED_WORDS)

#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

static bool is_text_descriptor(const uint8_t *buf, size_t len)
{
	static const char sig[] = "# Disk DescriptorFile";
	size_t n = VD_MIN(len, (size_t)1024);

	if (len >= sizeof(sig) - 1 && !memcmp(buf, sig, sizeof(sig) - 1))
		return true;
	/* some writers put other comments first */
	for (size_t i = 0; i < n; i++)
		if (buf[i] == 0 || (buf[i] < 0x20 && buf[i] != '\n' && buf[i] != '\r' && buf[i] != '\t'))
			return false;
	return memmem(buf, n, "createType", 10) != NULL;
}

static int vmdk_probe(const uint8_t *buf, size_t len, uint64_t file_size)
{
	(void)file_size;
	if (len >= 4 && le32dec(buf) == VMDK_MAGIC)
		return 100;
	if (is_text_descriptor(buf, len))
		return 90;
	return 0;
}

/* streamOptimized is write-once: a stream holding no grain yet (what
 * vmdk_stream_create writes: convert, create --script and create make one,
 * then open it to write) is written by the stream writer, front to back;
 * one with data cannot be changed in place (its grains are compressed in
 * guest order; there is nowhere to put a changed grain).  A stream that
 * ends after its header (its writer never finished) is refused except to
 * check it.  Returns 1 when the caller is to start the stream writer
 * (WHOLE: SP is the whole image), 0 to go on, or -errno. */
static int stream_policy(struct vd_image *img, struct vmdk_sparse *sp, bool whole,
			 struct vd_error *err)
{
	const char *path = sp->h->path;
	bool empty = false;
	int r;

	if (!sp->compressed) {
		/* an uncompressed extent laid out like a stream (its directory
		 * found through a footer at the end): a grain appended in place
		 * would overwrite the footer, and the next open would fail
		 * (make fuzz found it) */
		if (sp->gd_at_end && img->writable)
			return vd_set_error(err, EROFS,
					    "%s: this sparse VMDK keeps its grain directory in a footer at the end of the file; it cannot be changed in place (convert it)",
					    path);
		return 0;
	}
	if (sp->stream_incomplete && whole && img->writable && sp->h->sequential)
		return 1; /* just created into a pipe: the writer writes it all */
	if (sp->stream_incomplete && !(img->flags & VD_OPEN_CHECK))
		return vd_set_error(err, EINVAL,
				    "%s: invalid streamOptimized VMDK: it ends after its header, with no grain directory, footer or end-of-stream marker (its writer did not finish)",
				    path);
	if (!img->writable)
		return 0;
	if (whole && !sp->stream_incomplete) {
		r = vmdk_sparse_stream_empty(sp, &empty, err);
		if (r < 0)
			return r;
		if (empty)
			return 1;
	}
	return vd_set_error(err, EROFS,
			    "%s: streamOptimized VMDK images are write-once; convert it to another subformat to change it",
			    path);
}

static void vmdk_close(struct vd_image *img)
{
	struct vmdk *v = img->priv;

	if (!v)
		return;
	vmdk_stream_free(v->stream);
	for (unsigned i = 0; i < v->n; i++) {
		vmdk_sparse_close(v->ext[i].sp);
		vmdk_cowd_close(v->ext[i].cw);
		vmdk_se_close(v->ext[i].se);
		if (v->ext[i].own)
			vd_host_close(v->ext[i].h);
		free(v->ext[i].file);
	}
	free(v->ext);
	vmdk_desc_free(&v->desc);
	free(v);
	img->priv = NULL;
}

static int add_extent(struct vmdk *v, struct vmdk_ext *e, struct vd_error *err)
{
	struct vmdk_ext *n = realloc(v->ext, (v->n + 1) * sizeof(*n));

	if (!n)
		return vd_set_error(err, ENOMEM, "out of memory");
	v->ext = n;
	v->ext[v->n++] = *e;
	return 0;
}

/* Pass 1 resolves every extent file (no I/O open yet) and pairs up the
 * lines naming the same inode: SPARSE extents must not share a file (each
 * would load its own grain directories, and writes through one would
 * corrupt the other: VMware never writes that); FLAT extents may (raw-disk
 * descriptors name one device at several offsets) and then share one open
 * host, opened read-write if any of them is RW.  Pass 2 opens. */
static int open_descriptor_extents(struct vd_image *img, struct vmdk *v, struct vd_error *err)
{
	const char *path = img->host->path;
	unsigned n = v->desc.nextents;
	struct vd_related *res;
	unsigned *first;
	bool *rdwr;
	uint64_t start = 0, budget = VMDK_META_MAX;
	struct stat dst;
	bool have_dst;
	int r = 0;

	res = vd_calloc(n, sizeof(*res), err);
	first = vd_calloc(n, sizeof(*first), err);
	rdwr = vd_calloc(n, sizeof(*rdwr), err);
	if (!res || !first || !rdwr) {
		r = -ENOMEM;
		goto out;
	}
	have_dst = img->host->fd >= 0 && fstat(img->host->fd, &dst) == 0;
	for (unsigned i = 0; i < n && r == 0; i++) {
		const struct vmdk_desc_extent *de = &v->desc.extents[i];

		first[i] = i;
		if (de->type == VMDK_ZERO)
			continue;
		r = vd_related_resolve(img, VMDK_RELATED, de->file, &res[i], err);
		if (r < 0)
			break;
		if (have_dst && dst.st_dev == res[i].dev && dst.st_ino == res[i].ino) {
			r = vd_set_error(err, EINVAL, "%s: extent %u (line %u, \"%s\") names the descriptor file itself",
					 path, i + 1, de->line, de->file);
			break;
		}
		for (unsigned k = 0; k < i; k++) {
			const struct vmdk_desc_extent *dk = &v->desc.extents[k];
			if (!res[k].full || res[k].dev != res[i].dev || res[k].ino != res[i].ino)
				continue;
			if (de->type != VMDK_FLAT || dk->type != VMDK_FLAT)
				r = vd_set_error(err, EINVAL,
						 "%s: extent %u (line %u, \"%s\") names the same file as extent %u (line %u, \"%s\"); a %s extent needs a file of its own",
						 path, i + 1, de->line, de->file, k + 1, dk->line, dk->file,
						 de->type != VMDK_FLAT ? de->type_name : dk->type_name);
			first[i] = first[k];
			break;
		}
		if (img->writable && de->type == VMDK_SESPARSE) {
			r = vd_set_error(err, EROFS,
					 "%s: extent %u (line %u, \"%s\") is an ESXi seSparse delta, which vdisk reads but does not write: open it read-only (vdisk convert flattens it, or writes a new child with -B)",
					 path, i + 1, de->line, de->file);
			break;
		}
		if (img->writable && de->access == VMDK_RW)
			rdwr[first[i]] = true;
	}
	for (unsigned i = 0; i < n && r == 0; i++) {
		const struct vmdk_desc_extent *de = &v->desc.extents[i];
		struct vmdk_ext e = { 0 };
		uint64_t size;

		e.access = de->access;
		e.type = de->type;
		e.start = start;
		e.length = de->sectors * VD_SECTOR;
		if (de->file) {
			e.file = strdup(de->file);
			if (!e.file) {
				r = vd_set_error(err, ENOMEM, "out of memory");
				break;
			}
		}
		if (de->type != VMDK_ZERO && first[i] != i) {
			e.h = v->ext[first[i]].h; /* the same FLAT file: one host */
		} else if (de->type != VMDK_ZERO) {
			r = vd_related_open(img, VMDK_RELATED, de->file, &res[i], rdwr[i], &e.h, err);
			if (r < 0) {
				free(e.file);
				break;
			}
			e.own = true;
		}
		if (de->type == VMDK_FLAT) {
			e.flat_off = de->offset * VD_SECTOR;
			r = vd_host_size(e.h, &size, err);
			if (r == 0 && size < e.flat_off + e.length)
				r = vd_set_error(err, EINVAL,
						 "%s: extent %u (\"%s\") needs %llu bytes from offset %llu but the file has %llu",
						 path, i, de->file, (unsigned long long)e.length,
						 (unsigned long long)e.flat_off, (unsigned long long)size);
		} else if (de->type == VMDK_SPARSE) {
			r = vmdk_sparse_open(&e.sp, e.h, &budget, err);
			if (r == -EFBIG)
				vd_prefix_error(err, "%s: extent %u (line %u)", path, i + 1, de->line);
			if (r == 0 && de->access == VMDK_RW)
				r = stream_policy(img, e.sp, false, err);
			if (r == 0 && e.sp->capacity < de->sectors)
				r = vd_set_error(err, EINVAL,
						 "%s: extent %u (\"%s\") has a capacity of %llu sectors, the descriptor says %llu",
						 path, i, de->file, (unsigned long long)e.sp->capacity,
						 (unsigned long long)de->sectors);
		} else if (de->type == VMDK_COWD) {
			r = vmdk_cowd_open(&e.cw, e.h, de->sectors, &budget, err);
			if (r < 0)
				vd_prefix_error(err, "%s: extent %u (line %u)", path, i + 1, de->line);
		} else if (de->type == VMDK_SESPARSE) {
			r = vmdk_se_open(&e.se, e.h, de->sectors, &budget, err);
			if (r < 0)
				vd_prefix_error(err, "%s: extent %u (line %u)", path, i + 1, de->line);
		} else {
			r = 0;
		}
		if (r == 0)
			r = add_extent(v, &e, err);
		if (r < 0) {
			vmdk_sparse_close(e.sp);
			vmdk_cowd_close(e.cw);
			vmdk_se_close(e.se);
			if (e.own)
				vd_host_close(e.h);
			free(e.file);
			break;
		}
		start += e.length;
	}
out:
	for (unsigned i = 0; res && i < n; i++)
		vd_related_free(&res[i]);
	free(res);
	free(first);
	free(rdwr);
	return r;
}

static int vmdk_open(struct vd_image *img, struct vd_error *err)
{
	const char *path = img->host->path;
	struct vmdk *v;
	uint8_t head[VD_SECTOR] = { 0 };
	uint64_t size;
	int r;

	r = vd_host_size(img->host, &size, err);
	if (r < 0)
		return r;
	r = vd_host_pread(img->host, head, (size_t)VD_MIN(size, (uint64_t)VD_SECTOR), 0, err);
	if (r < 0)
		return r;
	v = vd_calloc(1, sizeof(*v), err);
	if (!v)
		return -ENOMEM;
	img->priv = v;
	if (size >= 4 && le32dec(head) == VMDK_MAGIC) {
		/* a sparse file: the extent is the file itself */
		struct vmdk_ext e = { 0 };
		char *text = NULL;
		uint64_t budget = VMDK_META_MAX;

		r = vmdk_sparse_open(&e.sp, img->host, &budget, err);
		if (r < 0)
			goto fail;
		e.h = img->host;
		e.type = VMDK_SPARSE;
		e.length = e.sp->capacity * VD_SECTOR;
		if (vmdk_sparse_descriptor(e.sp, &text, err) == 0 && text) {
			struct vd_error ignored;
			if (vmdk_desc_parse(&v->desc, text, strlen(text), path, &ignored) == 0) {
				v->has_desc = true;
				e.access = v->desc.extents[0].access;
			}
		}
		vd_error_clear(err);
		free(text);
		e.file = strdup(basename(img->host->path));
		r = add_extent(v, &e, err);
		if (r < 0) {
			vmdk_sparse_close(e.sp);
			goto fail;
		}
		r = stream_policy(img, e.sp, true, err);
		if (r == 1)
			r = vmdk_stream_begin(&v->stream, img->host, e.sp, err);
		if (r < 0)
			goto fail;
	} else {
		char *text;

		if (size > VMDK_DESC_MAX) {
			r = vd_set_error(err, EINVAL, "%s: not a VMDK descriptor (%llu bytes; descriptors are text files under %u bytes)",
					 path, (unsigned long long)size, VMDK_DESC_MAX);
			goto fail;
		}
		text = vd_malloc((size_t)size + 1, err);
		if (!text) {
			r = -ENOMEM;
			goto fail;
		}
		r = vd_host_pread(img->host, text, (size_t)size, 0, err);
		if (r == 0)
			r = vmdk_desc_parse(&v->desc, text, (size_t)size, path, err);
		free(text);
		if (r < 0)
			goto fail;
		v->has_desc = true;
		r = open_descriptor_extents(img, v, err);
		if (r < 0)
			goto fail;
	}
	img->size = 0;
	for (unsigned i = 0; i < v->n; i++)
		img->size += v->ext[i].length;
	img->size = VD_ALIGN_DOWN(img->size, VD_SECTOR);
	img->align = VD_SECTOR;
	if (v->has_desc && v->desc.parent_cid != 0xffffffffu) {
		/* a delta: unallocated grains read from the parent (found and
		 * checked by the core: parentCID against its CID) */
		img->has_parent = true;
		if (v->desc.parent_name[0] && !(img->parent_hint = strdup(v->desc.parent_name))) {
			r = vd_set_error(err, ENOMEM, "out of memory");
			goto fail;
		}
		for (unsigned i = 0; i < v->n; i++) {
			if (v->ext[i].sp)
				img->cow_unit = (uint32_t)VD_MAX((uint64_t)img->cow_unit,
								 vmdk_grain_bytes(v->ext[i].sp));
			if (v->ext[i].cw)
				img->cow_unit = (uint32_t)VD_MAX((uint64_t)img->cow_unit,
								 vmdk_cowd_grain_bytes(v->ext[i].cw));
			if (v->ext[i].se)
				img->cow_unit = (uint32_t)VD_MAX((uint64_t)img->cow_unit,
								 vmdk_se_grain_bytes(v->ext[i].se));
		}
	}
	return 0;
fail:
	vmdk_close(img);
	return r;
}

/* The extent holding guest offset OFF and the bytes left in it (and, in a
 * sparse extent, in the grain). */
static struct vmdk_ext *find(struct vmdk *v, uint64_t off, uint64_t *avail)
{
	struct vmdk_ext *e = &v->ext[v->last < v->n ? v->last : 0];

	if (off < e->start || off >= e->start + e->length) {
		unsigned lo = 0, hi = v->n;
		while (hi - lo > 1) {
			unsigned mid = (lo + hi) / 2;
			if (v->ext[mid].start <= off)
				lo = mid;
			else
				hi = mid;
		}
		v->last = lo;
		e = &v->ext[lo];
	}
	*avail = e->start + e->length - off;
	if (e->sp || e->cw || e->se) {
		uint64_t gb = e->sp ? e->sp->grain * VD_SECTOR : e->cw ? vmdk_cowd_grain_bytes(e->cw) :
			      vmdk_se_grain_bytes(e->se);
		*avail = VD_MIN(*avail, gb - (off - e->start) % gb);
	}
	return e;
}

static int vmdk_read(struct vd_image *img, uint64_t off, void *buf, size_t len,
		     struct vd_error *err)
{
	struct vmdk *v = img->priv;
	uint8_t *p = buf;

	/* what the stream writer has taken is compressed and out of the
	 * grain tables until it finishes: reading it would give zeros */
	if (v->stream)
		return vd_set_error(err, EACCES,
				    "%s: a streamOptimized image being written cannot be read back before it is finished",
				    img->host->path);
	while (len > 0) {
		uint64_t avail;
		struct vmdk_ext *e = find(v, off, &avail);
		size_t n = (size_t)VD_MIN((uint64_t)len, avail);
		int r = 0;

		switch (e->access == VMDK_NOACCESS ? -1 : (int)e->type) {
		case -1:
			return vd_set_error(err, EACCES, "%s: extent \"%s\" is NOACCESS",
					    img->host->path, e->file ? e->file : "");
		case VMDK_ZERO:
			memset(p, 0, n);
			break;
		case VMDK_FLAT:
			r = vd_host_pread(e->h, p, n, e->flat_off + (off - e->start), err);
			break;
		case VMDK_COWD:
			r = vmdk_cowd_read(e->cw, off - e->start, p, n, err);
			if (r == 1) /* not in this layer */
				r = vd_backing_read(img, off, p, n, err);
			break;
		case VMDK_SESPARSE:
			r = vmdk_se_read(e->se, off - e->start, p, n, err);
			if (r == 1) /* not in this layer */
				r = vd_backing_read(img, off, p, n, err);
			break;
		default: {
			/* data grains adjacent in the file: one read */
			ssize_t got = vmdk_sparse_read_run(e->sp, off - e->start, p,
							   (size_t)VD_MIN((uint64_t)len, e->start + e->length - off), err);
			if (got < 0)
				return (int)got;
			if (got > 0)
				n = (size_t)got;
			else
				r = vmdk_sparse_read(e->sp, off - e->start, p, n, err);
			if (r == 1) /* not in this layer */
				r = vd_backing_read(img, off, p, n, err);
		}
		}
		if (r < 0)
			return r;
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

static int vmdk_write(struct vd_image *img, uint64_t off, const void *buf,
		      size_t len, struct vd_error *err)
{
	struct vmdk *v = img->priv;
	const uint8_t *p = buf;

	while (len > 0) {
		uint64_t avail;
		struct vmdk_ext *e = find(v, off, &avail);
		size_t n = (size_t)VD_MIN((uint64_t)len, avail);
		int r = 0;

		if (v->stream)
			r = vmdk_stream_write(v->stream, off, p, n, err);
		else if (e->access != VMDK_RW || e->type == VMDK_ZERO)
			r = vd_set_error(err, EROFS, "%s: extent \"%s\" is %s", img->host->path,
					 e->file ? e->file : "",
					 e->type == VMDK_ZERO ? "a ZERO extent" :
					 e->access == VMDK_RDONLY ? "RDONLY" : "NOACCESS");
		else if (e->type == VMDK_FLAT)
			r = vd_host_pwrite(e->h, p, n, e->flat_off + (off - e->start), err);
		else if (e->type == VMDK_COWD)
			r = vmdk_cowd_write(e->cw, off - e->start, p, n, err);
		else if (e->type == VMDK_SESPARSE)
			r = vd_set_error(err, EROFS, "%s: extent \"%s\" is seSparse (read only)",
					 img->host->path, e->file ? e->file : "");
		else {
			/* a run of new grains: one data write, one table write */
			ssize_t done = vmdk_sparse_write_run(e->sp, off - e->start, p,
							     (size_t)VD_MIN((uint64_t)len, e->start + e->length - off),
							     img->allocate_zero_writes || img->has_parent, err);
			if (done < 0)
				return (int)done;
			if (done > 0)
				n = (size_t)done;
			else
				r = vmdk_sparse_write(e->sp, off - e->start, p, n,
						      img->allocate_zero_writes || img->has_parent, err);
		}
		if (r < 0)
			return r;
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

static int vmdk_write_zeroes(struct vd_image *img, uint64_t off, uint64_t len,
			     unsigned flags, struct vd_error *err)
{
	struct vmdk *v = img->priv;

	if (v->stream)
		return -ENOTSUP;
	while (len > 0) {
		uint64_t avail, fs;
		struct vmdk_ext *e = find(v, off, &avail);
		uint64_t n = VD_MIN(len, avail);
		int kind, r = 0;

		if (e->access != VMDK_RW || e->type == VMDK_ZERO || e->type == VMDK_COWD ||
		    e->type == VMDK_SESPARSE)
			return -ENOTSUP; /* the write fallback reports it */
		if (e->type == VMDK_FLAT) {
			r = vd_host_write_zeroes(e->h, e->flat_off + (off - e->start), n,
						 (flags & VD_ZERO_MAY_UNMAP) != 0, err);
		} else {
			r = vmdk_sparse_lookup(e->sp, (off - e->start) / VD_SECTOR, &kind, &fs, err);
			if (r == 0 && kind == GRAIN_DATA)
				r = vd_host_write_zeroes(e->h, fs * VD_SECTOR +
							 (off - e->start) % (e->sp->grain * VD_SECTOR),
							 n, (flags & VD_ZERO_MAY_UNMAP) != 0, err);
		}
		if (r < 0)
			return r;
		off += n;
		len -= n;
	}
	return 0;
}

/* Whole grains of sparse extents are dropped; flat extents stay allocated
 * (the caller zeroes them instead). */
static int vmdk_discard(struct vd_image *img, uint64_t off, uint64_t len,
			struct vd_error *err)
{
	struct vmdk *v = img->priv;

	if (v->stream)
		return -ENOTSUP;
	while (len > 0) {
		uint64_t avail;
		struct vmdk_ext *e = find(v, off, &avail);
		uint64_t n = VD_MIN(len, avail);
		int r;

		if (e->sp && e->access == VMDK_RW && n == e->sp->grain * VD_SECTOR) {
			r = vmdk_sparse_discard(e->sp, off - e->start, err);
			if (r < 0 && r != -ENOTSUP)
				return r;
		}
		off += n;
		len -= n;
	}
	return 0;
}

static int vmdk_block_status(struct vd_image *img, uint64_t off, uint64_t len,
			     struct vd_extent *ext, struct vd_error *err)
{
	struct vmdk *v = img->priv;
	uint64_t avail;
	struct vmdk_ext *e = find(v, off, &avail);
	uint64_t left = VD_MIN(len, e->start + e->length - off);
	int r = 0;

	ext->length = left;
	if (e->h && e->h != img->host)
		ext->file = e->h->path;
	switch (e->type) {
	case VMDK_ZERO:
		ext->flags = VD_BS_ZERO | VD_BS_ALLOCATED;
		break;
	case VMDK_FLAT:
		ext->flags = VD_BS_DATA | VD_BS_ALLOCATED | VD_BS_OFFSET_VALID;
		ext->offset = e->flat_off + (off - e->start);
		vd_host_refine_extent(e->h, ext);
		break;
	case VMDK_COWD:
		r = vmdk_cowd_status(e->cw, off - e->start, left, ext, err);
		break;
	case VMDK_SESPARSE:
		r = vmdk_se_status(e->se, off - e->start, left, ext, err);
		break;
	default:
		r = vmdk_sparse_status(e->sp, off - e->start, left, ext, err);
	}
	return r;
}

static int vmdk_flush(struct vd_image *img, struct vd_error *err)
{
	struct vmdk *v = img->priv;
	int r;

	/* a stream is completed by finish, not by flush */
	for (unsigned i = 0; i < v->n; i++) {
		if (v->ext[i].own && v->ext[i].h != img->host) {
			r = vd_host_flush(v->ext[i].h, err);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

static int vmdk_finish(struct vd_image *img, struct vd_error *err)
{
	struct vmdk *v = img->priv;

	return v->stream ? vmdk_stream_finish(v->stream, err) : 0;
}

/* ---- info and check ---- */

static int vmdk_info(struct vd_image *img, struct vd_info *info, struct vd_error *err)
{
	static const char *acc[] = { "RW", "RDONLY", "NOACCESS" };
	struct vmdk *v = img->priv;
	const struct vmdk_desc *d = &v->desc;
	struct vmdk_sparse *sp = NULL;
	uint64_t off = 0;
	unsigned room, nplain = 0, nother = 0;
	bool cut;
	int r;

	for (unsigned i = 0; i < v->n && !sp; i++)
		sp = v->ext[i].sp;
	snprintf(info->subformat, sizeof(info->subformat), "%s",
		 v->has_desc && d->create_type[0] ? d->create_type :
		 sp && sp->compressed ? "streamOptimized" : "sparse extent");
	if (sp) {
		info->block_size = (uint32_t)(sp->grain * VD_SECTOR);
		snprintf(info->header_version, sizeof(info->header_version), "%u", sp->version);
	}
	if (v->has_desc) {
		snprintf(info->uuid, sizeof(info->uuid), "%s", d->uuid_image);
		snprintf(info->uuid_modify, sizeof(info->uuid_modify), "%s", d->uuid_modify);
		snprintf(info->uuid_parent, sizeof(info->uuid_parent), "%s", d->uuid_parent);
		snprintf(info->uuid_parent_modify, sizeof(info->uuid_parent_modify), "%s",
			 d->uuid_parent_modify);
		info->cylinders = d->cylinders;
		info->heads = d->heads;
		info->sectors = d->sectors;
		vd_info_add(info, "create_type", false, "%s", d->create_type);
		vd_info_add(info, "cid", false, "%08" PRIx32, d->cid);
		vd_info_add(info, "parent_cid", false, "%08" PRIx32, d->parent_cid);
		if (d->adapter[0])
			vd_info_add(info, "adapter_type", false, "%s", d->adapter);
		if (d->hwversion[0])
			vd_info_add(info, "hw_version", false, "%s", d->hwversion);
	}
	if (sp) {
		vd_info_add(info, "grain_size", true, "%" PRIu64, sp->grain * VD_SECTOR);
		vd_info_add(info, "compressed", false, "%s", sp->compressed ? "yes" : "no");
	}
	vd_info_add(info, "extents", true, "%u", v->n);
	/* The extent list may not fit the extra keys.  Then say so
	 * ("extents_listed") and list the extents that are not plain RW
	 * (RDONLY, NOACCESS) first, so a reader sees them.  Operations read
	 * every extent's access from vd_describe, never from these keys. */
	room = VD_INFO_MAX_EXTRA - info->nextra;
	cut = v->n > room;
	if (cut) {
		room--; /* for extents_listed */
		for (unsigned i = 0; i < v->n; i++)
			nother += v->ext[i].access != VMDK_RW;
		nother = VD_MIN(nother, room);
		nplain = room - nother; /* the plain RW extents that fit after them */
		vd_info_add(info, "extents_listed", false,
			    "%u of %u (the extra keys are full; RDONLY and NOACCESS extents first)",
			    room, v->n);
	}
	for (unsigned i = 0; i < v->n && info->nextra < VD_INFO_MAX_EXTRA; i++) {
		const struct vmdk_ext *e = &v->ext[i];
		unsigned *left = e->access == VMDK_RW ? &nplain : &nother;
		char key[32];
		if (cut && *left == 0)
			continue;
		if (cut)
			(*left)--;
		snprintf(key, sizeof(key), "extent%u", i);
		vd_info_add(info, key, false, "%s %" PRIu64 " %s%s%s%s", acc[e->access],
			    e->length / VD_SECTOR,
			    e->type == VMDK_ZERO ? "ZERO" : e->type == VMDK_FLAT ? "FLAT" :
			    e->type == VMDK_COWD ? "VMFSSPARSE" : e->type == VMDK_SESPARSE ? "SESPARSE" : "SPARSE",
			    e->file && e->type != VMDK_ZERO ? " \"" : "",
			    e->file && e->type != VMDK_ZERO ? e->file : "",
			    e->file && e->type != VMDK_ZERO ? "\"" : "");
	}
	/* the other files of a multi-file image */
	for (unsigned i = 0; i < v->n; i++) {
		uint64_t s = 0, a = 0;
		if (!v->ext[i].own || v->ext[i].h == img->host)
			continue;
		if (v->ext[i].h->ops->get_size(v->ext[i].h, &s) == 0)
			info->file_size += s;
		if (v->ext[i].h->ops->allocated_bytes &&
		    v->ext[i].h->ops->allocated_bytes(v->ext[i].h, &a) == 0)
			info->host_bytes += a;
	}
	while (off < img->size) {
		struct vd_extent e = { 0 };
		r = vd_block_status(img, off, img->size - off, &e, err);
		if (r < 0)
			return r;
		if ((e.flags & VD_BS_DATA) && e.depth == 0) /* this layer's */
			info->allocated_bytes += e.length;
		off += e.length;
	}
	return 0;
}

static int vmdk_check(struct vd_image *img, bool repair, struct vd_check *res,
		      struct vd_error *err)
{
	struct vmdk *v = img->priv;

	for (unsigned i = 0; i < v->n; i++) {
		if (v->ext[i].sp) {
			int r = vmdk_sparse_check(v->ext[i].sp, repair, res, err);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

const struct vd_driver vd_driver_vmdk = {
	.name = "vmdk",
	.creates_children = true,
	.finish = vmdk_finish,
	.set_parent = vmdk_set_parent,
	.new_modification = vmdk_new_modification,
	.probe = vmdk_probe,
	.open = vmdk_open,
	.close = vmdk_close,
	.read = vmdk_read,
	.write = vmdk_write,
	.write_zeroes = vmdk_write_zeroes,
	.discard = vmdk_discard,
	.block_status = vmdk_block_status,
	.flush = vmdk_flush,
	.create = vmdk_create,
	.info = vmdk_info,
	.check = vmdk_check,
	.describe = vmdk_describe,
	.identity = vmdk_identity,
	.identity_fields = VD_ID_UUIDS | VD_ID_CID | VD_ID_ADAPTER | VD_ID_HW_VERSION |
			   VD_ID_TOOLS_VERSION | VD_ID_LONG_CONTENT_ID | VD_ID_GEOMETRY |
			   VD_ID_BIOS_GEOMETRY | VD_ID_DIALECT,
	.zero_init = true,
};
