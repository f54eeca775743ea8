/*
 * The NTFS walker on a hand-built volume in a memory image: 512-byte
 * clusters, 1 KiB MFT records (two update-sequence strides each), 4197
 * clusters (the last $Bitmap byte has padding bits), an $MFT in two runs
 * (so records 3 and 6 are only found through its runlist), a $Bitmap in
 * two runs with a negative LCN offset; the exact free ranges, inside a
 * partition too, and one rejection per poked field.
 *
 * SPDX-License-Identifier: MIT
 */
#include "unit.h"
#include "../../src/fs/fs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#define CL 512u                  /* cluster = sector */
#define NCL 4197u                /* clusters */
#define NSIZE (4200u * CL)       /* image: a few sectors more */
#define REC 1024u
#define MFT_A 16u                /* records 0..3 */
#define MFT_B 100u               /* records 4..7 */
#define BMP_A 200u               /* $Bitmap VCN 0 */
#define BMP_B 150u               /* $Bitmap VCN 1 */
#define BMP_BYTES ((NCL + 7) / 8) /* 525 */
#define LOG_LCN 300u             /* $LogFile: 16 clusters, two 4 KiB restart pages */
#define LOG_CL 16u

/* image offset of MFT record N */
static unsigned rec_off(unsigned num)
{
	return num < 4 ? MFT_A * CL + num * REC : MFT_B * CL + (num - 4) * REC;
}

/* attribute offsets inside the records (fixed by the builder) */
#define A0 56u                   /* first attribute */
#define R6_DATA A0               /* record 6: $DATA */
#define R6_RUNS (A0 + 64)
#define R3_VOLINFO (A0 + 32)     /* record 3: $VOLUME_INFORMATION after $VOLUME_NAME (32 bytes) */

static void set_bit(uint8_t *bm, unsigned c, unsigned n)
{
	for (unsigned i = c; i < c + n; i++)
		bm[i / 8] |= (uint8_t)(1u << (i % 8));
}

static unsigned rec_header(uint8_t *r, unsigned num)
{
	memcpy(r, "FILE", 4);
	le16enc(r + 4, 48);          /* update sequence offset */
	le16enc(r + 6, 3);           /* 1 + two strides */
	le16enc(r + 16, 1);
	le16enc(r + 18, 1);
	le16enc(r + 20, A0);
	le16enc(r + 22, 1);          /* in use */
	le32enc(r + 28, REC);
	le32enc(r + 44, num);
	return A0;
}

static unsigned rec_end(uint8_t *r, unsigned off)
{
	le32enc(r + off, 0xFFFFFFFFu);
	le32enc(r + 24, off + 8);
	return off + 8;
}

/* non-resident unnamed $DATA with the runs RUNS (NRUNS bytes) */
static unsigned nonres_data(uint8_t *r, unsigned off, const uint8_t *runs, unsigned nruns,
			    uint64_t clusters, uint64_t size)
{
	unsigned len = (64 + nruns + 1 + 7) & ~7u;

	le32enc(r + off, 0x80);
	le32enc(r + off + 4, len);
	r[off + 8] = 1;
	le64enc(r + off + 24, clusters - 1);
	le16enc(r + off + 32, 64);
	le64enc(r + off + 40, clusters * CL);
	le64enc(r + off + 48, size);
	le64enc(r + off + 56, size);
	memcpy(r + off + 64, runs, nruns);
	return off + len;
}

static unsigned resident(uint8_t *r, unsigned off, uint32_t type, const void *val, unsigned vlen)
{
	unsigned len = (24 + vlen + 7) & ~7u;

	le32enc(r + off, type);
	le32enc(r + off + 4, len);
	le32enc(r + off + 16, vlen);
	le16enc(r + off + 20, 24);
	memcpy(r + off + 24, val, vlen);
	return off + len;
}

static void apply_fixups(uint8_t *r, uint16_t usn)
{
	le16enc(r + 48, usn);
	for (unsigned i = 0; i < 2; i++) {
		memcpy(r + 50 + 2 * i, r + (i + 1) * 512 - 2, 2);
		le16enc(r + (i + 1) * 512 - 2, usn);
	}
}

