/*
 * VMDK descriptor text (formats/vmdk-desc.c): parsing untrusted text
 * (quoted values, CRLF, comments, every extent form and every rejection)
 * and writing it back.
 *
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include "unit.h"
#include "../../formats/vmdk.h"

#define HEAD "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n"

static int parse(struct vmdk_desc *d, const char *text, struct vd_error *e)
{
	memset(e, 0, sizeof(*e));
	return vmdk_desc_parse(d, text, strlen(text), "t.vmdk", e);
}

/* parse must fail, the message containing NEEDLE */
static void bad(const char *text, const char *needle)
{
	struct vmdk_desc d;
	struct vd_error e;
	int r = parse(&d, text, &e);

	if (r == 0) {
		vmdk_desc_free(&d);
		fail_msg("accepted: %s", text);
	}
	assert_true(r < 0);
	assert_msg_has(&e, needle);
	assert_msg_has(&e, "t.vmdk");
}

static void test_vmware_workstation(void **state)
{
	/* libvmdk's descriptor_file.1, in substance */
	static const char t[] =
		"# Disk DescriptorFile\nversion=1\nencoding=\"windows-1252\"\nCID=fffffffe\n"
		"parentCID=ffffffff\nisNativeSnapshot=\"no\"\ncreateType=\"monolithicSparse\"\n\n"
		"# Extent description\nRW 16777216 SPARSE \"image.vmdk\"\n\n"
		"# The Disk Data Base \n#DDB\n\nddb.adapterType = \"lsilogic\"\n"
		"ddb.geometry.cylinders = \"1044\"\nddb.geometry.heads = \"255\"\n"
		"ddb.geometry.sectors = \"63\"\nddb.longContentID = \"d2b6b7b0c0b8ff1d8b6c39b1fffffffe\"\n"
		"ddb.uuid = \"60 00 C2 9b 9d 3b 3b 8c-b5 0c 1b 2f 5e 37 a0 e5\"\n"
		"ddb.virtualHWVersion = \"9\"\n";
	struct vmdk_desc d;
	struct vd_error e;

	(void)state;
	assert_ok(parse(&d, t, &e), &e);
	assert_int_equal(d.cid, 0xfffffffeu);
	assert_int_equal(d.parent_cid, 0xffffffffu);
	assert_string_equal(d.create_type, "monolithicSparse");
	assert_string_equal(d.adapter, "lsilogic");
	assert_string_equal(d.hwversion, "9");
	assert_int_equal(d.cylinders, 1044);
	assert_int_equal(d.heads, 255);
	assert_int_equal(d.sectors, 63);
	assert_int_equal(d.nextents, 1);
	assert_int_equal(d.extents[0].access, VMDK_RW);
	assert_int_equal(d.extents[0].type, VMDK_SPARSE);
	assert_int_equal(d.extents[0].sectors, 16777216);
	assert_string_equal(d.extents[0].file, "image.vmdk");
	assert_false(d.extents[0].has_offset);
	vmdk_desc_free(&d);
}

static void test_crlf_comments_indent(void **state)
{
	static const char t[] =
		"# Disk DescriptorFile\r\n# another comment\r\nversion=1\r\n\r\n"
		"  CID = 0000abcd  \r\nparentCID=ffffffff\r\ncreateType = \"twoGbMaxExtentFlat\"\r\n"
		"# Extent description\r\n"
		"RW 4192256 FLAT \"my disk-f001.vmdk\" 0\r\n"
		"\tRDONLY 100 FLAT \"my disk-f002.vmdk\" 7 \r\n"
		"a stray line without equals\r\n"
		"#DDB\r\nddb.adapterType=\"buslogic\"\r\nddb.uuid.image = \"a-b\"\r\n"
		"ddb.uuid.parent=\"00000000-0000-0000-0000-000000000000\"\r\n"
		"ddb.uuid.modification = \"m\"\r\nddb.uuid.parentmodification = \"pm\"\r\n";
	struct vmdk_desc d;
	struct vd_error e;

	(void)state;
	assert_ok(parse(&d, t, &e), &e);
	assert_int_equal(d.cid, 0xabcd);
	assert_string_equal(d.create_type, "twoGbMaxExtentFlat");
	assert_string_equal(d.adapter, "buslogic");
	assert_string_equal(d.uuid_image, "a-b");
	assert_string_equal(d.uuid_parent, "00000000-0000-0000-0000-000000000000");
	assert_string_equal(d.uuid_modify, "m");
	assert_string_equal(d.uuid_parent_modify, "pm");
	assert_int_equal(d.nextents, 2);
	assert_string_equal(d.extents[0].file, "my disk-f001.vmdk");
	assert_int_equal(d.extents[0].offset, 0);
	assert_true(d.extents[0].has_offset);
	assert_int_equal(d.extents[1].access, VMDK_RDONLY);
	assert_int_equal(d.extents[1].sectors, 100);
	assert_string_equal(d.extents[1].file, "my disk-f002.vmdk");
	assert_int_equal(d.extents[1].offset, 7);
	vmdk_desc_free(&d);
}

