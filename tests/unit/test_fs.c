/*
 * Free-space walkers on hand-built filesystems in memory images (ext2
 * with 32- and 64-bit descriptors, BLOCK_UNINIT, FAT12, swap, XFS v4 and
 * v5 with clean, wrapped, dirty and torn logs), their
 * rejections by poked fields, the dispatcher, and vd_zerofree on a file
 * (VDI: whole blocks released, partial ones zeroed, used data untouched,
 * a second dry run finds nothing).
 *
 * SPDX-License-Identifier: MIT
 */
#include "unit.h"
#include "../../src/fs/fs.h"
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>

#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#define KiB 1024u
#define MiB (1u << 20)

struct ranges {
	unsigned n;
	uint64_t off[64], len[64];
	int stop_after; /* return -EINTR after this many (0: never) */
};

static int collect(void *ctx, uint64_t off, uint64_t len)
{
	struct ranges *r = ctx;

	assert_true(r->n < 64);
	r->off[r->n] = off;
	r->len[r->n] = len;
	r->n++;
	return r->stop_after && (int)r->n == r->stop_after ? -EINTR : 0;
}

static struct vd_image *mem_image(uint64_t size)
{
	struct vd_error err = { 0 };
	struct vd_host *h = vd_host_mem_new("mem", size);
	struct vd_image *img = NULL;

	assert_non_null(h);
	assert_ok(vd_open_host(&img, h, "raw", VD_OPEN_RDWR, &err), &err);
	return img;
}

static void put(struct vd_image *img, uint64_t off, const void *p, size_t n)
{
	struct vd_error err = { 0 };

	assert_ok(vd_write(img, off, p, n, &err), &err);
}

static void put16(struct vd_image *img, uint64_t off, uint16_t v)
{
	uint8_t b[2];

	le16enc(b, v);
	put(img, off, b, 2);
}

static void put32(struct vd_image *img, uint64_t off, uint32_t v)
{
	uint8_t b[4];

	le32enc(b, v);
	put(img, off, b, 4);
}

static void expect_range(const struct ranges *r, unsigned i, uint64_t off, uint64_t len)
{
	if (i >= r->n)
		fail_msg("range %u missing (%u ranges)", i, r->n);
	if (r->off[i] != off || r->len[i] != len)
		fail_msg("range %u: got %llu+%llu, expected %llu+%llu", i,
			 (unsigned long long)r->off[i], (unsigned long long)r->len[i],
			 (unsigned long long)off, (unsigned long long)len);
}

/* ---- ext2: 1 KiB blocks, 2047 blocks in two groups ---- */

#define SB 1024u
#define EXT_BLOCKS 2048u

/* bitmap helper: set bits [a, b) of the bitmap block at BLOCK */
static void bits(struct vd_image *img, uint64_t block, unsigned a, unsigned b)
{
	uint8_t bm[1024] = { 0 };
	struct vd_error err = { 0 };

	assert_ok(vd_read(img, block * 1024, bm, sizeof(bm), &err), &err);
	for (unsigned i = a; i < b; i++)
		bm[i / 8] |= (uint8_t)(1u << (i % 8));
	put(img, block * 1024, bm, sizeof(bm));
}

/* desc_size 0: 32-byte descriptors */
static struct vd_image *make_ext(unsigned desc_size)
{
	struct vd_image *img = mem_image(EXT_BLOCKS * 1024);
	unsigned ds = desc_size ? desc_size : 32;

	put32(img, SB + 0x00, 32);            /* inodes */
	put32(img, SB + 0x04, EXT_BLOCKS - 1 + 1); /* s_blocks_count: 2048 */
	put32(img, SB + 0x14, 1);             /* first data block */
	put32(img, SB + 0x18, 0);             /* 1 KiB */
	put32(img, SB + 0x20, 1024);          /* blocks per group */
	put32(img, SB + 0x24, 1024);
	put32(img, SB + 0x28, 16);            /* inodes per group */
	put16(img, SB + 0x38, 0xEF53);
	put16(img, SB + 0x3A, 1);             /* clean */
	put32(img, SB + 0x4C, 1);             /* dynamic rev */
	put16(img, SB + 0x58, 128);
	put32(img, SB + 0x64, 0x1);           /* sparse_super */
	put(img, SB + 0x78, "unitfs", 6);
	if (desc_size) {
		put32(img, SB + 0x60, 0x80);  /* 64bit */
		put16(img, SB + 0xFE, (uint16_t)desc_size);
	}
	/* group 0: bitmap 3, inode bitmap 4, table 5-6; group 1 (has the
	 * backup superblock at 1025 and descriptors at 1026): 1027, 1028,
	 * 1029-1030 */
	put32(img, 2 * 1024 + 0, 3);
	put32(img, 2 * 1024 + 4, 4);
	put32(img, 2 * 1024 + 8, 5);
	put32(img, 2 * 1024 + ds + 0, 1027);
	put32(img, 2 * 1024 + ds + 4, 1028);
	put32(img, 2 * 1024 + ds + 8, 1029);
	/* used: group 0 blocks 1..10 and 101..200; group 1 blocks 1025..1030;
	 * the last group's padding bit (block 2048 does not exist) */
	bits(img, 3, 0, 10);
	bits(img, 3, 100, 200);
	bits(img, 1027, 0, 6);
	bits(img, 1027, 1023, 1024);
	return img;
}