static void fix_all(uint8_t *img)
{
	static const unsigned nums[] = { 0, 2, 3, 6 };
	for (unsigned i = 0; i < VD_ARRAY_SIZE(nums); i++)
		apply_fixups(img + rec_off(nums[i]), (uint16_t)(0x21 + i));
}

/* Everything but the fixups, which fix_all applies. */
static uint8_t *make_ntfs_raw(void)
{
	uint8_t *img = calloc(1, NSIZE), *b = img, *r, *bm;
	static const uint8_t mft_runs[] = { 0x11, 8, MFT_A, 0x11, 8, MFT_B - MFT_A };
	static const uint8_t bmp_runs[] = { 0x21, 1, BMP_A & 0xff, BMP_A >> 8, 0x11, 1, (uint8_t)(BMP_B - BMP_A) };
	static const uint8_t log_runs[] = { 0x21, LOG_CL, LOG_LCN & 0xff, LOG_LCN >> 8 };
	static const uint8_t name[] = { 'u', 0, 'n', 0, 'i', 0, 't', 0 };
	uint8_t volinfo[12] = { 0 };
	unsigned off;

	assert_non_null(img);
	b[0] = 0xEB; b[1] = 0x52; b[2] = 0x90;
	memcpy(b + 3, "NTFS    ", 8);
	le16enc(b + 11, 512);
	b[13] = 1;
	b[21] = 0xF8;
	le64enc(b + 40, NCL);
	le64enc(b + 48, MFT_A);
	le64enc(b + 56, 2000);
	b[64] = 0xF6;                 /* 2^10 */
	b[68] = 0x08;                 /* 8 clusters */
	le64enc(b + 72, 0x0123456789ABCDEFull);
	b[510] = 0x55; b[511] = 0xAA;

	r = img + rec_off(0);
	off = nonres_data(r, rec_header(r, 0), mft_runs, sizeof(mft_runs), 16, 8 * REC);
	rec_end(r, off);

	/* $LogFile, empty (all 0xFF) as mkntfs and ntfs-3g leave it */
	r = img + rec_off(2);
	off = nonres_data(r, rec_header(r, 2), log_runs, sizeof(log_runs), LOG_CL, LOG_CL * CL);
	rec_end(r, off);
	memset(img + LOG_LCN * CL, 0xFF, LOG_CL * CL);

	r = img + rec_off(3);
	off = resident(r, rec_header(r, 3), 0x60, name, sizeof(name));
	assert_int_equal(off, R3_VOLINFO);
	volinfo[8] = 3;
	volinfo[9] = 1;
	rec_end(r, resident(r, off, 0x70, volinfo, sizeof(volinfo)));

	r = img + rec_off(6);
	off = nonres_data(r, rec_header(r, 6), bmp_runs, sizeof(bmp_runs), 2, BMP_BYTES);
	rec_end(r, off);

	/* garbage where a contiguous MFT would put records 4..7 */
	memset(img + (MFT_A + 8) * CL, 0xA5, 8 * CL);

	/* the bitmap: VCN 0 at BMP_A, VCN 1 at BMP_B */
	bm = calloc(1, 2 * CL);
	assert_non_null(bm);
	set_bit(bm, 0, 16);           /* boot */
	set_bit(bm, MFT_A, 8);
	set_bit(bm, MFT_B, 8);
	set_bit(bm, BMP_A, 1);
	set_bit(bm, BMP_B, 1);
	set_bit(bm, LOG_LCN, LOG_CL);
	set_bit(bm, 1000, 100);
	set_bit(bm, 4000, 100);
	/* bits past NCL stay 0: padding, not free space */
	memcpy(img + BMP_A * CL, bm, CL);
	memcpy(img + BMP_B * CL, bm + CL, CL);
	free(bm);
	return img;
}

static uint8_t *make_ntfs(void)
{
	uint8_t *img = make_ntfs_raw();

	fix_all(img);
	return img;
}

static struct vd_image *image_of(const uint8_t *buf, uint64_t at, uint64_t size)
{
	struct vd_error err = { 0 };
	struct vd_host *h = vd_host_mem_new("mem", size);
	struct vd_image *img = NULL;

