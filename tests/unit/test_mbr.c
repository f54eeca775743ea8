/*
 * CHS geometry and MBR tables: the worked example, CHS encoding with the
 * cylinder-1023 clamp, scripts laid out and encoded, decoded back, and
 * rejections that leave the disk untouched.
 *
 * SPDX-License-Identifier: MIT
 */
#include "unit.h"

#include <errno.h>

#define MiB (1ull << 20)

static struct vd_image *mem_raw(uint64_t size, struct vd_host **hp)
{
	struct vd_error err = { 0 };
	struct vd_image *img = NULL;
	struct vd_host *h = vd_host_mem_new("disk", size);

	assert_non_null(h);
	*hp = h;
	assert_ok(vd_open_host(&img, h, "raw", VD_OPEN_RDWR, &err), &err);
	return img;
}

static void test_geometry_worked_example(void **state)
{
	struct vd_error err = { 0 };
	struct vd_geometry g;

	(void)state;
	assert_ok(vd_geometry_compute(4141875200ull, 0, 0, &g, &err), &err);
	assert_int_equal(g.heads, 255);
	assert_int_equal(g.sectors, 63);
	assert_int_equal(g.cylinder_bytes, 8225280);
	assert_int_equal(g.cylinders, 503);
	assert_int_equal(g.usable_bytes, 4137315840ull);
	assert_int_equal(g.lost_bytes, 4141875200ull - 4137315840ull);
	assert_int_equal(g.legacy_start * 512, 32256);
	assert_int_equal(g.legacy_sectors * 512, 4137283584ull);
	assert_int_equal(g.legacy_sectors / 2, 4040316);
	assert_int_equal(g.modern_start, 2048);
	assert_int_equal(g.modern_sectors, 8089600 - 2048);

	/* other geometries, and the limits */
	assert_ok(vd_geometry_compute(64 * MiB, 16, 63, &g, &err), &err);
	assert_int_equal(g.cylinder_sectors, 1008);
	assert_int_equal(g.cylinders, 130);
	assert_int_equal(vd_geometry_compute(MiB, 256, 63, &g, &err), -EINVAL);
	assert_msg_has(&err, "heads");
	assert_int_equal(vd_geometry_compute(MiB, 255, 64, &g, &err), -EINVAL);
	assert_msg_has(&err, "sectors");
	assert_ok(vd_geometry_compute(1000, 0, 0, &g, &err), &err);
	assert_int_equal(g.cylinders, 0);
	assert_int_equal(g.legacy_sectors, 0);
	assert_int_equal(g.modern_sectors, 0);
}

static void test_chs(void **state)
{
	uint8_t b[3];
	struct vd_chs c;

	(void)state;
	/* util-linux's vector: 2048..8191 is 0/32/33 - 0/130/2 */
	vd_chs_encode(2048, 255, 63, b);
	assert_memory_equal(b, "\x20\x21\x00", 3);
	vd_chs_encode(8191, 255, 63, b);
	assert_memory_equal(b, "\x82\x02\x00", 3);
	vd_lba_to_chs(8191, 255, 63, &c);
	assert_int_equal(c.cylinder, 0);
	assert_int_equal(c.head, 130);
	assert_int_equal(c.sector, 2);
	/* the high cylinder bits live in the sector byte */
	vd_chs_encode(1023ull * 16065, 255, 63, b);
	assert_memory_equal(b, "\x00\xc1\xff", 3);
	vd_chs_decode(b, &c);
	assert_int_equal(c.cylinder, 1023);
	assert_int_equal(c.head, 0);
	assert_int_equal(c.sector, 1);
	vd_chs_encode(300ull * 16065 + 5 * 63 + 7, 255, 63, b);
	vd_chs_decode(b, &c);
	assert_int_equal(c.cylinder, 300);
	assert_int_equal(c.head, 5);
	assert_int_equal(c.sector, 8);
	/* past cylinder 1023: clamped as sfdisk does, fe ff ff */
	vd_chs_encode(1024ull * 16065, 255, 63, b);
	assert_memory_equal(b, "\xfe\xff\xff", 3);
	vd_chs_encode(0xffffffffull, 255, 63, b);
	assert_memory_equal(b, "\xfe\xff\xff", 3);
	/* last sector of cylinder 1023 itself is not clamped, and is the same */
	vd_chs_encode(1024ull * 16065 - 1, 255, 63, b);
	assert_memory_equal(b, "\xfe\xff\xff", 3);
	/* 16 heads: clamp is 1023/15/63 */
	vd_chs_encode(1024ull * 1008, 16, 63, b);
	assert_memory_equal(b, "\x0f\xff\xff", 3);
}

