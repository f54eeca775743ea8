/*
 * VMDK hosted sparse extents (KDMV): versions 1, 2 (zeroed-grain entries)
 * and 3, redundant grain directories, any power-of-two grain size, and
 * compressed grains (streamOptimized, read here, written by vmdk-stream.c).
 *
 * New grains are appended at the end of the file; the grain's data is
 * written before the grain-table entries (primary, then redundant), so a
 * crash leaves at worst an unreferenced grain.
 *
 * SPDX-License-Identifier: MIT
 */
#include "vmdk.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include "../src/core/deflate.h"

#define MAX_GRAIN_SECTORS 32768u /* 16 MiB */
#define MAX_GTES 4096u
#define MAX_CAPACITY (1ull << 47) /* sectors: 64 PiB */
#define DESC_SECTORS 32u          /* embedded descriptor room we write */
#define CREATE_GRAIN 128u         /* 64 KiB */
#define CREATE_GTES 512u


#define BAD(...) vd_set_error(err, EINVAL, __VA_ARGS__)

static int parse_header(struct vmdk_sparse *sp, const uint8_t *hd, const char *path,
			const char *where, struct vd_error *err)
{
	uint64_t gd_bytes, cover;

	if (le32dec(hd + VH_MAGIC) != VMDK_MAGIC)
		return BAD("%s: invalid VMDK %s: magic is 0x%08x, expected 0x%08x (KDMV)",
			   path, where, le32dec(hd + VH_MAGIC), VMDK_MAGIC);
	sp->version = le32dec(hd + VH_VERSION);
	if (sp->version < 1 || sp->version > 3)
		return BAD("%s: unsupported VMDK %s: version is %u, expected 1, 2 or 3",
			   path, where, sp->version);
	sp->flags = le32dec(hd + VH_FLAGS);
	if ((sp->flags & VMDK_FLAG_NL_TEST) &&
	    (hd[VH_NL] != '\n' || hd[VH_NL + 1] != ' ' || hd[VH_NL + 2] != '\r' ||
	     hd[VH_NL + 3] != '\n'))
		return BAD("%s: invalid VMDK %s: the newline check bytes (offset 73) are damaged; "
			   "was the file transferred in text mode?", path, where);
	sp->capacity = le64dec(hd + VH_CAPACITY);
	sp->grain = le64dec(hd + VH_GRAIN);
	sp->desc_off = le64dec(hd + VH_DESC_OFF);
	sp->desc_size = le64dec(hd + VH_DESC_SIZE);
	sp->gtes = le32dec(hd + VH_GTES);
	sp->rgd_off = le64dec(hd + VH_RGD);
	sp->gd_off = le64dec(hd + VH_GD);
	sp->overhead = le64dec(hd + VH_OVERHEAD);
	sp->compressed = (sp->flags & VMDK_FLAG_COMPRESSED) != 0;
	if (sp->compressed && le16dec(hd + VH_COMPRESS) != VMDK_COMPRESS_DEFLATE)
		return BAD("%s: unsupported VMDK %s: compressAlgorithm (offset 77) is %u, expected 1 (deflate)",
			   path, where, le16dec(hd + VH_COMPRESS));
	if (!vd_is_pow2(sp->grain) || sp->grain < 8 || sp->grain > MAX_GRAIN_SECTORS)
		return BAD("%s: invalid VMDK %s: grainSize (offset 20) is %llu sectors, expected a power of two from 8 to %u",
			   path, where, (unsigned long long)sp->grain, MAX_GRAIN_SECTORS);
	if (sp->gtes == 0 || sp->gtes > MAX_GTES)
		return BAD("%s: invalid VMDK %s: numGTEsPerGT (offset 44) is %u, expected 1 to %u (usually 512)",
			   path, where, sp->gtes, MAX_GTES);
	if (sp->capacity > MAX_CAPACITY)
		return BAD("%s: invalid VMDK %s: capacity (offset 12) is %llu sectors, larger than %llu",
			   path, where, (unsigned long long)sp->capacity, MAX_CAPACITY);
	cover = (uint64_t)sp->gtes * sp->grain;
	gd_bytes = (sp->capacity + cover - 1) / cover * 4;
	/* the directory must be in the file (checked again where it is read) */
	if (gd_bytes / 4 > UINT32_MAX ||
	    (le64dec(hd + VH_GD) != VMDK_GD_AT_END && gd_bytes > sp->file_size))
		return BAD("%s: invalid VMDK %s: capacity %llu sectors needs a grain directory of %llu entries, more than the file (%llu bytes) can hold (truncated?)",
			   path, where, (unsigned long long)sp->capacity,
			   (unsigned long long)(gd_bytes / 4), (unsigned long long)sp->file_size);
	sp->gd_entries = (uint32_t)(gd_bytes / 4);
	if (sp->desc_off && (sp->desc_size > VMDK_DESC_MAX / VD_SECTOR ||
			     (sp->desc_off + sp->desc_size) * VD_SECTOR > sp->file_size))
		return BAD("%s: invalid VMDK %s: embedded descriptor (sector %llu, %llu sectors) is too large or past the end of the file (truncated?)",
			   path, where, (unsigned long long)sp->desc_off,
			   (unsigned long long)sp->desc_size);
	return 0;
}