	assert_non_null(h);
	assert_ok(vd_open_host(&img, h, "raw", VD_OPEN_RDWR, &err), &err);
	assert_ok(vd_write(img, at, buf, NSIZE, &err), &err);
	return img;
}

struct ranges {
	unsigned n;
	uint64_t off[16], len[16];
};

static int collect(void *ctx, uint64_t off, uint64_t len)
{
	struct ranges *r = ctx;

	assert_true(r->n < 16);
	r->off[r->n] = off;
	r->len[r->n] = len;
	r->n++;
	return 0;
}

static void expect_ranges(const struct ranges *r, uint64_t base)
{
	static const uint64_t want[][2] = {
		{ 24, 76 }, { 108, 42 }, { 151, 49 }, { 201, 99 }, { 316, 684 }, { 1100, 2900 }, { 4100, 97 },
	};

	if (r->n != VD_ARRAY_SIZE(want))
		fail_msg("%u ranges, expected %zu", r->n, VD_ARRAY_SIZE(want));
	for (unsigned i = 0; i < r->n; i++)
		if (r->off[i] != base + want[i][0] * CL || r->len[i] != want[i][1] * CL)
			fail_msg("range %u: got %llu+%llu, expected %llu+%llu", i, (unsigned long long)r->off[i],
				 (unsigned long long)r->len[i], (unsigned long long)(base + want[i][0] * CL),
				 (unsigned long long)(want[i][1] * CL));
}

static void test_ntfs(void **state)
{
	struct vd_error err = { 0 };
	struct ranges r = { 0 };
	struct vd_fs_info info;
	uint8_t *buf = make_ntfs();
	struct vd_image *img = image_of(buf, 0, NSIZE);
	const char *seeds = getenv("VDISK_FUZZ_SEEDS"); /* tests/fuzz/make-seeds-fs.sh */

	(void)state;
	if (seeds) {
		char path[4096];
		FILE *f;
		/* all the metadata is in the first 256 KiB: a 500-cluster volume
		 * there fits the fuzzer's -max_len */
		uint8_t *small = malloc(256 * 1024);
		assert_non_null(small);
		memcpy(small, buf, 256 * 1024);
		le64enc(small + 40, 500);
		le64enc(small + 56, 300);
		snprintf(path, sizeof(path), "%s/ntfs-unit.img", seeds);
		f = fopen(path, "wb");
		assert_non_null(f);
		assert_int_equal(fwrite(small, 1, 256 * 1024, f), 256 * 1024);
		fclose(f);
		free(small);
	}
	assert_ok(vd_fs_free_ranges(img, 0, 0, 0, collect, &r, &info, &err), &err);
	assert_string_equal(info.type, "ntfs");
	assert_string_equal(info.label, "unit");
	assert_string_equal(info.uuid, "0123456789ABCDEF");
	assert_int_equal(info.block_size, CL);
	assert_int_equal(info.total_bytes, (uint64_t)NCL * CL);
	assert_int_equal(info.free_bytes, (76 + 42 + 49 + 99 + 684 + 2900 + 97) * CL);
	expect_ranges(&r, 0);
	vd_close(img, NULL);

	/* inside a partition at 64 KiB */
	img = image_of(buf, 65536, NSIZE + 131072);
	memset(&r, 0, sizeof(r));
	assert_ok(vd_fs_free_ranges(img, 65536, NSIZE, 0, collect, &r, NULL, &err), &err);
	expect_ranges(&r, 65536);
	/* a partition shorter than the volume */
	assert_int_equal(vd_fs_free_ranges(img, 65536, 1 << 20, 0, NULL, NULL, NULL, &err), -EINVAL);
	assert_msg_has(&err, "total sectors 4197");
	vd_close(img, NULL);
	free(buf);
}

/* the OEM id is checked by the probe, so the walker's own message is seen
 * only when it is called directly */