static void write_script(struct vd_image *img, const char *text, int align)
{
	struct vd_error err = { 0 };
	static struct vd_mbr_script s;
	static struct vd_mbr m;

	assert_ok(vd_mbr_parse_script(text, &s, &err), &err);
	assert_ok(vd_mbr_layout(&s, vd_size(img) / 512, align, 0, 0, 0x12345678, &m, &err), &err);
	assert_ok(vd_mbr_write(img, &m, NULL, 0, 0, &err), &err);
}

static void test_encode_util_linux_vector(void **state)
{
	struct vd_error err = { 0 };
	struct vd_host *h;
	struct vd_image *img = mem_raw(20 * MiB, &h);
	static struct vd_mbr m;
	uint64_t n;
	uint8_t *d;
	static const uint8_t entry[16] = { 0x00, 0x20, 0x21, 0x00, 0x83, 0x82, 0x02, 0x00,
					   0x00, 0x08, 0x00, 0x00, 0x00, 0x18, 0x00, 0x00 };

	(void)state;
	write_script(img, "label: dos\nlabel-id: 0x00000001\nunit: sectors\n\nstart=2048, size=6144, type=83\n",
		     VD_ALIGN_MIB);
	d = vd_host_mem_data(h, &n);
	assert_zero(d, 440, "boot code");
	assert_memory_equal(d + 440, "\x01\x00\x00\x00\x00\x00", 6);
	assert_same(d + 446, entry, 16, "entry 1");
	assert_zero(d + 462, 48, "entries 2-4");
	assert_int_equal(d[510], 0x55);
	assert_int_equal(d[511], 0xaa);
	assert_zero(d + 512, n - 512, "rest of the disk");

	assert_ok(vd_mbr_read(img, &m, &err), &err);
	assert_int_equal(m.disk_id, 1);
	assert_int_equal(m.nparts, 1);
	assert_int_equal(m.part[0].number, 1);
	assert_int_equal(m.part[0].start, 2048);
	assert_int_equal(m.part[0].size, 6144);
	assert_int_equal(m.part[0].type, 0x83);
	assert_false(m.part[0].bootable);
	vd_close(img, NULL);
}

