/*
 * ESXi seSparse ("space-efficient sparse") delta extents: the -sesparse.vmdk
 * of an ESXi 6.5+ snapshot on VMFS-6, named by a createType="seSparse"
 * descriptor with a SESPARSE extent.  Read only (as qemu: VMware documents
 * no writer rules for the journal and the free-space bitmap, and a writer
 * that gets them wrong damages a snapshot ESXi would then replay).
 *
 * Layout (all little-endian u64; offsets and sizes in 512-byte sectors):
 *  the constant header at sector 0: magic 0xcafebabe at 0, version
 *  0x200000001 at 8, capacity at 16, grain size at 24 (8: 4 KiB grains),
 *  grain-table size at 32 (64: 4096 entries), flags at 40 (0), four
 *  reserved fields at 48..79 (0), then offset/size pairs of the volatile
 *  header (80), journal header (96), journal (112), grain directory (128),
 *  grain tables (144), free bitmap (160), back map (176) and grains (192);
 *  the volatile header: magic 0xcafecafe at 0, free GT number, next
 *  transaction, replay-journal at 24 (non-zero: a journal is pending, which
 *  only ESXi can replay: refused).
 *  A directory entry is 0 (no table) or 0x1000000000000000 | table number
 *  (the table at grain-tables offset + number * 64 sectors).  A table
 *  entry's top nibble says what its grain is: 0 not in this layer (read
 *  the parent), 1 unmapped or 2 zeroed (reads as zeros), 3 allocated: the
 *  grain number is bits 0..47 shifted up by 12 plus bits 48..59, the grain
 *  at grains offset + number * grain size.
 * Every offset is checked against the file and its region before use.
 *
 * SPDX-License-Identifier: MIT
 */
#include "vmdk.h"

#include <errno.h>
#include <stdlib.h>

#define SE_MAGIC 0xcafebabeull
#define SE_VMAGIC 0xcafecafeull
#define SE_VERSION 0x200000001ull
#define SE_GRAIN_SECTORS 8u
#define SE_GT_SECTORS 64u
#define SE_GTES (SE_GT_SECTORS * VD_SECTOR / 8u)   /* 4096 */
#define SE_GT_BYTES (SE_GT_SECTORS * VD_SECTOR)
#define SE_GRAIN_BYTES (SE_GRAIN_SECTORS * VD_SECTOR)

enum { H_MAGIC = 0, H_VERSION = 8, H_CAPACITY = 16, H_GRAIN = 24, H_GTSIZE = 32, H_FLAGS = 40,
       H_RESERVED = 48, H_VOL_OFF = 80, H_GD_OFF = 128, H_GD_SIZE = 136, H_GT_OFF = 144,
       H_GT_SIZE = 152, H_GRAINS_OFF = 192, H_GRAINS_SIZE = 200 };

struct vmdk_se {
	struct vd_host *h;
	uint64_t capacity;              /* sectors */
	uint64_t gt_off, gt_size;       /* sectors */
	uint64_t grains_off, grains_size;
	uint64_t ngd;
	uint64_t file_sectors;
	uint64_t *gd;                   /* table numbers + 1, 0: none */
	uint64_t *gt;                   /* the cached table */
	uint64_t gt_index;              /* its directory index + 1, 0: none */
};

#define BAD(...) vd_set_error(err, EINVAL, __VA_ARGS__)

/* [off, off + size) sectors within a file of FILE_SECTORS */
static bool region_ok(uint64_t off, uint64_t size, uint64_t file_sectors)
{
	return off >= 1 && off <= file_sectors && size <= file_sectors - off;
}

int vmdk_se_open(struct vmdk_se **out, struct vd_host *h, uint64_t sectors, uint64_t *budget,
		 struct vd_error *err)
{
	const char *path = h->path;
	uint8_t hd[VD_SECTOR], vh[VD_SECTOR], *raw;
	uint64_t size, fs, gd_off, gd_size, need, bytes, v;
	struct vmdk_se *s;
	int r;