static void test_extent_kinds(void **state)
{
	static const char t[] = HEAD
		"RW 4096 VMFS \"vmfs_thick-flat.vmdk\"\n"
		"NOACCESS 10 FLAT \"x.bin\" 3\n"
		"RW 2048 ZERO\n"
		"RDONLY 2048 ZERO\n"
		"RW 8 VMFSRAW \"/dev/sdb\" 0\n"
		"RW 8 VMFSRDM \"rdm.vmdk\"\n";
	struct vmdk_desc d;
	struct vd_error e;

	(void)state;
	assert_ok(parse(&d, t, &e), &e);
	assert_int_equal(d.nextents, 6);
	assert_int_equal(d.extents[0].type, VMDK_FLAT);
	assert_string_equal(d.extents[0].type_name, "VMFS");
	assert_false(d.extents[0].has_offset);
	assert_int_equal(d.extents[0].offset, 0);
	assert_int_equal(d.extents[1].access, VMDK_NOACCESS);
	assert_int_equal(d.extents[1].offset, 3);
	assert_int_equal(d.extents[2].type, VMDK_ZERO);
	assert_null(d.extents[2].file);
	assert_int_equal(d.extents[3].access, VMDK_RDONLY);
	assert_int_equal(d.extents[3].type, VMDK_ZERO);
	assert_int_equal(d.extents[4].type, VMDK_FLAT);
	assert_string_equal(d.extents[4].file, "/dev/sdb"); /* refused later, when opened */
	assert_int_equal(d.extents[5].type, VMDK_FLAT);
	vmdk_desc_free(&d);
}

static void test_parent_cid(void **state)
{
	struct vmdk_desc d;
	struct vd_error e;

	(void)state;
	assert_ok(parse(&d, "parentCID=12345678\nRW 1 ZERO\n", &e), &e);
	assert_int_equal(d.parent_cid, 0x12345678u);
	vmdk_desc_free(&d);
}

static void test_rejections(void **state)
{
	(void)state;
	bad(HEAD, "no extents");
	bad("", "no extents");
	bad("# Disk DescriptorFile\n# RW 10 FLAT \"commented.vmdk\" 0\n", "no extents");
	bad(HEAD "RX 10 FLAT \"a\" 0\n", "no extents"); /* not an extent line at all */
	bad(HEAD "RW 10 FOO \"a\" 0\n", "FOO");
	/* VMFSSPARSE (COWD) and SESPARSE are read now; an unquoted name is not */
	bad(HEAD "RW 10 SESPARSE a-sesparse.vmdk\n", "quoted");
	bad(HEAD "RW 10 FLAT \"a\" abc\n", "offset");
	bad(HEAD "RW 10 FLAT \"a\" 12x\n", "offset");
	bad(HEAD "RW 10 FLAT \"a\" -1\n", "offset");
	bad(HEAD "RW 10 FLAT \"a\" 99999999999999999999999\n", "offset");
	bad(HEAD "RW 10 SPARSE \"a\" 5\n", "offset");
	bad(HEAD "RW 0 FLAT \"a\" 0\n", "out of range");
	bad(HEAD "RW 281474976710657 FLAT \"a\" 0\n", "out of range");
	bad(HEAD "RW abc FLAT \"a\" 0\n", "malformed");
	bad(HEAD "RW 10\n", "malformed");
	bad(HEAD "RW 10 FLAT a.vmdk 0\n", "quoted");
	bad(HEAD "RW 10 FLAT\n", "quoted");
	bad(HEAD "RW 10 FLAT \"\" 0\n", "empty");
	bad(HEAD "RW 10 FLAT \"a 0\n", "unterminated");
	bad("CID=xyz\nRW 1 ZERO\n", "CID");
	bad("CID=123456789\nRW 1 ZERO\n", "CID");
	bad("parentCID=\nRW 1 ZERO\n", "parentCID");
}

