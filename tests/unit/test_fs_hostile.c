/*
 * Free-space walkers against hostile metadata: work bounded by the data,
 * not by fields an attacker chooses (issue 12, defect 6: BLOCK_UNINIT
 * groups with s_log_groups_per_flex 31 made the ext walker read every
 * descriptor block of the filesystem for every group), and cancellation
 * in the middle of a walk.
 *
 * SPDX-License-Identifier: MIT
 */
#include "unit.h"
#include "../../src/fs/fs.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>

#define KiB 1024u
#define MiB (1u << 20)

/* 8 MiB, 1 KiB blocks, 8 blocks per group: 1024 groups, all BLOCK_UNINIT,
 * one flex group of 2^31; 32 descriptor blocks at 2..33.  Group K's block
 * bitmap at 40+K, inode bitmap at 1064+K, inode table (8 inodes of 128
 * bytes: one block) at 2088+K. */
#define H_BLOCKS 8192u
#define H_GROUPS 1024u
#define H_SB 1024u

static void put32(uint8_t *d, size_t off, uint32_t v) { le32enc(d + off, v); }
static void put16(uint8_t *d, size_t off, uint16_t v) { le16enc(d + off, v); }

static uint8_t *hostile_ext(void)
{
	uint8_t *d = calloc(1, (size_t)H_BLOCKS * KiB);

	assert_non_null(d);
	put32(d, H_SB + 0x00, H_GROUPS * 8);  /* inodes */
	put32(d, H_SB + 0x04, H_BLOCKS);
	put32(d, H_SB + 0x14, 1);             /* first data block */
	put32(d, H_SB + 0x18, 0);             /* 1 KiB blocks */
	put32(d, H_SB + 0x20, 8);             /* blocks per group */
	put32(d, H_SB + 0x24, 8);
	put32(d, H_SB + 0x28, 8);             /* inodes per group */
	put16(d, H_SB + 0x38, 0xEF53);
	put16(d, H_SB + 0x3A, 1);
	put32(d, H_SB + 0x4C, 1);
	put16(d, H_SB + 0x58, 128);
	put32(d, H_SB + 0x60, 0x200);         /* flex_bg */
	put32(d, H_SB + 0x64, 0x1 | 0x10);    /* sparse_super, gdt_csum */
	d[H_SB + 0x174] = 31;                 /* s_log_groups_per_flex */
	for (uint32_t k = 0; k < H_GROUPS; k++) {
		uint8_t *g = d + 2 * KiB + (size_t)k * 32;
		put32(g + 0, 0, 40 + k);
		put32(g + 4, 0, 1064 + k);
		put32(g + 8, 0, 2088 + k);
		put16(g + 0x12, 0, 0x2);     /* BLOCK_UNINIT */
	}
	return d;
}

static struct vd_image *image_of(const uint8_t *d, size_t size, struct vd_host **hp)
{
	struct vd_error err = { 0 };
	struct vd_host *h = vd_host_mem_new("hostile", size);
	struct vd_image *img = NULL;
	uint64_t n;

	assert_non_null(h);
	memcpy(vd_host_mem_data(h, &n), d, size);
	assert_ok(vd_open_host(&img, h, "raw", 0, &err), &err);
	if (hp)
		*hp = h;
	return img;
}

struct got {
	unsigned n;
	uint64_t off[16], len[16];
	volatile int *cancel_at_first; /* set to SIGTERM by the first range */
};

static int collect(void *ctx, uint64_t off, uint64_t len)
{
	struct got *g = ctx;

	if (g->cancel_at_first)
		*g->cancel_at_first = SIGTERM;
	if (g->n < 16) {
		g->off[g->n] = off;
		g->len[g->n] = len;
	}
	g->n++;
	return 0;
}

/* Used: the superblock and descriptor copies (33 blocks, spilling into
 * the next groups) of groups 0, 1, 3^n, 5^n, 7^n (sparse_super), and
 * blocks 40..3111 (the bitmaps and inode tables).  Free: what is left
 * after 3111 between the copies of groups 625 (5^4) and 729 (3^6)
 * (computed independently with a set of used blocks). */
static void test_ext_uninit_flex_bounded(void **state)
{
	struct vd_error err = { 0 };
	uint8_t *d = hostile_ext();
	struct vd_host *h;
	struct vd_image *img = image_of(d, (size_t)H_BLOCKS * KiB, &h);
	struct vd_fs_info info;
	struct got g = { 0 };
	unsigned nreads;

	(void)state;
	vd_host_mem_faults(h)->nreads = 0;
	assert_ok(vd_fs_free_ranges(img, 0, 0, 0, collect, &g, &info, &err), &err);
	nreads = vd_host_mem_faults(h)->nreads;
	/* the descriptor table once for the flex group and once for the
	 * groups, the superblock and the probe: not 1024 x 32 */
	if (nreads > 200)
		fail_msg("the walk did %u reads (bound 200)", nreads);
	assert_int_equal(g.n, 3);
	assert_int_equal(g.off[0], 3112 * KiB);
	assert_int_equal(g.len[0], (5001 - 3112) * KiB);
	assert_int_equal(g.off[1], 5034 * KiB);
	assert_int_equal(g.len[1], (5833 - 5034) * KiB);
	assert_int_equal(g.off[2], 5866 * KiB);
	assert_int_equal(g.len[2], (H_BLOCKS - 5866) * KiB);
	assert_int_equal(info.free_bytes, 5014 * KiB);
	vd_close(img, NULL);
	free(d);
}

