/*
 * VMDK internals shared by the backend's files:
 *   vmdk.c         the driver: descriptor + extents, dispatch, info, check, create
 *   vmdk-desc.c    descriptor text: parse and write
 *   vmdk-sparse.c  hosted sparse extents (KDMV): header, grain directory and
 *                  tables, grains (plain and compressed)
 *   vmdk-stream.c  the streamOptimized writer
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef VDISK_VMDK_H
#define VDISK_VMDK_H

#include "../src/core/backend.h"

#define VMDK_MAGIC 0x564d444bu /* "KDMV" */
#define VMDK_GD_AT_END 0xffffffffffffffffull
#define VMDK_FLAG_NL_TEST (1u << 0)
#define VMDK_FLAG_RGD (1u << 1)
#define VMDK_FLAG_ZERO_GRAIN (1u << 2)
#define VMDK_FLAG_COMPRESSED (1u << 16)
#define VMDK_FLAG_MARKERS (1u << 17)
#define VMDK_COMPRESS_DEFLATE 1
#define VMDK_MARKER_EOS 0
#define VMDK_MARKER_GT 1
#define VMDK_MARKER_GD 2
#define VMDK_MARKER_FOOTER 3
/* Split images: 2047 MiB per extent, as VMware and VirtualBox write. */
#define VMDK_SPLIT_SECTORS 4192256ull
#define VMDK_DESC_MAX (1u << 20)
#define VMDK_MAX_EXTENTS 4096
/* The largest disk (sum of the extents) and extent: 64 PiB.  Far above any
 * product's limit (ESXi: 62 TiB), far below where byte offsets wrap. */
#define VMDK_MAX_SECTORS (1ull << 47)
/* Memory for the metadata of all sparse extents of one image: grain
 * directories (both copies), the grain-table cache at its fullest and the
 * compressed-grain buffers.  A real 62 TiB disk needs a few MiB; 1 GiB
 * leaves room for any genuine layout while a hostile descriptor (many
 * extents with huge sparse directories) fails cleanly instead of taking
 * the machine's memory. */
#define VMDK_META_MAX (1ull << 30)

/* Header field offsets (one sector). */
enum {
	VH_MAGIC = 0, VH_VERSION = 4, VH_FLAGS = 8, VH_CAPACITY = 12,
	VH_GRAIN = 20, VH_DESC_OFF = 28, VH_DESC_SIZE = 36, VH_GTES = 44,
	VH_RGD = 48, VH_GD = 56, VH_OVERHEAD = 64, VH_UNCLEAN = 72,
	VH_NL = 73, VH_COMPRESS = 77,
};

/* ---- sparse extents ---- */

#define VMDK_GT_CACHE 64

struct vmdk_sparse {
	struct vd_host *h;
	uint32_t version, flags;
	uint64_t capacity;   /* sectors */
	uint64_t grain;      /* sectors */
	uint64_t desc_off, desc_size, rgd_off, gd_off, overhead; /* sectors */
	uint32_t gtes;       /* entries per grain table */
	uint32_t gd_entries;
	uint32_t *gd, *rgd;  /* sector offsets of the grain tables */
	bool compressed;
	bool stream_incomplete; /* a stream with nothing after its header */
	bool gd_at_end;      /* the header said GD_AT_END (a footer holds gdOffset) */
	uint64_t file_size;
	uint64_t alloc_end;  /* bytes: where the next grain goes */
	/* grain table cache, direct-mapped by table index */
	struct {
		uint32_t index; /* table index + 1, 0 = empty */
		uint32_t *gt;
	} cache[VMDK_GT_CACHE];
	/* last decompressed grain */
	uint8_t *zgrain;
	uint64_t zgrain_sector; /* file sector of the cached grain + 1, 0 = none */
	uint8_t *zbuf;          /* compressed input buffer */
	size_t zbuf_len;
};

/* Grain lookup result. */
enum { GRAIN_UNALLOCATED, GRAIN_ZERO, GRAIN_DATA, GRAIN_COMPRESSED };

/* Parse and validate the header at sector 0 (and, for GD-at-end streams,
 * the footer); load the grain directories.  BUDGET (NULL: no limit) is
 * the metadata memory left for the image (VMDK_META_MAX): the open fails
 * with -EFBIG, before allocating, if this extent would need more, and
 * subtracts what it may use. */
int vmdk_sparse_open(struct vmdk_sparse **out, struct vd_host *h, uint64_t *budget,
		     struct vd_error *err);
void vmdk_sparse_close(struct vmdk_sparse *sp);
/* Where guest sector SECTOR of the extent lives: kind and file sector. */
int vmdk_sparse_lookup(struct vmdk_sparse *sp, uint64_t sector, int *kind,
		       uint64_t *file_sector, struct vd_error *err);
/* Read/write within one grain (OFF, LEN in bytes relative to the extent). */
/* 1: the grain is not in this layer (BUF untouched) */
int vmdk_sparse_read(struct vmdk_sparse *sp, uint64_t off, void *buf, size_t len,
		     struct vd_error *err);