static void test_ext_bitmaps(void **state)
{
	unsigned sizes[] = { 0, 64 };

	(void)state;
	for (unsigned k = 0; k < 2; k++) {
		struct vd_error err = { 0 };
		struct ranges r = { 0 };
		struct vd_fs_info info;
		struct vd_image *img = make_ext(sizes[k]);

		assert_ok(vd_fs_free_ranges(img, 0, 0, 0, collect, &r, &info, &err), &err);
		assert_string_equal(info.type, sizes[k] ? "ext4" : "ext2");
		assert_string_equal(info.label, "unitfs");
		assert_int_equal(info.block_size, 1024);
		assert_int_equal(info.total_bytes, EXT_BLOCKS * 1024);
		assert_int_equal(r.n, 3);
		expect_range(&r, 0, 11 * KiB, 90 * KiB);
		/* the tail of group 0 and the free part of group 1 are not
		 * adjacent (1025..1030 used) */
		expect_range(&r, 1, 201 * KiB, (1025 - 201) * KiB);
		expect_range(&r, 2, 1031 * KiB, (2047 - 1031 + 1) * KiB);
		vd_close(img, NULL);

		/* group 1's bitmap all clear: its free run continues group 0's */
		img = make_ext(sizes[k]);
		{
			uint8_t z[1024] = { 0 };
			put(img, 1027 * 1024, z, sizeof(z));
			bits(img, 1027, 1023, 1024);
		}
		memset(&r, 0, sizeof(r));
		assert_ok(vd_fs_free_ranges(img, 0, 0, 0, collect, &r, &info, &err), &err);
		assert_int_equal(r.n, 2);
		expect_range(&r, 1, 201 * KiB, (2047 - 201 + 1) * KiB);
		assert_int_equal(info.free_bytes, 90 * KiB + (2047 - 201 + 1) * KiB);
		vd_close(img, NULL);
	}
}

static void test_ext_64bit_hi(void **state)
{
	struct vd_error err = { 0 };
	struct ranges r = { 0 };
	struct vd_image *img = make_ext(64);

	(void)state;
	/* bg_block_bitmap_hi of group 1 set: block 2^32 + 1027 is outside */
	put32(img, 2 * 1024 + 64 + 0x20, 1);
	assert_int_equal(vd_fs_free_ranges(img, 0, 0, 0, collect, &r, NULL, &err), -EINVAL);
	assert_msg_has(&err, "bg_block_bitmap");
	vd_close(img, NULL);
}

static void test_ext_block_uninit(void **state)
{
	struct vd_error err = { 0 };
	struct ranges r = { 0 };
	struct vd_image *img = make_ext(0);
	uint8_t ff[1024];

	(void)state;
	/* group 1 BLOCK_UNINIT with group checksums: its on-disk bitmap is
	 * garbage (all used) and must not be read */
	put32(img, SB + 0x64, 0x1 | 0x10);
	put16(img, 2 * 1024 + 32 + 0x12, 0x2);
	memset(ff, 0xff, sizeof(ff));
	put(img, 1027 * 1024, ff, sizeof(ff));
	assert_ok(vd_fs_free_ranges(img, 0, 0, 0, collect, &r, NULL, &err), &err);
	assert_int_equal(r.n, 3);
	/* backup superblock 1025, descriptors 1026, bitmaps 1027-1028, inode
	 * table 1029-1030 (16 inodes of 128 bytes) are used */
	expect_range(&r, 1, 201 * KiB, (1025 - 201) * KiB);
	expect_range(&r, 2, 1031 * KiB, (2047 - 1031 + 1) * KiB);
	vd_close(img, NULL);

	/* without group checksums the flag means nothing: the bitmap is read */
	img = make_ext(0);
	put16(img, 2 * 1024 + 32 + 0x12, 0x2);
	put(img, 1027 * 1024, ff, sizeof(ff));
	memset(&r, 0, sizeof(r));
	assert_ok(vd_fs_free_ranges(img, 0, 0, 0, collect, &r, NULL, &err), &err);
	assert_int_equal(r.n, 2);
	expect_range(&r, 1, 201 * KiB, (1025 - 201) * KiB);
	vd_close(img, NULL);
}

static void test_ext_refusals(void **state)
{
	struct {
		unsigned off, width;
		uint32_t value;
		int want, want_forced;
		const char *msg;
	} pokes[] = {
		{ 0x60, 4, 0x4, -EUCLEAN, 0, "needs journal recovery" },
		{ 0x3A, 2, 0x3, -EUCLEAN, 0, "has errors" },
		{ 0x3A, 2, 0x0, -EUCLEAN, 0, "not cleanly unmounted" },
		{ 0x60, 4, 0x80000, -ENOTSUP, -ENOTSUP, "unknown s_feature_incompat" },
		{ 0x60, 4, 0x8, -ENOTSUP, -ENOTSUP, "external journal" },
		{ 0x04, 4, 4096, -EINVAL, -EINVAL, "s_blocks_count" },
		{ 0x18, 4, 9, -EINVAL, -EINVAL, "s_log_block_size" },
		{ 0x20, 4, 0, -EINVAL, -EINVAL, "s_blocks_per_group" },
		{ 0x58, 2, 100, -EINVAL, -EINVAL, "s_inode_size" },
	};

	(void)state;
	for (unsigned i = 0; i < VD_ARRAY_SIZE(pokes); i++) {
		struct vd_error err = { 0 };
		struct vd_image *img = make_ext(0);
		int r;

		if (pokes[i].width == 2)
			put16(img, SB + pokes[i].off, (uint16_t)pokes[i].value);
		else
			put32(img, SB + pokes[i].off, pokes[i].value);
		r = vd_fs_free_ranges(img, 0, 0, 0, NULL, NULL, NULL, &err);
		if (r != pokes[i].want)
			fail_msg("poke %u: got %d (%s), expected %d", i, r, err.msg, pokes[i].want);
		assert_msg_has(&err, pokes[i].msg);
		vd_error_clear(&err);
		r = vd_fs_free_ranges(img, 0, 0, VD_FS_FORCE, NULL, NULL, NULL, &err);
		if (r != pokes[i].want_forced)
			fail_msg("poke %u forced: got %d (%s), expected %d", i, r, err.msg, pokes[i].want_forced);
		vd_close(img, NULL);
	}
}