/* The same with every group's metadata apart (block bitmap and inode
 * bitmap in one block, a free block, the inode table): 2048 separate
 * extents, each found for the groups it lies in. */
static void test_ext_uninit_scattered(void **state)
{
	struct vd_error err = { 0 };
	uint8_t *d = hostile_ext();
	struct vd_image *img;
	struct vd_fs_info info;
	struct got g = { 0 };

	(void)state;
	for (uint32_t k = 0; k < H_GROUPS; k++) {
		uint8_t *x = d + 2 * KiB + (size_t)k * 32;
		put32(x + 0, 0, 40 + 3 * k);
		put32(x + 4, 0, 40 + 3 * k);
		put32(x + 8, 0, 42 + 3 * k);
	}
	img = image_of(d, (size_t)H_BLOCKS * KiB, NULL);
	assert_ok(vd_fs_free_ranges(img, 0, 0, 0, collect, &g, &info, &err), &err);
	assert_int_equal(g.n, 934);
	assert_int_equal(g.off[0], 107 * KiB);
	assert_int_equal(g.len[0], KiB);
	assert_int_equal(g.off[1], 110 * KiB);
	assert_int_equal(info.free_bytes, 5945 * KiB);
	vd_close(img, NULL);
	free(d);
}

/* No metadata inside the filesystem at all (every pointer past
 * s_blocks_count): an empty list, only the superblock and descriptor
 * copies are used (found by fuzz_fs: qsort of an empty, NULL list). */
static void test_ext_uninit_no_meta(void **state)
{
	struct vd_error err = { 0 };
	uint8_t *d = hostile_ext();
	struct vd_image *img;
	struct vd_fs_info info;
	struct got g = { 0 };

	(void)state;
	for (uint32_t k = 0; k < H_GROUPS; k++) {
		uint8_t *x = d + 2 * KiB + (size_t)k * 32;
		put32(x + 0, 0, 0xffffff00u);
		put32(x + 4, 0, 0xffffff00u);
		put32(x + 8, 0, 0xffffff00u);
	}
	img = image_of(d, (size_t)H_BLOCKS * KiB, NULL);
	assert_ok(vd_fs_free_ranges(img, 0, 0, 0, collect, &g, &info, &err), &err);
	assert_int_equal(info.free_bytes, 7806 * KiB);
	vd_close(img, NULL);
	free(d);
}

/* Cancellation: set by the first range, the walk stops with -ECANCELED
 * at its next step instead of walking the other groups. */
static void test_ext_cancel(void **state)
{
	struct vd_error err = { 0 };
	uint8_t *d = hostile_ext();
	struct vd_image *img = image_of(d, (size_t)H_BLOCKS * KiB, NULL);
	volatile int cancel = 0;
	struct got g = { .cancel_at_first = &cancel };

	(void)state;
	assert_int_equal(vd_fs_free_ranges_cancel(img, 0, 0, 0, &cancel, collect, &g, NULL, &err),
			 -ECANCELED);
	assert_msg_has(&err, "interrupted");
	assert_int_equal(g.n, 1);
	/* already set: nothing is read past the superblock */
	vd_error_clear(&err);
	g.n = 0;
	assert_int_equal(vd_fs_free_ranges_cancel(img, 0, 0, 0, &cancel, collect, &g, NULL, &err),
			 -ECANCELED);
	assert_int_equal(g.n, 0);
	vd_close(img, NULL);
	free(d);
}

/* The swap walker (one range) and the dispatcher honour it too. */
static void test_swap_cancel(void **state)
{
	struct vd_error err = { 0 };
	uint8_t *d = calloc(1, MiB);
	struct vd_image *img;
	volatile int cancel = SIGTERM;
	struct got g = { 0 };

	(void)state;
	assert_non_null(d);
	memcpy(d + 4096 - 10, "SWAPSPACE2", 10);
	put32(d, 1024, 1);
	put32(d, 1028, 255);
	img = image_of(d, MiB, NULL);
	assert_int_equal(vd_fs_free_ranges_cancel(img, 0, 0, 0, &cancel, collect, &g, NULL, &err),
			 -ECANCELED);
	assert_int_equal(g.n, 0);
	cancel = 0;
	vd_error_clear(&err);
	assert_ok(vd_fs_free_ranges_cancel(img, 0, 0, 0, &cancel, collect, &g, NULL, &err), &err);
	assert_int_equal(g.n, 1);
	vd_close(img, NULL);
	free(d);
}

/* tests/fuzz/make-seeds-fs.sh: VDISK_FUZZ_SEEDS=DIR writes the hostile
 * image's head (superblock and descriptors: 64 KiB) as a seed. */
static void test_write_seed(void **state)
{
	const char *dir = getenv("VDISK_FUZZ_SEEDS");
	uint8_t *d;
	char path[4096];
	FILE *f;

	(void)state;
	if (!dir)
		skip();
	d = hostile_ext();
	le32enc(d + H_SB + 0x04, 64); /* 8 groups: the seed is one 64 KiB */
	snprintf(path, sizeof(path), "%s/ext-uninit-flex31.img", dir);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(d, 1, 64 * KiB, f), 64 * KiB);
	fclose(f);
	free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ext_uninit_flex_bounded),
		cmocka_unit_test(test_ext_uninit_scattered),
		cmocka_unit_test(test_ext_uninit_no_meta),
		cmocka_unit_test(test_ext_cancel),
		cmocka_unit_test(test_swap_cancel),
		cmocka_unit_test(test_write_seed),
	};
	return unit_run(tests);
}