static int load_gd(struct vmdk_sparse *sp, uint64_t off, uint32_t **out,
		   const char *what, struct vd_error *err)
{
	size_t bytes = (size_t)sp->gd_entries * 4;
	uint32_t *gd;
	int r;

	if (off > sp->file_size / VD_SECTOR || off * VD_SECTOR + bytes > sp->file_size)
		return BAD("%s: invalid VMDK header: %s (sector %llu) is past the end of the file (truncated?)",
			   sp->h->path, what, (unsigned long long)off);
	gd = vd_malloc(bytes, err);
	if (!gd)
		return -ENOMEM;
	r = vd_host_pread(sp->h, gd, bytes, off * VD_SECTOR, err);
	if (r < 0) {
		free(gd);
		return r;
	}
	for (uint32_t i = 0; i < sp->gd_entries; i++) {
		gd[i] = le32dec(&gd[i]);
		if (gd[i] && (uint64_t)gd[i] * VD_SECTOR + sp->gtes * 4ull > sp->file_size) {
			r = BAD("%s: invalid VMDK %s: entry %u points to a grain table at sector %u, past the end of the file",
				sp->h->path, what, i, gd[i]);
			free(gd);
			return r;
		}
	}
	*out = gd;
	return 0;
}

/* The most memory the metadata of SP can take: what load_gd, load_gt (the
 * cache at its fullest) and vmdk_sparse_inflate allocate. */
static uint64_t meta_bytes(const struct vmdk_sparse *sp)
{
	uint64_t n = (uint64_t)sp->gd_entries * 4 * 2 + (uint64_t)VMDK_GT_CACHE * sp->gtes * 4;

	if (sp->compressed)
		n += vmdk_grain_bytes(sp) * 3 + 4097;
	return n;
}

int vmdk_sparse_open(struct vmdk_sparse **out, struct vd_host *h, uint64_t *budget,
		     struct vd_error *err)
{
	struct vmdk_sparse *sp;
	uint8_t hd[VD_SECTOR];
	int r;

	*out = NULL;
	sp = vd_calloc(1, sizeof(*sp), err);
	if (!sp)
		return -ENOMEM;
	sp->h = h;
	r = vd_host_size(h, &sp->file_size, err);
	if (r < 0)
		goto fail;
	if (sp->file_size < VD_SECTOR) {
		r = BAD("%s: file too short for a VMDK header (%llu bytes); the file is truncated", h->path,
			(unsigned long long)sp->file_size);
		goto fail;
	}
	if (sp->file_size % VD_SECTOR) {
		r = BAD("%s: invalid VMDK file: its size (%llu bytes) is not a multiple of 512; the file is truncated",
			h->path, (unsigned long long)sp->file_size);
		goto fail;
	}
	r = vd_host_pread(h, hd, VD_SECTOR, 0, err);
	if (r == 0)
		r = parse_header(sp, hd, h->path, "header", err);
	if (r < 0)
		goto fail;
	if (sp->overhead > sp->file_size / VD_SECTOR) {
		r = BAD("%s: invalid VMDK file: overHead (offset 64) is %llu sectors but the file has only %llu; the file is truncated",
			h->path, (unsigned long long)sp->overhead,
			(unsigned long long)(sp->file_size / VD_SECTOR));
		goto fail;
	}
	if (sp->gd_off == VMDK_GD_AT_END && sp->compressed &&
	    sp->file_size == sp->overhead * VD_SECTOR) {
		/* a header and nothing else: a stream whose writer never
		 * finished (or vdisk create before 0.2); the backend refuses
		 * it except for check, which reports it */
		sp->stream_incomplete = true;
		*out = sp;
		return 0;
	}
	sp->gd_at_end = sp->gd_off == VMDK_GD_AT_END;
	if (sp->gd_off == VMDK_GD_AT_END) {
		/* streamOptimized with the real header in the footer:
		 * ... footer marker, footer, end-of-stream marker */
		uint64_t capacity = sp->capacity, grain = sp->grain;
		if (sp->file_size < 3 * VD_SECTOR) {
			r = BAD("%s: invalid VMDK stream: gdOffset is GD_AT_END but the file is too short for a footer",
				h->path);
			goto fail;
		}
		r = vd_host_pread(h, hd, VD_SECTOR, sp->file_size - 2 * VD_SECTOR, err);
		if (r == 0)
			r = parse_header(sp, hd, h->path, "footer", err);
		if (r < 0)
			goto fail;
		if (sp->gd_off == VMDK_GD_AT_END || sp->capacity != capacity || sp->grain != grain) {
			r = BAD("%s: invalid VMDK stream footer: gdOffset %llu, capacity %llu, grainSize %llu do not complete the header",
				h->path, (unsigned long long)sp->gd_off,
				(unsigned long long)sp->capacity, (unsigned long long)sp->grain);
			goto fail;
		}
	}
	if (budget) {
		uint64_t need = meta_bytes(sp);
		if (need > *budget) {
			r = vd_set_error(err, EFBIG,
					 "%s: the VMDK metadata (grain directories of %u entries, grain tables of %u entries) needs %llu bytes of memory, more than the %llu left of the %llu MiB limit for one image",
					 h->path, sp->gd_entries, sp->gtes, (unsigned long long)need,
					 (unsigned long long)*budget, (unsigned long long)(VMDK_META_MAX >> 20));
			goto fail;
		}
		*budget -= need;
	}
	r = load_gd(sp, sp->gd_off, &sp->gd, "grain directory (gdOffset)", err);
	if (r < 0)
		goto fail;
	if ((sp->flags & VMDK_FLAG_RGD) && sp->rgd_off && !sp->compressed) {
		r = load_gd(sp, sp->rgd_off, &sp->rgd, "redundant grain directory (rgdOffset)", err);
		if (r < 0)
			goto fail;
	}
	sp->alloc_end = VD_ALIGN_UP(sp->file_size, VD_SECTOR);
	*out = sp;
	return 0;
fail:
	vmdk_sparse_close(sp);
	return r;
}