static void test_access_names(void **state)
{
	/* access words are case-sensitive and must be followed by a space */
	(void)state;
	bad(HEAD "rw 10 FLAT \"a\" 0\n", "no extents");
	bad(HEAD "RDONLY\t10 FLAT \"a\" 0\n", "no extents");
}

static char *many_extents(unsigned n)
{
	size_t cap = strlen(HEAD) + (size_t)n * 32 + 1;
	char *t = malloc(cap), *p;

	assert_non_null(t);
	p = t + sprintf(t, "%s", HEAD);
	for (unsigned i = 0; i < n; i++)
		p += sprintf(p, "RW 8 FLAT \"e%u\" 0\n", i);
	return t;
}

static void test_too_many_extents(void **state)
{
	struct vmdk_desc d;
	struct vd_error e;
	char *t = many_extents(VMDK_MAX_EXTENTS);

	(void)state;
	assert_ok(parse(&d, t, &e), &e);
	assert_int_equal(d.nextents, VMDK_MAX_EXTENTS);
	assert_string_equal(d.extents[VMDK_MAX_EXTENTS - 1].file, "e4095");
	vmdk_desc_free(&d);
	free(t);
	t = many_extents(VMDK_MAX_EXTENTS + 1);
	bad(t, "more than");
	free(t);
}

/* Defect 10: each extent is in range but the sum wraps 64 bits of bytes
 * (4096 * 2^47 sectors = 2^68 bytes): refused, naming the line. */
static void test_extent_sum_overflow(void **state)
{
	static const char two[] = HEAD "RW 140737488355328 ZERO\nRW 1 ZERO\n";
	size_t n = strlen(HEAD) + 4096 * 32 + 1;
	char *t = malloc(n), *p;
	struct vmdk_desc d;
	struct vd_error e;

	(void)state;
	bad(two, "line 7");
	bad(two, "extent 2");
	assert_non_null(t);
	p = t + sprintf(t, "%s", HEAD);
	for (unsigned i = 0; i < 4096; i++)
		p += sprintf(p, "RW %llu ZERO\n", 1ull << 47);
	/* 4096 * 2^47 sectors wraps; refused at the second line */
	bad(t, "line 7: extent 2");
	free(t);
	/* exactly at the limit is fine */
	assert_ok(parse(&d, HEAD "RW 70368744177664 ZERO\nRW 70368744177664 ZERO\n", &e), &e);
	assert_int_equal(d.nextents, 2);
	vmdk_desc_free(&d);
}

/* Line numbers in messages count every line, blank ones too. */
static void test_line_numbers(void **state)
{
	(void)state;
	bad(HEAD "\n\n# comment\n\nRW 1 ZERO\nRW 0 ZERO\n", "line 11");
}

static void test_too_large(void **state)
{
	size_t n = VMDK_DESC_MAX + 1;
	char *t = malloc(n + 1);
	struct vmdk_desc d;
	struct vd_error e = { 0 };

	(void)state;
	assert_non_null(t);
	memset(t, '#', n);
	t[n] = '\0';
	memcpy(t + n - 11, "\nRW 1 ZERO\n", 11);
	assert_true(vmdk_desc_parse(&d, t, n, "t.vmdk", &e) < 0);
	assert_msg_has(&e, "larger");
	free(t);
}

