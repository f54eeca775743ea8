/*
 * build: what build.c (the plan, the walk over it and the writing of the
 * image) and build-id.c (the script's file= fields, the digest and the
 * identifiers derived from it, the summary of the finished files) share.
 * Not installed.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef VDISK_BUILD_H
#define VDISK_BUILD_H

#include "../core/ops.h"

#define CHUNK (2u << 20)
#define UNIT 4096u

/* A file= field of the script, by line. */
struct line_file {
	unsigned line;
	char *path;
};

enum { PIECE_SECTOR, PIECE_IMAGE };

struct piece {
	int kind;
	uint64_t off;            /* guest byte offset in the output */
	uint64_t len;            /* bytes (an image: its size rounded to a sector) */
	const uint8_t *data;     /* PIECE_SECTOR */
	struct vd_image *img;    /* PIECE_IMAGE */
	unsigned part;           /* index in mbr.part */
};

struct build {
	const struct vd_build_opts *o;
	struct vd_mbr_script script;
	struct vd_mbr mbr;
	struct vd_mbr_sector sectors[VD_MBR_MAX_SECTORS];
	unsigned nsectors;
	struct vd_image *img[VD_MBR_MAX_PARTS];   /* per mbr.part, borrowed from opened */
	struct {                                  /* every input, opened once */
		const char *path;
		struct vd_image *img;
	} opened[VD_MBR_MAX_PARTS];
	unsigned nopened;
	const char *path[VD_MBR_MAX_PARTS];
	unsigned spec_num[VD_MBR_MAX_PARTS];      /* per script spec */
	const char *spec_file[VD_MBR_MAX_PARTS];
	struct piece pieces[VD_MBR_MAX_SECTORS + VD_MBR_MAX_PARTS];
	unsigned npieces;
	uint64_t part_data[VD_MBR_MAX_PARTS];
	uint64_t written;
};

struct sink {
	/* a buffer of CHUNK bytes, NULL when stopping */
	uint8_t *(*get)(void *ctx);
	/* LEN bytes of BUF (filled) for guest offset OFF; IN_OFF is the offset
	 * in the input (units count from 0 there); SECTOR: a table sector */
	int (*put)(void *ctx, uint64_t off, uint64_t in_off, uint8_t *buf,
		   size_t len, bool sector, unsigned part);
	void *ctx;
};

/* build.c: hand every piece of the plan to S in guest order; call FN for
 * each run of units of BUF (at input offset IN_OFF) that are not all zeros. */
int build_walk(struct build *b, const struct sink *s, struct vd_error *err);
int build_data_runs(uint64_t in_off, const uint8_t *buf, size_t len,
		    int (*fn)(void *ctx, size_t pos, size_t n), void *ctx);

/* build-id.c */
int build_strip_files(const char *text, const char *name, char **clean,
		      struct line_file **files, unsigned *nfiles, struct vd_error *err);
int build_digest(struct build *b, uint64_t size, uint8_t c[32], uint8_t d[32],
		 struct vd_error *err);
void build_derive(const uint8_t d[32], const char *label, uint8_t out[32]);
int build_identity(struct build *b, const uint8_t *d, char **opts,
		   struct vd_build_summary *sum, struct vd_error *err);
int build_file_sha256(const char *path, struct vd_build_file *out, struct vd_error *err);
int build_read_identity(const char *path, struct vd_build_summary *sum, struct vd_error *err);
int build_record_files(const struct vd_tmp *t, struct vd_build_summary *sum,
		       struct vd_error *err);

#endif
