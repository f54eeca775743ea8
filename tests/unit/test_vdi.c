/*
 * VDI backend: header and block-map validation (one test per rejected
 * field, in the style of QEMU iotest 084), layouts other writers produce,
 * UUID byte order, allocation bookkeeping, fixed images, check and repair.
 *
 * SPDX-License-Identifier: MIT
 */
#include "unit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define MiB (1ull << 20)
#define KiB (1ull << 10)

/* Field offsets, from FORMATS.md. */
enum {
	O_SIG = 64, O_VERSION = 68, O_CBHEADER = 72, O_TYPE = 76, O_FLAGS = 80,
	O_COMMENT = 84, O_OFFBLOCKS = 340, O_OFFDATA = 344, O_CYL = 348,
	O_HEADS = 352, O_SECTORS = 356, O_SECTORSIZE = 360, O_CBDISK = 368,
	O_CBBLOCK = 376, O_CBBLOCKEXTRA = 380, O_CBLOCKS = 384, O_CBLOCKSALLOC = 388,
	O_UUID_CREATE = 392, O_UUID_MODIFY = 408, O_UUID_LINKAGE = 424,
	O_UUID_PARENTMOD = 440, O_LCHS = 456,
};

#define BAD_NAME "bad.vdi"

static void fill_pattern(uint8_t *p, size_t n, uint8_t seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed + i * 13 + (i >> 11));
}

static uint8_t *hdata(struct vd_host *h, uint64_t *size)
{
	uint8_t *p = vd_host_mem_data(h, size);
	assert_non_null(p);
	return p;
}

static struct vd_host *host_from(const uint8_t *p, uint64_t n, const char *name)
{
	struct vd_host *h = vd_host_mem_new(name, n);
	assert_non_null(h);
	memcpy(hdata(h, NULL), p, n);
	return h;
}

static struct vd_host *clone_img(struct vd_image *img, const char *name)
{
	uint64_t n;
	uint8_t *p = hdata(img->host, &n);
	return host_from(p, n, name);
}

static void assert_image_is(struct vd_image *img, const uint8_t *want, const char *what)
{
	struct vd_error err = { 0 };
	size_t n = (size_t)vd_size(img);
	uint8_t *buf = malloc(n);

	assert_non_null(buf);
	assert_ok(vd_read(img, 0, buf, n, &err), &err);
	assert_same(buf, want, n, what);
	free(buf);
}

static const char *info_extra(const struct vd_info *info, const char *key)
{
	for (unsigned i = 0; i < info->nextra; i++)
		if (!strcmp(info->extra[i].key, key))
			return info->extra[i].value;
	fail_msg("info has no key '%s'", key);
	return NULL;
}

/* ---- the template: a valid 4 MiB dynamic image, blocks 0 and 2 written ---- */

static uint8_t *tmpl;
static uint64_t tmpl_size;
static uint8_t *tmpl_guest; /* expected guest contents */

#define TMPL_DISK (4 * MiB)
#define TMPL_OFFBLOCKS MiB
#define TMPL_OFFDATA (2 * MiB)

static int setup_template(void **state)
{
	struct vd_error err = { 0 };
	struct vd_host *h = vd_host_mem_new("tmpl.vdi", 0);
	struct vd_image *img = NULL;
	uint8_t *p;

	(void)state;
	if (vd_create_on_host(h, "vdi", TMPL_DISK, "subformat=dynamic",
			      VD_CREATE_DETERMINISTIC, NULL, &err) < 0 ||
	    vd_open_host(&img, h, "vdi", VD_OPEN_RDWR, &err) < 0) {
		fprintf(stderr, "template: %s\n", err.msg);
		return -1;
	}
	tmpl_guest = calloc(1, TMPL_DISK);
	fill_pattern(tmpl_guest, MiB, 1);
	fill_pattern(tmpl_guest + 2 * MiB, MiB, 2);
	if (vd_write(img, 0, tmpl_guest, MiB, &err) < 0 ||
	    vd_write(img, 2 * MiB, tmpl_guest + 2 * MiB, MiB, &err) < 0 ||
	    vd_flush(img, &err) < 0) {
		fprintf(stderr, "template: %s\n", err.msg);
		return -1;
	}
	p = vd_host_mem_data(img->host, &tmpl_size);
	tmpl = malloc(tmpl_size);
	memcpy(tmpl, p, tmpl_size);
	vd_close(img, &err);
	return 0;
}

static int teardown_template(void **state)
{
	(void)state;
	free(tmpl);
	free(tmpl_guest);
	return 0;
}

static struct vd_host *tmpl_copy(void)
{
	return host_from(tmpl, tmpl_size, BAD_NAME);
}

static int open_host(struct vd_host *h, unsigned flags, struct vd_image **img,
		     struct vd_error *err)
{
	memset(err, 0, sizeof(*err));
	*img = NULL;
	return vd_open_host(img, h, "vdi", flags, err);
}

/* Opening H (consumed) must fail; the message names the file and NEEDLES. */
static void expect_reject(struct vd_host *h, unsigned flags, const char *n1,
			  const char *n2)
{
	struct vd_image *img;
	struct vd_error err;
	int r = open_host(h, flags, &img, &err);

	if (r >= 0) {
		vd_close(img, &err);
		fail_msg("open succeeded, expected a rejection mentioning '%s'", n1);
	}
	assert_null(img);
	assert_int_equal(err.code, r);
	assert_msg_has(&err, BAD_NAME);
	assert_msg_has(&err, n1);
	if (n2)
		assert_msg_has(&err, n2);
}

/* Poke a u32 into a template copy; both read-only and read-write opens fail. */
static void reject32(uint64_t off, uint32_t v, const char *n1, const char *n2)
{
	struct vd_host *h = tmpl_copy();
	le32enc(hdata(h, NULL) + off, v);
	expect_reject(h, 0, n1, n2);
	h = tmpl_copy();
	le32enc(hdata(h, NULL) + off, v);
	expect_reject(h, VD_OPEN_RDWR, n1, n2);
}

static void reject64(uint64_t off, uint64_t v, const char *n1, const char *n2)
{
	struct vd_host *h = tmpl_copy();
	le64enc(hdata(h, NULL) + off, v);
	expect_reject(h, 0, n1, n2);
}

/* ---- a hand-built image of any layout ---- */

struct layout {
	uint32_t cb_header, type, off_blocks, off_data, bs, extra, nblocks, nalloc;
	uint64_t disk;
};

static uint64_t slot_off(const struct layout *L, uint32_t slot)
{
	return L->off_data + (uint64_t)slot * (L->extra + L->bs) + L->extra;
}

static struct vd_host *build(const struct layout *L, const uint32_t *bmap,
			     uint64_t file_size, const char *name)
{
	struct vd_host *h = vd_host_mem_new(name, file_size);
	uint8_t *p = hdata(h, NULL);

	memcpy(p, "<<< QEMU VM Virtual Disk Image >>>\n", 35);
	le32enc(p + O_SIG, 0xbeda107f);
	le32enc(p + O_VERSION, 0x00010001);
	le32enc(p + O_CBHEADER, L->cb_header);
	le32enc(p + O_TYPE, L->type);
	le32enc(p + O_OFFBLOCKS, L->off_blocks);
	le32enc(p + O_OFFDATA, L->off_data);
	le32enc(p + O_CYL, 100);
	le32enc(p + O_HEADS, 16);
	le32enc(p + O_SECTORS, 63);
	le32enc(p + O_SECTORSIZE, 512);
	le64enc(p + O_CBDISK, L->disk);
	le32enc(p + O_CBBLOCK, L->bs);
	le32enc(p + O_CBBLOCKEXTRA, L->extra);
	le32enc(p + O_CBLOCKS, L->nblocks);
	le32enc(p + O_CBLOCKSALLOC, L->nalloc);
	for (int i = 0; i < 16; i++) {
		p[O_UUID_CREATE + i] = (uint8_t)(0x10 + i);
		p[O_UUID_MODIFY + i] = (uint8_t)(0x20 + i);
	}
	for (uint32_t b = 0; b < L->nblocks; b++)
		le32enc(p + L->off_blocks + 4ull * b, bmap[b]);
	return h;
}

/* ---- rejected fields ---- */

static void test_file_too_short(void **state)
{
	(void)state;
	expect_reject(host_from(tmpl, 70, BAD_NAME), 0, "too short", NULL);
	/* the header claims 400 bytes, the file has 300 */
	expect_reject(host_from(tmpl, 300, BAD_NAME), 0, "cbHeader", NULL);
}

static void test_bad_signature(void **state)
{
	(void)state;
	reject32(O_SIG, 0xdeadbeef, "signature", NULL);
	reject32(O_SIG, 0x7f10dabe, "signature", NULL); /* byte-swapped */
}