	*out = NULL;
	r = vd_host_size(h, &size, err);
	if (r < 0)
		return r;
	if (size < 2 * VD_SECTOR)
		return BAD("%s: %llu bytes is too short for a seSparse extent", path, (unsigned long long)size);
	fs = size / VD_SECTOR;
	r = vd_host_pread(h, hd, sizeof(hd), 0, err);
	if (r < 0)
		return r;
	if (le64dec(hd + H_MAGIC) != SE_MAGIC)
		return BAD("%s: invalid seSparse extent: magic is 0x%llx, expected 0xcafebabe", path,
			   (unsigned long long)le64dec(hd + H_MAGIC));
	if (le64dec(hd + H_VERSION) != SE_VERSION)
		return BAD("%s: unsupported seSparse extent: version (offset 8) is 0x%llx, expected 0x200000001",
			   path, (unsigned long long)le64dec(hd + H_VERSION));
	if ((v = le64dec(hd + H_GRAIN)) != SE_GRAIN_SECTORS)
		return BAD("%s: unsupported seSparse extent: grain size (offset 24) is %llu sectors, expected 8",
			   path, (unsigned long long)v);
	if ((v = le64dec(hd + H_GTSIZE)) != SE_GT_SECTORS)
		return BAD("%s: unsupported seSparse extent: grain table size (offset 32) is %llu sectors, expected 64",
			   path, (unsigned long long)v);
	if ((v = le64dec(hd + H_FLAGS)) != 0)
		return BAD("%s: unsupported seSparse extent: flags (offset 40) are 0x%llx, expected 0", path,
			   (unsigned long long)v);
	for (unsigned i = 0; i < 4; i++)
		if (le64dec(hd + H_RESERVED + 8 * i))
			return BAD("%s: invalid seSparse header: reserved field %u (offset %u) is not 0", path,
				   i + 1, H_RESERVED + 8 * i);
	v = le64dec(hd + H_CAPACITY);
	if (v < sectors)
		return BAD("%s: invalid seSparse header: capacity (offset 16) is %llu sectors, the descriptor says %llu",
			   path, (unsigned long long)v, (unsigned long long)sectors);
	/* the volatile header: no journal to replay */
	v = le64dec(hd + H_VOL_OFF);
	if (!region_ok(v, 1, fs))
		return BAD("%s: invalid seSparse header: volatile header offset (offset 80) is sector %llu, outside the file (%llu sectors)",
			   path, (unsigned long long)v, (unsigned long long)fs);
	r = vd_host_pread(h, vh, sizeof(vh), v * VD_SECTOR, err);
	if (r < 0)
		return r;
	if (le64dec(vh) != SE_VMAGIC)
		return BAD("%s: invalid seSparse volatile header: magic is 0x%llx, expected 0xcafecafe", path,
			   (unsigned long long)le64dec(vh));
	if (le64dec(vh + 24))
		return vd_set_error(err, ENOTSUP,
				    "%s: the seSparse extent has a journal to replay (replay-journal is set): only ESXi can replay it; open the snapshot on ESXi first",
				    path);
	gd_off = le64dec(hd + H_GD_OFF);
	gd_size = le64dec(hd + H_GD_SIZE);
	s = vd_calloc(1, sizeof(*s), err);
	if (!s)
		return -ENOMEM;
	s->h = h;
	s->file_sectors = fs;
	s->capacity = le64dec(hd + H_CAPACITY);
	s->gt_off = le64dec(hd + H_GT_OFF);
	s->gt_size = le64dec(hd + H_GT_SIZE);
	s->grains_off = le64dec(hd + H_GRAINS_OFF);
	s->grains_size = le64dec(hd + H_GRAINS_SIZE);
	need = (sectors + (uint64_t)SE_GTES * SE_GRAIN_SECTORS - 1) / ((uint64_t)SE_GTES * SE_GRAIN_SECTORS);
	if (!region_ok(gd_off, gd_size, fs) || gd_size * (VD_SECTOR / 8) < need) {
		r = BAD("%s: invalid seSparse header: the grain directory (offset 128/136: sector %llu, %llu sectors) is outside the file (%llu sectors) or smaller than the %llu entries %llu sectors need",
			path, (unsigned long long)gd_off, (unsigned long long)gd_size, (unsigned long long)fs,
			(unsigned long long)need, (unsigned long long)sectors);
		goto fail;
	}
	/* the tables and grains regions may reach past the file's end (ESXi
	 * sizes them for the whole disk); each entry is checked on use */
	if (s->gt_off < 1 || s->gt_off > fs || s->grains_off < 1 || s->grains_off > fs) {
		r = BAD("%s: invalid seSparse header: grain tables (offset 144) at sector %llu or grains (offset 192) at sector %llu are outside the file (%llu sectors)",
			path, (unsigned long long)s->gt_off, (unsigned long long)s->grains_off,
			(unsigned long long)fs);
		goto fail;
	}
	s->ngd = need;
	bytes = 8 * need + SE_GT_BYTES;
	if (bytes > *budget) {
		r = vd_set_error(err, EFBIG, "%s: seSparse metadata of %llu bytes is over the limit", path,
				 (unsigned long long)bytes);
		goto fail;
	}
	*budget -= bytes;
	s->gd = vd_malloc(8 * need, err);
	s->gt = vd_malloc(SE_GT_BYTES, err);
	if (!s->gd || !s->gt) {
		r = -ENOMEM;
		goto fail;
	}
	raw = (uint8_t *)s->gd;
	r = vd_host_pread(h, raw, 8 * need, gd_off * VD_SECTOR, err);
	if (r < 0)
		goto fail;
	for (uint64_t i = 0; i < need; i++) {
		uint64_t e = le64dec(raw + 8 * i), t;
		if (!e) {
			s->gd[i] = 0;
			continue;
		}
		t = e & 0x0fffffffffffffffull;
		if ((e >> 60) != 1 || t >> 32 ||
		    t >= (s->gt_size ? s->gt_size / SE_GT_SECTORS : UINT64_MAX) ||
		    !region_ok(s->gt_off + t * SE_GT_SECTORS, SE_GT_SECTORS, fs)) {
			r = BAD("%s: invalid seSparse grain directory: entry %llu is 0x%016llx, not an allocated table inside the grain tables and the file",
				path, (unsigned long long)i, (unsigned long long)e);
			goto fail;
		}
		s->gd[i] = t + 1;
	}
	*out = s;
	return 0;
fail:
	vmdk_se_close(s);
	return r;
}