void vmdk_sparse_close(struct vmdk_sparse *sp)
{
	if (!sp)
		return;
	for (unsigned i = 0; i < VMDK_GT_CACHE; i++)
		free(sp->cache[i].gt);
	free(sp->gd);
	free(sp->rgd);
	free(sp->zgrain);
	free(sp->zbuf);
	free(sp);
}

static int load_gt(struct vmdk_sparse *sp, uint32_t gdi, uint32_t **gt,
		   struct vd_error *err)
{
	unsigned slot = gdi % VMDK_GT_CACHE;
	size_t bytes = (size_t)sp->gtes * 4;
	int r;

	if (sp->cache[slot].index == gdi + 1) {
		*gt = sp->cache[slot].gt;
		return 0;
	}
	if (!sp->cache[slot].gt) {
		sp->cache[slot].gt = vd_malloc(bytes, err);
		if (!sp->cache[slot].gt)
			return -ENOMEM;
	}
	sp->cache[slot].index = 0;
	r = vd_host_pread(sp->h, sp->cache[slot].gt, bytes, (uint64_t)sp->gd[gdi] * VD_SECTOR, err);
	if (r < 0)
		return r;
	for (uint32_t i = 0; i < sp->gtes; i++)
		sp->cache[slot].gt[i] = le32dec(&sp->cache[slot].gt[i]);
	sp->cache[slot].index = gdi + 1;
	*gt = sp->cache[slot].gt;
	return 0;
}

int vmdk_sparse_lookup(struct vmdk_sparse *sp, uint64_t sector, int *kind,
		       uint64_t *file_sector, struct vd_error *err)
{
	uint64_t gi = sector / sp->grain;
	uint32_t gdi = (uint32_t)(gi / sp->gtes), e, *gt;
	int r;

	*file_sector = 0;
	if (!sp->gd || gdi >= sp->gd_entries || sp->gd[gdi] == 0) {
		*kind = GRAIN_UNALLOCATED;
		return 0;
	}
	r = load_gt(sp, gdi, &gt, err);
	if (r < 0)
		return r;
	e = gt[gi % sp->gtes];
	if (e == 0) {
		*kind = GRAIN_UNALLOCATED;
	} else if (e == 1 && (sp->flags & VMDK_FLAG_ZERO_GRAIN)) {
		*kind = GRAIN_ZERO;
	} else {
		uint64_t need = sp->compressed ? 12 : VD_MIN(vmdk_grain_bytes(sp),
			(sp->capacity - gi * sp->grain) * VD_SECTOR);
		if ((uint64_t)e * VD_SECTOR + need > sp->file_size)
			return BAD("%s: invalid VMDK grain table %u: entry %llu points to sector %u, past the end of the file",
				   sp->h->path, gdi, (unsigned long long)(gi % sp->gtes), e);
		*kind = sp->compressed ? GRAIN_COMPRESSED : GRAIN_DATA;
		*file_sector = e;
	}
	return 0;
}

/* Decompress guest grain GI, stored at FILE_SECTOR, into sp->zgrain.  The
 * record's size must be in range and the data must inflate to exactly a
 * grain (the last one may stop at the capacity).  Read and check both come
 * here, so check reports exactly what read would fail on. */