static void test_version_0(void **state)
{
	struct vd_host *h = tmpl_copy();
	struct vd_image *img;
	struct vd_error err;

	(void)state;
	le32enc(hdata(h, NULL) + O_VERSION, 0x00000001);
	assert_int_equal(open_host(h, 0, &img, &err), -ENOTSUP);
	assert_msg_has(&err, BAD_NAME);
	assert_msg_has(&err, "version 0");
	assert_msg_has(&err, "not supported");
	reject32(O_VERSION, 0x00000000, "version 0", "not supported");
}

static void test_version_2(void **state)
{
	(void)state;
	reject32(O_VERSION, 0x00020000, "version", "2.0");
	reject32(O_VERSION, 0x00010000, "version", "1.0");
	reject32(O_VERSION, 0x00010002, "version", "1.2");
}

static void test_cbheader(void **state)
{
	(void)state;
	reject32(O_CBHEADER, 100, "cbHeader", "100");
	reject32(O_CBHEADER, 383, "cbHeader", NULL);
	reject32(O_CBHEADER, 10000, "cbHeader", "10000");
	reject32(O_CBHEADER, 0xffffffff, "cbHeader", NULL);
}

static void test_image_type(void **state)
{
	struct vd_host *h = tmpl_copy();
	struct vd_image *img;
	struct vd_error err;

	(void)state;
	/* a differencing image opens; its parent (a nil uuidLinkage here)
	 * cannot be found: the message says so and suggests --backing */
	le32enc(hdata(h, NULL) + O_TYPE, 4);
	assert_int_equal(open_host(h, 0, &img, &err), -ENOENT);
	assert_msg_has(&err, "parent");
	assert_msg_has(&err, "--backing");
	reject32(O_TYPE, 3, "undo", NULL);
	reject32(O_TYPE, 99, "imageType", "99");
	reject32(O_TYPE, 0, "imageType", NULL);
}

static void test_offblocks(void **state)
{
	(void)state;
	reject32(O_OFFBLOCKS, MiB + 1, "offBlocks", "multiple of 512");
	reject32(O_OFFBLOCKS, MiB + 256, "offBlocks", "multiple of 512");
	reject32(O_OFFBLOCKS, 0, "offBlocks", "inside the header");
}

static void test_offdata(void **state)
{
	(void)state;
	reject32(O_OFFDATA, 2 * MiB + 100, "offData", "multiple of 512");
	reject32(O_OFFDATA, MiB, "offData", "block map");
	reject32(O_OFFDATA, 0, "offData", "block map");
	/* 200 blocks: the map ends at offBlocks + 800, offData just before that */
	{
		struct vd_host *h = tmpl_copy();
		le32enc(hdata(h, NULL) + O_CBLOCKS, 200);
		le32enc(hdata(h, NULL) + O_OFFDATA, MiB + 512);
		expect_reject(h, 0, "offData", "block map");
	}
}

static void test_sector_size(void **state)
{
	(void)state;
	reject32(O_SECTORSIZE, 4096, "sector size", "4096");
	reject32(O_SECTORSIZE, 0, "sector size", NULL);
}

static void test_cbdisk(void **state)
{
	(void)state;
	reject64(O_CBDISK, 0, "cbDisk", NULL);
	/* larger than the blocks can hold: named through cBlocks */
	reject64(O_CBDISK, 4 * MiB + 1, "cBlocks", "cbDisk");
	reject64(O_CBDISK, UINT64_MAX, "cBlocks", "cbDisk");
}

static void test_cbblock(void **state)
{
	(void)state;
	reject32(O_CBBLOCK, 0, "cbBlock", NULL);
	reject32(O_CBBLOCK, 3 * MiB, "cbBlock", "power of two");
	reject32(O_CBBLOCK, 1u << 30, "cbBlock", NULL);
	reject32(O_CBBLOCK, 256, "cbBlock", NULL);
}

static void test_cbblockextra(void **state)
{
	(void)state;
	reject32(O_CBBLOCKEXTRA, 100, "cbBlockExtra", "100");
	reject32(O_CBBLOCKEXTRA, 0x80000000u, "cbBlockExtra", NULL);
}

static void test_cblocks(void **state)
{
	(void)state;
	reject32(O_CBLOCKS, 0, "cBlocks", NULL);
	reject32(O_CBLOCKS, 3, "cBlocks", "cannot hold");
	reject32(O_CBLOCKS, 0xfffffffe, "cBlocks", NULL);
}

static void test_cblocksallocated(void **state)
{
	(void)state;
	reject32(O_CBLOCKSALLOC, 5, "cBlocksAllocated", "more than cBlocks");
	reject32(O_CBLOCKSALLOC, 0xffffffff, "cBlocksAllocated", NULL);
}

static void test_bmap_past_eof(void **state)
{
	struct vd_host *h;
	uint8_t *p;

	(void)state;
	/* 16 Mi blocks: a 64 MiB map that the 4 MiB file does not hold */
	h = tmpl_copy();
	p = hdata(h, NULL);
	le32enc(p + O_CBLOCKS, 16u << 20);
	le32enc(p + O_OFFDATA, MiB + (64u << 20));
	expect_reject(h, 0, "block map", "past the end of the file");
	/* huge cBlocks with the template's offData: the map overlaps the data */
	reject32(O_CBLOCKS, 0xfffffff0u, "block map", NULL);
}

static void test_bmap_entry_too_big(void **state)
{
	(void)state;
	reject32(TMPL_OFFBLOCKS + 4 * 1, 4, "block map", "cBlocks");
	reject32(TMPL_OFFBLOCKS + 4 * 1, 0xfffffffd, "block map", "cBlocks");
}

static void test_bmap_entry_past_eof(void **state)
{
	struct vd_host *h = tmpl_copy();
	uint8_t *p = hdata(h, NULL);

	(void)state;
	/* slot 3 would start at 5 MiB in a 4 MiB file */
	le32enc(p + TMPL_OFFBLOCKS + 4 * 1, 3);
	le32enc(p + O_CBLOCKSALLOC, 4);
	expect_reject(h, 0, "block map", "past the end of the file");
	/* slot 1 cut short by a truncated file */
	h = host_from(tmpl, tmpl_size - 4096, BAD_NAME);
	expect_reject(h, 0, "block map", "past the end of the file");
}

static void test_bmap_shared_slot(void **state)
{
	(void)state;
	reject32(TMPL_OFFBLOCKS + 4 * 3, 0, "block map", "which block 0 already uses");
	reject32(TMPL_OFFBLOCKS + 4 * 1, 1, "block map", "which block 1 already uses");
}

static void test_nalloc_too_small(void **state)
{
	struct vd_host *h = tmpl_copy();
	struct vd_image *img;
	struct vd_error err;

	(void)state;
	/* slots 0 and 1 are in use, the header counts 1 */
	le32enc(hdata(h, NULL) + O_CBLOCKSALLOC, 1);
	expect_reject(h, VD_OPEN_RDWR, "cBlocksAllocated", "check");

	h = tmpl_copy();
	le32enc(hdata(h, NULL) + O_CBLOCKSALLOC, 1);
	assert_ok(open_host(h, 0, &img, &err), &err);
	assert_image_is(img, tmpl_guest, "read-only open with a low cBlocksAllocated");
	vd_close(img, &err);
}

/* ---- accepted layouts ---- */

static void test_template_valid(void **state)
{
	struct vd_image *img;
	struct vd_error err;
	struct vd_info info;

	(void)state;
	assert_ok(open_host(tmpl_copy(), VD_OPEN_RDWR, &img, &err), &err);
	assert_int_equal(vd_size(img), TMPL_DISK);
	assert_image_is(img, tmpl_guest, "template");
	assert_ok(vd_get_info(img, &info, &err), &err);
	assert_string_equal(info.format, "vdi");
	assert_string_equal(info.subformat, "dynamic");
	assert_string_equal(info.header_version, "1.1");
	assert_int_equal(info.virtual_size, TMPL_DISK);
	assert_int_equal(info.file_size, tmpl_size);
	assert_int_equal(info.allocated_bytes, 2 * MiB);
	assert_int_equal(info.block_size, MiB);
	assert_string_equal(info_extra(&info, "blocks"), "4");
	assert_string_equal(info_extra(&info, "blocks_allocated"), "2");
	assert_string_equal(info_extra(&info, "header_size"), "400");
	assert_string_equal(info_extra(&info, "offset_blocks"), "1048576");
	assert_string_equal(info_extra(&info, "offset_data"), "2097152");
	vd_close(img, &err);
	/* and the on-disk layout is the documented one */
	assert_int_equal(le32dec(tmpl + O_OFFBLOCKS), TMPL_OFFBLOCKS);
	assert_int_equal(le32dec(tmpl + O_OFFDATA), TMPL_OFFDATA);
	assert_int_equal(le32dec(tmpl + TMPL_OFFBLOCKS), 0);
	assert_int_equal(le32dec(tmpl + TMPL_OFFBLOCKS + 4), 0xffffffff);
	assert_int_equal(le32dec(tmpl + TMPL_OFFBLOCKS + 8), 1);
	assert_int_equal(le32dec(tmpl + TMPL_OFFBLOCKS + 12), 0xffffffff);
	assert_same(tmpl + TMPL_OFFDATA + MiB, tmpl_guest + 2 * MiB, MiB, "slot 1 bytes");
}

