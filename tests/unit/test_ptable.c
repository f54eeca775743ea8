/*
 * Partition tables for reading (vd_ptable_read): a GPT built by hand in a
 * memory image (protective MBR, primary and backup headers and entries),
 * read back exactly; the backup used when the primary header or entries
 * are damaged; one rejection per poked field when both copies carry it;
 * hybrid MBRs; MBR disks through the same call; name decoding.
 *
 * SPDX-License-Identifier: MIT
 */
#include "unit.h"

#include <errno.h>
#include <zlib.h>

#define MiB (1ull << 20)
#define DISK (4 * MiB)
#define NSECT (DISK / 512)      /* 8192 */
#define NENT 128
#define FIRST 34
#define LAST (NSECT - 34)       /* 8158 */
#define BACKUP_ENTRIES (NSECT - 33)

static const uint8_t linux_fs[16] = { 0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47,
				      0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d, 0xe4 };
static const uint8_t swap_t[16] = { 0x6d, 0xfd, 0x57, 0x06, 0xab, 0xa4, 0xc4, 0x43,
				    0x84, 0xe5, 0x09, 0x33, 0xc8, 0x4b, 0x4f, 0x4f };

struct fixture {
	struct vd_host *h;
	struct vd_image *img;
	uint8_t *d;
};

static void set_name(uint8_t *e, const uint16_t *units, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		le16enc(e + 56 + 2 * i, units[i]);
}

static void entry(uint8_t *e, const uint8_t type[16], uint8_t uuid_seed, uint64_t first,
		  uint64_t last, uint64_t attrs)
{
	memcpy(e, type, 16);
	for (unsigned i = 0; i < 16; i++)
		e[16 + i] = (uint8_t)(uuid_seed + i);
	le64enc(e + 32, first);
	le64enc(e + 40, last);
	le64enc(e + 48, attrs);
}

/* Recompute the entries CRCs of both headers, then the header CRCs. */
static void fix_crcs(uint8_t *d)
{
	static const uint64_t hdr_lba[2] = { 1, NSECT - 1 };

	for (unsigned c = 0; c < 2; c++) {
		uint8_t *h = d + hdr_lba[c] * 512;
		uint64_t elba = le64dec(h + 72);
		uint32_t n = le32dec(h + 80), sz = le32dec(h + 84), hs = le32dec(h + 12);
		if ((uint64_t)n * sz <= 2 * MiB && elba < NSECT)
			le32enc(h + 88, (uint32_t)crc32(0, d + elba * 512, (uInt)((uint64_t)n * sz)));
		le32enc(h + 16, 0);
		le32enc(h + 16, (uint32_t)crc32(0, h, hs <= 512 ? hs : 92));
	}
}

static void header(uint8_t *h, uint64_t my, uint64_t alt, uint64_t entries)
{
	memcpy(h, "EFI PART", 8);
	le32enc(h + 8, 0x00010000);
	le32enc(h + 12, 92);
	le64enc(h + 24, my);
	le64enc(h + 32, alt);
	le64enc(h + 40, FIRST);
	le64enc(h + 48, LAST);
	for (unsigned i = 0; i < 16; i++)
		h[56 + i] = (uint8_t)(0xa0 + i);
	le64enc(h + 72, entries);
	le32enc(h + 80, NENT);
	le32enc(h + 84, 128);
}

/* A protective MBR, entries 1 (Linux, "root"), 3 (swap, "swé😀"), 4 (at
 * the start of the usable range, attributes), both headers. */