int vmdk_sparse_inflate(struct vmdk_sparse *sp, uint64_t gi, uint64_t file_sector,
			struct vd_error *err)
{
	uint64_t gb = vmdk_grain_bytes(sp), off = file_sector * VD_SECTOR;
	uint64_t cut = VD_MIN(gb, (sp->capacity - VD_MIN(sp->capacity, gi * sp->grain)) * VD_SECTOR);
	uint8_t hdr[12];
	uint32_t csize;
	size_t got;
	const char *why;
	int r, z;

	if (sp->zgrain_sector == file_sector + 1)
		return 0;
	if (!sp->zgrain) {
		/* one byte more than a grain: data that inflates past a grain
		 * is seen, not cut */
		sp->zgrain = vd_malloc((size_t)gb + 1, err);
		if (!sp->zgrain)
			return -ENOMEM;
	}
	sp->zgrain_sector = 0;
	if (off + sizeof(hdr) > sp->file_size)
		return BAD("%s: invalid VMDK compressed grain %llu at sector %llu: past the end of the file (truncated?)",
			   sp->h->path, (unsigned long long)gi, (unsigned long long)file_sector);
	r = vd_host_pread(sp->h, hdr, sizeof(hdr), off, err);
	if (r < 0)
		return r;
	csize = le32dec(hdr + 8);
	if (csize == 0 || csize > 2 * gb + 4096 || off + 12 + csize > sp->file_size)
		return BAD("%s: invalid VMDK compressed grain %llu at sector %llu: size %u is out of range (1 to %llu, within the file)",
			   sp->h->path, (unsigned long long)gi, (unsigned long long)file_sector, csize,
			   (unsigned long long)VD_MIN(2 * gb + 4096, sp->file_size - VD_MIN(sp->file_size, off + 12)));
	if (sp->zbuf_len < csize) {
		free(sp->zbuf);
		sp->zbuf_len = 0;
		sp->zbuf = vd_malloc(csize, err);
		if (!sp->zbuf)
			return -ENOMEM;
		sp->zbuf_len = csize;
	}
	r = vd_host_pread(sp->h, sp->zbuf, csize, off + 12, err);
	if (r < 0)
		return r;
	z = vd_inflate(sp->zbuf, csize, sp->zgrain, (size_t)gb + 1, &got, &why);
	if (z < 0)
		return vd_set_error(err, -z, "%s: cannot start inflating", sp->h->path);
	if (z != VD_INFLATE_OK)
		return BAD("%s: invalid VMDK compressed grain %llu at sector %llu: the data does not inflate (%s %s)",
			   sp->h->path, (unsigned long long)gi, (unsigned long long)file_sector,
			   vd_deflate_impl(), why);
	if (got != gb && got != cut)
		return BAD("%s: invalid VMDK compressed grain %llu at sector %llu: inflates to %lu bytes, expected %llu",
			   sp->h->path, (unsigned long long)gi, (unsigned long long)file_sector,
			   (unsigned long)got, (unsigned long long)cut);
	if (got < gb)
		memset(sp->zgrain + got, 0, (size_t)(gb - got));
	sp->zgrain_sector = file_sector + 1;
	return 0;
}

int vmdk_sparse_read(struct vmdk_sparse *sp, uint64_t off, void *buf, size_t len,
		     struct vd_error *err)
{
	uint64_t fs, in = off % vmdk_grain_bytes(sp);
	int kind, r;

	r = vmdk_sparse_lookup(sp, off / VD_SECTOR, &kind, &fs, err);
	if (r < 0)
		return r;
	switch (kind) {
	case GRAIN_DATA:
		return vd_host_pread(sp->h, buf, len, fs * VD_SECTOR + in, err);
	case GRAIN_COMPRESSED:
		r = vmdk_sparse_inflate(sp, off / vmdk_grain_bytes(sp), fs, err);
		if (r == 0)
			memcpy(buf, sp->zgrain + in, len);
		return r;
	case GRAIN_UNALLOCATED:
		return 1;
	default:
		memset(buf, 0, len);
		return 0;
	}
}

int vmdk_sparse_write_u32(struct vmdk_sparse *sp, uint64_t off, uint32_t v, struct vd_error *err)
{
	uint8_t b[4];
	le32enc(b, v);
	return vd_host_pwrite(sp->h, b, 4, off, err);
}