void vmdk_se_close(struct vmdk_se *s)
{
	if (!s)
		return;
	free(s->gd);
	free(s->gt);
	free(s);
}

uint64_t vmdk_se_grain_bytes(const struct vmdk_se *s)
{
	(void)s;
	return SE_GRAIN_BYTES;
}

static int load_gt(struct vmdk_se *s, uint64_t gdi, struct vd_error *err)
{
	uint8_t *raw = (uint8_t *)s->gt;
	int r;

	if (s->gt_index == gdi + 1)
		return 0;
	s->gt_index = 0;
	r = vd_host_pread(s->h, raw, SE_GT_BYTES, (s->gt_off + (s->gd[gdi] - 1) * SE_GT_SECTORS) * VD_SECTOR,
			  err);
	if (r < 0)
		return r;
	for (unsigned i = 0; i < SE_GTES; i++)
		s->gt[i] = le64dec(raw + 8ull * i);
	s->gt_index = gdi + 1;
	return 0;
}

enum { SE_PARENT, SE_ZERO, SE_DATA };

/* What the grain holding guest byte OFF is; *FS its file sector (DATA). */
static int lookup(struct vmdk_se *s, uint64_t off, int *kind, uint64_t *fs, struct vd_error *err)
{
	uint64_t gi = off / SE_GRAIN_BYTES, gdi = gi / SE_GTES, e, n;
	int r;

	*kind = SE_PARENT;
	if (gdi >= s->ngd || !s->gd[gdi])
		return 0;
	r = load_gt(s, gdi, err);
	if (r < 0)
		return r;
	e = s->gt[gi % SE_GTES];
	switch (e >> 60) {
	case 0:
		return 0;
	case 1: /* unmapped */
	case 2: /* zeroed */
		*kind = SE_ZERO;
		return 0;
	case 3:
		n = ((e & 0x0fff000000000000ull) >> 48) | ((e & 0x0000ffffffffffffull) << 12);
		if ((s->grains_size && n >= s->grains_size / SE_GRAIN_SECTORS) ||
		    n > s->file_sectors / SE_GRAIN_SECTORS ||
		    !region_ok(s->grains_off + n * SE_GRAIN_SECTORS, SE_GRAIN_SECTORS, s->file_sectors))
			return BAD("%s: invalid seSparse grain table %llu: entry %llu names grain %llu, outside the grains and the file (%llu sectors)",
				   s->h->path, (unsigned long long)gdi, (unsigned long long)(gi % SE_GTES),
				   (unsigned long long)n, (unsigned long long)s->file_sectors);
		*kind = SE_DATA;
		*fs = s->grains_off + n * SE_GRAIN_SECTORS;
		return 0;
	default:
		return BAD("%s: invalid seSparse grain table %llu: entry %llu is 0x%016llx (type %llu is not 0..3)",
			   s->h->path, (unsigned long long)gdi, (unsigned long long)(gi % SE_GTES),
			   (unsigned long long)e, (unsigned long long)(e >> 60));
	}
}