static void test_ntfs_oem(void **state)
{
	struct vd_error err = { 0 };
	struct vd_fs_info info = { 0 };
	uint8_t *buf = make_ntfs();
	struct vd_image *img;
	struct vd_fs_walk w = { 0 };

	(void)state;
	memcpy(buf + 3, "NTFX", 4);
	img = image_of(buf, 0, NSIZE);
	assert_int_equal(vd_fs_free_ranges(img, 0, 0, 0, NULL, NULL, NULL, &err), -ENOTSUP);
	assert_msg_has(&err, "at offset 0"); /* libblkid may call it "dos" */
	w.img = img;
	w.part_len = NSIZE;
	w.info = &info;
	w.err = &err;
	assert_int_equal(vd_fs_ntfs.walk(&w), -EINVAL);
	assert_msg_has(&err, "boot sector OEM id \"NTFX    \"");
	vd_close(img, NULL);
	free(buf);
}

static void test_ntfs_refusals(void **state)
{
	enum { BOOT = 0 };
	const unsigned R0 = rec_off(0), R3 = rec_off(3), R6 = rec_off(6), BM = BMP_A * CL;
	struct {
		unsigned off, width;
		uint64_t value;
		unsigned off2, width2; /* a second poke (width2 0: none) */
		uint64_t value2;
		bool after_fixups;
		int want, want_forced;
		const char *msg;
	} pokes[] = {
		{ BOOT + 11, 2, 300, 0, 0, 0, false, -EINVAL, -EINVAL, "bytes per sector 300 is not a power of two" },
		{ BOOT + 11, 2, 8192, 0, 0, 0, false, -EINVAL, -EINVAL, "bytes per sector 8192" },
		{ BOOT + 13, 1, 3, 0, 0, 0, false, -EINVAL, -EINVAL, "sectors per cluster 0x03" },
		{ BOOT + 13, 1, 0, 0, 0, 0, false, -EINVAL, -EINVAL, "sectors per cluster 0x00" },
		{ BOOT + 13, 1, 0x90, 0, 0, 0, false, -EINVAL, -EINVAL, "sectors per cluster 0x90" },
		{ BOOT + 40, 8, 100000, 0, 0, 0, false, -EINVAL, -EINVAL, "total sectors 100000 is 0 or larger than the partition" },
		{ BOOT + 48, 8, 5000, 0, 0, 0, false, -EINVAL, -EINVAL, "MFT LCN 5000 is not inside the volume" },
		{ BOOT + 56, 8, 0, 0, 0, 0, false, -EINVAL, -EINVAL, "MFT mirror LCN 0" },
		{ BOOT + 64, 1, 0xE0, 0, 0, 0, false, -EINVAL, -EINVAL, "clusters per MFT record 0xe0" },
		{ BOOT + 64, 1, 0xF8, 0, 0, 0, false, -EINVAL, -EINVAL, "clusters per MFT record 0xf8" },
		{ BOOT + 68, 1, 0x7F, 0, 0, 0, false, -EINVAL, -EINVAL, "clusters per index record 0x7f" },
		{ R0 + 0, 1, 'B', 0, 0, 0, false, -EINVAL, -EINVAL, "MFT record 0: magic \"BILE\" is not \"FILE\"" },
		{ R6 + 0, 1, 'B', 0, 0, 0, false, -EINVAL, -EINVAL, "MFT record 6: magic \"BILE\"" },
		{ R0 + 6, 2, 4, 0, 0, 0, false, -EINVAL, -EINVAL, "MFT record 0: update sequence count 4, expected 3" },
		{ R3 + 510, 1, 0x99, 0, 0, 0, true, -EINVAL, -EINVAL, "MFT record 3: update sequence mismatch in sector 0" },
		{ R6 + 1022, 1, 0x99, 0, 0, 0, true, -EINVAL, -EINVAL, "MFT record 6: update sequence mismatch in sector 1" },
		{ R6 + 44, 4, 7, 0, 0, 0, false, -EINVAL, -EINVAL, "MFT record 6: record number field says 7" },
		{ R6 + 22, 2, 0, 0, 0, 0, false, -EINVAL, -EINVAL, "MFT record 6 is not in use" },
		{ R6 + R6_DATA + 4, 4, 2000, 0, 0, 0, false, -EINVAL, -EINVAL, "attribute 0x80 at 56: length 2000 is out of range" },
		{ R6 + 24, 4, 2000, 0, 0, 0, false, -EINVAL, -EINVAL, "MFT record 6: bytes in use 2000" },
		{ R6 + R6_RUNS + 3, 1, 0x10, 0, 0, 0, false, -EINVAL, -EINVAL, "$Bitmap (MFT record 6): run 0: LCN offset 4296 leaves the volume" },
		{ R6 + R6_RUNS + 1, 1, 2, R6 + R6_RUNS + 2, 2, NCL - 1, false, -EINVAL, -EINVAL,
		  "run 0 (LCN 4196, 2 clusters) is past the end of the volume (4197 clusters)" },
		{ R6 + R6_RUNS + 0, 1, 0x91, 0, 0, 0, false, -EINVAL, -EINVAL, "run 0: header byte 0x91" },
		{ R6 + R6_RUNS + 4, 1, 0x01, R6 + R6_RUNS + 6, 1, 0, false, -ENOTSUP, -ENOTSUP, "$Bitmap has a sparse run at VCN 1" },
		{ R6 + R6_DATA + 24, 8, 2, 0, 0, 0, false, -EINVAL, -EINVAL, "runlist holds 2 clusters, highest VCN is 2" },
		{ R6 + R6_DATA + 48, 8, 500, R6 + R6_DATA + 56, 8, 500, false, -EINVAL, -EINVAL,
		  "$Bitmap data size 500 bytes is shorter than the 4197 clusters need (525 bytes)" },
		{ R6 + R6_DATA + 56, 8, 100, 0, 0, 0, false, -EINVAL, -EINVAL, "initialized size 100 is smaller than the data size 525" },
		{ R0 + A0 + 48, 8, 4 * REC, R0 + A0 + 56, 8, 4 * REC, false, -EINVAL, -EINVAL, "$MFT data size 4096 holds fewer than 7 records" },
		{ R3 + R3_VOLINFO + 24 + 10, 2, 1, 0, 0, 0, false, -EUCLEAN, 0,
		  "NTFS volume is marked dirty ($VOLUME_INFORMATION flags 0x0001): run chkdsk in Windows (or ntfsfix), or use --force" },
		{ R3 + R3_VOLINFO, 4, 0x71, 0, 0, 0, false, -EINVAL, -EINVAL, "$Volume (MFT record 3) has no $VOLUME_INFORMATION" },
		{ BM, 1, 0xFE, 0, 0, 0, false, -EINVAL, -EINVAL, "$Bitmap marks cluster 0 (the boot sector) free" },
		{ BM + MFT_B / 8, 1, 0, 0, 0, 0, false, -EINVAL, -EINVAL, "$Bitmap marks cluster 100 ($MFT, run 1) free" },
	};

	(void)state;
	for (unsigned i = 0; i < VD_ARRAY_SIZE(pokes); i++) {
		struct vd_error err = { 0 };
		uint8_t *buf = make_ntfs_raw();
		struct vd_image *img;
		struct ranges r = { 0 };
		int rc;

		if (pokes[i].after_fixups)
			fix_all(buf);
		for (unsigned k = 0; k < 2; k++) {
			unsigned off = k ? pokes[i].off2 : pokes[i].off, width = k ? pokes[i].width2 : pokes[i].width;
			uint64_t v = k ? pokes[i].value2 : pokes[i].value;
			if (width == 1)
				buf[off] = (uint8_t)v;
			else if (width == 2)
				le16enc(buf + off, (uint16_t)v);
			else if (width == 4)
				le32enc(buf + off, (uint32_t)v);
			else if (width == 8)
				le64enc(buf + off, v);
		}
		if (!pokes[i].after_fixups)
			fix_all(buf);
		img = image_of(buf, 0, NSIZE);
		rc = vd_fs_free_ranges(img, 0, 0, 0, NULL, NULL, NULL, &err);
		if (rc != pokes[i].want)
			fail_msg("poke %u: got %d (%s), expected %d", i, rc, err.msg, pokes[i].want);
		assert_msg_has(&err, pokes[i].msg);
		vd_error_clear(&err);
		rc = vd_fs_free_ranges(img, 0, 0, VD_FS_FORCE, collect, &r, NULL, &err);
		if (rc != pokes[i].want_forced)
			fail_msg("poke %u forced: got %d (%s), expected %d", i, rc, err.msg, pokes[i].want_forced);
		if (rc == 0)
			expect_ranges(&r, 0);
		vd_close(img, NULL);
		free(buf);
	}
}