static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct vd_error err = { 0 };
	uint64_t n;
	uint8_t *d, *e;
	static const uint16_t root[] = { 'r', 'o', 'o', 't' };
	static const uint16_t sw[] = { 's', 'w', 0xe9, 0xd83d, 0xde00 };

	assert_non_null(f);
	f->h = vd_host_mem_new("gpt", DISK);
	assert_non_null(f->h);
	assert_ok(vd_open_host(&f->img, f->h, "raw", VD_OPEN_RDWR, &err), &err);
	d = f->d = vd_host_mem_data(f->h, &n);
	/* protective MBR: one 0xee entry from LBA 1 */
	d[446 + 4] = 0xee;
	le32enc(d + 446 + 8, 1);
	le32enc(d + 446 + 12, NSECT - 1);
	d[510] = 0x55;
	d[511] = 0xaa;
	e = d + 2 * 512;
	entry(e, linux_fs, 0x10, 2048, 4095, 0);
	set_name(e, root, 4);
	entry(e + 2 * 128, swap_t, 0x30, 4096, 6143, 0);
	set_name(e + 2 * 128, sw, 5);
	entry(e + 3 * 128, linux_fs, 0x40, FIRST, 2047, 1ull << 60 | 1);
	memcpy(d + BACKUP_ENTRIES * 512, e, NENT * 128);
	header(d + 512, 1, NSECT - 1, 2);
	header(d + (NSECT - 1) * 512, NSECT - 1, 1, BACKUP_ENTRIES);
	fix_crcs(d);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	vd_close(f->img, NULL);
	free(f);
	return 0;
}

static struct vd_ptable pt;

static void assert_parts(const struct vd_ptable *t)
{
	assert_string_equal(t->label, "gpt");
	assert_string_equal(t->disk_guid, "a3a2a1a0-a5a4-a7a6-a8a9-aaabacadaeaf");
	assert_int_equal(t->first_lba, FIRST);
	assert_int_equal(t->last_lba, LAST);
	assert_int_equal(t->nentries, NENT);
	assert_int_equal(t->nparts, 3);
	assert_int_equal(t->part[0].number, 1);
	assert_int_equal(t->part[0].start, 2048);
	assert_int_equal(t->part[0].size, 2048);
	assert_string_equal(t->part[0].type_guid, "0fc63daf-8483-4772-8e79-3d69d8477de4");
	assert_string_equal(t->part[0].uuid, "13121110-1514-1716-1819-1a1b1c1d1e1f");
	assert_string_equal(t->part[0].name, "root");
	assert_int_equal(t->part[0].attrs, 0);
	assert_false(t->part[0].extended);
	assert_int_equal(t->part[1].number, 3);
	assert_int_equal(t->part[1].start, 4096);
	assert_int_equal(t->part[1].size, 2048);
	assert_string_equal(t->part[1].type_guid, "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f");
	assert_string_equal(t->part[1].name, "sw\xc3\xa9\xf0\x9f\x98\x80");
	assert_int_equal(t->part[2].number, 4);
	assert_int_equal(t->part[2].start, FIRST);
	assert_int_equal(t->part[2].size, 2048 - FIRST);
	assert_int_equal(t->part[2].attrs, 1ull << 60 | 1);
	assert_string_equal(vd_gpt_type_name(t->part[0].type_guid), "Linux filesystem");
	assert_string_equal(vd_gpt_type_name("0FC63DAF-8483-4772-8E79-3D69D8477DE4"), "Linux filesystem");
	assert_string_equal(vd_gpt_type_name("01234567-8483-4772-8e79-3d69d8477de4"), "unknown");
	assert_ptr_equal(vd_ptable_find(t, 3), &t->part[1]);
	assert_null(vd_ptable_find(t, 2));
}

static void test_gpt_read(void **state)
{
	struct fixture *f = *state;
	struct vd_error err = { 0 };

	assert_ok(vd_ptable_read(f->img, &pt, &err), &err);
	assert_parts(&pt);
	assert_int_equal(pt.header_lba, 1);
	assert_false(pt.backup_used);
	assert_string_equal(pt.note, "");
	/* a hybrid MBR (0xee plus a type-83 entry) is read as its GPT */
	f->d[462 + 4] = 0x83;
	le32enc(f->d + 462 + 8, 2048);
	le32enc(f->d + 462 + 12, 2048);
	assert_ok(vd_ptable_read(f->img, &pt, &err), &err);
	assert_parts(&pt);
}

