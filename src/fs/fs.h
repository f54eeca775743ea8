/*
 * Guest filesystem walkers: each answers "which byte ranges of this
 * partition are free", reading through vd_read only.  The public entry
 * point is vd_fs_free_ranges (include/vdisk.h); this header is the contract
 * between the dispatcher (fs.c) and the walkers, and can be included from
 * src/ops.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef VDISK_FS_H
#define VDISK_FS_H

#include "../core/base.h"

/* One walk.  Walkers see partition-relative offsets; vd_fs_emit turns them
 * into absolute guest offsets, checks bounds and order, and merges
 * adjacent ranges before the caller's callback sees them. */
struct vd_fs_walk {
	struct vd_image *img;
	uint64_t part_off, part_len;
	unsigned flags;              /* VD_FS_* */
	const volatile int *cancel;  /* non-zero: stop with -ECANCELED */
	vd_fs_free_fn cb;
	void *ctx;
	struct vd_fs_info *info;     /* never NULL inside a walk */
	struct vd_error *err;
	/* pending merged range (absolute), len 0 if none */
	uint64_t pend_off, pend_len;
	uint64_t last_end;           /* end of the last range emitted (relative) */
};

/* -ECANCELED ("interrupted") when the caller asked to stop, else 0.
 * vd_fs_read and vd_fs_emit check it; a walker loop that does neither
 * calls it itself. */
int vd_fs_cancelled(struct vd_fs_walk *w);

/* Read LEN bytes at partition-relative OFF; -EINVAL naming WHAT when the
 * range leaves the partition. */
int vd_fs_read(struct vd_fs_walk *w, uint64_t off, void *buf, size_t len,
	       const char *what);
/* Report [OFF, OFF+LEN) (partition-relative) as free.  Ranges must come
 * in increasing order; they are clipped to the filesystem's total_bytes. */
int vd_fs_emit(struct vd_fs_walk *w, uint64_t off, uint64_t len);

/* The walkers.  probe: does BUF (the first LEN bytes of the partition,
 * at least VD_FS_PROBE_LEN unless the partition is smaller) hold this
 * filesystem?  walk: fill w->info (type, label, uuid, block_size,
 * total_bytes) and then emit every free range. */
#define VD_FS_PROBE_LEN 65536u

struct vd_fs_walker {
	const char *name;
	bool (*probe)(const uint8_t *buf, size_t len);
	int (*walk)(struct vd_fs_walk *w);
};

/* Does a walker know the content of [OFF, OFF+LEN) (LEN 0: to the end)?
 * 1 yes, 0 no, -errno when it could not be read.  Reads the first 64 KiB
 * only. */
int vd_fs_recognise(struct vd_image *img, uint64_t off, uint64_t len,
		    struct vd_error *err);

extern const struct vd_fs_walker vd_fs_ext;
extern const struct vd_fs_walker vd_fs_fat;
extern const struct vd_fs_walker vd_fs_xfs;
extern const struct vd_fs_walker vd_fs_swap;
extern const struct vd_fs_walker vd_fs_ntfs;

#endif