static void test_header_384(void **state)
{
	struct vd_host *h = tmpl_copy();
	struct vd_image *img;
	struct vd_error err;
	struct vd_info info;
	uint8_t buf[4096], got[4096];

	(void)state;
	/* legacy geometry 100/16/63, LCHS extension 1000/255/63 */
	le32enc(hdata(h, NULL) + O_CYL, 100);
	le32enc(hdata(h, NULL) + O_HEADS, 16);
	le32enc(hdata(h, NULL) + O_SECTORS, 63);
	le32enc(hdata(h, NULL) + O_LCHS, 1000);
	le32enc(hdata(h, NULL) + O_LCHS + 4, 255);
	le32enc(hdata(h, NULL) + O_LCHS + 8, 63);
	{
		struct vd_host *h400 = host_from(hdata(h, NULL), tmpl_size, BAD_NAME);
		assert_ok(open_host(h400, 0, &img, &err), &err);
		assert_ok(vd_get_info(img, &info, &err), &err);
		assert_int_equal(info.cylinders, 1000);
		assert_int_equal(info.heads, 255);
		vd_close(img, &err);
	}
	le32enc(hdata(h, NULL) + O_CBHEADER, 384);
	assert_ok(open_host(h, VD_OPEN_RDWR, &img, &err), &err);
	assert_image_is(img, tmpl_guest, "cbHeader 384");
	assert_ok(vd_get_info(img, &info, &err), &err);
	assert_string_equal(info_extra(&info, "header_size"), "384");
	/* no LCHS extension in a 384-byte header: the legacy fields are used */
	assert_int_equal(info.cylinders, 100);
	assert_int_equal(info.heads, 16);
	assert_int_equal(info.sectors, 63);
	fill_pattern(buf, sizeof(buf), 77);
	assert_ok(vd_write(img, 3 * MiB, buf, sizeof(buf), &err), &err);
	assert_ok(vd_read(img, 3 * MiB, got, sizeof(got), &err), &err);
	assert_same(got, buf, sizeof(buf), "write into cbHeader-384 image");
	vd_close(img, &err);
}

/* QEMU's layout: 384-byte header, map at 512, data at 1024, unordered slots */
static void test_qemu_layout(void **state)
{
	struct layout L = { .cb_header = 384, .type = 1, .off_blocks = 512, .off_data = 1024,
			    .bs = MiB, .extra = 0, .nblocks = 3, .nalloc = 2, .disk = 3 * MiB };
	uint32_t bmap[3] = { 1, 0xffffffff, 0 };
	struct vd_host *h = build(&L, bmap, 1024 + 2 * MiB, BAD_NAME);
	uint8_t *guest = calloc(1, 3 * MiB), *p = hdata(h, NULL);
	struct vd_image *img, *img2;
	struct vd_error err;
	uint64_t n;

	(void)state;
	fill_pattern(guest, MiB, 3);
	fill_pattern(guest + 2 * MiB, MiB, 4);
	memcpy(p + slot_off(&L, 1), guest, MiB);
	memcpy(p + slot_off(&L, 0), guest + 2 * MiB, MiB);
	assert_ok(open_host(h, VD_OPEN_RDWR, &img, &err), &err);
	assert_image_is(img, guest, "QEMU layout");

	/* allocating block 1 appends slot 2 */
	fill_pattern(guest + MiB + 512, 1000, 5);
	assert_ok(vd_write(img, MiB + 512, guest + MiB + 512, 1000, &err), &err);
	assert_ok(vd_flush(img, &err), &err); /* the map reaches the file on flush */
	p = hdata(img->host, &n);
	assert_int_equal(n, slot_off(&L, 3));
	assert_int_equal(le32dec(p + 512 + 4), 2);
	assert_int_equal(le32dec(p + O_CBLOCKSALLOC), 3);
	assert_same(p + slot_off(&L, 2) + 512, guest + MiB + 512, 1000, "slot 2 bytes");
	assert_image_is(img, guest, "QEMU layout after write");
	assert_ok(vd_flush(img, &err), &err); /* the map reaches the file on flush */
	assert_ok(open_host(clone_img(img, "q2.vdi"), 0, &img2, &err), &err);
	assert_image_is(img2, guest, "QEMU layout reopened");
	vd_close(img2, &err);
	vd_close(img, &err);
	free(guest);
}

static void block_size_roundtrip(const char *opts, uint32_t bs, uint64_t disk)
{
	struct vd_error err = { 0 };
	struct vd_host *h = vd_host_mem_new("bs.vdi", 0);
	struct vd_image *img, *img2;
	struct vd_info info;
	uint8_t *guest = calloc(1, disk), *p;
	uint64_t offs[] = { 0, bs - 700, 2ull * bs - 1, disk - 3000 };

	assert_ok(vd_create_on_host(h, "vdi", disk, opts, VD_CREATE_DETERMINISTIC, NULL, &err), &err);
	p = hdata(h, NULL);
	assert_int_equal(le32dec(p + O_CBBLOCK), bs);
	assert_int_equal(le32dec(p + O_CBLOCKS), (disk + bs - 1) / bs);
	assert_ok(open_host(h, VD_OPEN_RDWR, &img, &err), &err);
	assert_int_equal(img->split, bs);
	for (size_t i = 0; i < VD_ARRAY_SIZE(offs); i++) {
		uint64_t len = VD_MIN((uint64_t)bs + 1400, disk - offs[i]);
		fill_pattern(guest + offs[i], (size_t)len, (uint8_t)(i * 40 + 1));
		assert_ok(vd_write(img, offs[i], guest + offs[i], (size_t)len, &err), &err);
	}
	assert_image_is(img, guest, opts);
	assert_ok(vd_get_info(img, &info, &err), &err);
	assert_int_equal(info.block_size, bs);
	assert_ok(vd_flush(img, &err), &err); /* the map reaches the file on flush */
	assert_ok(open_host(clone_img(img, "bs2.vdi"), 0, &img2, &err), &err);
	assert_image_is(img2, guest, "reopened");
	vd_close(img2, &err);
	vd_close(img, &err);
	free(guest);
}

static void test_block_size_512k(void **state)
{
	(void)state;
	block_size_roundtrip("block_size=512K", 512 * KiB, 3 * MiB + 512);
}

static void test_block_size_8m(void **state)
{
	(void)state;
	block_size_roundtrip("block_size=8M", 8 * MiB, 20 * MiB);
}

/* Small blocks built by hand (below what create offers). */
static void test_block_size_512_by_hand(void **state)
{
	struct layout L = { .cb_header = 400, .type = 1, .off_blocks = 512, .off_data = 1024,
			    .bs = 512, .extra = 0, .nblocks = 8, .nalloc = 3, .disk = 4096 };
	uint32_t bmap[8] = { 2, 0xffffffff, 0, 0xfffffffe, 0xffffffff, 1, 0xffffffff, 0xffffffff };
	struct vd_host *h = build(&L, bmap, 1024 + 3 * 512, BAD_NAME);
	uint8_t guest[4096] = { 0 }, *p = hdata(h, NULL);
	struct vd_image *img;
	struct vd_error err;

	(void)state;
	fill_pattern(guest, 512, 1);
	fill_pattern(guest + 2 * 512, 512, 2);
	fill_pattern(guest + 5 * 512, 512, 3);
	memcpy(p + slot_off(&L, 2), guest, 512);
	memcpy(p + slot_off(&L, 0), guest + 1024, 512);
	memcpy(p + slot_off(&L, 1), guest + 5 * 512, 512);
	assert_ok(open_host(h, 0, &img, &err), &err);
	assert_image_is(img, guest, "512-byte blocks");
	vd_close(img, &err);
}