static void test_gpt_backup(void **state)
{
	struct fixture *f = *state;
	struct vd_error err = { 0 };

	/* primary header CRC poked */
	f->d[512 + 16] ^= 1;
	assert_ok(vd_ptable_read(f->img, &pt, &err), &err);
	assert_parts(&pt);
	assert_true(pt.backup_used);
	assert_int_equal(pt.header_lba, NSECT - 1);
	if (!strstr(pt.note, "header CRC32") || !strstr(pt.note, "backup at LBA 8191"))
		fail_msg("note \"%s\"", pt.note);
	f->d[512 + 16] ^= 1;
	assert_ok(vd_ptable_read(f->img, &pt, &err), &err);
	assert_false(pt.backup_used);
	/* primary entries damaged: the header is fine, its entries CRC not */
	f->d[2 * 512 + 56] ^= 1;
	assert_ok(vd_ptable_read(f->img, &pt, &err), &err);
	assert_parts(&pt);
	assert_true(pt.backup_used);
	if (!strstr(pt.note, "entries CRC32"))
		fail_msg("note \"%s\"", pt.note);
	/* the primary signature gone, and the backup damaged too */
	f->d[512] = 'X';
	f->d[(NSECT - 1) * 512 + 16] ^= 1;
	assert_int_equal(vd_ptable_read(f->img, &pt, &err), -EINVAL);
	assert_msg_has(&err, "GPT header at LBA 1: signature 58");
	assert_msg_has(&err, "backup GPT header at LBA 8191: header CRC32");
	assert_int_equal(pt.nparts, 0);
}

/* Poke field OFF of both headers (LEN bytes, value V), fix the CRCs
 * unless KEEP_CRC, expect -EINVAL naming MSG. */
static void reject_hdr(struct fixture *f, unsigned off, unsigned len, uint64_t v, bool keep_crc,
		       const char *msg)
{
	struct vd_error err = { 0 };
	static const uint64_t lba[2] = { 1, NSECT - 1 };

	for (unsigned c = 0; c < 2; c++) {
		uint8_t *h = f->d + lba[c] * 512;
		if (len == 8)
			le64enc(h + off, v);
		else if (len == 4)
			le32enc(h + off, (uint32_t)v);
		else
			h[off] = (uint8_t)v;
	}
	if (!keep_crc)
		fix_crcs(f->d);
	assert_int_equal(vd_ptable_read(f->img, &pt, &err), -EINVAL);
	assert_msg_has(&err, msg);
}