/* Append a zeroed grain table for directory entry GDI to both directories. */
static int new_gt(struct vmdk_sparse *sp, uint32_t gdi, struct vd_error *err)
{
	uint64_t bytes = VD_ALIGN_UP(sp->gtes * 4ull, VD_SECTOR);
	int r;

	for (int copy = 0; copy < (sp->rgd ? 2 : 1); copy++) {
		uint64_t at = sp->alloc_end;
		uint32_t *dir = copy ? sp->rgd : sp->gd;
		uint64_t dir_off = copy ? sp->rgd_off : sp->gd_off;
		if (at / VD_SECTOR > UINT32_MAX)
			return vd_set_error(err, EFBIG, "%s: VMDK file too large for 32-bit table offsets",
					    sp->h->path);
		r = vd_host_truncate(sp->h, at + bytes, err);
		if (r < 0)
			return r;
		sp->alloc_end += bytes;
		sp->file_size = sp->alloc_end;
		r = vmdk_sparse_write_u32(sp, dir_off * VD_SECTOR + 4ull * gdi, (uint32_t)(at / VD_SECTOR), err);
		if (r < 0)
			return r;
		dir[gdi] = (uint32_t)(at / VD_SECTOR);
	}
	return 0;
}

int vmdk_sparse_write(struct vmdk_sparse *sp, uint64_t off, const void *buf,
		      size_t len, bool alloc_zeroes, struct vd_error *err)
{
	uint64_t gb = vmdk_grain_bytes(sp), in = off % gb, gi = off / gb, fs, at;
	uint32_t gdi = (uint32_t)(gi / sp->gtes), gti = (uint32_t)(gi % sp->gtes), *gt;
	int kind, r;

	if (sp->compressed)
		return vd_set_error(err, EROFS, "%s: streamOptimized VMDK images are read-only; convert them to write",
				    sp->h->path);
	r = vmdk_sparse_lookup(sp, off / VD_SECTOR, &kind, &fs, err);
	if (r < 0)
		return r;
	if (kind == GRAIN_DATA)
		return vd_host_pwrite(sp->h, buf, len, fs * VD_SECTOR + in, err);
	if (!alloc_zeroes && vd_is_zero(buf, len))
		return 0; /* the grain reads as zeros already */
	if (sp->gd[gdi] == 0) {
		r = new_gt(sp, gdi, err);
		if (r < 0)
			return r;
	}
	at = sp->alloc_end;
	if (at / VD_SECTOR > UINT32_MAX)
		return vd_set_error(err, EFBIG, "%s: VMDK file too large for 32-bit grain offsets", sp->h->path);
	/* the grain is new: it must read as zeros outside this write */
	sp->alloc_end += gb;
	sp->file_size = VD_MAX(sp->file_size, sp->alloc_end);
	r = vd_host_truncate(sp->h, sp->alloc_end, err);
	if (r == 0)
		r = vd_host_pwrite(sp->h, buf, len, at + in, err);
	if (r < 0)
		return r;
	/* then the tables: primary, redundant */
	r = vmdk_sparse_write_u32(sp, (uint64_t)sp->gd[gdi] * VD_SECTOR + 4ull * gti, (uint32_t)(at / VD_SECTOR), err);
	if (r < 0)
		return r;
	if (sp->rgd && sp->rgd[gdi]) {
		r = vmdk_sparse_write_u32(sp, (uint64_t)sp->rgd[gdi] * VD_SECTOR + 4ull * gti, (uint32_t)(at / VD_SECTOR), err);
		if (r < 0)
			return r;
	}
	r = load_gt(sp, gdi, &gt, err);
	if (r == 0)
		gt[gti] = (uint32_t)(at / VD_SECTOR);
	return r;
}

ssize_t vmdk_sparse_read_run(struct vmdk_sparse *sp, uint64_t off, void *buf, size_t len,
			     struct vd_error *err)
{
	uint64_t gb = vmdk_grain_bytes(sp), fs0, fs, start, total;
	int kind, r;

	if (sp->compressed)
		return 0;
	r = vmdk_sparse_lookup(sp, off / VD_SECTOR, &kind, &fs0, err);
	if (r < 0)
		return r;
	if (kind != GRAIN_DATA)
		return 0;
	start = fs0 * VD_SECTOR + off % gb;
	total = VD_MIN((uint64_t)len, gb - off % gb);
	while (total < len) {
		r = vmdk_sparse_lookup(sp, (off + total) / VD_SECTOR, &kind, &fs, err);
		if (r < 0)
			return r;
		if (kind != GRAIN_DATA || fs * VD_SECTOR != start + total)
			break;
		total += VD_MIN((uint64_t)len - total, gb);
	}
	if (total <= gb - off % gb)
		return 0; /* a single grain: the plain path */
	r = vd_host_pread(sp->h, buf, (size_t)total, start, err);
	return r < 0 ? r : (ssize_t)total;
}