static void test_block_extra(void **state)
{
	struct layout L = { .cb_header = 400, .type = 1, .off_blocks = 512, .off_data = 1024,
			    .bs = MiB, .extra = 512, .nblocks = 3, .nalloc = 2, .disk = 3 * MiB };
	uint32_t bmap[3] = { 1, 0, 0xffffffff };
	uint64_t fsize = L.off_data + 2ull * (L.bs + L.extra);
	struct vd_host *h = build(&L, bmap, fsize, BAD_NAME);
	uint8_t *guest = calloc(1, 3 * MiB), *p = hdata(h, NULL);
	struct vd_image *img, *img2;
	struct vd_error err;
	struct vd_extent e;
	uint64_t n;

	(void)state;
	/* junk in the per-block extra areas must never show */
	memset(p + L.off_data, 0xee, fsize - L.off_data);
	fill_pattern(guest, MiB, 6);
	fill_pattern(guest + MiB, MiB, 7);
	memcpy(p + slot_off(&L, 1), guest, MiB);
	memcpy(p + slot_off(&L, 0), guest + MiB, MiB);
	assert_int_equal(slot_off(&L, 1), 1024 + MiB + 512 + 512);
	assert_ok(open_host(h, VD_OPEN_RDWR, &img, &err), &err);
	assert_image_is(img, guest, "cbBlockExtra 512");

	assert_ok(vd_block_status(img, 4096, 3 * MiB - 4096, &e, &err), &err);
	assert_int_equal(e.flags, VD_BS_DATA | VD_BS_ALLOCATED | VD_BS_OFFSET_VALID);
	assert_int_equal(e.offset, slot_off(&L, 1) + 4096);
	assert_int_equal(e.length, MiB - 4096);

	/* a new block goes to slot 2, after its own extra area */
	fill_pattern(guest + 2 * MiB + 100, 5000, 8);
	assert_ok(vd_write(img, 2 * MiB + 100, guest + 2 * MiB + 100, 5000, &err), &err);
	assert_ok(vd_flush(img, &err), &err); /* the map reaches the file on flush */
	p = hdata(img->host, &n);
	assert_int_equal(n, slot_off(&L, 2) + MiB);
	assert_int_equal(le32dec(p + 512 + 8), 2);
	assert_same(p + slot_off(&L, 2) + 100, guest + 2 * MiB + 100, 5000, "slot 2 data");
	assert_image_is(img, guest, "cbBlockExtra 512 after write");
	assert_ok(vd_flush(img, &err), &err); /* the map reaches the file on flush */
	assert_ok(open_host(clone_img(img, "x2.vdi"), 0, &img2, &err), &err);
	assert_image_is(img2, guest, "cbBlockExtra 512 reopened");
	vd_close(img2, &err);
	vd_close(img, &err);
	free(guest);
}

static void test_zero_entries(void **state)
{
	struct vd_host *h = tmpl_copy();
	struct vd_image *img;
	struct vd_error err;
	struct vd_extent e;
	struct vd_info info;
	uint8_t *want = malloc(TMPL_DISK), buf[4096];
	uint8_t *p;
	uint64_t n;

	(void)state;
	le32enc(hdata(h, NULL) + TMPL_OFFBLOCKS, 0xfffffffe); /* block 0: zero block */
	memcpy(want, tmpl_guest, TMPL_DISK);
	memset(want, 0, MiB);
	assert_ok(open_host(h, VD_OPEN_RDWR, &img, &err), &err);
	assert_image_is(img, want, "zero block");

	assert_ok(vd_block_status(img, 0, TMPL_DISK, &e, &err), &err);
	assert_int_equal(e.flags, VD_BS_ZERO | VD_BS_ALLOCATED);
	assert_int_equal(e.length, MiB);
	assert_ok(vd_block_status(img, MiB, 3 * MiB, &e, &err), &err);
	assert_int_equal(e.flags, VD_BS_ZERO);
	assert_int_equal(e.length, MiB);
	assert_ok(vd_get_info(img, &info, &err), &err);
	assert_string_equal(info_extra(&info, "blocks_zero"), "1");
	assert_int_equal(info.allocated_bytes, MiB);

	/* writing into a zero block allocates a new slot */
	fill_pattern(buf, sizeof(buf), 9);
	assert_ok(vd_write(img, 8192, buf, sizeof(buf), &err), &err);
	memcpy(want + 8192, buf, sizeof(buf));
	assert_image_is(img, want, "zero block after write");
	assert_ok(vd_flush(img, &err), &err); /* the map reaches the file on flush */
	p = hdata(img->host, &n);
	assert_int_equal(le32dec(p + TMPL_OFFBLOCKS), 2);
	assert_int_equal(le32dec(p + O_CBLOCKSALLOC), 3);
	assert_int_equal(n, TMPL_OFFDATA + 3 * MiB);
	vd_close(img, &err);
	free(want);
}

static void test_uuid_byte_order(void **state)
{
	struct vd_error err = { 0 };
	struct vd_host *h = vd_host_mem_new("uuid.vdi", 0);
	struct vd_image *img;
	struct vd_info info;
	static const uint8_t want_create[16] = { 0, 0, 0, 0, 0, 0, 0x00, 0x40,
						 0x80, 0, 0, 0, 0, 0, 0, 0x01 };
	uint8_t *p;

	(void)state;
	assert_ok(vd_create_on_host(h, "vdi", MiB, NULL, VD_CREATE_DETERMINISTIC, NULL, &err), &err);
	p = hdata(h, NULL);
	/* GUID layout: 4-, 2- and 2-byte fields little-endian */
	assert_memory_equal(p + O_UUID_CREATE, want_create, 16);
	assert_int_equal(p[O_UUID_MODIFY + 15], 0x02);
	assert_int_equal(p[O_UUID_MODIFY + 7], 0x40);
	assert_int_equal(p[O_UUID_MODIFY + 6], 0x00);
	for (int i = 0; i < 32; i++)
		assert_int_equal(p[O_UUID_LINKAGE + i], 0);
	assert_ok(open_host(h, 0, &img, &err), &err);
	assert_ok(vd_get_info(img, &info, &err), &err);
	assert_string_equal(info.uuid, "00000000-0000-4000-8000-000000000001");
	assert_string_equal(info.uuid_modify, "00000000-0000-4000-8000-000000000002");
	assert_string_equal(info.uuid_parent, "00000000-0000-0000-0000-000000000000");
	vd_close(img, &err);

	/* an asymmetric pattern shows the swap of each field */
	h = tmpl_copy();
	p = hdata(h, NULL);
	for (int i = 0; i < 16; i++) {
		p[O_UUID_CREATE + i] = (uint8_t)(i * 0x11);
		p[O_UUID_PARENTMOD + i] = (uint8_t)(0xf0 - i);
	}
	assert_ok(open_host(h, 0, &img, &err), &err);
	assert_ok(vd_get_info(img, &info, &err), &err);
	assert_string_equal(info.uuid, "33221100-5544-7766-8899-aabbccddeeff");
	assert_string_equal(info.uuid_parent_modify, "edeeeff0-ebec-e9ea-e8e7-e6e5e4e3e2e1");
	vd_close(img, &err);

	/* random (non-deterministic) UUIDs are valid version-4 UUIDs, distinct */
	h = vd_host_mem_new("uuid2.vdi", 0);
	assert_ok(vd_create_on_host(h, "vdi", MiB, NULL, 0, NULL, &err), &err);
	assert_ok(open_host(h, 0, &img, &err), &err);
	assert_ok(vd_get_info(img, &info, &err), &err);
	assert_int_equal(info.uuid[14], '4');
	assert_true(strchr("89ab", info.uuid[19]) != NULL);
	assert_string_not_equal(info.uuid, info.uuid_modify);
	vd_close(img, &err);
}