/* A restart page at byte PAGE of the $LogFile: MAGIC, page sizes SYS,
 * restart area at 0x30 with client_in_use_list IN_USE and FLAGS. */
static void restart_page(uint8_t *img, unsigned page, const char *magic, uint32_t sys,
			 uint16_t in_use, uint16_t flags)
{
	uint8_t *p = img + LOG_LCN * CL + page;

	memset(p, 0, 4096);
	memcpy(p, magic, 4);
	le32enc(p + 16, sys);
	le32enc(p + 20, 4096);
	le16enc(p + 24, 0x30);
	le16enc(p + 0x30 + 12, in_use);
	le16enc(p + 0x30 + 14, flags);
}

/* The journal: empty or clean restart areas pass, anything else is
 * refused (-EUCLEAN) unless forced; broken restart pages are errors. */
static void test_ntfs_logfile(void **state)
{
	static const struct {
		const char *m0; uint16_t use0, fl0;
		const char *m1; uint16_t use1, fl1;
		uint32_t sys;
		int want;
		const char *msg;
	} cases[] = {
		{ "RSTR", 0xFFFF, 0, "RSTR", 0xFFFF, 0, 4096, 0, NULL },               /* no client in use */
		{ "RSTR", 0, 0x0002, "RSTR", 0, 0x0002, 4096, 0, NULL },               /* volume is clean */
		{ "RSTR", 0, 0, "RSTR", 0, 0, 4096, -EUCLEAN,
		  "the NTFS journal ($LogFile) is not clean (restart area 0: a client is in use and the clean flag is not set (flags 0x0000))" },
		{ "RSTR", 0, 0x0002, "RSTR", 0, 0x0001, 4096, -EUCLEAN, "restart area 1: a client is in use" },
		{ "CHKD", 0, 0, "RSTR", 0xFFFF, 0, 4096, -EUCLEAN, "chkdsk left a CHKD restart page" },
		{ "XXXX", 0, 0, "RSTR", 0xFFFF, 0, 4096, -EUCLEAN, "the first restart page is neither empty nor RSTR" },
		{ "RSTR", 0xFFFF, 0, "RSTR", 0xFFFF, 0, 3000, -EINVAL, "system page size 3000" },
	};

	(void)state;
	for (unsigned i = 0; i < VD_ARRAY_SIZE(cases); i++) {
		struct vd_error err = { 0 };
		struct ranges r = { 0 };
		uint8_t *buf = make_ntfs();
		struct vd_image *img;
		int rc;

		restart_page(buf, 0, cases[i].m0, cases[i].sys, cases[i].use0, cases[i].fl0);
		restart_page(buf, 4096, cases[i].m1, cases[i].sys, cases[i].use1, cases[i].fl1);
		img = image_of(buf, 0, NSIZE);
		rc = vd_fs_free_ranges(img, 0, 0, 0, collect, &r, NULL, &err);
		if (rc != cases[i].want)
			fail_msg("case %u: got %d (%s), expected %d", i, rc, err.msg, cases[i].want);
		if (rc == 0)
			expect_ranges(&r, 0);
		else
			assert_msg_has(&err, cases[i].msg);
		/* forced: the journal is not looked at */
		memset(&r, 0, sizeof(r));
		vd_error_clear(&err);
		assert_ok(vd_fs_free_ranges(img, 0, 0, VD_FS_FORCE, collect, &r, NULL, &err), &err);
		expect_ranges(&r, 0);
		vd_close(img, NULL);
		free(buf);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ntfs),
		cmocka_unit_test(test_ntfs_oem),
		cmocka_unit_test(test_ntfs_refusals),
		cmocka_unit_test(test_ntfs_logfile),
	};
	return unit_run(tests);
}