/* ---- FAT12: 512-byte sectors, 4 per cluster, 4 MiB ---- */

static void fat12_set(uint8_t *fat, unsigned c, unsigned v)
{
	unsigned o = c * 3 / 2;

	if (c & 1) {
		fat[o] = (uint8_t)((fat[o] & 0x0f) | ((v & 0x0f) << 4));
		fat[o + 1] = (uint8_t)(v >> 4);
	} else {
		fat[o] = (uint8_t)v;
		fat[o + 1] = (uint8_t)((fat[o + 1] & 0xf0) | ((v >> 8) & 0x0f));
	}
}

/* reserved 4, 2 FATs of 8 sectors, 512 root entries (32 sectors): the
 * data area starts at sector 52; (8192 - 52) / 4 = 2035 clusters.
 * Clusters 2..USED+1 are in use, so is cluster BAD (bad-cluster mark). */
#define FAT_DATA (52u * 512)
#define FAT_CL 2048u
static void write_fat12(struct vd_image *img, uint64_t base, unsigned used, unsigned bad)
{
	uint8_t bs[512] = { 0 }, fat[4096] = { 0 };

	bs[0] = 0xEB; bs[1] = 0x3C; bs[2] = 0x90;
	memcpy(bs + 3, "mkfs.fat", 8);
	le16enc(bs + 0x0B, 512);
	bs[0x0D] = 4;
	le16enc(bs + 0x0E, 4);
	bs[0x10] = 2;
	le16enc(bs + 0x11, 512);
	le16enc(bs + 0x13, 8192);
	bs[0x15] = 0xF8;
	le16enc(bs + 0x16, 8);
	bs[0x26] = 0x29;
	le32enc(bs + 0x27, 0x12345678);
	memcpy(bs + 0x2B, "UNITFAT    ", 11);
	memcpy(bs + 0x36, "FAT12   ", 8);
	bs[510] = 0x55; bs[511] = 0xAA;
	put(img, base, bs, sizeof(bs));
	fat12_set(fat, 0, 0xFF8);
	fat12_set(fat, 1, 0xFFF);
	for (unsigned c = 2; c < used + 2; c++)
		fat12_set(fat, c, c == used + 1 ? 0xFFF : c + 1);
	if (bad)
		fat12_set(fat, bad, 0xFF7);
	put(img, base + 4 * 512, fat, sizeof(fat));
	put(img, base + 12 * 512, fat, sizeof(fat));
}

static void test_fat12(void **state)
{
	struct vd_error err = { 0 };
	struct ranges r = { 0 };
	struct vd_fs_info info;
	struct vd_image *img = mem_image(8 * MiB);
	const uint64_t base = MiB; /* a partition at 1 MiB */
	uint8_t b;

	(void)state;
	write_fat12(img, base, 10, 20);
	assert_ok(vd_fs_free_ranges(img, base, 4 * MiB, 0, collect, &r, &info, &err), &err);
	assert_string_equal(info.type, "fat12");
	assert_string_equal(info.label, "UNITFAT");
	assert_string_equal(info.uuid, "1234-5678");
	assert_int_equal(info.block_size, FAT_CL);
	assert_int_equal(r.n, 2);
	/* absolute offsets: clusters 12..19, then 21..2036 */
	expect_range(&r, 0, base + FAT_DATA + 10 * FAT_CL, 8 * FAT_CL);
	expect_range(&r, 1, base + FAT_DATA + 19 * FAT_CL, (2036 - 21 + 1) * (uint64_t)FAT_CL);

	/* the callback's value stops the walk */
	memset(&r, 0, sizeof(r));
	r.stop_after = 1;
	assert_int_equal(vd_fs_free_ranges(img, base, 4 * MiB, 0, collect, &r, NULL, &err), -EINTR);
	assert_int_equal(r.n, 1);

	/* dirty volume: refused unless forced */
	b = 0x01;
	put(img, base + 0x25, &b, 1);
	assert_int_equal(vd_fs_free_ranges(img, base, 4 * MiB, 0, NULL, NULL, NULL, &err), -EUCLEAN);
	assert_msg_has(&err, "dirty");
	assert_ok(vd_fs_free_ranges(img, base, 4 * MiB, VD_FS_FORCE, NULL, NULL, NULL, &err), &err);

	/* larger than the partition */
	assert_int_equal(vd_fs_free_ranges(img, base, 2 * MiB, VD_FS_FORCE, NULL, NULL, NULL, &err), -EINVAL);
	assert_msg_has(&err, "BPB_TotSec");
	/* nothing at offset 0 */
	assert_int_equal(vd_fs_free_ranges(img, 0, MiB, 0, NULL, NULL, NULL, &err), -ENOTSUP);
	vd_close(img, NULL);
}