static void test_nalloc_updates(void **state)
{
	struct vd_error err = { 0 };
	struct vd_host *h = vd_host_mem_new("na.vdi", 0);
	struct vd_image *img;
	uint8_t b = 0x5a, *p;
	uint64_t n;

	(void)state;
	assert_ok(vd_create_on_host(h, "vdi", 4 * MiB, "subformat=dynamic",
				    VD_CREATE_DETERMINISTIC, NULL, &err), &err);
	assert_ok(open_host(h, VD_OPEN_RDWR, &img, &err), &err);
	assert_ok(vd_flush(img, &err), &err); /* the map reaches the file on flush */
	p = hdata(img->host, &n);
	assert_int_equal(le32dec(p + O_CBLOCKSALLOC), 0);
	assert_int_equal(n, TMPL_OFFDATA);

	assert_ok(vd_write(img, 3 * MiB + 77, &b, 1, &err), &err);
	assert_ok(vd_flush(img, &err), &err); /* the map reaches the file on flush */
	p = hdata(img->host, &n);
	assert_int_equal(le32dec(p + O_CBLOCKSALLOC), 1);
	assert_int_equal(le32dec(p + TMPL_OFFBLOCKS + 12), 0);
	assert_int_equal(n, TMPL_OFFDATA + MiB);
	assert_int_equal(p[TMPL_OFFDATA + 77], 0x5a);

	/* rewriting an allocated block allocates nothing */
	assert_ok(vd_write(img, 3 * MiB, &b, 1, &err), &err);
	assert_ok(vd_flush(img, &err), &err); /* the map reaches the file on flush */
	p = hdata(img->host, &n);
	assert_int_equal(le32dec(p + O_CBLOCKSALLOC), 1);
	assert_int_equal(n, TMPL_OFFDATA + MiB);

	assert_ok(vd_write(img, MiB, &b, 1, &err), &err);
	assert_ok(vd_flush(img, &err), &err); /* the map reaches the file on flush */
	p = hdata(img->host, &n);
	assert_int_equal(le32dec(p + O_CBLOCKSALLOC), 2);
	assert_int_equal(le32dec(p + TMPL_OFFBLOCKS + 4), 1);
	assert_int_equal(le32dec(p + TMPL_OFFBLOCKS + 0), 0xffffffff);
	assert_int_equal(le32dec(p + TMPL_OFFBLOCKS + 8), 0xffffffff);
	assert_int_equal(n, TMPL_OFFDATA + 2 * MiB);
	vd_close(img, &err);
}

static void check_fixed(const char *opts, uint64_t disk)
{
	struct vd_error err = { 0 };
	struct vd_host *h = vd_host_mem_new("fixed.vdi", 0);
	struct vd_image *img;
	struct vd_info info;
	struct vd_extent e;
	uint8_t *p, buf[8192];
	uint64_t n, n2, off_data;
	uint32_t nblocks;

	assert_ok(vd_create_on_host(h, "vdi", disk, opts, VD_CREATE_DETERMINISTIC, NULL, &err), &err);
	p = hdata(h, &n);
	nblocks = le32dec(p + O_CBLOCKS);
	off_data = le32dec(p + O_OFFDATA);
	assert_int_equal(nblocks, (disk + MiB - 1) / MiB);
	assert_int_equal(le32dec(p + O_TYPE), 2);
	assert_int_equal(le32dec(p + O_CBLOCKSALLOC), nblocks);
	for (uint32_t b = 0; b < nblocks; b++)
		assert_int_equal(le32dec(p + le32dec(p + O_OFFBLOCKS) + 4 * b), b);
	assert_int_equal(n, off_data + (uint64_t)nblocks * MiB);

	assert_ok(open_host(h, VD_OPEN_RDWR, &img, &err), &err);
	assert_ok(vd_get_info(img, &info, &err), &err);
	assert_string_equal(info.subformat, "fixed");
	assert_ok(vd_block_status(img, 0, vd_size(img), &e, &err), &err);
	assert_int_equal(e.flags, VD_BS_DATA | VD_BS_ALLOCATED | VD_BS_OFFSET_VALID);
	assert_int_equal(e.length, vd_size(img));
	assert_int_equal(e.offset, off_data);
	assert_ok(vd_read(img, MiB - 100, buf, sizeof(buf), &err), &err);
	assert_zero(buf, sizeof(buf), "fresh fixed image");

	fill_pattern(buf, sizeof(buf), 12);
	assert_ok(vd_write(img, MiB - 100, buf, sizeof(buf), &err), &err);
	assert_ok(vd_write_zeroes(img, MiB, 4096, VD_ZERO_MAY_UNMAP, &err), &err);
	memset(buf + 100, 0, 4096);
	{
		uint8_t got[8192];
		assert_ok(vd_read(img, MiB - 100, got, sizeof(got), &err), &err);
		assert_same(got, buf, sizeof(got), "fixed image data");
	}
	p = hdata(img->host, &n2);
	assert_int_equal(n2, n);
	assert_int_equal(le32dec(p + O_CBLOCKSALLOC), nblocks);
	assert_ok(vd_block_status(img, MiB, 4096, &e, &err), &err);
	assert_int_equal(e.flags, VD_BS_DATA | VD_BS_ALLOCATED | VD_BS_OFFSET_VALID);
	vd_close(img, &err);
}

static void test_fixed(void **state)
{
	(void)state;
	check_fixed("subformat=fixed", 4 * MiB);
	check_fixed("static=on", 3 * MiB + 512);
}

static void test_unaligned_cbdisk(void **state)
{
	struct vd_host *h = tmpl_copy();
	struct vd_image *img;
	struct vd_error err;

	(void)state;
	/* convertfromraw sizes: rounded up to a sector */
	le64enc(hdata(h, NULL) + O_CBDISK, 4 * MiB - 100);
	assert_ok(open_host(h, 0, &img, &err), &err);
	assert_int_equal(vd_size(img), 4 * MiB);
	assert_image_is(img, tmpl_guest, "cbDisk not a sector multiple");
	vd_close(img, &err);
}

/* A last block stored only up to the guest size (not a whole block). */
static void test_last_block_short_slot(void **state)
{
	struct layout L = { .cb_header = 400, .type = 1, .off_blocks = 512, .off_data = 1024,
			    .bs = MiB, .extra = 0, .nblocks = 2, .nalloc = 2, .disk = MiB + 512 * KiB };
	uint32_t bmap[2] = { 1, 0 };
	struct vd_host *h = build(&L, bmap, 1024 + MiB + 512 * KiB, BAD_NAME);
	uint8_t *guest = malloc(L.disk), *p = hdata(h, NULL);
	struct vd_image *img;
	struct vd_error err;

	(void)state;
	fill_pattern(guest, L.disk, 31);
	memcpy(p + slot_off(&L, 1), guest, 512 * KiB); /* block 0 in slot 1... */
	/* ...which does not fit a whole block: that is only fine for the last block */
	expect_reject(host_from(p, 1024 + MiB + 512 * KiB, BAD_NAME), 0, "block map", "past the end");
	bmap[0] = 0;
	bmap[1] = 1;
	vd_host_close(h);
	h = build(&L, bmap, 1024 + MiB + 512 * KiB, BAD_NAME);
	p = hdata(h, NULL);
	memcpy(p + slot_off(&L, 0), guest, L.disk);
	assert_ok(open_host(h, VD_OPEN_RDWR, &img, &err), &err);
	assert_image_is(img, guest, "short last slot");
	vd_close(img, &err);
	free(guest);
}

/*
 * cbDisk not a multiple of 512, last slot stored up to cbDisk only: the
 * image is exposed with the size rounded up to a sector, so the open must
 * either refuse the map entry or the read of the last sector must succeed
 * (zeros past cbDisk).  Accepting it and then failing every read of the
 * last sector with EIO is inconsistent.
 */
static void test_unaligned_cbdisk_short_slot(void **state)
{
	struct layout L = { .cb_header = 400, .type = 1, .off_blocks = 512, .off_data = 1024,
			    .bs = MiB, .extra = 0, .nblocks = 1, .nalloc = 1, .disk = 1000 };
	uint32_t bmap[1] = { 0 };
	struct vd_host *h = build(&L, bmap, 1024 + 1000, BAD_NAME);
	struct vd_image *img;
	struct vd_error err;
	uint8_t buf[1024], want[1024] = { 0 };
	int r;

	(void)state;
	fill_pattern(want, 1000, 41);
	memcpy(hdata(h, NULL) + 1024, want, 1000);
	r = open_host(h, 0, &img, &err);
	if (r < 0) {
		assert_msg_has(&err, "block map");
		return;
	}
	assert_int_equal(vd_size(img), 1024);
	r = vd_read(img, 0, buf, sizeof(buf), &err);
	vd_close(img, NULL);
	if (r != 0)
		fail_msg("open accepted the image but reading it fails: %s", err.msg);
	assert_same(buf, want, sizeof(buf), "padded last sector");
}

/* Writes of zeros into blocks that read as zeros allocate nothing; a whole
 * zero block becomes a zero-block entry.  allocate_zero_writes turns that off. */
