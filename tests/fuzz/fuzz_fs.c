/*
 * libFuzzer harness for the guest filesystem walkers (src/fs): each input
 * is a raw disk on a memory host.  The whole disk is walked, then every
 * partition of its MBR or GPT (vd_ptable_read), each with and without
 * VD_FS_FORCE.
 *
 * Oracles beyond the sanitizers (abort on violation): free ranges come in
 * increasing order, are non-empty, never adjacent or overlapping, lie
 * inside the walked partition and inside the filesystem's total_bytes;
 * a walk that fails leaves a message; the type of a successful walk is
 * a known one; GPT partitions lie in the usable range.
 *
 * Build and run: HARNESS=fuzz_fs tests/fuzz/run.sh 600 (tests/fuzz/README.md).
 *
 * SPDX-License-Identifier: MIT
 */
#include "vdisk-int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_ASSERT(cond, ...)                                                     \
	do {                                                                       \
		if (!(cond)) {                                                     \
			fprintf(stderr, "fuzz_fs: oracle failed: %s: ", #cond);    \
			fprintf(stderr, __VA_ARGS__);                              \
			fprintf(stderr, "\n");                                     \
			abort();                                                   \
		}                                                                  \
	} while (0)

struct seen {
	uint64_t lo, hi;     /* the walked partition, absolute */
	uint64_t last_end;   /* end of the previous range, 0: none yet */
	unsigned n;
};

static int on_range(void *ctx, uint64_t off, uint64_t len)
{
	struct seen *s = ctx;

	FUZZ_ASSERT(len > 0, "empty range at %llu", (unsigned long long)off);
	FUZZ_ASSERT(off >= s->lo && off + len <= s->hi && off + len > off,
		    "range %llu+%llu outside [%llu, %llu)", (unsigned long long)off,
		    (unsigned long long)len, (unsigned long long)s->lo, (unsigned long long)s->hi);
	FUZZ_ASSERT(s->n == 0 || off > s->last_end, "range at %llu not after the previous end %llu",
		    (unsigned long long)off, (unsigned long long)s->last_end);
	s->last_end = off + len;
	s->n++;
	return s->n > 1000000 ? 1 : 0;
}

static void walk(struct vd_image *img, uint64_t off, uint64_t len)
{
	static const char *const types[] = { "ext2", "ext3", "ext4", "xfs", "ntfs", "fat12", "fat16", "fat32", "swap" };

	for (int force = 0; force < 2; force++) {
		struct vd_error err = { 0 };
		struct vd_fs_info info;
		struct seen s = { off, len ? off + len : vd_size(img), 0, 0 };
		bool known = false;
		int r;

		memset(&info, 0, sizeof(info));
		r = vd_fs_free_ranges(img, off, len, force ? VD_FS_FORCE : 0, on_range, &s, &info, &err);
		if (r < 0) {
			FUZZ_ASSERT(err.msg[0] != '\0', "error %d without a message", r);
			continue;
		}
		for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
			known |= !strcmp(info.type, types[i]);
		FUZZ_ASSERT(known, "walk succeeded with type '%s'", info.type);
		FUZZ_ASSERT(r == 1 || s.n == 0 || s.last_end <= s.lo + info.total_bytes,
			    "free range ends at %llu, past the filesystem's %llu bytes",
			    (unsigned long long)s.last_end, (unsigned long long)info.total_bytes);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vd_error err = { 0 };
	struct vd_host *h = vd_host_mem_new("fuzz.img", 0);
	struct vd_image *img = NULL;
	struct vd_ptable *pt;

	if (!h)
		abort();
	if (size && vd_host_pwrite(h, data, size, 0, &err) < 0)
		abort();
	if (vd_open_host(&img, h, "raw", 0, &err) < 0)
		return 0;
	walk(img, 0, 0);
	/* the partition tables are fuzzed too: MBR with its EBR chain, GPT */
	pt = malloc(sizeof(*pt));
	if (pt && vd_ptable_read_overlaps(img, pt, &err) == 0) {
		/* the strict reader refuses exactly the tables with overlaps */
		struct vd_ptable *strict = malloc(sizeof(*strict));
		if (strict) {
			int rs = vd_ptable_read(img, strict, &err);
			FUZZ_ASSERT((rs == 0) == (pt->noverlaps == 0), "vd_ptable_read %d with %u overlaps",
				    rs, pt->noverlaps);
			free(strict);
		}
		for (unsigned i = 0; i < pt->nparts; i++) {
			const struct vd_ptable_part *p = &pt->part[i];
			uint64_t o = p->start * VD_SECTOR, l = p->size * VD_SECTOR;
			FUZZ_ASSERT(vd_ptable_find(pt, p->number) != NULL, "partition %u not found by number", p->number);
			if (!strcmp(pt->label, "gpt"))
				FUZZ_ASSERT(p->size > 0 && p->start >= pt->first_lba &&
					    p->start + p->size - 1 <= pt->last_lba && pt->last_lba < pt->disk_sectors,
					    "GPT partition %u (%llu+%llu) outside the usable range", p->number,
					    (unsigned long long)p->start, (unsigned long long)p->size);
			if (!p->extended && o < vd_size(img) && l <= vd_size(img) - o)
				walk(img, o, l);
		}
	} else if (pt) {
		FUZZ_ASSERT(err.msg[0] != '\0', "partition table error without a message");
	}
	free(pt);
	vd_close(img, NULL);
	return 0;
}