/* Several grains at once, for sequential I/O: read up to LEN bytes at OFF
 * (extent-relative) while the grains are data adjacent in the file; write
 * a run of whole new grains with one data write and one table write per
 * table.  Return the bytes done (> 0), 0 when the run form does not apply
 * (then use the one-grain calls), or -errno. */
ssize_t vmdk_sparse_read_run(struct vmdk_sparse *sp, uint64_t off, void *buf, size_t len,
			     struct vd_error *err);
ssize_t vmdk_sparse_write_run(struct vmdk_sparse *sp, uint64_t off, const void *buf,
			      size_t len, bool alloc_zeroes, struct vd_error *err);
/* ALLOC_ZEROES: store zeros as data instead of leaving the grain out. */
int vmdk_sparse_write(struct vmdk_sparse *sp, uint64_t off, const void *buf,
		      size_t len, bool alloc_zeroes, struct vd_error *err);
/* Drop the whole grain at OFF (extent-relative): its table entries become
 * 0 (unallocated, reads as zeros) and its space a host hole. */
int vmdk_sparse_discard(struct vmdk_sparse *sp, uint64_t off, struct vd_error *err);
/* Status of the range at OFF (bytes, extent-relative), at most LEN. */
int vmdk_sparse_status(struct vmdk_sparse *sp, uint64_t off, uint64_t len,
		       struct vd_extent *ext, struct vd_error *err);
/* Inflate guest grain GI stored at FILE_SECTOR (compressed extents) into
 * sp->zgrain, checking the record's size and the inflated length. */
int vmdk_sparse_inflate(struct vmdk_sparse *sp, uint64_t gi, uint64_t file_sector,
			struct vd_error *err);
/* A stream holding no grain (every table entry 0) and no more bytes than
 * the empty stream vmdk_stream_create writes: *EMPTY. */
int vmdk_sparse_stream_empty(struct vmdk_sparse *sp, bool *empty, struct vd_error *err);
/* Read the embedded descriptor (NULL if none): malloc'ed, NUL-terminated. */
int vmdk_sparse_descriptor(struct vmdk_sparse *sp, char **text, struct vd_error *err);
/* Check grain directories and tables; notes go to RES. */
int vmdk_sparse_check(struct vmdk_sparse *sp, bool repair, struct vd_check *res,
		      struct vd_error *err);
/* Write an empty sparse extent of CAPACITY sectors into H, with the
 * descriptor DESC embedded (NULL: none). */
/* GRAIN: sectors per grain, a power of two up to 2048 (0: 128, 64 KiB) */
int vmdk_sparse_create(struct vd_host *h, uint64_t capacity, const char *desc, uint64_t grain,
		       struct vd_error *err);

/* ---- descriptor ---- */

enum vmdk_access { VMDK_RW, VMDK_RDONLY, VMDK_NOACCESS };
enum vmdk_etype { VMDK_FLAT, VMDK_SPARSE, VMDK_ZERO, VMDK_COWD, VMDK_SESPARSE };

struct vmdk_desc_extent {
	enum vmdk_access access;
	enum vmdk_etype type;
	char type_name[16]; /* as written: FLAT, VMFS, SPARSE, ZERO ... */
	uint64_t sectors;
	uint64_t offset;    /* sectors, FLAT only */
	bool has_offset;
	char *file;         /* NULL for ZERO */
	unsigned line;      /* descriptor line, for messages */
};

struct vmdk_desc {
	uint32_t cid, parent_cid;
	char create_type[32];
	char parent_name[256];  /* parentFileNameHint */
	char adapter[32];
	char hwversion[16];
	char tools_version[32]; /* ddb.toolsVersion, "" if none */
	char long_content_id[33]; /* ddb.longContentID, "" if none */
	char uuid_image[40], uuid_parent[40], uuid_modify[40], uuid_parent_modify[40];
	uint32_t cylinders, heads, sectors;
	uint32_t bios_cylinders, bios_heads, bios_sectors; /* 0 if none */
	unsigned nextents;
	struct vmdk_desc_extent *extents;
	/* The dialect: which product's lines the writer emits; the parser
	 * notes the dialect keys it saw (vmdk_identity infers it from them). */
	enum vmdk_dialect { VMDK_PLAIN, VMDK_ESXI, VMDK_WORKSTATION, VMDK_VIRTUALBOX } dialect;
	bool thin;               /* ddb.thinProvisioned = "1" */
	bool native_snapshot;    /* isNativeSnapshot="no" (Workstation writes it) */
	bool deletable;          /* ddb.deletable = "true" (Workstation) */
	char encoding[24];       /* encoding= or ddb.encoding, "" if none */
	char uuid_vmware[40];    /* ddb.uuid as RFC 4122 text, "" if none or malformed */
};

/* Parse TEXT (LEN bytes). PATH names the file in messages. */
int vmdk_desc_parse(struct vmdk_desc *d, const char *text, size_t len,
		    const char *path, struct vd_error *err);