static void test_length_bound(void **state)
{
	/* only LEN bytes are parsed: an extent past LEN is not seen */
	static const char t[] = HEAD "RW 1 ZERO\nRW 2 ZERO\n";
	struct vmdk_desc d;
	struct vd_error e = { 0 };

	(void)state;
	assert_ok(vmdk_desc_parse(&d, t, strlen(HEAD) + 10, "t.vmdk", &e), &e);
	assert_int_equal(d.nextents, 1);
	vmdk_desc_free(&d);
}

static void test_format_roundtrip(void **state)
{
	struct vmdk_desc d = { 0 }, d2;
	struct vmdk_desc_extent ext[3] = {
		{ .access = VMDK_RW, .type = VMDK_FLAT, .type_name = "FLAT", .sectors = 4192256,
		  .has_offset = true, .offset = 0, .file = (char *)"x-f001.vmdk" },
		{ .access = VMDK_RDONLY, .type = VMDK_SPARSE, .type_name = "SPARSE", .sectors = 100,
		  .file = (char *)"x-s002.vmdk" },
		{ .access = VMDK_NOACCESS, .type = VMDK_ZERO, .type_name = "ZERO", .sectors = 7 },
	};
	struct vd_error e;
	char *t;

	(void)state;
	d.cid = 0x0badcafe;
	snprintf(d.create_type, sizeof(d.create_type), "custom");
	snprintf(d.adapter, sizeof(d.adapter), "legacyESX");
	snprintf(d.hwversion, sizeof(d.hwversion), "21");
	snprintf(d.uuid_image, sizeof(d.uuid_image), "11111111-2222-3333-4444-555555555555");
	d.cylinders = 16383;
	d.heads = 16;
	d.sectors = 63;
	d.nextents = 3;
	d.extents = ext;
	t = vmdk_desc_format(&d);
	assert_non_null(t);
	/* the layout VirtualBox insists on */
	assert_true(!strncmp(t, "# Disk DescriptorFile\nversion=1\n", 32));
	assert_non_null(strstr(t, "\nRW 4192256 FLAT \"x-f001.vmdk\" 0\n"));
	assert_non_null(strstr(t, "\nRDONLY 100 SPARSE \"x-s002.vmdk\"\n"));
	assert_non_null(strstr(t, "\nNOACCESS 7 ZERO\n"));
	assert_non_null(strstr(t, "ddb.adapterType = \"legacyESX\""));
	assert_true(strstr(t, "createType") < strstr(t, "# Extent description"));
	assert_true(strstr(t, "# Extent description") < strstr(t, "#DDB"));
	assert_null(strchr(t, '\r'));
	assert_ok(parse(&d2, t, &e), &e);
	assert_int_equal(d2.cid, 0x0badcafe);
	assert_int_equal(d2.parent_cid, 0xffffffffu);
	assert_string_equal(d2.create_type, "custom");
	assert_string_equal(d2.adapter, "legacyESX");
	assert_string_equal(d2.hwversion, "21");
	assert_string_equal(d2.uuid_image, "11111111-2222-3333-4444-555555555555");
	assert_int_equal(d2.cylinders, 16383);
	assert_int_equal(d2.heads, 16);
	assert_int_equal(d2.sectors, 63);
	assert_int_equal(d2.nextents, 3);
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(d2.extents[i].access, ext[i].access);
		assert_int_equal(d2.extents[i].type, ext[i].type);
		assert_int_equal(d2.extents[i].sectors, ext[i].sectors);
		assert_int_equal(d2.extents[i].has_offset, ext[i].has_offset);
		if (ext[i].file)
			assert_string_equal(d2.extents[i].file, ext[i].file);
		else
			assert_null(d2.extents[i].file);
	}
	vmdk_desc_free(&d2);
	free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vmware_workstation),
		cmocka_unit_test(test_crlf_comments_indent),
		cmocka_unit_test(test_extent_kinds),
		cmocka_unit_test(test_parent_cid),
		cmocka_unit_test(test_rejections),
		cmocka_unit_test(test_access_names),
		cmocka_unit_test(test_too_many_extents),
		cmocka_unit_test(test_extent_sum_overflow),
		cmocka_unit_test(test_line_numbers),
		cmocka_unit_test(test_too_large),
		cmocka_unit_test(test_length_bound),
		cmocka_unit_test(test_format_roundtrip),
	};
	return unit_run(tests);
}