static void test_encode_extended_logical(void **state)
{
	struct vd_error err = { 0 };
	struct vd_host *h;
	struct vd_image *img = mem_raw(100 * MiB, &h);
	static struct vd_mbr m;
	uint64_t n;
	uint8_t *d;

	(void)state;
	/* the layout sfdisk makes of this script (checked byte for byte
	 * against sfdisk in tests/cross/sfdisk.sh) */
	write_script(img, "label: dos\n,10M,83,*\n,50M,E\n,5M,83\n,5M,82\n,5M,L\n,,L\n", VD_ALIGN_MIB);
	assert_ok(vd_mbr_read(img, &m, &err), &err);
	assert_int_equal(m.disk_id, 0x12345678);
	assert_int_equal(m.nparts, 6);
	static const uint64_t want[6][4] = {
		{ 1, 2048, 20480, 0x83 }, { 2, 22528, 102400, 0x05 }, { 3, 124928, 10240, 0x83 },
		{ 4, 135168, 10240, 0x82 }, { 5, 24576, 10240, 0x83 }, { 6, 36864, 88064, 0x83 },
	};
	for (int i = 0; i < 6; i++) {
		assert_int_equal(m.part[i].number, want[i][0]);
		assert_int_equal(m.part[i].start, want[i][1]);
		assert_int_equal(m.part[i].size, want[i][2]);
		assert_int_equal(m.part[i].type, want[i][3]);
	}
	assert_true(m.part[0].bootable);
	assert_int_equal(m.part[4].ebr, 22528);
	assert_int_equal(m.part[5].ebr, 34816);

	d = vd_host_mem_data(h, &n);
	/* first EBR: logical 5 at +2048, link to the EBR at 34816 covering
	 * up to the end of logical 6 */
	const uint8_t *e = d + 22528ull * 512;
	assert_int_equal(le32dec(e + 446 + 8), 2048);
	assert_int_equal(le32dec(e + 446 + 12), 10240);
	assert_int_equal(e[462 + 4], 0x05);
	assert_int_equal(le32dec(e + 462 + 8), 34816 - 22528);
	assert_int_equal(le32dec(e + 462 + 12), 36864 + 88064 - 34816);
	assert_zero(e, 446, "EBR boot area");
	assert_int_equal(e[510], 0x55);
	/* last EBR: no link */
	e = d + 34816ull * 512;
	assert_int_equal(le32dec(e + 446 + 8), 2048);
	assert_zero(e + 462, 16, "last EBR link");
	vd_close(img, NULL);
}

static void test_cylinder_alignment(void **state)
{
	struct vd_error err = { 0 };
	struct vd_host *h;
	struct vd_image *img;
	static struct vd_mbr m;

	(void)state;
	/* the worked example: laid out without a 4 GB disk, then encoded */
	static struct vd_mbr_script s;
	uint8_t b[3];
	struct vd_chs c;
	assert_ok(vd_mbr_parse_script("label: dos\n,,83\n", &s, &err), &err);
	assert_ok(vd_mbr_layout(&s, 4141875200ull / 512, VD_ALIGN_CYLINDER, 0, 0, 1, &m, &err), &err);
	assert_int_equal(m.nparts, 1);
	assert_int_equal(m.part[0].start, 63);
	assert_int_equal(m.part[0].size, 8080632); /* 4040316 KiB */
	/* ends on a cylinder boundary: 502/254/63 */
	vd_chs_encode(m.part[0].start + m.part[0].size - 1, 255, 63, b);
	vd_chs_decode(b, &c);
	assert_int_equal(c.cylinder, 502);
	assert_int_equal(c.head, 254);
	assert_int_equal(c.sector, 63);

	img = mem_raw(200 * MiB, &h);
	write_script(img, "label: dos\n,50M\n,,E\n,20M\n,\n", VD_ALIGN_CYLINDER);
	assert_ok(vd_mbr_read(img, &m, &err), &err);
	vd_chs_decode(m.part[0].chs_end, &c);
	assert_int_equal(c.head, 254);
	assert_int_equal(c.sector, 63);
	assert_ok(vd_mbr_read(img, &m, &err), &err);
	assert_int_equal(m.nparts, 4);
	assert_int_equal(m.part[0].start, 63);
	assert_int_equal((m.part[0].start + m.part[0].size) % 16065, 0);
	assert_int_equal(m.part[1].start % 16065, 0);
	assert_int_equal(m.part[2].ebr, m.part[1].start);
	assert_int_equal(m.part[2].start, m.part[1].start + 63);
	assert_int_equal(m.part[3].ebr % 16065, 0);
	assert_int_equal(m.part[3].start, m.part[3].ebr + 63);
	vd_close(img, NULL);
}

