/*
 * ESXi vmfsSparse ("COWD") delta extents: the -delta.vmdk of an ESXi
 * snapshot, named by a createType="vmfsSparse" descriptor with a
 * VMFSSPARSE extent.  Layout, from VMware's published Virtual Disk Format
 * (the COWDisk_Header; all little-endian u32, offsets in 512-byte sectors):
 * magic "COWD" (0x44574f43) at 0, version 1 at 4, flags at 8, numSectors at
 * 12, grainSize (sectors) at 16, gdOffset at 20, numGDEntries at 24,
 * freeSector at 28; the header is 4 sectors.  The grain directory holds
 * numGDEntries sector offsets of grain tables (0: none); a grain table has
 * 4096 entries, the sector of each grain (0: not in this layer, read the
 * parent).  qemu reads these but cannot write them.
 *
 * Writes keep every kill point valid: freeSector is advanced in the header
 * before the space it hands out is written, a new grain table is zeroed
 * before the directory points to it, and a grain's data is written before
 * its table entry; a crash leaks space, never references unwritten space.
 *
 * SPDX-License-Identifier: MIT
 */
#include "vmdk.h"

#include <errno.h>
#include <stdlib.h>

#define COWD_MAGIC 0x44574f43u
#define COWD_HDR_SECTORS 4u
#define COWD_GTES 4096u
#define COWD_GT_BYTES (COWD_GTES * 4u)
#define COWD_MAX_GRAIN 2048u

enum { C_MAGIC = 0, C_VERSION = 4, C_NUMSECTORS = 12, C_GRAIN = 16, C_GDOFF = 20,
       C_NUMGD = 24, C_FREE = 28, C_HDR_BYTES = 2048 };

struct vmdk_cowd {
	struct vd_host *h;
	uint32_t nsect, grain, gdoff, ngd, free_sector;
	uint64_t file_sectors;
	uint32_t *gd;
	uint32_t *gt;        /* the cached grain table */
	uint32_t gt_index;   /* its directory index + 1, 0: none */
};

#define BAD(...) vd_set_error(err, EINVAL, __VA_ARGS__)