/* ---- swap ---- */

static void test_swap(void **state)
{
	struct vd_error err = { 0 };
	struct ranges r = { 0 };
	struct vd_fs_info info;
	struct vd_image *img = mem_image(MiB);

	(void)state;
	put(img, 4096 - 10, "SWAPSPACE2", 10);
	put32(img, 1024, 1);
	put32(img, 1028, 255);
	put(img, 1052, "unitswap", 8);
	assert_ok(vd_fs_free_ranges(img, 0, 0, 0, collect, &r, &info, &err), &err);
	assert_string_equal(info.type, "swap");
	assert_string_equal(info.label, "unitswap");
	assert_int_equal(r.n, 1);
	expect_range(&r, 0, 4096, MiB - 4096);

	put32(img, 1028, 256); /* one page too many */
	assert_int_equal(vd_fs_free_ranges(img, 0, 0, 0, NULL, NULL, NULL, &err), -EINVAL);
	assert_msg_has(&err, "last_page 256");
	put32(img, 1028, 255);
	put32(img, 1024, 2);
	assert_int_equal(vd_fs_free_ranges(img, 0, 0, 0, NULL, NULL, NULL, &err), -EINVAL);
	assert_msg_has(&err, "version 2");
	/* a hibernation image is not swap */
	put(img, 4096 - 10, "S1SUSPEND\0", 10);
	assert_int_equal(vd_fs_free_ranges(img, 0, 0, 0, NULL, NULL, NULL, &err), -ENOTSUP);
	vd_close(img, NULL);
}

/* ---- XFS: 1 KiB blocks, 512-byte sectors, AGs of 128 and 122 blocks ---- */

#define XBS 1024u
#define XAG 128u
#define XDBLOCKS 250u
#define XLOG_AGBNO 64u
#define XLOG_BLOCKS 16u   /* 32 log blocks of 512 bytes */
#define XSIZE (256u * KiB)
#define XLOG_BB(i) (XLOG_AGBNO * XBS + (i) * 512u)

static const uint8_t xuuid[16] = { 0x5a, 0x1e, 0x3c, 0x4d, 0x01, 0x02, 0x43, 0x04,
				   0x85, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c };