ssize_t vmdk_sparse_write_run(struct vmdk_sparse *sp, uint64_t off, const void *buf,
			      size_t len, bool alloc_zeroes, struct vd_error *err)
{
	uint64_t gb = vmdk_grain_bytes(sp), gi = off / gb, at, fs;
	uint32_t gdi = (uint32_t)(gi / sp->gtes), gti = (uint32_t)(gi % sp->gtes), *gt, n = 0, max;
	const uint8_t *p = buf;
	uint8_t *ent;
	int kind, r;

	if (sp->compressed || off % gb || len < 2 * gb)
		return 0;
	/* whole grains, all new, none all-zero, within one grain table */
	max = (uint32_t)VD_MIN((uint64_t)len / gb, (uint64_t)(sp->gtes - gti));
	while (n < max) {
		r = vmdk_sparse_lookup(sp, (off + n * gb) / VD_SECTOR, &kind, &fs, err);
		if (r < 0)
			return r;
		if (kind == GRAIN_DATA || (!alloc_zeroes && vd_is_zero(p + n * gb, (size_t)gb)))
			break;
		n++;
	}
	if (n < 2)
		return 0;
	if (sp->gd[gdi] == 0) {
		r = new_gt(sp, gdi, err);
		if (r < 0)
			return r;
	}
	at = sp->alloc_end;
	if ((at + n * gb) / VD_SECTOR > UINT32_MAX)
		return vd_set_error(err, EFBIG, "%s: VMDK file too large for 32-bit grain offsets", sp->h->path);
	sp->alloc_end += n * gb;
	sp->file_size = VD_MAX(sp->file_size, sp->alloc_end);
	/* data first, then the tables (primary, redundant) */
	r = vd_host_pwrite(sp->h, buf, (size_t)(n * gb), at, err);
	if (r < 0)
		return r;
	ent = vd_malloc(n * 4, err);
	if (!ent)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++)
		le32enc(ent + 4 * i, (uint32_t)(at / VD_SECTOR + i * sp->grain));
	r = vd_host_pwrite(sp->h, ent, n * 4, (uint64_t)sp->gd[gdi] * VD_SECTOR + 4ull * gti, err);
	if (r == 0 && sp->rgd && sp->rgd[gdi])
		r = vd_host_pwrite(sp->h, ent, n * 4, (uint64_t)sp->rgd[gdi] * VD_SECTOR + 4ull * gti, err);
	free(ent);
	if (r == 0)
		r = load_gt(sp, gdi, &gt, err);
	if (r < 0)
		return r;
	for (uint32_t i = 0; i < n; i++)
		gt[gti + i] = (uint32_t)(at / VD_SECTOR + i * sp->grain);
	return (ssize_t)(n * gb);
}

int vmdk_sparse_discard(struct vmdk_sparse *sp, uint64_t off, struct vd_error *err)
{
	uint64_t gb = vmdk_grain_bytes(sp), gi = off / gb, fs;
	uint32_t gdi = (uint32_t)(gi / sp->gtes), gti = (uint32_t)(gi % sp->gtes), *gt;
	int kind, r;

	if (sp->compressed)
		return -ENOTSUP;
	r = vmdk_sparse_lookup(sp, off / VD_SECTOR, &kind, &fs, err);
	if (r < 0 || kind == GRAIN_UNALLOCATED)
		return r;
	/* tables first (redundant, then primary), then the space */
	if (sp->rgd && sp->rgd[gdi]) {
		r = vmdk_sparse_write_u32(sp, (uint64_t)sp->rgd[gdi] * VD_SECTOR + 4ull * gti, 0, err);
		if (r < 0)
			return r;
	}
	r = vmdk_sparse_write_u32(sp, (uint64_t)sp->gd[gdi] * VD_SECTOR + 4ull * gti, 0, err);
	if (r < 0)
		return r;
	r = load_gt(sp, gdi, &gt, err);
	if (r < 0)
		return r;
	gt[gti] = 0;
	if (kind == GRAIN_DATA && sp->h->ops->punch_hole)
		sp->h->ops->punch_hole(sp->h, fs * VD_SECTOR, gb);
	return 0;
}

int vmdk_sparse_status(struct vmdk_sparse *sp, uint64_t off, uint64_t len,
		       struct vd_extent *ext, struct vd_error *err)
{
	uint64_t gb = vmdk_grain_bytes(sp), end = off + len, pos, fs0, fs;
	int kind0, kind, r;

	r = vmdk_sparse_lookup(sp, off / VD_SECTOR, &kind0, &fs0, err);
	if (r < 0)
		return r;
	pos = (off / gb + 1) * gb;
	/* merge following grains of the same kind (and, for data, adjacent in
	 * the file); bounded work per call */
	for (unsigned n = 0; pos < end && n < 4096; n++, pos += gb) {
		r = vmdk_sparse_lookup(sp, pos / VD_SECTOR, &kind, &fs, err);
		if (r < 0)
			return r;
		if (kind != kind0 || kind == GRAIN_COMPRESSED ||
		    (kind == GRAIN_DATA && fs != fs0 + (pos / gb - off / gb) * sp->grain))
			break;
	}
	ext->length = VD_MIN(pos, end) - off;
	switch (kind0) {
	case GRAIN_DATA:
		ext->flags = VD_BS_DATA | VD_BS_ALLOCATED | VD_BS_OFFSET_VALID;
		ext->offset = fs0 * VD_SECTOR + off % gb;
		vd_host_refine_extent(sp->h, ext);
		break;
	case GRAIN_COMPRESSED:
		ext->flags = VD_BS_DATA | VD_BS_ALLOCATED;
		break;
	case GRAIN_ZERO:
		ext->flags = VD_BS_ZERO | VD_BS_ALLOCATED;
		break;
	default:
		ext->flags = VD_BS_ZERO;
	}
	return 0;
}