int vmdk_cowd_open(struct vmdk_cowd **out, struct vd_host *h, uint64_t sectors,
		   uint64_t *budget, struct vd_error *err)
{
	const char *path = h->path;
	uint8_t hd[C_HDR_BYTES];
	struct vmdk_cowd *c;
	uint64_t size, need, bytes;
	uint8_t *raw;
	int r;

	*out = NULL;
	r = vd_host_size(h, &size, err);
	if (r < 0)
		return r;
	if (size < C_HDR_BYTES)
		return BAD("%s: %llu bytes is too short for a vmfsSparse (COWD) header", path,
			   (unsigned long long)size);
	r = vd_host_pread(h, hd, sizeof(hd), 0, err);
	if (r < 0)
		return r;
	if (le32dec(hd + C_MAGIC) != COWD_MAGIC)
		return BAD("%s: invalid vmfsSparse extent: magic is 0x%08x, expected 0x%08x (COWD)", path,
			   le32dec(hd + C_MAGIC), COWD_MAGIC);
	if (le32dec(hd + C_VERSION) != 1)
		return BAD("%s: unsupported vmfsSparse extent: version is %u, expected 1", path,
			   le32dec(hd + C_VERSION));
	c = vd_calloc(1, sizeof(*c), err);
	if (!c)
		return -ENOMEM;
	c->h = h;
	c->nsect = le32dec(hd + C_NUMSECTORS);
	c->grain = le32dec(hd + C_GRAIN);
	c->gdoff = le32dec(hd + C_GDOFF);
	c->ngd = le32dec(hd + C_NUMGD);
	c->free_sector = le32dec(hd + C_FREE);
	c->file_sectors = size / VD_SECTOR;
	if (!vd_is_pow2(c->grain) || c->grain > COWD_MAX_GRAIN) {
		r = BAD("%s: invalid vmfsSparse header: grainSize (offset 16) is %u sectors, expected a power of two up to %u",
			path, c->grain, COWD_MAX_GRAIN);
		goto fail;
	}
	if (c->nsect < sectors) {
		r = BAD("%s: invalid vmfsSparse header: numSectors (offset 12) is %u, the descriptor says %llu",
			path, c->nsect, (unsigned long long)sectors);
		goto fail;
	}
	need = ((uint64_t)c->nsect + (uint64_t)COWD_GTES * c->grain - 1) / ((uint64_t)COWD_GTES * c->grain);
	if (c->ngd < need || c->ngd > need + 1) {
		r = BAD("%s: invalid vmfsSparse header: numGDEntries (offset 24) is %u, numSectors %u needs %llu",
			path, c->ngd, c->nsect, (unsigned long long)need);
		goto fail;
	}
	if (c->gdoff < COWD_HDR_SECTORS || (uint64_t)c->gdoff * VD_SECTOR + 4ull * c->ngd > size) {
		r = BAD("%s: invalid vmfsSparse header: gdOffset (offset 20) is sector %u: the directory (%u entries) is outside the header..file end (%llu bytes)",
			path, c->gdoff, c->ngd, (unsigned long long)size);
		goto fail;
	}
	/* the most a valid extent can use: header, directory, every table
	 * and every grain */
	if ((uint64_t)c->free_sector > (uint64_t)c->gdoff + (4ull * c->ngd + VD_SECTOR - 1) / VD_SECTOR +
					   (uint64_t)c->ngd * (COWD_GT_BYTES / VD_SECTOR) +
					   (uint64_t)c->nsect + c->grain) {
		r = BAD("%s: invalid vmfsSparse header: freeSector (offset 28) is %u, past all the space %u sectors in %u-sector grains can use",
			path, c->free_sector, c->nsect, c->grain);
		goto fail;
	}
	if (c->free_sector < c->gdoff) {
		r = BAD("%s: invalid vmfsSparse header: freeSector (offset 28) is %u, before the grain directory at %u",
			path, c->free_sector, c->gdoff);
		goto fail;
	}
	bytes = 4ull * c->ngd + COWD_GT_BYTES;
	if (bytes > *budget) {
		r = vd_set_error(err, EFBIG, "%s: vmfsSparse metadata of %llu bytes is over the limit", path,
				 (unsigned long long)bytes);
		goto fail;
	}
	*budget -= bytes;
	c->gd = vd_malloc(4ull * c->ngd, err);
	c->gt = vd_malloc(COWD_GT_BYTES, err);
	if (!c->gd || !c->gt) {
		r = -ENOMEM;
		goto fail;
	}
	raw = (uint8_t *)c->gd;
	r = vd_host_pread(h, raw, 4ull * c->ngd, (uint64_t)c->gdoff * VD_SECTOR, err);
	if (r < 0)
		goto fail;
	for (uint32_t i = 0; i < c->ngd; i++) {
		c->gd[i] = le32dec(raw + 4ull * i);
		if (c->gd[i] && (c->gd[i] < COWD_HDR_SECTORS ||
				 (uint64_t)c->gd[i] * VD_SECTOR + COWD_GT_BYTES > size)) {
			r = BAD("%s: invalid vmfsSparse grain directory: entry %u is sector %u, outside the file (%llu bytes)",
				path, i, c->gd[i], (unsigned long long)size);
			goto fail;
		}
	}
	*out = c;
	return 0;
fail:
	vmdk_cowd_close(c);
	return r;
}

void vmdk_cowd_close(struct vmdk_cowd *c)
{
	if (!c)
		return;
	free(c->gd);
	free(c->gt);
	free(c);
}

uint64_t vmdk_cowd_grain_bytes(const struct vmdk_cowd *c)
{
	return (uint64_t)c->grain * VD_SECTOR;
}

static int load_gt(struct vmdk_cowd *c, uint32_t gdi, struct vd_error *err)
{
	uint8_t *raw = (uint8_t *)c->gt;
	int r;

	if (c->gt_index == gdi + 1)
		return 0;
	c->gt_index = 0;
	r = vd_host_pread(c->h, raw, COWD_GT_BYTES, (uint64_t)c->gd[gdi] * VD_SECTOR, err);
	if (r < 0)
		return r;
	for (uint32_t i = 0; i < COWD_GTES; i++) {
		uint32_t v = le32dec(raw + 4ull * i);
		if (v && (v < COWD_HDR_SECTORS || (uint64_t)v + c->grain > c->file_sectors))
			return BAD("%s: invalid vmfsSparse grain table %u: entry %u is sector %u, outside the file (%llu sectors)",
				   c->h->path, gdi, i, v, (unsigned long long)c->file_sectors);
		c->gt[i] = v;
	}
	c->gt_index = gdi + 1;
	return 0;
}

/* The file sector of the grain holding guest byte OFF (0: not here). */
static int lookup(struct vmdk_cowd *c, uint64_t off, uint32_t *fs, struct vd_error *err)
{
	uint64_t gi = off / vmdk_cowd_grain_bytes(c);
	uint32_t gdi = (uint32_t)(gi / COWD_GTES);
	int r;

	*fs = 0;
	if (gdi >= c->ngd || !c->gd[gdi])
		return 0;
	r = load_gt(c, gdi, err);
	if (r == 0)
		*fs = c->gt[gi % COWD_GTES];
	return r;
}