static void test_zero_writes_do_not_allocate(void **state)
{
	struct vd_error err = { 0 };
	struct vd_host *h = vd_host_mem_new("zw.vdi", 0);
	struct vd_image *img;
	struct vd_extent e;
	uint8_t *zero = calloc(1, MiB), *p, *want = calloc(1, 4 * MiB);
	uint64_t n;

	(void)state;
	assert_ok(vd_create_on_host(h, "vdi", 4 * MiB, NULL, VD_CREATE_DETERMINISTIC, NULL, &err), &err);
	assert_ok(open_host(h, VD_OPEN_RDWR, &img, &err), &err);

	/* partial zeros (aligned and not) into an unallocated block: nothing */
	assert_ok(vd_write(img, 4096, zero, 8192, &err), &err);
	assert_ok(vd_write(img, 3, zero, 1000, &err), &err);
	assert_ok(vd_flush(img, &err), &err); /* the map reaches the file on flush */
	p = hdata(img->host, &n);
	assert_int_equal(n, TMPL_OFFDATA);
	assert_int_equal(le32dec(p + O_CBLOCKSALLOC), 0);
	assert_int_equal(le32dec(p + TMPL_OFFBLOCKS), 0xffffffff);

	/* a whole block of zeros: marked as a zero block, still no data */
	assert_ok(vd_write(img, MiB, zero, MiB, &err), &err);
	assert_ok(vd_flush(img, &err), &err); /* the map reaches the file on flush */
	p = hdata(img->host, &n);
	assert_int_equal(n, TMPL_OFFDATA);
	assert_int_equal(le32dec(p + O_CBLOCKSALLOC), 0);
	assert_int_equal(le32dec(p + TMPL_OFFBLOCKS + 4), 0xfffffffe);
	assert_ok(vd_block_status(img, MiB, MiB, &e, &err), &err);
	assert_int_equal(e.flags, VD_BS_ZERO | VD_BS_ALLOCATED);
	assert_image_is(img, want, "zero writes");

	/* zeros into an allocated block are written */
	want[2 * MiB + 10] = 7;
	assert_ok(vd_write(img, 2 * MiB + 10, want + 2 * MiB + 10, 1, &err), &err);
	assert_ok(vd_write(img, 2 * MiB + 10, zero, 1, &err), &err);
	want[2 * MiB + 10] = 0;
	assert_image_is(img, want, "zeros over data");
	assert_ok(vd_flush(img, &err), &err); /* the map reaches the file on flush */
	assert_int_equal(le32dec(hdata(img->host, NULL) + O_CBLOCKSALLOC), 1);

	/* allocate_zero_writes: zeros are stored as data */
	img->allocate_zero_writes = true;
	assert_ok(vd_write(img, 3 * MiB, zero, 4096, &err), &err);
	assert_ok(vd_flush(img, &err), &err); /* the map reaches the file on flush */
	p = hdata(img->host, &n);
	assert_int_equal(le32dec(p + O_CBLOCKSALLOC), 2);
	assert_int_equal(le32dec(p + TMPL_OFFBLOCKS + 12), 1);
	assert_ok(vd_block_status(img, 3 * MiB, MiB, &e, &err), &err);
	assert_int_equal(e.flags, VD_BS_DATA | VD_BS_ALLOCATED | VD_BS_OFFSET_VALID);
	assert_image_is(img, want, "allocated zeros");
	vd_close(img, &err);
	free(zero);
	free(want);
}

static void test_create_cancel(void **state)
{
	struct vd_error err = { 0 };
	struct vd_host *h = vd_host_mem_new("cancel.vdi", 0);
	volatile int cancel = 1;

	(void)state;
	assert_int_equal(vd_create_on_host(h, "vdi", 4 * MiB, NULL, 0, (const volatile int *)&cancel,
					   &err), -ECANCELED);
	assert_int_equal(err.code, -ECANCELED);
	vd_host_close(h);
	h = vd_host_mem_new("cancel.vdi", 0);
	cancel = 0;
	assert_ok(vd_create_on_host(h, "vdi", 4 * MiB, NULL, 0, (const volatile int *)&cancel,
				    &err), &err);
	vd_host_close(h);
}

/* ---- check and repair ---- */

struct notes {
	unsigned n[4];
	char text[1024];
};

static void note_cb(void *ctx, int kind, const char *msg)
{
	struct notes *nt = ctx;
	size_t l = strlen(nt->text);
	assert_true(kind >= 0 && kind < 4);
	nt->n[kind]++;
	snprintf(nt->text + l, sizeof(nt->text) - l, "%s\n", msg);
}

static void test_check_clean(void **state)
{
	struct vd_image *img;
	struct vd_error err;
	struct notes nt = { 0 };
	struct vd_check chk = { .note = note_cb, .ctx = &nt };

	(void)state;
	assert_ok(open_host(tmpl_copy(), 0, &img, &err), &err);
	assert_ok(vd_check(img, false, &chk, &err), &err);
	assert_int_equal(chk.corruptions, 0);
	assert_int_equal(chk.leaks, 0);
	assert_int_equal(chk.leaked_bytes, 0);
	assert_int_equal(nt.n[VD_CHECK_NOTE_ERROR] + nt.n[VD_CHECK_NOTE_LEAK], 0);
	vd_close(img, &err);
}

static void test_check_repair_leak_and_count(void **state)
{
	struct vd_image *img, *img2;
	struct vd_error err;
	struct notes nt = { 0 };
	struct vd_check chk = { .note = note_cb, .ctx = &nt };
	uint8_t *want = malloc(TMPL_DISK), *p;
	uint64_t n;

	(void)state;
	/* blocks: 0 -> slot 0, 1 -> slot 2, 2 -> slot 1, 3 -> slot 3 */
	assert_ok(open_host(tmpl_copy(), VD_OPEN_RDWR, &img, &err), &err);
	memcpy(want, tmpl_guest, TMPL_DISK);
	fill_pattern(want + MiB, MiB, 21);
	fill_pattern(want + 3 * MiB, MiB, 22);
	assert_ok(vd_write(img, MiB, want + MiB, MiB, &err), &err);
	assert_ok(vd_write(img, 3 * MiB, want + 3 * MiB, MiB, &err), &err);
	vd_flush(img, &err);
	/* forget block 2: slot 1 leaks and cBlocksAllocated (4) is one too many */
	{
		assert_ok(vd_flush(img, &err), &err); /* the map reaches the file on flush */
		struct vd_host *h = clone_img(img, "chk.vdi");
		vd_close(img, &err);
		le32enc(hdata(h, NULL) + TMPL_OFFBLOCKS + 8, 0xffffffff);
		memset(want + 2 * MiB, 0, MiB);
		assert_ok(open_host(h, VD_OPEN_RDWR, &img, &err), &err);
	}
	assert_image_is(img, want, "damaged image");

	/* a count above the used blocks only wastes a slot: a leak, as a
	 * discard leaves it, not corruption */
	assert_ok(vd_check(img, false, &chk, &err), &err);
	assert_int_equal(chk.corruptions, 0);
	assert_int_equal(chk.leaks, 2);
	assert_int_equal(chk.leaked_bytes, MiB);
	assert_int_equal(chk.corruptions_fixed, 0);
	assert_int_equal(chk.leaks_fixed, 0);
	assert_int_equal(nt.n[VD_CHECK_NOTE_LEAK], 2);
	assert_int_equal(nt.n[VD_CHECK_NOTE_ERROR], 0);
	assert_non_null(strstr(nt.text, "slot 1"));
	assert_non_null(strstr(nt.text, "cBlocksAllocated"));
	/* a check without repair changed nothing */
	assert_ok(vd_flush(img, &err), &err); /* the map reaches the file on flush */
	p = hdata(img->host, &n);
	assert_int_equal(n, TMPL_OFFDATA + 4 * MiB);
	assert_int_equal(le32dec(p + O_CBLOCKSALLOC), 4);

	memset(&nt, 0, sizeof(nt));
	assert_ok(vd_check(img, true, &chk, &err), &err);
	assert_int_equal(chk.corruptions, 0);
	assert_int_equal(chk.leaks, 0);
	assert_int_equal(chk.corruptions_fixed, 0);
	assert_int_equal(chk.leaks_fixed, 2);
	assert_true(nt.n[VD_CHECK_NOTE_FIXED] >= 2);
	assert_image_is(img, want, "after repair");
	assert_ok(vd_flush(img, &err), &err); /* the map reaches the file on flush */
	p = hdata(img->host, &n);
	assert_int_equal(le32dec(p + O_CBLOCKSALLOC), 3);
	assert_int_equal(n, TMPL_OFFDATA + 3 * MiB);
	assert_int_equal(le32dec(p + TMPL_OFFBLOCKS + 12), 1); /* block 3 moved into slot 1 */

	/* clean now, and a fresh open agrees */
	memset(&nt, 0, sizeof(nt));
	assert_ok(vd_check(img, false, &chk, &err), &err);
	assert_int_equal(chk.corruptions + chk.leaks, 0);
	assert_ok(vd_flush(img, &err), &err); /* the map reaches the file on flush */
	assert_ok(open_host(clone_img(img, "chk2.vdi"), VD_OPEN_RDWR, &img2, &err), &err);
	assert_image_is(img2, want, "repaired image reopened");
	/* and allocation continues after the last used slot */
	{
		uint8_t b = 0x99;
		assert_ok(vd_write(img2, 2 * MiB, &b, 1, &err), &err);
		want[2 * MiB] = 0x99;
		assert_ok(vd_flush(img2, &err), &err); /* the map reaches the file on flush */
		p = hdata(img2->host, &n);
		assert_int_equal(le32dec(p + TMPL_OFFBLOCKS + 8), 3);
		assert_image_is(img2, want, "write after repair");
	}
	vd_close(img2, &err);
	vd_close(img, &err);
	free(want);
}