static void test_gpt_rejections(void **state)
{
	struct fixture *f = *state;
	struct vd_error err = { 0 };
	uint8_t *e = f->d + 2 * 512, *b = f->d + BACKUP_ENTRIES * 512;
	uint8_t saved[512 * 34], saved_b[512 * 34];

	memcpy(saved, f->d, sizeof(saved));
	memcpy(saved_b, f->d + (NSECT - 34) * 512, sizeof(saved_b));
#define RESTORE() (memcpy(f->d, saved, sizeof(saved)), memcpy(f->d + (NSECT - 34) * 512, saved_b, sizeof(saved_b)))
	reject_hdr(f, 0, 1, 'X', false, "signature 58 46 49");
	RESTORE();
	reject_hdr(f, 8, 4, 0x00020000, false, "revision 0x00020000");
	RESTORE();
	reject_hdr(f, 12, 4, 600, false, "header size 600");
	RESTORE();
	reject_hdr(f, 12, 4, 91, false, "header size 91");
	RESTORE();
	reject_hdr(f, 16, 4, 0x12345678, true, "header CRC32 0x12345678");
	RESTORE();
	reject_hdr(f, 84, 4, 100, false, "partition entry size 100");
	RESTORE();
	reject_hdr(f, 80, 4, 100000, false, "number of partition entries 100000");
	RESTORE();
	reject_hdr(f, 80, 4, 0, false, "number of partition entries 0");
	RESTORE();
	/* the entries CRC field (fix_crcs would recompute it: the header
	 * CRC is fixed by hand) */
	for (unsigned c = 0; c < 2; c++) {
		uint8_t *h = f->d + (c ? NSECT - 1 : 1) * 512;
		le32enc(h + 88, 0xdeadbeef);
		le32enc(h + 16, 0);
		le32enc(h + 16, (uint32_t)crc32(0, h, 92));
	}
	assert_int_equal(vd_ptable_read(f->img, &pt, &err), -EINVAL);
	assert_msg_has(&err, "partition entries CRC32 0xdeadbeef");
	RESTORE();
	reject_hdr(f, 24, 8, 5, false, "my LBA 5");
	RESTORE();
	reject_hdr(f, 48, 8, NSECT, false, "usable LBAs 34..8192");
	RESTORE();
	reject_hdr(f, 40, 8, 9000, false, "usable LBAs 9000..8158");
	RESTORE();
	reject_hdr(f, 72, 8, 100, false, "overlap the usable LBAs");
	RESTORE();
	reject_hdr(f, 72, 8, NSECT - 2, false, "not inside the disk");
	RESTORE();
	/* entries: first > last, outside the usable range, overlap */
	le64enc(e + 32, 5000);
	le64enc(b + 32, 5000);
	fix_crcs(f->d);
	assert_int_equal(vd_ptable_read(f->img, &pt, &err), -EINVAL);
	assert_msg_has(&err, "partition 1: first LBA 5000 is after its last LBA 4095");
	RESTORE();
	le64enc(e + 2 * 128 + 40, LAST + 1);
	le64enc(b + 2 * 128 + 40, LAST + 1);
	fix_crcs(f->d);
	assert_int_equal(vd_ptable_read(f->img, &pt, &err), -EINVAL);
	assert_msg_has(&err, "partition 3: LBAs 4096..8159 are outside the usable LBAs 34..8158");
	RESTORE();
	le64enc(e + 2 * 128 + 32, 4000);
	le64enc(b + 2 * 128 + 32, 4000);
	fix_crcs(f->d);
	assert_int_equal(vd_ptable_read(f->img, &pt, &err), -EINVAL);
	assert_msg_has(&err, "partition 3 (LBAs 4000..6143) overlaps partition 1 (LBAs 2048..4095)");
	/* listed, not refused, for the commands that show the table */
	assert_ok(vd_ptable_read_overlaps(f->img, &pt, &err), &err);
	assert_int_equal(pt.nparts, 3);
	assert_int_equal(pt.noverlaps, 1);
	assert_int_equal(pt.overlap[0].a, 3);
	assert_int_equal(pt.overlap[0].b, 1);
	assert_int_equal(pt.overlap[0].a_start, 4000);
	assert_int_equal(pt.overlap[0].b_end, 4095);
	assert_true(vd_ptable_part_overlaps(&pt, 1));
	assert_false(vd_ptable_part_overlaps(&pt, 2));
	RESTORE();
	assert_ok(vd_ptable_read(f->img, &pt, &err), &err);
	assert_parts(&pt);
#undef RESTORE
}