int vmdk_se_read(struct vmdk_se *s, uint64_t off, void *buf, size_t len, struct vd_error *err)
{
	uint64_t fs = 0;
	int kind, r = lookup(s, off, &kind, &fs, err);

	if (r < 0)
		return r;
	if (kind == SE_PARENT)
		return 1;
	if (kind == SE_ZERO) {
		memset(buf, 0, len);
		return 0;
	}
	return vd_host_pread(s->h, buf, len, fs * VD_SECTOR + off % SE_GRAIN_BYTES, err);
}

int vmdk_se_status(struct vmdk_se *s, uint64_t off, uint64_t len, struct vd_extent *ext,
		   struct vd_error *err)
{
	uint64_t pos, end = off + len, fs0 = 0, fs = 0;
	int k0, k, r = lookup(s, off, &k0, &fs0, err);

	if (r < 0)
		return r;
	/* grains of the same kind (data: adjacent in the file) */
	for (pos = (off / SE_GRAIN_BYTES + 1) * SE_GRAIN_BYTES; pos < end; pos += SE_GRAIN_BYTES) {
		r = lookup(s, pos, &k, &fs, err);
		if (r < 0)
			return r;
		if (k != k0 || (k == SE_DATA && fs != fs0 + (pos / SE_GRAIN_BYTES - off / SE_GRAIN_BYTES) * SE_GRAIN_SECTORS))
			break;
	}
	ext->length = VD_MIN(pos, end) - off;
	if (k0 == SE_DATA) {
		ext->flags = VD_BS_DATA | VD_BS_ALLOCATED | VD_BS_OFFSET_VALID;
		ext->offset = fs0 * VD_SECTOR + off % SE_GRAIN_BYTES;
	} else if (k0 == SE_ZERO) {
		ext->flags = VD_BS_ZERO | VD_BS_ALLOCATED; /* held here, as zeros */
	} else {
		ext->flags = 0; /* not in this layer */
	}
	return 0;
}