/* Each rejected script leaves the disk all zeros. */
static void reject(const char *text, uint64_t size, const char *msg)
{
	struct vd_error err = { 0 };
	struct vd_host *h;
	struct vd_image *img = mem_raw(size, &h);
	static struct vd_mbr_script s;
	static struct vd_mbr m;
	uint64_t n;
	int r;

	r = vd_mbr_parse_script(text, &s, &err);
	if (r == 0)
		r = vd_mbr_layout(&s, size / 512, VD_ALIGN_MIB, 0, 0, 1, &m, &err);
	if (r == 0)
		fail_msg("script accepted: %s", text);
	assert_true(r < 0);
	assert_msg_has(&err, msg);
	assert_zero(vd_host_mem_data(h, &n), (size_t)size, "disk after a rejected script");
	vd_close(img, NULL);
}

static void test_rejections(void **state)
{
	(void)state;
	reject("start=2048,size=4096\nstart=4000,size=100\n", 20 * MiB, "inside partition 1");
	reject("start=2048,size=100000\n", 20 * MiB, "does not fit");
	reject("start=50000,size=10\n", 20 * MiB, "past the last sector");
	reject(",1M\n,1M\n,1M\n,1M\n,1M\n", 20 * MiB, "too many partitions");
	reject(",1M,zz\n", 20 * MiB, "type 'zz'");
	reject(",1M,0\n", 20 * MiB, "type 0");
	reject(",1M,100\n", 20 * MiB, "type '100'");
	reject("label: gpt\n", 20 * MiB, "label 'gpt'");
	reject("unit: cylinders\n", 20 * MiB, "unit 'cylinders'");
	reject("start=2048,size=1M,uuid=abc\n", 20 * MiB, "GPT field");
	reject("start=abc\n", 20 * MiB, "start 'abc'");
	reject(",5M,E\n,5M,E\n", 20 * MiB, "second extended");
	reject("disk7 : start=2048,size=100\n", 20 * MiB, "needs an extended partition");
	reject(",5M,E\ndisk6 : start=4096,size=100\n", 20 * MiB, "expected number 5");
	reject(",5M,E\nstart=4096,size=2048\nstart=5000,size=100\n", 20 * MiB, "no room for its EBR");
	reject("start=0,size=100\n", 20 * MiB, "sector 0");
	reject(",,83\n,,83\n", 20 * MiB, "no free space");
}

static void test_validate_and_write_refuse(void **state)
{
	struct vd_error err = { 0 };
	struct vd_host *h;
	struct vd_image *img = mem_raw(20 * MiB, &h);
	static struct vd_mbr m;
	uint64_t n;

	(void)state;
	memset(&m, 0, sizeof(m));
	m.disk_sectors = 40960;
	m.nparts = 2;
	m.part[0] = (struct vd_mbr_part){ .number = 1, .start = 2048, .size = 4096, .type = 0x83 };
	m.part[1] = (struct vd_mbr_part){ .number = 2, .start = 6000, .size = 100, .type = 0x83 };
	assert_int_equal(vd_mbr_write(img, &m, NULL, 0, 0, &err), -EINVAL);
	assert_msg_has(&err, "overlaps partition 1");
	m.part[1].start = 40900;
	assert_int_equal(vd_mbr_write(img, &m, NULL, 0, 0, &err), -ERANGE);
	assert_msg_has(&err, "past the last sector");
	m.part[1].start = 8192;
	m.part[1].number = 1;
	assert_int_equal(vd_mbr_write(img, &m, NULL, 0, 0, &err), -EINVAL);
	assert_msg_has(&err, "defined twice");
	m.disk_sectors = 40961;
	assert_int_equal(vd_mbr_write(img, &m, NULL, 0, 0, &err), -EINVAL);
	assert_msg_has(&err, "40961 sectors");
	assert_zero(vd_host_mem_data(h, &n), 20 * MiB, "disk after refused writes");
	vd_close(img, NULL);
}

