/*
 * fragmap: where an image file's bytes live on the host (FIEMAP, or one
 * extent for a block device), read through a window of FM_BATCH extents.
 * Shared by fragmap.c (the join) and hostmap.c.  Not installed.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef VDISK_HOSTMAP_H
#define VDISK_HOSTMAP_H

#include "../core/ops.h"

#define FM_BATCH 256u

struct hostmap {
	const char *path;
	int fd;
	int mode;               /* enum vd_frag_host */
	bool synced;            /* FIEMAP_FLAG_SYNC was passed once */
	struct fiemap *fm;      /* FM_BATCH extents */
	uint64_t cstart, cend;  /* file range the window describes */
	bool valid;
};

struct host_piece {
	uint64_t len;
	bool mapped;      /* inside a host extent */
	bool phys_valid;
	uint64_t phys;
	uint32_t flags;
};

/* The name of the filesystem holding FD ("ext4", "xfs", ...). */
void host_fs_type(int fd, char *out, size_t len);
/* Set HM up for PATH open as FD: FIEMAP, a block device (one extent), or
 * no map when FD is not open (the mode says which). */
int hostmap_init(struct hostmap *hm, const char *path, int fd,
		 struct vd_error *err);
void hostmap_free(struct hostmap *hm);
/* Where file offset F (at most LEN bytes) lives on the host. */
int host_lookup(struct hostmap *hm, uint64_t f, uint64_t len,
		struct host_piece *p, struct vd_error *err);
/* Count the extents and fragments (as filefrag does) of the whole file
 * into SUM. */
int host_count_extents(struct hostmap *hm, struct vd_frag_summary *sum,
		       const volatile int *cancel, struct vd_error *err);

#endif