int vmdk_cowd_read(struct vmdk_cowd *c, uint64_t off, void *buf, size_t len, struct vd_error *err)
{
	uint32_t fs;
	int r = lookup(c, off, &fs, err);

	if (r < 0)
		return r;
	if (!fs)
		return 1;
	return vd_host_pread(c->h, buf, len, (uint64_t)fs * VD_SECTOR + off % vmdk_cowd_grain_bytes(c),
			     err);
}

int vmdk_cowd_status(struct vmdk_cowd *c, uint64_t off, uint64_t len, struct vd_extent *ext,
		     struct vd_error *err)
{
	uint64_t gb = vmdk_cowd_grain_bytes(c), pos = off, end = off + len;
	uint32_t fs0, fs;
	int r = lookup(c, off, &fs0, err);

	if (r < 0)
		return r;
	/* grains of the same kind (data: adjacent in the file) */
	pos = (off / gb + 1) * gb;
	while (pos < end) {
		r = lookup(c, pos, &fs, err);
		if (r < 0)
			return r;
		if (fs0 ? fs != fs0 + (uint32_t)((pos - off / gb * gb) / VD_SECTOR) : fs != 0)
			break;
		pos += gb;
	}
	ext->length = VD_MIN(pos, end) - off;
	if (fs0) {
		ext->flags = VD_BS_DATA | VD_BS_ALLOCATED | VD_BS_OFFSET_VALID;
		ext->offset = (uint64_t)fs0 * VD_SECTOR + off % gb;
	} else {
		ext->flags = 0; /* not in this layer */
	}
	return 0;
}

/* Hand out COUNT sectors at freeSector, recorded in the header first. */
static int take(struct vmdk_cowd *c, uint32_t count, uint32_t *at, struct vd_error *err)
{
	uint8_t b[4];
	int r;

	if ((uint64_t)c->free_sector + count > UINT32_MAX)
		return vd_set_error(err, EFBIG, "%s: vmfsSparse extent full (32-bit sector offsets)",
				    c->h->path);
	*at = c->free_sector;
	le32enc(b, c->free_sector + count);
	r = vd_host_pwrite(c->h, b, 4, C_FREE, err);
	if (r < 0)
		return r;
	c->free_sector += count;
	if (c->file_sectors < c->free_sector) {
		/* the file reaches past what was handed out (reads are whole) */
		r = vd_host_truncate(c->h, (uint64_t)c->free_sector * VD_SECTOR, err);
		if (r < 0)
			return r;
		c->file_sectors = c->free_sector;
	}
	return 0;
}

int vmdk_cowd_write(struct vmdk_cowd *c, uint64_t off, const void *buf, size_t len,
		    struct vd_error *err)
{
	uint64_t gb = vmdk_cowd_grain_bytes(c), gi = off / gb;
	uint32_t gdi = (uint32_t)(gi / COWD_GTES), gti = (uint32_t)(gi % COWD_GTES), fs, at;
	uint8_t b[4];
	int r = lookup(c, off, &fs, err);

	if (r < 0)
		return r;
	if (fs)
		return vd_host_pwrite(c->h, buf, len, (uint64_t)fs * VD_SECTOR + off % gb, err);
	if (off % gb || len != gb) /* the block-I/O layer widens writes into new grains */
		return vd_set_error(err, EINVAL, "%s: a new vmfsSparse grain needs a whole-grain write",
				    c->h->path);
	if (gdi >= c->ngd)
		return vd_set_error(err, EINVAL, "%s: write past the vmfsSparse directory", c->h->path);
	if (!c->gd[gdi]) {
		r = take(c, COWD_GT_BYTES / VD_SECTOR, &at, err);
		if (r == 0)
			r = vd_host_write_zeroes(c->h, (uint64_t)at * VD_SECTOR, COWD_GT_BYTES, false, err);
		if (r == 0) {
			le32enc(b, at);
			r = vd_host_pwrite(c->h, b, 4, (uint64_t)c->gdoff * VD_SECTOR + 4ull * gdi, err);
		}
		if (r < 0)
			return r;
		c->gd[gdi] = at;
		c->gt_index = 0;
		r = load_gt(c, gdi, err);
		if (r < 0)
			return r;
	}
	r = take(c, c->grain, &at, err);
	if (r == 0)
		r = vd_host_pwrite(c->h, buf, len, (uint64_t)at * VD_SECTOR, err);
	if (r == 0) {
		le32enc(b, at);
		r = vd_host_pwrite(c->h, b, 4, (uint64_t)c->gd[gdi] * VD_SECTOR + 4ull * gti, err);
	}
	if (r == 0)
		c->gt[gti] = at;
	return r;
}
