/*
 * Foreign formats (src/core/foreign.c): every magic of the table, the
 * checks that refine a magic (qcow version, bzip2 block magic), files
 * shorter than a magic, the VHD footer in the last 512 or 511 bytes of
 * files of any size, and the probe in vd_open_host: a foreign file is
 * refused with EMEDIUMTYPE and a message naming it, "-f raw" still opens
 * it, and a real backend always wins over the table.
 *
 * SPDX-License-Identifier: MIT
 */
#include "unit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#define MiB (1ull << 20)

static const char *probe_head(const void *p, size_t n)
{
	return vd_foreign_probe(p, n, NULL, 0, NULL);
}

static void expect_name(const char *got, const char *want, const char *what)
{
	if (!want && got)
		fail_msg("%s: detected as %s, expected nothing", what, got);
	if (want && (!got || strcmp(got, want)))
		fail_msg("%s: detected as %s, expected %s", what, got ? got : "nothing", want);
}

static void test_every_magic(void **state)
{
	static const struct {
		const char *bytes;
		size_t len;
		const char *name;
		bool compressed;
	} cases[] = {
		{ "QFI\xfb\0\0\0\x02", 8, "qcow2", false },
		{ "QFI\xfb\0\0\0\x03", 8, "qcow2", false },
		{ "QFI\xfb\0\0\0\x01", 8, "qcow", false },
		{ "QED\0", 4, "QED", false },
		{ "conectix", 8, "VHD", false },
		{ "vhdxfile", 8, "VHDX", false },
		{ "WithoutFreeSpace", 16, "Parallels", false },
		{ "WithouFreSpacExt", 16, "Parallels", false },
		{ "COWD\x01\0\0\0", 8, "VMDK vmfsSparse (COWD)", false },
		{ "\xbe\xba\xfe\xca\0\0\0\0\x01\0\0\0\x02\0\0\0", 16, "VMDK seSparse", false },
		{ "LUKS\xba\xbe\0\x01", 8, "LUKS", false },
		{ "LUKS\xba\xbe\0\x02", 8, "LUKS", false },
		{ "\xfd" "7zXZ\0\0\x04", 8, "xz", true },
		{ "\x1f\x8b\x08\0", 4, "gzip", true },
		{ "\x28\xb5\x2f\xfd\x24", 5, "zstd", true },
		{ "BZh91AY&SY", 10, "bzip2", true },
		/* an empty bzip2 stream: end-of-stream magic right after the header */
		{ "BZh9\x17\x72\x45\x38\x50\x90\0\0\0\0", 14, "bzip2", true },
	};
	(void)state;
	for (size_t i = 0; i < VD_ARRAY_SIZE(cases); i++) {
		uint8_t buf[4096] = { 0 };
		bool compressed = !cases[i].compressed;
		memcpy(buf, cases[i].bytes, cases[i].len);
		expect_name(vd_foreign_probe(buf, sizeof(buf), NULL, 0, &compressed),
			    cases[i].name, cases[i].name);
		assert_int_equal(compressed, cases[i].compressed);
		/* exactly the bytes given are enough */
		expect_name(probe_head(cases[i].bytes, cases[i].len), cases[i].name,
			    "exact length");
	}
}

static void test_near_misses(void **state)
{
	uint8_t zero[4096] = { 0 };

	(void)state;
	expect_name(probe_head(zero, sizeof(zero)), NULL, "zeros");
	expect_name(probe_head("", 0), NULL, "empty file");
	expect_name(probe_head("BZh", 3), NULL, "bzip2 header alone");
	expect_name(probe_head("BZh9", 4), NULL, "bzip2 header and level");
	expect_name(probe_head("BZh9 is text", 12), NULL, "text starting with BZh9");
	expect_name(probe_head("BZh01AY&SY", 10), NULL, "bzip2 level 0");
	expect_name(probe_head("\x1f\x8b\x09", 3), NULL, "gzip, not deflate");
	expect_name(probe_head("QED\x01", 4), NULL, "QED with another fourth byte");
	expect_name(probe_head("\xbe\xba\xfe\xca\x01\0\0\0", 8), NULL,
		    "0xcafebabe with high bits set");
	expect_name(probe_head("KDMV", 4), NULL, "VMDK sparse (a real backend)");
}

/* A file shorter than a magic must not match it (nor be read past). */
static void test_short_files(void **state)
{
	static const char *const magics[] = {
		"QFI\xfb", "vhdxfile", "conectix", "WithoutFreeSpace", "LUKS\xba\xbe",
		"\xfd" "7zXZ", "\x28\xb5\x2f\xfd", "COWD",
	};
	(void)state;
	for (size_t i = 0; i < VD_ARRAY_SIZE(magics); i++) {
		size_t n = strlen(magics[i]);
		/* heap copies of exactly N - 1 bytes, so ASan sees an overread */
		uint8_t *p = malloc(n - 1);
		assert_non_null(p);
		memcpy(p, magics[i], n - 1);
		expect_name(vd_foreign_probe(p, n - 1, p, n - 1, NULL), NULL, magics[i]);
		free(p);
	}
	/* qcow2 magic without the version field: still refused, as qcow2 */
	expect_name(probe_head("QFI\xfb", 4), "qcow2", "qcow magic alone");
	expect_name(probe_head("QFI\xfb\0\0", 6), "qcow2", "qcow magic and half a version");
}