static void be16enc(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void be32enc(uint8_t *p, uint32_t v)
{
	be16enc(p, (uint16_t)(v >> 16));
	be16enc(p + 2, (uint16_t)v);
}

static void be64enc(uint8_t *p, uint64_t v)
{
	be32enc(p, (uint32_t)(v >> 32));
	be32enc(p + 4, (uint32_t)v);
}

/* CRC-32C, bit by bit (independent of the walker's table), with the four
 * bytes at CRC_OFF taken as zero, stored little-endian */
static void set_crc32c(uint8_t *p, size_t n, size_t crc_off)
{
	uint32_t c = 0xFFFFFFFFu;

	for (size_t i = 0; i < n; i++) {
		c ^= (i >= crc_off && i < crc_off + 4) ? 0 : p[i];
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
	}
	le32enc(p + crc_off, ~c);
}

/* A bno btree block at block BNO of AG AG: LEVEL 0 takes (start, length)
 * pairs, a node (key, pointer) pairs. */
static void xfs_bt(uint8_t *img, bool v5, unsigned ag, unsigned bno, unsigned level,
		   uint32_t left, uint32_t right, unsigned n, const uint32_t *pairs)
{
	uint8_t *b = img + ((size_t)ag * XAG + bno) * XBS;
	unsigned hdr = v5 ? 56 : 16, maxrecs = (XBS - hdr) / 12;

	memcpy(b, v5 ? "AB3B" : "ABTB", 4);
	be16enc(b + 4, (uint16_t)level);
	be16enc(b + 6, (uint16_t)n);
	be32enc(b + 8, left);
	be32enc(b + 12, right);
	if (v5) {
		be64enc(b + 16, ((uint64_t)ag * XAG + bno) * (XBS / 512));
		memcpy(b + 32, xuuid, 16);
		be32enc(b + 48, ag);
	}
	for (unsigned i = 0; i < n; i++) {
		if (level == 0) {
			be32enc(b + hdr + 8 * i, pairs[2 * i]);
			be32enc(b + hdr + 8 * i + 4, pairs[2 * i + 1]);
		} else {
			be32enc(b + hdr + 8 * i, pairs[2 * i]);
			be32enc(b + hdr + 8 * maxrecs + 4 * i, pairs[2 * i + 1]);
		}
	}
}

/* A log record header at log block BB (one 512-byte block of data
 * follows), and its operation header in that block. */
static void xfs_logrec(uint8_t *img, unsigned bb, unsigned data_bb, uint32_t cycle,
		       uint32_t data_cycle, bool unmount)
{
	uint8_t *h = img + XLOG_BB(bb), *d = img + XLOG_BB(data_bb);

	be32enc(h, 0xFEEDBABEu);
	be32enc(h + 4, cycle);
	be32enc(h + 8, 2);
	be32enc(h + 12, 512);
	be64enc(h + 16, (uint64_t)cycle << 32 | bb);
	be64enc(h + 24, (uint64_t)cycle << 32 | bb);
	be32enc(h + 40, 1);
	be32enc(h + 300, 1);
	memcpy(h + 304, xuuid, 16);
	be32enc(h + 320, 32768);
	be32enc(d, data_cycle);                 /* the cycle stamp */
	be32enc(d + 4, 8);                      /* oh_len */
	d[8] = unmount ? 0xAA : 0x69;           /* oh_clientid: log, transaction */
	d[9] = unmount ? 0x20 : 0x01;           /* oh_flags: UNMOUNT_TRANS, START_TRANS */
	le16enc(d + 12, unmount ? 0x556e : 0x1234); /* h_fmt 1: little-endian */
}

enum { XLOG_CLEAN, XLOG_DIRTY, XLOG_TORN, XLOG_WRAPPED, XLOG_NEVER };

static void xfs_set_log(uint8_t *img, int kind)
{
	memset(img + XLOG_BB(0), 0, XLOG_BLOCKS * XBS); /* cycle 0 everywhere */
	switch (kind) {
	case XLOG_CLEAN:
		xfs_logrec(img, 0, 1, 1, 1, true);          /* head at block 2 */
		break;
	case XLOG_DIRTY:
		xfs_logrec(img, 0, 1, 1, 1, true);
		xfs_logrec(img, 2, 3, 1, 1, false);         /* a transaction after it */
		break;
	case XLOG_TORN:
		xfs_logrec(img, 0, 1, 1, 1, true);
		be32enc(img + XLOG_BB(9), 1);               /* a later write landed */
		break;
	case XLOG_WRAPPED:
		/* second pass: blocks 1..31 from the first one, the unmount
		 * record's header in the last block, its data wrapped to 0 */
		for (unsigned i = 1; i < 31; i++)
			be32enc(img + XLOG_BB(i), 1);
		xfs_logrec(img, 31, 0, 1, 2, true);         /* head at block 1 */
		break;
	}
}

static void xfs_fix_crcs(uint8_t *img)
{
	static const unsigned bt[][2] = { { 0, 2 }, { 1, 2 }, { 1, 3 }, { 1, 4 } };

	set_crc32c(img, 512, 224);
	for (unsigned ag = 0; ag < 2; ag++)
		set_crc32c(img + ag * XAG * XBS + 512, 512, 216);
	for (unsigned i = 0; i < VD_ARRAY_SIZE(bt); i++)
		set_crc32c(img + (bt[i][0] * XAG + bt[i][1]) * XBS, XBS, 52);
}

/* AG 0: free 10..29, 40..63, 80..127 (the log is 64..79), a one-block
 * bno btree at block 2; AG 1 (122 blocks): free 10..14, 20..29, 100..121
 * in a two-level btree (root 2, leaves 3 and 4). */
static uint8_t *make_xfs_buf(bool v5)
{
	uint8_t *img = calloc(1, XSIZE), *sb = img;
	static const uint32_t leaf0[] = { 10, 20, 40, 24, 80, 48 };
	static const uint32_t root1[] = { 10, 3, 100, 4 };
	static const uint32_t leaf1a[] = { 10, 5, 20, 10 };
	static const uint32_t leaf1b[] = { 100, 22 };
	const uint32_t freeblks[2] = { 92, 37 };

	assert_non_null(img);
	memcpy(sb, "XFSB", 4);
	be32enc(sb + 4, XBS);
	be64enc(sb + 8, XDBLOCKS);
	memcpy(sb + 32, xuuid, 16);
	be64enc(sb + 48, XLOG_AGBNO);                  /* AG 0 << sb_agblklog | 64 */
	be32enc(sb + 84, XAG);
	be32enc(sb + 88, 2);
	be32enc(sb + 96, XLOG_BLOCKS);
	be16enc(sb + 100, v5 ? 0xB4A5 : 0xB4A4);
	be16enc(sb + 102, 512);
	memcpy(sb + 108, "unitxfs", 7);
	sb[120] = 10;
	sb[121] = 9;
	sb[124] = 7;
	if (v5)
		be32enc(sb + 216, 0x1);                /* FTYPE */
	for (unsigned ag = 0; ag < 2; ag++) {
		uint8_t *agf = img + ag * XAG * XBS + 512;
		memcpy(agf, "XAGF", 4);
		be32enc(agf + 4, 1);
		be32enc(agf + 8, ag);
		be32enc(agf + 12, ag ? XDBLOCKS - XAG : XAG);
		be32enc(agf + 16, 2);                  /* bno root */
		be32enc(agf + 28, ag ? 2 : 1);         /* levels */
		be32enc(agf + 52, freeblks[ag]);
		if (v5)
			memcpy(agf + 64, xuuid, 16);
	}
	xfs_bt(img, v5, 0, 2, 0, 0xFFFFFFFFu, 0xFFFFFFFFu, 3, leaf0);
	xfs_bt(img, v5, 1, 2, 1, 0xFFFFFFFFu, 0xFFFFFFFFu, 2, root1);
	xfs_bt(img, v5, 1, 3, 0, 0xFFFFFFFFu, 4, 2, leaf1a);
	xfs_bt(img, v5, 1, 4, 0, 3, 0xFFFFFFFFu, 1, leaf1b);
	xfs_set_log(img, XLOG_CLEAN);
	if (v5)
		xfs_fix_crcs(img);
	return img;
}

static struct vd_image *xfs_image(const uint8_t *buf)
{
	struct vd_image *img = mem_image(XSIZE);

	put(img, 0, buf, XSIZE);
	return img;
}

static void expect_xfs_ranges(const struct ranges *r, uint64_t base)
{
	assert_int_equal(r->n, 6);
	expect_range(r, 0, base + 10 * KiB, 20 * KiB);
	expect_range(r, 1, base + 40 * KiB, 24 * KiB);
	expect_range(r, 2, base + 80 * KiB, 48 * KiB);
	expect_range(r, 3, base + (XAG + 10) * KiB, 5 * KiB);
	expect_range(r, 4, base + (XAG + 20) * KiB, 10 * KiB);
	expect_range(r, 5, base + (XAG + 100) * KiB, 22 * KiB);
}

static void test_xfs(void **state)
{
	(void)state;
	for (int v5 = 0; v5 < 2; v5++) {
		struct vd_error err = { 0 };
		struct ranges r = { 0 };
		struct vd_fs_info info;
		uint8_t *buf = make_xfs_buf(v5);
		struct vd_image *img = xfs_image(buf);
		const char *seeds = getenv("VDISK_FUZZ_SEEDS"); /* tests/fuzz/make-seeds-fs.sh */

		if (seeds) {
			char path[4096];
			FILE *f;
			snprintf(path, sizeof(path), "%s/xfs-v%d.img", seeds, v5 ? 5 : 4);
			f = fopen(path, "wb");
			assert_non_null(f);
			assert_int_equal(fwrite(buf, 1, XSIZE, f), XSIZE);
			fclose(f);
		}
		assert_ok(vd_fs_free_ranges(img, 0, 0, 0, collect, &r, &info, &err), &err);
		assert_string_equal(info.type, "xfs");
		assert_string_equal(info.label, "unitxfs");
		assert_string_equal(info.uuid, "5a1e3c4d-0102-4304-8506-0708090a0b0c");
		assert_int_equal(info.block_size, XBS);
		assert_int_equal(info.total_bytes, XDBLOCKS * XBS);
		assert_int_equal(info.free_bytes, (92 + 37) * KiB);
		expect_xfs_ranges(&r, 0);
		vd_close(img, NULL);

		/* the log wrapped: the unmount record's data at block 0 */
		xfs_set_log(buf, XLOG_WRAPPED);
		if (v5)
			xfs_fix_crcs(buf);
		img = xfs_image(buf);
		memset(&r, 0, sizeof(r));
		assert_ok(vd_fs_free_ranges(img, 0, 0, 0, collect, &r, NULL, &err), &err);
		expect_xfs_ranges(&r, 0);
		vd_close(img, NULL);

		/* inside a partition at 64 KiB */
		{
			struct vd_image *disk = mem_image(XSIZE + 128 * KiB);
			put(disk, 64 * KiB, buf, XSIZE);
			memset(&r, 0, sizeof(r));
			assert_ok(vd_fs_free_ranges(disk, 64 * KiB, XSIZE, 0, collect, &r, NULL, &err), &err);
			expect_xfs_ranges(&r, 64 * KiB);
			/* a partition too short for sb_dblocks */
			assert_int_equal(vd_fs_free_ranges(disk, 64 * KiB, 200 * KiB, 0, NULL, NULL, NULL, &err), -EINVAL);
			assert_msg_has(&err, "sb_dblocks 250");
			vd_close(disk, NULL);
		}
		free(buf);
	}
}

static void test_xfs_refusals(void **state)
{
	enum { SB0 = 0, AGF0 = 512, AGF1 = XAG * XBS + 512, BT0 = 2 * XBS, BT1L = (XAG + 4) * XBS };
	struct {
		unsigned off, width;
		uint64_t value;
		int want, want_forced;
		const char *msg;
	} pokes[] = {
		{ SB0 + 0, 4, 0x58465343, -ENOTSUP, -ENOTSUP, "no filesystem vdisk knows" },
		{ SB0 + 4, 4, 1000, -EINVAL, -EINVAL, "sb_blocksize 1000" },
		{ SB0 + 88, 4, 3, -EINVAL, -EINVAL, "sb_agcount 3" },
		{ SB0 + 84, 4, 0, -EINVAL, -EINVAL, "sb_agblocks 0" },
		{ SB0 + 8, 8, 300, -EINVAL, -EINVAL, "sb_agcount 2 does not match sb_dblocks 300" },
		{ SB0 + 100, 2, 0xB4A3, -ENOTSUP, -ENOTSUP, "sb_versionnum 0xb4a3" },
		{ SB0 + 16, 8, 8, -ENOTSUP, -ENOTSUP, "sb_rblocks 8" },
		{ SB0 + 48, 8, 0, -ENOTSUP, -ENOTSUP, "external log" },
		{ SB0 + 48, 8, 120, -EINVAL, -EINVAL, "sb_logstart 120" },
		{ SB0 + 126, 1, 1, -EINVAL, -EINVAL, "sb_inprogress 1" },
		{ SB0 + 216, 4, 0x101, -ENOTSUP, -ENOTSUP, "sb_features_incompat bits 0x100" },
		{ SB0 + 216, 4, 0x11, -EUCLEAN, 0, "NEEDSREPAIR" },
		{ AGF0 + 0, 4, 0x58414747, -EINVAL, -EINVAL, "AG 0: AGF magic 0x58414747" },
		{ AGF1 + 8, 4, 0, -EINVAL, -EINVAL, "AG 1: agf_seqno 0" },
		{ AGF1 + 12, 4, 128, -EINVAL, -EINVAL, "agf_length 128, expected 122" },
		{ AGF0 + 16, 4, 1, -EINVAL, -EINVAL, "agf_roots[0] 1" },
		{ AGF0 + 28, 4, 10, -EINVAL, -EINVAL, "agf_levels[0] 10" },
		{ AGF0 + 52, 4, 91, -EINVAL, -EINVAL, "AG 0: agf_freeblks 91, but the bno btree holds 92" },
		{ BT0 + 0, 4, 0x41425442, -EINVAL, -EINVAL, "bno btree block 2: magic 0x41425442" },
		{ BT0 + 6, 2, 200, -EINVAL, -EINVAL, "bb_numrecs 200 is not in 1..121" },
		{ BT0 + 6, 2, 0, -EINVAL, -EINVAL, "bb_numrecs 0" },
		{ BT0 + 4, 2, 1, -EINVAL, -EINVAL, "bb_level 1, expected 0" },
		{ BT0 + 48, 4, 1, -EINVAL, -EINVAL, "bb_owner 1" },
		{ BT0 + 16, 8, 6, -EINVAL, -EINVAL, "bb_blkno 6" },
		{ BT0 + 56 + 8 + 4, 4, 25, -EINVAL, -EINVAL, "record 1 (40, 25 blocks) overlaps the log" },
		{ BT0 + 56 + 8, 4, 25, -EINVAL, -EINVAL, "record 1 (25, 24 blocks) is out of order" },
		{ BT0 + 56, 4, 1, -EINVAL, -EINVAL, "record 0 (1, 20 blocks) is outside the AG" },
		{ BT1L + 56 + 4, 4, 23, -EINVAL, -EINVAL, "AG 1: bno btree block 4: record 0 (100, 23 blocks) is outside the AG" },
		{ BT1L + 8, 4, 5, -EINVAL, -EINVAL, "bb_leftsib 5, expected 3" },
		{ (XAG + 2) * XBS + 56 + 8, 4, 5, -EINVAL, -EINVAL, "key 1 (5) is out of order" },
		{ (XAG + 2) * XBS + 56 + 8 * 80 + 4, 4, 200, -EINVAL, -EINVAL, "bno btree pointer 200 is outside the AG" },
		{ (XAG + 2) * XBS + 56 + 8 * 80 + 4, 4, 3, -EINVAL, -EINVAL, "bb_leftsib 4294967295, expected 3" },
	};

	(void)state;
	for (unsigned i = 0; i < VD_ARRAY_SIZE(pokes); i++) {
		struct vd_error err = { 0 };
		uint8_t *buf = make_xfs_buf(true);
		struct vd_image *img;
		int r;

		if (pokes[i].width == 1)
			buf[pokes[i].off] = (uint8_t)pokes[i].value;
		else if (pokes[i].width == 2)
			be16enc(buf + pokes[i].off, (uint16_t)pokes[i].value);
		else if (pokes[i].width == 4)
			be32enc(buf + pokes[i].off, (uint32_t)pokes[i].value);
		else
			be64enc(buf + pokes[i].off, pokes[i].value);
		xfs_fix_crcs(buf);
		img = xfs_image(buf);
		r = vd_fs_free_ranges(img, 0, 0, 0, NULL, NULL, NULL, &err);
		if (r != pokes[i].want)
			fail_msg("poke %u: got %d (%s), expected %d", i, r, err.msg, pokes[i].want);
		assert_msg_has(&err, pokes[i].msg);
		vd_error_clear(&err);
		r = vd_fs_free_ranges(img, 0, 0, VD_FS_FORCE, NULL, NULL, NULL, &err);
		if (r != pokes[i].want_forced)
			fail_msg("poke %u forced: got %d (%s), expected %d", i, r, err.msg, pokes[i].want_forced);
		vd_close(img, NULL);
		free(buf);
	}
}

static void test_xfs_crc_and_log(void **state)
{
	static const struct {
		unsigned off;
		const char *msg;
	} crcs[] = {
		{ 12, "sb_crc" },
		{ 512 + 60, "AG 0: AGF at block 0: CRC" },
		{ (XAG + 3) * XBS + 100, "AG 1: bno btree block at block 3: CRC" },
	};
	static const struct {
		int kind;
		const char *msg;
	} logs[] = {
		{ XLOG_DIRTY, "not an unmount record" },
		{ XLOG_TORN, "log block 9 has cycle 1, expected 0" },
		{ XLOG_NEVER, "never written" },
	};

	(void)state;
	/* a byte changed after the CRC was computed */
	for (unsigned i = 0; i < VD_ARRAY_SIZE(crcs); i++) {
		struct vd_error err = { 0 };
		uint8_t *buf = make_xfs_buf(true);
		struct vd_image *img;

		buf[crcs[i].off] ^= 0x40;
		img = xfs_image(buf);
		assert_int_equal(vd_fs_free_ranges(img, 0, 0, VD_FS_FORCE, NULL, NULL, NULL, &err), -EINVAL);
		assert_msg_has(&err, crcs[i].msg);
		vd_close(img, NULL);
		free(buf);
	}
	/* logs that need recovery: refused, walked with VD_FS_FORCE */
	for (unsigned i = 0; i < VD_ARRAY_SIZE(logs); i++) {
		struct vd_error err = { 0 };
		struct ranges r = { 0 };
		uint8_t *buf = make_xfs_buf(i % 2);
		struct vd_image *img;

		xfs_set_log(buf, logs[i].kind);
		if (i % 2)
			xfs_fix_crcs(buf);
		img = xfs_image(buf);
		assert_int_equal(vd_fs_free_ranges(img, 0, 0, 0, collect, &r, NULL, &err), -EUCLEAN);
		assert_msg_has(&err, "XFS log needs recovery: mount and unmount the filesystem, or run xfs_repair");
		assert_msg_has(&err, logs[i].msg);
		assert_int_equal(r.n, 0);
		assert_ok(vd_fs_free_ranges(img, 0, 0, VD_FS_FORCE, collect, &r, NULL, &err), &err);
		expect_xfs_ranges(&r, 0);
		vd_close(img, NULL);
		free(buf);
	}
}

/* ---- vd_zerofree on a dynamic VDI file holding FAT12 ---- */

static void test_zerofree_vdi(void **state)
{
	char path[] = "/tmp/vdisk-test-fs-XXXXXX";
	struct vd_error err = { 0 };
	struct vd_zerofree_opts o = { 0 };
	struct vd_zerofree_result res;
	struct vd_check chk = { 0 };
	struct vd_image *img;
	uint8_t *buf = malloc(4 * MiB), *want = malloc(4 * MiB);
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	unlink(path); /* vd_create makes it */
	assert_non_null(buf);
	assert_non_null(want);
	assert_ok(vd_create(path, "vdi", 4 * MiB, NULL, VD_CREATE_DETERMINISTIC, NULL, &err), &err);
	assert_ok(vd_open(&img, path, "vdi", VD_OPEN_RDWR, &err), &err);
	memset(buf, 0xAA, 4 * MiB); /* stale data everywhere */
	assert_ok(vd_write(img, 0, buf, 4 * MiB, &err), &err);
	write_fat12(img, 0, 100, 0); /* clusters 2..101 used */
	assert_ok(vd_read(img, 0, want, 4 * MiB, &err), &err);
	assert_ok(vd_close(img, &err), &err);

	o.dry_run = true;
	assert_ok(vd_zerofree(path, &o, &res, &err), &err);
	assert_int_equal(res.parts, 1);
	assert_int_equal(res.unit, MiB);
	assert_int_equal(res.total.released_blocks, 3);    /* blocks 1..3 */
	assert_int_equal(res.total.zeroed_bytes, MiB - FAT_DATA - 100 * FAT_CL);

	o.dry_run = false;
	assert_ok(vd_zerofree(path, &o, &res, &err), &err);
	assert_int_equal(res.total.released_blocks, 3);
	assert_int_equal(res.total.zeroed_bytes, MiB - FAT_DATA - 100 * FAT_CL);
	assert_int_equal(res.total.free_bytes, 2035ull * FAT_CL - 100 * FAT_CL);
	/* the released slots were the last three: the file just got shorter */
	assert_int_equal(res.file_size_before - res.file_size_after, 3 * MiB);
	assert_int_equal(res.slots_moved, 0);

	/* free clusters read as zeros, everything else is as it was */
	memset(want + FAT_DATA + 100 * FAT_CL, 0, 2035ull * FAT_CL - 100 * FAT_CL);
	assert_ok(vd_open(&img, path, "vdi", 0, &err), &err);
	assert_ok(vd_read(img, 0, buf, 4 * MiB, &err), &err);
	assert_same(buf, want, 4 * MiB, "image after zerofree");
	assert_ok(vd_check(img, false, &chk, &err), &err);
	assert_int_equal(chk.corruptions, 0);
	assert_int_equal(chk.leaks, 0); /* zerofree reclaimed the slots */
	vd_close(img, NULL);

	o.dry_run = true;
	assert_ok(vd_zerofree(path, &o, &res, &err), &err);
	assert_int_equal(res.total.zeroed_bytes + res.total.released_bytes, 0);

	/* the guard: the same file open for writing in this process ... */
	assert_ok(vd_open(&img, path, "vdi", VD_OPEN_RDWR, &err), &err);
	assert_int_equal(vd_zerofree(path, &o, &res, &err), -EBUSY);
	assert_msg_has(&err, "already open in this command");
	vd_close(img, NULL);
	/* ... or locked by another vdisk process (a child holding the flock)
	 * is refused, and a reader is kept out while a writer holds it */
	{
		int pfd[2];
		char c;
		pid_t pid;
		assert_int_equal(pipe(pfd), 0);
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			int lfd = open(path, O_RDONLY);
			if (lfd < 0 || flock(lfd, LOCK_EX) < 0)
				_exit(1);
			if (write(pfd[1], "x", 1) != 1)
				_exit(1);
			pause();
			_exit(0);
		}
		assert_int_equal(read(pfd[0], &c, 1), 1);
		assert_int_equal(vd_zerofree(path, &o, &res, &err), -EBUSY);
		assert_msg_has(&err, "in use by another vdisk process");
		assert_int_equal(vd_open(&img, path, "vdi", 0, &err), -EBUSY);
		assert_msg_has(&err, "being changed by another vdisk process");
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		close(pfd[0]);
		close(pfd[1]);
		/* released with the process: both work again */
		assert_ok(vd_zerofree(path, &o, &res, &err), &err);
	}
	unlink(path);
	free(buf);
	free(want);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ext_bitmaps),
		cmocka_unit_test(test_ext_64bit_hi),
		cmocka_unit_test(test_ext_block_uninit),
		cmocka_unit_test(test_ext_refusals),
		cmocka_unit_test(test_fat12),
		cmocka_unit_test(test_swap),
		cmocka_unit_test(test_xfs),
		cmocka_unit_test(test_xfs_refusals),
		cmocka_unit_test(test_xfs_crc_and_log),
		cmocka_unit_test(test_zerofree_vdi),
	};
	return unit_run(tests);
}