static void test_read_not_a_table(void **state)
{
	struct vd_error err = { 0 };
	struct vd_host *h;
	struct vd_image *img = mem_raw(MiB, &h);
	static struct vd_mbr m;
	uint64_t n;
	uint8_t *d = vd_host_mem_data(h, &n);

	(void)state;
	assert_int_equal(vd_mbr_read(img, &m, &err), -ENOENT);
	assert_msg_has(&err, "signature");
	/* a FAT boot sector: 55 aa but text where the status bytes are */
	memset(d + 446, 'T', 64);
	d[510] = 0x55;
	d[511] = 0xaa;
	assert_int_equal(vd_mbr_read(img, &m, &err), -ENOENT);
	assert_msg_has(&err, "status byte");
	/* an empty table is a table */
	memset(d + 446, 0, 64);
	assert_ok(vd_mbr_read(img, &m, &err), &err);
	assert_int_equal(m.nparts, 0);
	/* an EBR chain pointing backwards is refused */
	static const uint8_t ext[16] = { 0, 0, 0, 0, 0x05, 0, 0, 0, 0x00, 0x04, 0, 0, 0x00, 0x04, 0, 0 };
	memcpy(d + 446, ext, 16); /* extended at 1024, 1024 sectors */
	uint8_t *e = d + 1024 * 512;
	e[446 + 4] = 0x83;
	le32enc(e + 446 + 8, 1);
	le32enc(e + 446 + 12, 10);
	e[462 + 4] = 0x05;
	le32enc(e + 462 + 8, 0); /* next EBR = itself */
	le32enc(e + 462 + 12, 11);
	e[510] = 0x55;
	e[511] = 0xaa;
	assert_int_equal(vd_mbr_read(img, &m, &err), -EINVAL);
	assert_msg_has(&err, "not after this EBR");
	vd_close(img, NULL);
}

static void test_script_syntax(void **state)
{
	struct vd_error err = { 0 };
	static struct vd_mbr_script s;

	(void)state;
	assert_ok(vd_mbr_parse_script("# comment\nlabel: dos\nlabel-id: 0xDEADbeef\ndevice: x\nunit: sectors\nsector-size: 512\n\n"
				      "x.img1 : start=        2048, size=        6144, type=83, bootable\n"
				      "disk1p2 : start=8192, size=2G, type=c\n"
				      "16384 2048 L *\n"
				      ",+,S\n",
				      &s, &err), &err);
	assert_true(s.label_id_set);
	assert_int_equal(s.label_id, 0xdeadbeef);
	assert_int_equal(s.n, 4);
	assert_int_equal(s.spec[0].number, 1);
	assert_int_equal(s.spec[0].start, 2048);
	assert_int_equal(s.spec[0].size, 6144);
	assert_int_equal(s.spec[0].size_mode, VD_SIZE_SECTORS);
	assert_true(s.spec[0].bootable);
	assert_int_equal(s.spec[1].number, 2);
	assert_int_equal(s.spec[1].size, 4194304);
	assert_int_equal(s.spec[1].size_mode, VD_SIZE_BYTES);
	assert_int_equal(s.spec[1].type, 0x0c);
	assert_int_equal(s.spec[2].start, 16384);
	assert_int_equal(s.spec[2].type, 0x83);
	assert_true(s.spec[2].bootable);
	assert_false(s.spec[3].start_set);
	assert_int_equal(s.spec[3].size_mode, VD_SIZE_REST);
	assert_int_equal(s.spec[3].type, 0x82);
	assert_int_equal(vd_mbr_parse_script("label-id: 0x123456789\n", &s, &err), -EINVAL);
	assert_msg_has(&err, "line 1");
	assert_int_equal(vd_mbr_parse_script("\n\nsize=12X\n", &s, &err), -EINVAL);
	assert_msg_has(&err, "line 3");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_geometry_worked_example),
		cmocka_unit_test(test_chs),
		cmocka_unit_test(test_encode_util_linux_vector),
		cmocka_unit_test(test_encode_extended_logical),
		cmocka_unit_test(test_cylinder_alignment),
		cmocka_unit_test(test_rejections),
		cmocka_unit_test(test_validate_and_write_refuse),
		cmocka_unit_test(test_read_not_a_table),
		cmocka_unit_test(test_script_syntax),
	};
	return unit_run(tests);
}