/* The VHD footer is in the last 512 bytes (fixed disks) or, for old
 * Virtual PC files, the last 511; TAIL holds what the file has of them. */
static void test_vhd_tail(void **state)
{
	static const uint8_t head[8] = "\0\0\0\0\0\0\0";
	uint8_t *t;

	(void)state;
	for (size_t tlen = 0; tlen <= 600; tlen++) {
		t = calloc(1, tlen ? tlen : 1);
		assert_non_null(t);
		/* footer at every position: only size-512 and size-511 count */
		for (size_t at = 0; at + 8 <= tlen; at++) {
			const char *want = (tlen >= 512 && at == tlen - 512) ||
					   (tlen >= 511 && at == tlen - 511) ? "VHD" : NULL;
			memcpy(t + at, "conectix", 8);
			expect_name(vd_foreign_probe(head, sizeof(head), t, tlen, NULL), want,
				    "conectix in the tail");
			memset(t + at, 0, 8);
		}
		/* a tail shorter than the cookie, or an empty one */
		expect_name(vd_foreign_probe(head, sizeof(head), t, tlen, NULL), NULL, "zero tail");
		free(t);
	}
}

/* ---- through vd_open_host ---- */

static struct vd_host *mem_file(uint64_t size, uint64_t at, const void *magic, size_t n)
{
	struct vd_host *h = vd_host_mem_new("disk.img", size);
	uint8_t *p;

	assert_non_null(h);
	p = vd_host_mem_data(h, NULL);
	if (magic)
		memcpy(p + at, magic, n);
	return h;
}

static void expect_refused(struct vd_host *h, const char *n1, const char *n2)
{
	struct vd_error err = { 0 };
	struct vd_image *img = NULL;
	int r = vd_open_host(&img, h, NULL, 0, &err);

	if (r == 0) {
		const char *f = vd_format(img);
		vd_close(img, NULL);
		fail_msg("open succeeded (format %s), expected a refusal naming %s", f, n1);
	}
	assert_int_equal(r, -EMEDIUMTYPE);
	assert_int_equal(err.code, r);
	assert_null(img);
	assert_msg_has(&err, "disk.img");
	assert_msg_has(&err, n1);
	assert_msg_has(&err, n2);
	assert_msg_has(&err, "-f raw");
}

static void expect_opens(struct vd_host *h, const char *format, const char *want)
{
	struct vd_error err = { 0 };
	struct vd_image *img = NULL;

	assert_ok(vd_open_host(&img, h, format, 0, &err), &err);
	assert_string_equal(vd_format(img), want);
	vd_close(img, NULL);
}

static void test_open_refuses(void **state)
{
	(void)state;
	expect_refused(mem_file(MiB, 0, "QFI\xfb\0\0\0\x03", 8), "is a qcow2 image",
		       "does not read qcow2");
	expect_refused(mem_file(1000, 0, "\x1f\x8b\x08", 3), "is gzip-compressed",
		       "decompress it first");
	/* fixed VHD: the footer past the probe buffer (read separately) */
	expect_refused(mem_file(MiB + 512, MiB, "conectix", 8), "VHD", "does not read VHD");
	/* ... inside it (a file smaller than the probe buffer) */
	expect_refused(mem_file(2000, 2000 - 512, "conectix", 8), "VHD", "VHD");
	expect_refused(mem_file(2000, 2000 - 511, "conectix", 8), "VHD", "VHD");
	/* a file of just a footer */
	expect_refused(mem_file(511, 0, "conectix", 8), "VHD", "VHD");
	/* short files that match nothing are raw */
	expect_opens(mem_file(3, 0, "QFI", 3), NULL, "raw");
	expect_opens(mem_file(0, 0, NULL, 0), NULL, "raw");
	expect_opens(mem_file(600, 600 - 510, "conectix", 8), NULL, "raw");
}

static void test_force_raw(void **state)
{
	(void)state;
	expect_opens(mem_file(MiB, 0, "QFI\xfb\0\0\0\x02", 8), "raw", "raw");
	expect_opens(mem_file(MiB + 512, MiB, "conectix", 8), "raw", "raw");
	expect_opens(mem_file(4096, 0, "\xfd" "7zXZ\0", 6), "raw", "raw");
}

/* The table is only asked when no backend claims the file. */
static void test_backend_wins(void **state)
{
	struct vd_error err = { 0 };
	struct vd_host *h = vd_host_mem_new("disk.img", 0);
	uint64_t size;
	uint8_t *p;

	(void)state;
	assert_non_null(h);
	assert_ok(vd_create_on_host(h, "vdi", MiB, "subformat=fixed", VD_CREATE_DETERMINISTIC,
				    NULL, &err), &err);
	/* guest data that ends with a VHD footer: the VDI still opens as VDI */
	p = vd_host_mem_data(h, &size);
	memcpy(p + size - 512, "conectix", 8);
	expect_opens(h, NULL, "vdi");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_magic),
		cmocka_unit_test(test_near_misses),
		cmocka_unit_test(test_short_files),
		cmocka_unit_test(test_vhd_tail),
		cmocka_unit_test(test_open_refuses),
		cmocka_unit_test(test_force_raw),
		cmocka_unit_test(test_backend_wins),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