int vmdk_sparse_stream_empty(struct vmdk_sparse *sp, bool *empty, struct vd_error *err)
{
	uint64_t gt_bytes = VD_ALIGN_UP(sp->gtes * 4ull, VD_SECTOR);
	/* what vmdk_stream_finish writes after the header area when there is
	 * no grain: a marker and a table per directory entry, the directory
	 * marker and directory, footer marker, footer, end-of-stream */
	uint64_t size = sp->overhead * VD_SECTOR + sp->gd_entries * (VD_SECTOR + gt_bytes) +
			VD_SECTOR + VD_ALIGN_UP(sp->gd_entries * 4ull, VD_SECTOR) + 3 * VD_SECTOR;
	uint32_t *gt;
	int r = 0;

	*empty = false;
	if (!sp->compressed || sp->stream_incomplete || sp->file_size > size)
		return 0;
	gt = vd_malloc(sp->gtes * 4ull, err);
	if (!gt)
		return -ENOMEM;
	*empty = true;
	for (uint32_t d = 0; d < sp->gd_entries && *empty && r == 0; d++) {
		if (!sp->gd[d])
			continue;
		r = vd_host_pread(sp->h, gt, sp->gtes * 4ull, (uint64_t)sp->gd[d] * VD_SECTOR, err);
		*empty = r == 0 && vd_is_zero(gt, sp->gtes * 4ull);
	}
	free(gt);
	return r;
}

int vmdk_sparse_descriptor(struct vmdk_sparse *sp, char **text, struct vd_error *err)
{
	size_t n = (size_t)(sp->desc_size * VD_SECTOR);
	char *t;
	int r;

	*text = NULL;
	if (!sp->desc_off || !sp->desc_size)
		return 0;
	t = vd_malloc(n + 1, err);
	if (!t)
		return -ENOMEM;
	r = vd_host_pread(sp->h, t, n, sp->desc_off * VD_SECTOR, err);
	if (r < 0) {
		free(t);
		return r;
	}
	t[n] = '\0';
	*text = t;
	return 0;
}

/* ---- create ---- */

static void header_init(uint8_t *hd, uint32_t version, uint32_t flags, uint64_t capacity,
			uint64_t desc_off, uint64_t desc_size, uint64_t rgd, uint64_t gd,
			uint64_t overhead, uint16_t compress, uint64_t grain)
{
	memset(hd, 0, VD_SECTOR);
	le32enc(hd + VH_MAGIC, VMDK_MAGIC);
	le32enc(hd + VH_VERSION, version);
	le32enc(hd + VH_FLAGS, flags);
	le64enc(hd + VH_CAPACITY, capacity);
	le64enc(hd + VH_GRAIN, grain);
	le64enc(hd + VH_DESC_OFF, desc_off);
	le64enc(hd + VH_DESC_SIZE, desc_size);
	le32enc(hd + VH_GTES, CREATE_GTES);
	le64enc(hd + VH_RGD, rgd);
	le64enc(hd + VH_GD, gd);
	le64enc(hd + VH_OVERHEAD, overhead);
	hd[VH_NL] = '\n';
	hd[VH_NL + 1] = ' ';
	hd[VH_NL + 2] = '\r';
	hd[VH_NL + 3] = '\n';
	le16enc(hd + VH_COMPRESS, compress);
}

static int write_desc(struct vd_host *h, const char *desc, struct vd_error *err)
{
	size_t n = strlen(desc);
	if (n >= DESC_SECTORS * VD_SECTOR)
		return vd_set_error(err, EINVAL, "%s: VMDK descriptor too long (%zu bytes)", h->path, n);
	return vd_host_pwrite(h, desc, n, VD_SECTOR, err);
}

/* Layout: header, descriptor (DESC_SECTORS), redundant GD, redundant GTs,
 * GD, GTs, then grains from a 64 KiB boundary.  The tables start as holes
 * (zeros) in the sparse file. */
