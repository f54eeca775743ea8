/*
 * rewrite: what rewrite.c (the engine behind compact and defrag) and
 * rewrite-free.c (what may be dropped: the guest filesystems' free space,
 * raw images punched in place) share.  Not installed.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef VDISK_REWRITE_H
#define VDISK_REWRITE_H

#include "../core/ops.h"

#define CHUNK (4u << 20)        /* copy buffer */
#define SCAN_FIRST (64u << 10)  /* first read of a block when looking for data */
#define PUNCH_UNIT 4096u        /* raw compact: smallest hole punched */

enum { MODE_COMPACT, MODE_DEFRAG };

/* What kind of output the image needs. */
enum kind {
	KIND_BLOCKS,  /* dynamic VDI, sparse VMDK: whole blocks allocated on write */
	KIND_FLAT,    /* fixed VDI, flat VMDK: fully allocated */
	KIND_RAW,     /* raw file: sparse, data ranges allocated */
};

/* --fs-aware: a free range inside a unit that is not entirely free */
struct rw_piece {
	uint64_t off, len;
};

/* at most this many pieces are remembered (16 bytes each); past it the
 * rest of the partly free units is kept as it is (and the note says so) */
#define RW_MAX_PIECES (4u << 20)

/* One file of the new image and the guest range it stores. */
struct outfile {
	const char *path;  /* temporary path (owned by the vd_tmp) */
	int role;          /* enum vd_file_role */
	uint64_t gstart, glen;
	uint64_t base;     /* its size after create: metadata */
	uint64_t kept;     /* blocks kept in it */
};

struct rw {
	const char *path;
	int mode;
	const struct vd_rewrite_opts *o;
	struct vd_rewrite_result *res;
	struct vd_image *src, *dst;
	struct vd_info *si, *di;
	struct vd_describe sd, dd;  /* source, new image */
	struct vd_identity id;      /* the source's, kept */
	enum kind kind;
	uint64_t size;
	uint64_t unit, nunits;
	uint8_t *keep, *had;  /* one bit per unit */
	uint8_t *freeb;       /* --fs-aware: unit entirely free in the guest fs */
	uint8_t *dirty;       /* --fs-aware: non-zero bytes in a free piece */
	struct rw_piece *pieces;  /* sorted, within one unit each */
	size_t npieces, cap_pieces;
	bool pieces_full;     /* RW_MAX_PIECES reached */
	uint8_t *buf;         /* CHUNK bytes */
	struct outfile *files;
	unsigned nfiles;
	uint64_t done, total, data_bytes;
};

static inline bool bit(const uint8_t *m, uint64_t i)
{
	return m[i / 8] & (1u << (i % 8));
}

static inline void set_bit(uint8_t *m, uint64_t i)
{
	m[i / 8] |= (uint8_t)(1u << (i % 8));
}

/* Progress: ADD more bytes done (the total grows if it is passed). */
void rw_progress(struct rw *w, uint64_t add);
/* --fs-aware: the free space of the filesystem of the whole disk or of each
 * partition of IMG: units entirely free are marked in W->freeb, or, RAW,
 * punched in place. */
int rw_walk_fs(struct rw *w, struct vd_image *img, bool raw, struct vd_error *err);
/* --fs-aware, after rw_walk_fs: sort and merge the pieces; units they
 * cover entirely become free units. */
int rw_pieces_finish(struct rw *w, struct vd_error *err);
/* --fs-aware, all of it: W->freeb (W->nunits set) and the pieces, for
 * the filesystems of IMG. */
int rw_free_map(struct rw *w, struct vd_image *img, struct vd_error *err);
/* The free pieces within [off, off+len) of BUF (which holds that range)
 * become zeros; true if one of them was not zero yet. */
bool rw_zero_pieces(const struct rw *w, uint64_t off, uint64_t len, uint8_t *buf);
/* The first piece that ends after OFF (W->npieces if none). */
size_t rw_piece_at(const struct rw *w, uint64_t off);
/* A raw image compacted in place: runs of zeros become holes. */
int rw_compact_raw(struct rw *w, struct vd_error *err);

#endif