static void test_check_trailing_junk(void **state)
{
	struct vd_host *h = vd_host_mem_new(BAD_NAME, tmpl_size + MiB + 512);
	struct vd_image *img;
	struct vd_error err;
	struct vd_check chk = { 0 };
	uint8_t *p = hdata(h, NULL), got[8192];
	uint64_t n;

	(void)state;
	memcpy(p, tmpl, tmpl_size);
	memset(p + tmpl_size, 0xee, MiB + 512);

	/* allocating over leaked bytes must not expose them */
	assert_ok(open_host(host_from(p, tmpl_size + MiB + 512, "junk2.vdi"), VD_OPEN_RDWR,
			    &img, &err), &err);
	assert_ok(vd_write(img, MiB + 4096, "x", 1, &err), &err);
	assert_ok(vd_read(img, MiB, got, sizeof(got), &err), &err);
	assert_int_equal(got[4096], 'x');
	got[4096] = 0;
	assert_zero(got, sizeof(got), "new block over leaked bytes");
	vd_close(img, &err);

	assert_ok(open_host(h, VD_OPEN_RDWR, &img, &err), &err);
	assert_ok(vd_check(img, false, &chk, &err), &err);
	assert_int_equal(chk.corruptions, 0);
	assert_int_equal(chk.leaks, 1);
	assert_int_equal(chk.leaked_bytes, MiB + 512);
	assert_ok(vd_check(img, true, &chk, &err), &err);
	assert_int_equal(chk.leaks_fixed, 1);
	vd_host_mem_data(img->host, &n);
	assert_int_equal(n, tmpl_size);
	assert_image_is(img, tmpl_guest, "after truncating the junk");
	vd_close(img, &err);
}

static void test_check_low_nalloc_repair(void **state)
{
	struct vd_host *h = tmpl_copy();
	struct vd_image *img;
	struct vd_error err;
	struct vd_check chk = { 0 };

	(void)state;
	le32enc(hdata(h, NULL) + O_CBLOCKSALLOC, 1);
	assert_ok(open_host(h, VD_OPEN_RDWR | VD_OPEN_CHECK, &img, &err), &err);
	assert_ok(vd_check(img, false, &chk, &err), &err);
	assert_int_equal(chk.corruptions, 1);
	assert_ok(vd_check(img, true, &chk, &err), &err);
	assert_int_equal(chk.corruptions, 0);
	assert_int_equal(chk.corruptions_fixed, 1);
	assert_int_equal(le32dec(hdata(img->host, NULL) + O_CBLOCKSALLOC), 2);
	h = clone_img(img, BAD_NAME);
	vd_close(img, &err);
	assert_ok(open_host(h, VD_OPEN_RDWR, &img, &err), &err);
	assert_image_is(img, tmpl_guest, "after fixing cBlocksAllocated");
	vd_close(img, &err);
}

static void test_check_unrepairable(void **state)
{
	struct vd_host *h = tmpl_copy();
	struct vd_image *img;
	struct vd_error err;
	struct notes nt = { 0 };
	struct vd_check chk = { .note = note_cb, .ctx = &nt };
	uint8_t *before = malloc(tmpl_size);
	uint64_t n;

	(void)state;
	le32enc(hdata(h, NULL) + TMPL_OFFBLOCKS + 12, 0); /* block 3 shares slot 0 */
	memcpy(before, hdata(h, NULL), tmpl_size);
	assert_ok(open_host(h, VD_OPEN_RDWR | VD_OPEN_CHECK, &img, &err), &err);
	assert_ok(vd_check(img, true, &chk, &err), &err);
	assert_int_equal(chk.corruptions, 1);
	assert_int_equal(chk.corruptions_fixed, 0);
	assert_non_null(strstr(nt.text, "slot 0"));
	assert_same(hdata(img->host, &n), before, tmpl_size, "unrepairable image untouched");
	assert_int_equal(n, tmpl_size);
	vd_close(img, &err);
	free(before);
}

/* ---- defect 11: the block map is checked against the file before it is
 * allocated ---- */

/* A 4 KiB file whose header claims 64 Mi blocks (a 256 MiB map) and puts
 * offData past that map: the open must fail naming the block map, the
 * field and the file size, before allocating anything of that size. */
static struct vd_host *huge_map_host(void)
{
	struct vd_host *h = vd_host_mem_new(BAD_NAME, 4096);
	uint8_t *p = hdata(h, NULL);

	memcpy(p, tmpl, 4096 < tmpl_size ? 4096 : tmpl_size);
	le32enc(p + O_OFFBLOCKS, 512);
	le32enc(p + O_CBLOCKS, 64u << 20);
	le32enc(p + O_CBLOCKSALLOC, 0);
	le32enc(p + O_OFFDATA, 512 + (256u << 20));
	le64enc(p + O_CBDISK, (64ull << 20) * MiB);
	return h;
}

static void test_huge_map_small_file(void **state)
{
	(void)state;
	expect_reject(huge_map_host(), 0, "block map", "cBlocks 67108864");
	expect_reject(huge_map_host(), VD_OPEN_RDWR, "block map", "past the end of the file (4096 bytes)");
	expect_reject(huge_map_host(), VD_OPEN_CHECK, "block map", "cBlocks");
}

#ifndef __SANITIZE_ADDRESS__
/* The same open in a child limited to 64 MiB more address space than it
 * has: an allocation of the claimed map (256 MiB) would fail with ENOMEM
 * there instead of the header check (ASan reserves too much address space
 * for RLIMIT_AS, so this part runs only in the plain build). */
static void test_huge_map_no_allocation(void **state)
{
	pid_t pid;
	int status;

	(void)state;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct vd_host *h = huge_map_host();
		struct vd_image *img = NULL;
		struct vd_error err = { 0 };
		struct rlimit rl;
		unsigned long vm = 0;
		FILE *f = fopen("/proc/self/statm", "r");
		int r;

		if (!f || fscanf(f, "%lu", &vm) != 1)
			_exit(3);
		fclose(f);
		rl.rlim_cur = rl.rlim_max = (rlim_t)vm * (rlim_t)sysconf(_SC_PAGESIZE) + (64u << 20);
		if (setrlimit(RLIMIT_AS, &rl) < 0)
			_exit(3);
		r = vd_open_host(&img, h, "vdi", 0, &err);
		_exit(r == -EINVAL && strstr(err.msg, "block map") ? 0 : r == -ENOMEM ? 2 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == 2)
		fail_msg("the open allocated the claimed block map (ENOMEM under RLIMIT_AS)");
	assert_int_equal(WEXITSTATUS(status), 0);
}
#else
static void test_huge_map_no_allocation(void **state)
{
	(void)state;
	skip();
}
#endif

/* ---- fuzz finding testdata/vdi-write-readback-eof.vdi ----
 * fuzz_image: after repairing the image (cBlocksAllocated 2 -> 0, file cut
 * to 1024 bytes), a write needing a new 64 MiB block failed (the memory host
 * refuses to grow past 64 MiB) but left the backend believing the file
 * covered the slot; the next allocation then put the block in a slot the
 * file did not hold, and reading back what was written hit end of file. */
static uint8_t *read_testdata(const char *name, size_t *len)
{
	static const char *const dirs[] = { "testdata", "../testdata", "../../testdata" };
	char path[512];
	FILE *f = NULL;
	uint8_t *p = malloc(1 << 20);

	assert_non_null(p);
	for (size_t i = 0; i < VD_ARRAY_SIZE(dirs) && !f; i++) {
		snprintf(path, sizeof(path), "%s/%s", dirs[i], name);
		f = fopen(path, "rb");
	}
	if (!f) {
		/* relative to this source file (tests/unit/) */
		snprintf(path, sizeof(path), "%s", __FILE__);
		if (strrchr(path, '/'))
			*strrchr(path, '/') = '\0';
		snprintf(path + strlen(path), sizeof(path) - strlen(path), "/../../testdata/%s", name);
		f = fopen(path, "rb");
	}
	if (!f)
		fail_msg("cannot open testdata/%s (run from the source tree)", name);
	*len = fread(p, 1, 1 << 20, f);
	fclose(f);
	return p;
}