int vmdk_sparse_create(struct vd_host *h, uint64_t capacity, const char *desc,
		       uint64_t grain, struct vd_error *err)
{
	uint64_t cover;
	uint64_t gde;
	uint64_t gd_sectors;
	uint64_t gt_sectors = CREATE_GTES * 4 / VD_SECTOR;
	uint64_t next = desc ? 1 + DESC_SECTORS : 1;
	uint64_t rgd = next, rgt, gd, gt, overhead;
	uint8_t hd[VD_SECTOR];
	uint8_t *buf;
	int r;

	if (!grain)
		grain = CREATE_GRAIN;
	if (!vd_is_pow2(grain) || grain > 2048)
		return vd_set_error(err, EINVAL, "%s: grain of %llu sectors: a power of two up to 2048 sectors (1 MiB)",
				    h->path, (unsigned long long)grain);
	cover = (uint64_t)CREATE_GTES * grain;
	gde = (capacity + cover - 1) / cover;
	gd_sectors = VD_ALIGN_UP(gde * 4, VD_SECTOR) / VD_SECTOR;
	rgt = rgd + gd_sectors;
	gd = rgt + gde * gt_sectors;
	gt = gd + gd_sectors;
	overhead = VD_ALIGN_UP(gt + gde * gt_sectors, grain);
	if (capacity > MAX_CAPACITY || overhead + capacity > UINT32_MAX)
		return vd_set_error(err, EFBIG, "%s: %llu sectors is too large for a sparse VMDK extent",
				    h->path, (unsigned long long)capacity);
	header_init(hd, 1, VMDK_FLAG_NL_TEST | VMDK_FLAG_RGD, capacity, desc ? 1 : 0,
		    desc ? DESC_SECTORS : 0, rgd, gd, overhead, 0, grain);
	r = vd_host_truncate(h, overhead * VD_SECTOR, err);
	if (r == 0)
		r = vd_host_pwrite(h, hd, VD_SECTOR, 0, err);
	if (r == 0 && desc)
		r = write_desc(h, desc, err);
	if (r < 0)
		return r;
	buf = vd_malloc(64 * 1024, err);
	if (!buf)
		return -ENOMEM;
	for (int copy = 0; copy < 2 && r == 0; copy++) {
		uint64_t dir = copy ? gd : rgd, tables = copy ? gt : rgt;
		for (uint64_t i = 0; i < gde && r == 0;) {
			uint64_t n = VD_MIN(gde - i, (uint64_t)(64 * 1024 / 4));
			for (uint64_t k = 0; k < n; k++)
				le32enc(buf + 4 * k, (uint32_t)(tables + (i + k) * gt_sectors));
			r = vd_host_pwrite(h, buf, (size_t)n * 4, dir * VD_SECTOR + i * 4, err);
			i += n;
		}
	}
	free(buf);
	return r;
}

/* An empty stream, complete: header (GD_AT_END) and descriptor in the
 * first 64 KiB, then what the stream writer writes for no grains (empty
 * grain tables with their markers, the directory, footer, end-of-stream),
 * so that the file is valid as it is; a writer opened on it later starts
 * again after the header.  Into a pipe (a sequential host) only the header
 * and descriptor: the body could not be taken back, and the writer opened
 * next writes it. */
int vmdk_stream_create(struct vd_host *h, uint64_t capacity, const char *desc,
		       struct vd_error *err)
{
	uint8_t hd[VD_SECTOR];
	uint64_t overhead = CREATE_GRAIN; /* header + descriptor in the first 64 KiB */
	uint64_t cover = (uint64_t)CREATE_GTES * CREATE_GRAIN;
	struct vmdk_sparse sp = { 0 };
	struct vmdk_stream *st;
	int r;

	if (capacity > MAX_CAPACITY)
		return vd_set_error(err, EFBIG, "%s: %llu sectors is too large", h->path,
				    (unsigned long long)capacity);
	header_init(hd, 3, VMDK_FLAG_NL_TEST | VMDK_FLAG_COMPRESSED | VMDK_FLAG_MARKERS,
		    capacity, 1, DESC_SECTORS, 0, VMDK_GD_AT_END, overhead, VMDK_COMPRESS_DEFLATE, CREATE_GRAIN);
	r = vd_host_truncate(h, overhead * VD_SECTOR, err);
	if (r == 0)
		r = vd_host_pwrite(h, hd, VD_SECTOR, 0, err);
	if (r == 0)
		r = write_desc(h, desc, err);
	if (r < 0 || h->sequential)
		return r; /* into a pipe: the writer opened next writes the body */
	sp.h = h;
	sp.capacity = capacity;
	sp.grain = CREATE_GRAIN;
	sp.gtes = CREATE_GTES;
	sp.gd_entries = (uint32_t)((capacity + cover - 1) / cover);
	sp.overhead = overhead;
	sp.compressed = true;
	r = vmdk_stream_begin(&st, h, &sp, err);
	if (r < 0)
		return r;
	r = vmdk_stream_finish(st, err);
	vmdk_stream_free(st);
	return r;
}