static void test_mbr_through_ptable(void **state)
{
	struct vd_error err = { 0 };
	struct vd_host *h = vd_host_mem_new("dos", 64 * MiB);
	struct vd_image *img = NULL;
	static struct vd_mbr_script s;
	static struct vd_mbr m;

	(void)state;
	assert_ok(vd_open_host(&img, h, "raw", VD_OPEN_RDWR, &err), &err);
	assert_int_equal(vd_ptable_read(img, &pt, &err), -ENOENT);
	assert_ok(vd_mbr_parse_script("label: dos\n,8M,83,*\n,,5\n,4M,82\n,4M,83\n", &s, &err), &err);
	assert_ok(vd_mbr_layout(&s, 64 * MiB / 512, VD_ALIGN_MIB, 0, 0, 0xcafe0001, &m, &err), &err);
	assert_ok(vd_mbr_write(img, &m, NULL, 0, 0, &err), &err);
	assert_ok(vd_ptable_read(img, &pt, &err), &err);
	assert_string_equal(pt.label, "dos");
	assert_int_equal(pt.disk_id, 0xcafe0001);
	assert_int_equal(pt.nparts, m.nparts);
	for (unsigned i = 0; i < m.nparts; i++) {
		assert_int_equal(pt.part[i].number, m.part[i].number);
		assert_int_equal(pt.part[i].start, m.part[i].start);
		assert_int_equal(pt.part[i].size, m.part[i].size);
		assert_int_equal(pt.part[i].mbr_type, m.part[i].type);
		assert_int_equal(pt.part[i].extended, vd_mbr_is_extended(m.part[i].type));
		assert_int_equal(pt.part[i].bootable, m.part[i].bootable);
		assert_string_equal(pt.part[i].type_guid, "");
	}
	assert_int_equal(pt.part[1].number, 2);
	assert_true(pt.part[1].extended);
	assert_true(pt.part[0].bootable);
	assert_int_equal(pt.part[3].number, 6);
	vd_close(img, NULL);
}

/* Overlapping MBR entries (issue 12, defect 5): vd_ptable_read refuses
 * them naming both sides, vd_ptable_read_overlaps lists every pair: a
 * primary over the extended partition, over a logical and over its EBR;
 * two logicals; never the extended partition and its own logicals. */
static void test_mbr_overlaps(void **state)
{
	struct vd_error err = { 0 };
	struct vd_host *h = vd_host_mem_new("dos", 64 * MiB);
	struct vd_image *img = NULL;
	static struct vd_mbr_script s;
	static struct vd_mbr m;
	uint8_t b[4];
	char t[200];

	(void)state;
	assert_ok(vd_open_host(&img, h, "raw", VD_OPEN_RDWR, &err), &err);
	assert_ok(vd_mbr_parse_script("label: dos\n,8M,83\n,,5\n,4M,82\n,4M,83\n", &s, &err), &err);
	assert_ok(vd_mbr_layout(&s, 64 * MiB / 512, VD_ALIGN_MIB, 0, 0, 1, &m, &err), &err);
	assert_ok(vd_mbr_write(img, &m, NULL, 0, 0, &err), &err);
	assert_ok(vd_ptable_read(img, &pt, &err), &err);
	assert_int_equal(pt.noverlaps, 0);
	/* 1: 2048..18431, 2 (extended) 18432.., EBR of 5 at 18432, 5:
	 * 20480..28671, EBR of 6 at 28672, 6: 30720..38911 */
	assert_int_equal(m.part[2].start, 20480);
	assert_int_equal(m.part[3].ebr, 28672);
	le32enc(b, 16384 + 4096); /* partition 1 to 22527 */
	assert_ok(vd_write(img, 446 + 12, b, 4, &err), &err);
	assert_int_equal(vd_ptable_read(img, &pt, &err), -EINVAL);
	assert_msg_has(&err, "partition 1 (sectors 2048..22527) overlaps the EBR of partition 5 (sector 18432) (and more overlaps)");
	assert_int_equal(pt.nparts, 0);
	assert_ok(vd_ptable_read_overlaps(img, &pt, &err), &err);
	assert_int_equal(pt.nparts, 4);
	assert_int_equal(pt.noverlaps, 3);
	vd_ptable_overlap_text(&pt, &pt.overlap[1], t, sizeof(t));
	assert_string_equal(t, "partition 2 (sectors 18432..131071) overlaps partition 1 (sectors 2048..22527)");
	vd_ptable_overlap_text(&pt, &pt.overlap[2], t, sizeof(t));
	assert_string_equal(t, "partition 5 (sectors 20480..28671) overlaps partition 1 (sectors 2048..22527)");
	assert_true(vd_ptable_part_overlaps(&pt, 5));
	assert_false(vd_ptable_part_overlaps(&pt, 6));
	/* back, and logical 5 grown over the EBR of 6 and logical 6 */
	le32enc(b, 16384);
	assert_ok(vd_write(img, 446 + 12, b, 4, &err), &err);
	le32enc(b, 8192 + 4096);
	assert_ok(vd_write(img, 18432 * 512 + 446 + 12, b, 4, &err), &err);
	assert_ok(vd_ptable_read_overlaps(img, &pt, &err), &err);
	assert_int_equal(pt.noverlaps, 2);
	vd_ptable_overlap_text(&pt, &pt.overlap[0], t, sizeof(t));
	assert_string_equal(t, "partition 5 (sectors 20480..32767) overlaps the EBR of partition 6 (sector 28672)");
	vd_ptable_overlap_text(&pt, &pt.overlap[1], t, sizeof(t));
	assert_string_equal(t, "partition 6 (sectors 30720..38911) overlaps partition 5 (sectors 20480..32767)");
	/* a partition over sector 0 */
	le32enc(b, 8192);
	assert_ok(vd_write(img, 18432 * 512 + 446 + 12, b, 4, &err), &err);
	le32enc(b, 0);
	assert_ok(vd_write(img, 446 + 8, b, 4, &err), &err);
	assert_ok(vd_ptable_read_overlaps(img, &pt, &err), &err);
	assert_true(pt.noverlaps >= 1);
	vd_ptable_overlap_text(&pt, &pt.overlap[0], t, sizeof(t));
	assert_string_equal(t, "partition 1 (sectors 0..16383) overlaps the MBR (sector 0)");
	vd_close(img, NULL);
}