void vmdk_desc_free(struct vmdk_desc *d);
/* Render D as descriptor text (malloc'ed). */
char *vmdk_desc_format(const struct vmdk_desc *d);
/* VMware's ddb.uuid form, "60 00 C2 9a 1d 7b 49 44-dc 53 e6 d3 e5 89 7b 0d"
 * (the 16 bytes in order), to RFC 4122 text: 0, or -1 if malformed. */
int vmdk_uuid_from_vmware(const char *v, char out[37]);

/* ---- streamOptimized writer ---- */

struct vmdk_stream;
int vmdk_stream_begin(struct vmdk_stream **out, struct vd_host *h,
		      struct vmdk_sparse *sp, struct vd_error *err);
/* Sequential writes only (offsets never go back). */
int vmdk_stream_write(struct vmdk_stream *st, uint64_t off, const void *buf,
		      size_t len, struct vd_error *err);
/* Write the remaining grains, tables, GD, footer and end-of-stream marker. */
int vmdk_stream_finish(struct vmdk_stream *st, struct vd_error *err);
void vmdk_stream_free(struct vmdk_stream *st);
/* Header + embedded descriptor of an empty stream; the writer appends. */
int vmdk_stream_create(struct vd_host *h, uint64_t capacity, const char *desc,
		       struct vd_error *err);

/* ---- the open image (vmdk.c), described by vmdk-describe.c ---- */

struct vmdk_ext {
	enum vmdk_access access;
	enum vmdk_etype type;
	uint64_t start, length; /* guest bytes */
	uint64_t flat_off;      /* bytes into the file, FLAT */
	struct vd_host *h;      /* NULL for ZERO */
	bool own;               /* h was opened here (close it) */
	struct vmdk_sparse *sp; /* SPARSE */
	struct vmdk_cowd *cw;   /* VMFSSPARSE (COWD) */
	struct vmdk_se *se;     /* SESPARSE (read only) */
	char *file;             /* as named by the descriptor */
};

struct vmdk {
	struct vmdk_desc desc;
	bool has_desc;
	unsigned n;
	struct vmdk_ext *ext;
	unsigned last; /* extent of the last lookup */
	struct vmdk_stream *stream;
};

int vmdk_describe(struct vd_image *img, struct vd_describe *d, struct vd_error *err);
int vmdk_identity(struct vd_image *img, struct vd_identity *id, struct vd_error *err);
/* The identity fields vmdk_create keeps (UUIDs and CID aside), applied to
 * D before the options that override them. */
void vmdk_create_identity(struct vmdk_desc *d, const struct vd_identity *id);

/* vmdk-cowd.c: ESXi vmfsSparse (COWD) delta extents.  Reads and writes
 * stay within one grain; read returns 1 for a grain not in this layer; a
 * write into a new grain must cover it whole. */
struct vmdk_cowd;
int vmdk_cowd_open(struct vmdk_cowd **out, struct vd_host *h, uint64_t sectors,
		   uint64_t *budget, struct vd_error *err);
void vmdk_cowd_close(struct vmdk_cowd *c);
uint64_t vmdk_cowd_grain_bytes(const struct vmdk_cowd *c);
int vmdk_cowd_read(struct vmdk_cowd *c, uint64_t off, void *buf, size_t len, struct vd_error *err);
int vmdk_cowd_write(struct vmdk_cowd *c, uint64_t off, const void *buf, size_t len,
		    struct vd_error *err);
int vmdk_cowd_status(struct vmdk_cowd *c, uint64_t off, uint64_t len, struct vd_extent *ext,
		     struct vd_error *err);

/* vmdk-sesparse.c: ESXi seSparse delta extents, read only.  Reads and
 * status stay within one grain or run of grains; read returns 1 for a
 * grain not in this layer. */
struct vmdk_se;
int vmdk_se_open(struct vmdk_se **out, struct vd_host *h, uint64_t sectors, uint64_t *budget,
		 struct vd_error *err);
void vmdk_se_close(struct vmdk_se *s);
uint64_t vmdk_se_grain_bytes(const struct vmdk_se *s);
int vmdk_se_read(struct vmdk_se *s, uint64_t off, void *buf, size_t len, struct vd_error *err);
int vmdk_se_status(struct vmdk_se *s, uint64_t off, uint64_t len, struct vd_extent *ext,
		   struct vd_error *err);

/* vmdk-link.c: a delta's parent link, a new CID (the driver's set_parent
 * and new_modification) */
int vmdk_set_parent(struct vd_image *img, const struct vd_identity *parent,
		    const char *name, struct vd_error *err);
int vmdk_new_modification(struct vd_image *img, struct vd_error *err);

/* vmdk-create.c: the driver's create operation */
int vmdk_create(struct vd_host *h, const struct vd_create_params *p, struct vd_error *err);

static inline uint64_t vmdk_grain_bytes(const struct vmdk_sparse *sp)
{
	return sp->grain * VD_SECTOR;
}
/* Write the little-endian V at byte OFF of the extent (vmdk-sparse.c). */
int vmdk_sparse_write_u32(struct vmdk_sparse *sp, uint64_t off, uint32_t v, struct vd_error *err);

#endif