static void test_fuzz_write_readback_eof(void **state)
{
	struct vd_error err = { 0 };
	struct vd_check chk = { 0 };
	struct vd_image *img;
	struct vd_host *h;
	uint8_t buf[3000], got[3000];
	size_t n;
	uint8_t *data = read_testdata("vdi-write-readback-eof.vdi", &n);
	int r;

	(void)state;
	assert_int_equal(n, 635);
	h = host_from(data, n, "fuzz.img");
	free(data);
	vd_host_mem_faults(h)->capacity = 64 * MiB; /* as the harness */
	assert_ok(open_host(h, VD_OPEN_RDWR, &img, &err), &err);
	assert_int_equal(vd_size(img), 4096);
	assert_ok(vd_check(img, true, &chk, &err), &err);
	assert_int_equal(chk.corruptions, 0);
	/* block 0's slot (64 MiB + 66048 bytes at 1024) does not fit in the host */
	fill_pattern(buf, sizeof(buf), 9);
	r = vd_write(img, 1365 & ~511u, buf, 512, &err);
	assert_int_equal(r, -ENOSPC);
	/* any later write must either fail or read back, and so must the
	 * harness's 3000 bytes at 100 */
	r = vd_write(img, 1536, buf, 512, &err);
	if (r == 0) {
		assert_ok(vd_read(img, 1536, got, 512, &err), &err);
		assert_same(got, buf, 512, "512 bytes at 1536");
	}
	r = vd_write(img, 100, buf, sizeof(buf), &err);
	if (r == 0) {
		assert_ok(vd_read(img, 100, got, sizeof(got), &err), &err);
		assert_same(got, buf, sizeof(got), "3000 bytes at 100");
	}
	/* every in-bounds read works, whatever was refused */
	assert_ok(vd_read(img, 0, got, sizeof(got), &err), &err);
	vd_close(img, &err);
}

/* qemu-img check's rule for a VDI: cBlocksAllocated equals the number of
 * allocated map entries, each below cBlocks and in its own slot; vdisk's:
 * no used slot at or past the count. */
static void assert_qemu_rule(struct vd_host *h, const char *what)
{
	uint64_t n;
	uint8_t *p = hdata(h, &n);
	uint32_t nb = le32dec(p + O_CBLOCKS), count = le32dec(p + O_CBLOCKSALLOC);
	uint32_t off = le32dec(p + O_OFFBLOCKS), alloc = 0, top = 0;

	for (uint32_t b = 0; b < nb; b++) {
		uint32_t e = le32dec(p + off + 4 * b);
		if (e >= 0xfffffffe)
			continue;
		assert_true(e < nb);
		alloc++;
		top = e + 1 > top ? e + 1 : top;
	}
	if (alloc != count || top > count)
		fail_msg("%s: cBlocksAllocated %u, %u allocated entries, highest slot + 1 = %u",
			 what, count, alloc, top);
}

/* Discards and allocations reach the file in one commit (flush), which
 * keeps qemu-img check's rule at every failed write of it; the commit after
 * discards moves the last slots into the released ones and truncates. */
static void test_commit_keeps_qemu_rule(void **state)
{
	uint8_t *want = calloc(1, 6 * MiB);

	(void)state;
	for (unsigned nth = 1; nth <= 12; nth++) {
		struct vd_error err = { 0 };
		struct vd_host *h = vd_host_mem_new("q.vdi", 0);
		struct vd_image *img;
		struct vd_mem_faults *f;
		uint64_t before, after;
		int r;

		assert_ok(vd_create_on_host(h, "vdi", 6 * MiB, NULL, VD_CREATE_DETERMINISTIC, NULL, &err), &err);
		assert_ok(open_host(h, VD_OPEN_RDWR, &img, &err), &err);
		for (unsigned b = 0; b < 6; b++) {
			fill_pattern(want + b * MiB, MiB, (uint8_t)(b + 1));
			assert_ok(vd_write(img, b * MiB, want + b * MiB, MiB, &err), &err);
		}
		/* nothing reached the map yet: the old, valid state */
		assert_qemu_rule(img->host, "before the first flush");
		assert_int_equal(le32dec(hdata(img->host, NULL) + O_CBLOCKSALLOC), 0);
		assert_ok(vd_flush(img, &err), &err);
		assert_qemu_rule(img->host, "after the first flush");
		assert_int_equal(le32dec(hdata(img->host, NULL) + O_CBLOCKSALLOC), 6);
		hdata(img->host, &before);

		/* release blocks 1 and 3; a failing write somewhere in the commit */
		assert_ok(vd_discard(img, MiB, MiB, &err), &err);
		assert_ok(vd_discard(img, 3 * MiB, MiB, &err), &err);
		memset(want + MiB, 0, MiB);
		memset(want + 3 * MiB, 0, MiB);
		assert_image_is(img, want, "after discards");
		f = vd_host_mem_faults(img->host);
		f->fail_write_nth = f->nwrites + nth;
		r = vd_flush(img, &err);
		f->fail_write_nth = 0;
		{
			char what[64];
			struct vd_image *img2;
			snprintf(what, sizeof(what), "write %u of the reclaim failing", nth);
			assert_qemu_rule(img->host, what);
			/* the file holds every live block as it was */
			assert_ok(open_host(clone_img(img, "q2.vdi"), 0, &img2, &err), &err);
			for (unsigned b = 0; b < 6; b++) {
				uint8_t *got = malloc(MiB);
				assert_ok(vd_read(img2, b * MiB, got, MiB, &err), &err);
				if (b != 1 && b != 3)
					assert_same(got, want + b * MiB, MiB, what);
				free(got);
			}
			vd_close(img2, &err);
		}
		if (r == 0) {
			/* all done: 4 blocks in 4 slots, the file shortened */
			assert_int_equal(le32dec(hdata(img->host, NULL) + O_CBLOCKSALLOC), 4);
			hdata(img->host, &after);
			assert_int_equal(after, before - 2 * MiB);
		} else {
			/* a retry finishes it */
			assert_ok(vd_flush(img, &err), &err);
			assert_qemu_rule(img->host, "retried");
			assert_int_equal(le32dec(hdata(img->host, NULL) + O_CBLOCKSALLOC), 4);
		}
		assert_image_is(img, want, "after the reclaim");
		vd_close(img, &err);
	}
	free(want);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_file_too_short),
		cmocka_unit_test(test_bad_signature),
		cmocka_unit_test(test_version_0),
		cmocka_unit_test(test_version_2),
		cmocka_unit_test(test_cbheader),
		cmocka_unit_test(test_image_type),
		cmocka_unit_test(test_offblocks),
		cmocka_unit_test(test_offdata),
		cmocka_unit_test(test_sector_size),
		cmocka_unit_test(test_cbdisk),
		cmocka_unit_test(test_cbblock),
		cmocka_unit_test(test_cbblockextra),
		cmocka_unit_test(test_cblocks),
		cmocka_unit_test(test_cblocksallocated),
		cmocka_unit_test(test_bmap_past_eof),
		cmocka_unit_test(test_bmap_entry_too_big),
		cmocka_unit_test(test_bmap_entry_past_eof),
		cmocka_unit_test(test_bmap_shared_slot),
		cmocka_unit_test(test_nalloc_too_small),
		cmocka_unit_test(test_template_valid),
		cmocka_unit_test(test_header_384),
		cmocka_unit_test(test_qemu_layout),
		cmocka_unit_test(test_block_size_512k),
		cmocka_unit_test(test_block_size_8m),
		cmocka_unit_test(test_block_size_512_by_hand),
		cmocka_unit_test(test_block_extra),
		cmocka_unit_test(test_zero_entries),
		cmocka_unit_test(test_uuid_byte_order),
		cmocka_unit_test(test_nalloc_updates),
		cmocka_unit_test(test_fixed),
		cmocka_unit_test(test_unaligned_cbdisk),
		cmocka_unit_test(test_last_block_short_slot),
		cmocka_unit_test(test_unaligned_cbdisk_short_slot),
		cmocka_unit_test(test_zero_writes_do_not_allocate),
		cmocka_unit_test(test_create_cancel),
		cmocka_unit_test(test_check_clean),
		cmocka_unit_test(test_check_repair_leak_and_count),
		cmocka_unit_test(test_check_trailing_junk),
		cmocka_unit_test(test_check_low_nalloc_repair),
		cmocka_unit_test(test_commit_keeps_qemu_rule),
		cmocka_unit_test(test_check_unrepairable),
		cmocka_unit_test(test_huge_map_small_file),
		cmocka_unit_test(test_huge_map_no_allocation),
		cmocka_unit_test(test_fuzz_write_readback_eof),
	};
	return unit_run_setup(tests, setup_template, teardown_template);
}