static void test_name_decode(void **state)
{
	uint8_t b[80] = { 0 };
	char out[112];
	static const uint16_t u[] = { 'a', 0xe9, 0x20ac, 0xd83d, 0xde00, 0xdc00, 'z', 0xd800 };

	(void)state;
	for (unsigned i = 0; i < VD_ARRAY_SIZE(u); i++)
		le16enc(b + 2 * i, u[i]);
	vd_gpt_name_decode(b, 36, out, sizeof(out));
	/* a, e-acute, euro, U+1F600, lone low surrogate, z, lone high surrogate */
	assert_string_equal(out, "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xef\xbf\xbdz\xef\xbf\xbd");
	/* stops at the unit count, and at NUL */
	vd_gpt_name_decode(b, 2, out, sizeof(out));
	assert_string_equal(out, "a\xc3\xa9");
	vd_gpt_name_decode(b, 4, out, sizeof(out)); /* high surrogate cut off at the end */
	assert_string_equal(out, "a\xc3\xa9\xe2\x82\xac\xef\xbf\xbd");
	/* truncated at a character boundary */
	vd_gpt_name_decode(b, 36, out, 4);
	assert_string_equal(out, "a\xc3\xa9");
	/* 36 units without a NUL: all of them */
	for (unsigned i = 0; i < 36; i++)
		le16enc(b + 2 * i, 'A' + i % 26);
	vd_gpt_name_decode(b, 36, out, sizeof(out));
	assert_int_equal(strlen(out), 36);
	assert_int_equal(out[35], 'A' + 35 % 26);
	memset(b, 0, sizeof(b));
	vd_gpt_name_decode(b, 36, out, sizeof(out));
	assert_string_equal(out, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_gpt_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gpt_backup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gpt_rejections, setup, teardown),
		cmocka_unit_test(test_mbr_through_ptable),
		cmocka_unit_test(test_mbr_overlaps),
		cmocka_unit_test(test_name_decode),
	};
	return unit_run(tests);
}
