/*
 * VDI internals shared by the backend's files:
 *   vdi.c        the driver: probe, header, open, read, block status,
 *                create, info
 *   vdi-write.c  everything that changes an image in place: writes,
 *                discards, the metadata commit, check and repair
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef VDISK_VDI_H
#define VDISK_VDI_H

#include "../src/core/backend.h"

#define VDI_SIGNATURE 0xbeda107fu
#define VDI_VERSION_1_1 0x00010001u
#define VDI_UNALLOCATED 0xffffffffu
#define VDI_ZERO 0xfffffffeu
#define VDI_TYPE_DYNAMIC 1u
#define VDI_TYPE_FIXED 2u
#define VDI_TYPE_UNDO 3u
#define VDI_TYPE_DIFF 4u

/* Field offsets from the start of the file. */
enum {
	OFF_SIGNATURE = 64,
	OFF_VERSION = 68,
	OFF_CBHEADER = 72,
	OFF_TYPE = 76,
	OFF_FLAGS = 80,
	OFF_COMMENT = 84,
	OFF_OFFBLOCKS = 340,
	OFF_OFFDATA = 344,
	OFF_CYLINDERS = 348,
	OFF_HEADS = 352,
	OFF_SECTORS = 356,
	OFF_SECTORSIZE = 360,
	OFF_CBDISK = 368,
	OFF_CBBLOCK = 376,
	OFF_CBBLOCKEXTRA = 380,
	OFF_CBLOCKS = 384,
	OFF_CBLOCKSALLOC = 388,
	OFF_UUID_CREATE = 392,
	OFF_UUID_MODIFY = 408,
	OFF_UUID_LINKAGE = 424,
	OFF_UUID_PARENTMOD = 440,
	OFF_LCHS = 456,
	HDR_MIN_END = 72 + 384,
	HDR_400_END = 72 + 400,
	HDR_BUF = 512,
};

#define VDI_COMMENT_LEN 256
#define VDI_MIN_BLOCK 512u
#define VDI_MAX_BLOCK (256u << 20)
#define VDI_MAX_EXTRA (256u << 20)
#define VDI_DEFAULT_BLOCK (1u << 20)
#define VDI_ALIGN (1u << 20)
/* Largest image QEMU opens; keep what we write interoperable. */
#define VDI_MAX_CREATE_SIZE 0x1fffff8000000ull

_Static_assert(HDR_400_END <= HDR_BUF, "VDI header fits in one sector");

struct vdi {
	uint8_t hdr[HDR_BUF];
	uint32_t version, cb_header, type, flags;
	uint32_t off_blocks, off_data;
	uint64_t disk_size;
	uint32_t block_size, block_extra, nblocks, nalloc;
	uint32_t *bmap;     /* the map as the guest sees it now */
	uint64_t file_size; /* tracked as we append */
	/* What is on disk (vdi-write.c): header, the gap after it and the
	 * block map, [0, offBlocks + 4 * cBlocks), as the file holds them;
	 * NULL until the first change.  bmap and nalloc run ahead of it
	 * until the next commit. */
	uint8_t *disk;
	size_t disk_len;
	bool dirty;            /* bmap or nalloc differ from disk */
	uint32_t dirty_lo, dirty_hi; /* map entries that may differ */
	uint32_t released;     /* discarded blocks whose slot is still counted */
	uint32_t uncommitted;  /* allocations since the last commit */
};

static inline uint64_t slot_stride(const struct vdi *s)
{
	return (uint64_t)s->block_extra + s->block_size;
}

static inline uint64_t slot_offset(const struct vdi *s, uint32_t slot)
{
	return s->off_data + (uint64_t)slot * slot_stride(s) + s->block_extra;
}

/* Blocks allocated on demand: dynamic and differencing images. */
static inline bool vdi_sparse(const struct vdi *s)
{
	return s->type == VDI_TYPE_DYNAMIC || s->type == VDI_TYPE_DIFF;
}

static inline bool entry_allocated(uint32_t e)
{
	return e < VDI_ZERO;
}

/* Guest bytes held by block B (the last one may be partial). */
static inline uint64_t block_guest_bytes(const struct vdi *s, uint32_t b)
{
	uint64_t start = (uint64_t)b * s->block_size;
	if (start >= s->disk_size)
		return 0;
	return VD_MIN((uint64_t)s->block_size, s->disk_size - start);
}

/* Bytes of slot data that reads of block B can touch: the guest bytes,
 * rounded up to a sector as the image size is. */
static inline uint64_t slot_guest_bytes(const struct vdi *s, uint32_t b)
{
	return VD_ALIGN_UP(block_guest_bytes(s, b), VD_SECTOR);
}


/* vdi.c: what is wrong with block B's map entry E, given the slots already
 * taken (OWNER: slot -> block + 1); NULL when it is a valid slot reference. */
const char *vdi_entry_problem(const struct vdi *s, uint32_t b, uint32_t e,
			      const uint32_t *owner, char *msg, size_t len);

/* vdi-write.c */
int vdi_write(struct vd_image *img, uint64_t off, const void *buf, size_t len,
	      struct vd_error *err);
int vdi_write_zeroes(struct vd_image *img, uint64_t off, uint64_t len,
		     unsigned flags, struct vd_error *err);
int vdi_discard(struct vd_image *img, uint64_t off, uint64_t len,
		struct vd_error *err);
int vdi_flush(struct vd_image *img, struct vd_error *err);
int vdi_check(struct vd_image *img, bool repair, struct vd_check *res,
	      struct vd_error *err);
int vdi_set_parent(struct vd_image *img, const struct vd_identity *parent, const char *name,
		   struct vd_error *err);
int vdi_new_modification(struct vd_image *img, struct vd_error *err);

/* vdi.c: RFC 4122 <-> VirtualBox's little-endian GUID layout (both ways) */
void vdi_uuid_swap(uint8_t out[16], const uint8_t in[16]);

#endif
