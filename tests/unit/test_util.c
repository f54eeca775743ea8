/*
 * Utilities: size parsing, option strings (and their use by create),
 * errors, zero detection, UUIDs.
 *
 * SPDX-License-Identifier: MIT
 */
#include "unit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>


/* ---- vd_parse_size ---- */

static void ok_size(const char *s, uint64_t want)
{
	uint64_t v = 0xdeadbeef;
	int r = vd_parse_size(s, &v);
	if (r != 0)
		fail_msg("vd_parse_size(\"%s\") returned %d", s, r);
	if (v != want)
		fail_msg("vd_parse_size(\"%s\") = %llu, expected %llu", s,
			 (unsigned long long)v, (unsigned long long)want);
}

static void bad_size(const char *s)
{
	uint64_t v = 0;
	int r = vd_parse_size(s, &v);
	if (r >= 0)
		fail_msg("vd_parse_size(\"%s\") accepted it as %llu", s ? s : "(null)",
			 (unsigned long long)v);
	assert_true(r == -EINVAL || r == -ERANGE);
}

static void test_parse_size_valid(void **state)
{
	(void)state;
	ok_size("10G", 10ull << 30);
	ok_size("512M", 512ull << 20);
	ok_size("4141875200", 4141875200ull);
	ok_size("1.5K", 1536);
	ok_size("1.5G", 3ull << 29);
	ok_size("0.5M", 512ull << 10);
	ok_size("64k", 65536);
	ok_size("64K", 65536);
	ok_size("1KiB", 1024);
	ok_size("1KB", 1024);
	ok_size("1kb", 1024);
	ok_size("2T", 2ull << 40);
	ok_size("1P", 1ull << 50);
	ok_size("15E", 15ull << 60);
	ok_size("0", 0);
	ok_size("100B", 100);
	ok_size("18446744073709551615", UINT64_MAX);
	ok_size("1.25M", 1310720);
	ok_size("007", 7);
}

static void test_parse_size_invalid(void **state)
{
	(void)state;
	bad_size(NULL);
	bad_size("");
	bad_size("abc");
	bad_size("G");
	bad_size("-1");
	bad_size("+5");
	bad_size(" 5");
	bad_size("5 ");
	bad_size("10X");
	bad_size("10GG");
	bad_size("10Gx");
	bad_size("1.5");   /* fractional bytes */
	bad_size("1.");
	bad_size(".5K");
	bad_size("1.5.5K");
	bad_size("1,5K");
	bad_size("0x10");
	bad_size("18446744073709551616"); /* 2^64 */
	bad_size("16E");                  /* 2^64 */
	bad_size("17179869184G");         /* 2^64 */
	bad_size("99999999999999999999999K");
	bad_size("15.9999999999E");
}

/* ---- option strings ---- */

static void test_opts_parse(void **state)
{
	struct vd_opts o;
	struct vd_error err = { 0 };

	(void)state;
	assert_int_equal(vd_opts_parse(&o, NULL, &err), 0);
	assert_int_equal(o.n, 0);
	assert_int_equal(vd_opts_parse(&o, "", &err), 0);
	assert_int_equal(o.n, 0);

	assert_int_equal(vd_opts_parse(&o, "subformat=fixed,block_size=2M,static", &err), 0);
	assert_int_equal(o.n, 3);
	assert_string_equal(o.v[0].key, "subformat");
	assert_string_equal(o.v[0].value, "fixed");
	assert_string_equal(o.v[1].key, "block_size");
	assert_string_equal(o.v[1].value, "2M");
	assert_string_equal(o.v[2].key, "static");
	assert_string_equal(o.v[2].value, "on"); /* bare key means on */
	assert_false(o.v[0].used);

	/* empty items are skipped, empty values kept */
	assert_int_equal(vd_opts_parse(&o, ",a=1,,b=,", &err), 0);
	assert_int_equal(o.n, 2);
	assert_string_equal(o.v[1].key, "b");
	assert_string_equal(o.v[1].value, "");

	/* get marks as used; check_used names the first unused key */
	assert_int_equal(vd_opts_parse(&o, "a=1,b=2,c=3", &err), 0);
	assert_string_equal(vd_opts_get(&o, "b"), "2");
	assert_null(vd_opts_get(&o, "zz"));
	assert_null(vd_opts_get(NULL, "a"));
	assert_true(o.v[1].used);
	memset(&err, 0, sizeof(err));
	assert_int_equal(vd_opts_check_used(&o, "fmt", &err), -EINVAL);
	assert_msg_has(&err, "'a'");
	assert_msg_has(&err, "fmt");
	vd_opts_get(&o, "a");
	vd_opts_get(&o, "c");
	assert_int_equal(vd_opts_check_used(&o, "fmt", &err), 0);
	assert_int_equal(vd_opts_check_used(NULL, "fmt", &err), 0);
}

static void test_opts_errors(void **state)
{
	struct vd_opts o;
	struct vd_error err;
	char s[512];

	(void)state;
	memset(&err, 0, sizeof(err));
	assert_int_equal(vd_opts_parse(&o, "a=1,b=2,a=3", &err), -EINVAL);
	assert_int_equal(err.code, -EINVAL);
	assert_msg_has(&err, "'a'");
	assert_msg_has(&err, "twice");
	memset(&err, 0, sizeof(err));
	assert_int_equal(vd_opts_parse(&o, "flag,flag", &err), -EINVAL);
	assert_msg_has(&err, "twice");

	memset(&err, 0, sizeof(err));
	assert_int_equal(vd_opts_parse(&o, "=x", &err), -EINVAL);
	assert_msg_has(&err, "=x");

	/* key of 31 characters fits, 32 does not */
	snprintf(s, sizeof(s), "%s=1", "abcdefghijklmnopqrstuvwxyz01234");
	assert_int_equal(vd_opts_parse(&o, s, &err), 0);
	snprintf(s, sizeof(s), "%s=1", "abcdefghijklmnopqrstuvwxyz012345");
	memset(&err, 0, sizeof(err));
	assert_int_equal(vd_opts_parse(&o, s, &err), -EINVAL);
	assert_msg_has(&err, "invalid option");

	/* value of 127 characters fits, 128 does not */
	memset(s, 0, sizeof(s));
	memcpy(s, "k=", 2);
	memset(s + 2, 'v', 127);
	assert_int_equal(vd_opts_parse(&o, s, &err), 0);
	assert_int_equal(strlen(o.v[0].value), 127);
	s[2 + 127] = 'v';
	memset(&err, 0, sizeof(err));
	assert_int_equal(vd_opts_parse(&o, s, &err), -EINVAL);

	/* 16 options fit, 17 do not */
	s[0] = '\0';
	for (int i = 0; i < 16; i++)
		snprintf(s + strlen(s), sizeof(s) - strlen(s), "%sk%d=%d", i ? "," : "", i, i);
	assert_int_equal(vd_opts_parse(&o, s, &err), 0);
	assert_int_equal(o.n, 16);
	assert_string_equal(o.v[15].key, "k15");
	strcat(s, ",k16=16");
	memset(&err, 0, sizeof(err));
	assert_int_equal(vd_opts_parse(&o, s, &err), -EINVAL);
	assert_msg_has(&err, "too many");
}

static void create_fails(const char *format, const char *opts, int want,
			 const char *n1, const char *n2)
{
	struct vd_host *h = vd_host_mem_new("opt.img", 0);
	struct vd_error err = { 0 };
	uint64_t n;
	int r = vd_create_on_host(h, format, 1 << 20, opts, 0, NULL, &err);

	if (r != want)
		fail_msg("create %s with '%s' returned %d (%s), expected %d", format, opts, r,
			 err.msg, want);
	assert_int_equal(err.code, r);
	assert_msg_has(&err, n1);
	if (n2)
		assert_msg_has(&err, n2);
	/* nothing was written */
	vd_host_mem_data(h, &n);
	assert_int_equal(n, 0);
	vd_host_close(h);
}

static void test_create_options(void **state)
{
	(void)state;
	create_fails("vdi", "bogus=1", -EINVAL, "bogus", "vdi");
	create_fails("vdi", "subformat=dynamic,colour=red", -EINVAL, "colour", "vdi");
	create_fails("raw", "bogus", -EINVAL, "bogus", "raw");
	create_fails("raw", "subformat=fixed", -EINVAL, "subformat", "raw");
	create_fails("vdi", "subformat=dynamic,subformat=fixed", -EINVAL, "subformat", "twice");
	create_fails("vdi", "subformat=sparse", -EINVAL, "sparse", NULL);
	create_fails("vdi", "block_size=3M", -EINVAL, "block_size", "3M");
	create_fails("vdi", "block_size=abc", -EINVAL, "block_size", NULL);
	create_fails("raw", "preallocation=full", -EINVAL, "preallocation", "full");
	create_fails("nosuch", NULL, -EINVAL, "nosuch", NULL);

	/* the accepted ones create */
	{
		struct vd_host *h = vd_host_mem_new("ok.vdi", 0);
		struct vd_error err = { 0 };
		assert_int_equal(vd_create_on_host(h, "vdi", 1 << 20,
						   "subformat=fixed,block_size=4M", 0, NULL, &err), 0);
		assert_int_equal(le32dec(vd_host_mem_data(h, NULL) + 376), 4u << 20);
		vd_host_close(h);
	}
}

static void test_create_sizes(void **state)
{
	struct vd_host *h;
	struct vd_error err = { 0 };

	(void)state;
	h = vd_host_mem_new("z.vdi", 0);
	assert_int_equal(vd_create_on_host(h, "vdi", 0, NULL, 0, NULL, &err), -EINVAL);
	assert_msg_has(&err, "size");
	vd_host_close(h);
	h = vd_host_mem_new("z.vdi", 0);
	memset(&err, 0, sizeof(err));
	/* too large, not "0": rounding up to a sector must not wrap around */
	assert_int_equal(vd_create_on_host(h, "vdi", UINT64_MAX, NULL, 0, NULL, &err), -EFBIG);
	assert_msg_has(&err, "larger than the maximum");
	vd_host_close(h);
	h = vd_host_mem_new("z.vdi", 0);
	memset(&err, 0, sizeof(err));
	assert_int_equal(vd_create_on_host(h, "vdi", 0x1fffff8000000ull + 512, NULL, 0, NULL, &err), -EFBIG);
	vd_host_close(h);
}

/* ---- errors, helpers ---- */

static void test_errors(void **state)
{
	struct vd_error err = { 0 };

	(void)state;
	assert_int_equal(vd_set_error(&err, ENOENT, "%s: gone %d", "f", 3), -ENOENT);
	assert_int_equal(err.code, -ENOENT);
	assert_string_equal(err.msg, "f: gone 3");
	assert_int_equal(vd_prefix_error(&err, "while %s", "opening"), -ENOENT);
	assert_string_equal(err.msg, "while opening: f: gone 3");
	assert_int_equal(vd_set_error(NULL, EIO, "x"), -EIO);
	vd_error_clear(&err);
	assert_int_equal(err.code, 0);
	assert_string_equal(err.msg, "");
	vd_error_clear(NULL);
	/* long messages are truncated, not overflowed */
	{
		char big[2000];
		memset(big, 'a', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		vd_set_error(&err, EINVAL, "%s", big);
		assert_int_equal(strlen(err.msg), VD_ERROR_MSG_MAX - 1);
		vd_prefix_error(&err, "p");
		assert_int_equal(strlen(err.msg), VD_ERROR_MSG_MAX - 1);
		assert_memory_equal(err.msg, "p: aaa", 6);
	}
}

static void test_is_zero_pow2(void **state)
{
	uint8_t *buf = calloc(1, 4096);

	(void)state;
	assert_true(vd_is_zero(buf, 0));
	assert_true(vd_is_zero(buf, 4096));
	for (size_t len = 1; len <= 200; len++) {
		for (size_t pos = 0; pos < len; pos++) {
			buf[pos] = 1;
			if (vd_is_zero(buf, len))
				fail_msg("vd_is_zero missed a byte at %zu of %zu", pos, len);
			buf[pos] = 0;
		}
		assert_true(vd_is_zero(buf, len));
	}
	buf[4095] = 0x80;
	assert_false(vd_is_zero(buf, 4096));
	assert_true(vd_is_zero(buf, 4095));
	free(buf);

	assert_false(vd_is_pow2(0));
	assert_true(vd_is_pow2(1));
	assert_true(vd_is_pow2(1ull << 63));
	assert_false(vd_is_pow2(3u << 20));
	assert_false(vd_is_pow2(UINT64_MAX));
	assert_true(vd_is_zero(vd_zero_buf(), VD_ZERO_BUF_SIZE));
}

static void test_uuid(void **state)
{
	uint8_t u[16], v[16];
	char s[37];

	(void)state;
	vd_uuid_new(u, true, 0);
	vd_uuid_format(u, s);
	assert_string_equal(s, "00000000-0000-4000-8000-000000000001");
	vd_uuid_new(u, true, 1);
	vd_uuid_format(u, s);
	assert_string_equal(s, "00000000-0000-4000-8000-000000000002");
	vd_uuid_new(u, false, 0);
	vd_uuid_new(v, false, 0);
	assert_memory_not_equal(u, v, 16);
	vd_uuid_format(u, s);
	assert_int_equal(strlen(s), 36);
	assert_int_equal(s[14], '4');
}

static void test_formats(void **state)
{
	const char *const *f = vd_formats();
	bool raw = false, vdi = false;

	(void)state;
	for (; *f; f++) {
		raw |= !strcmp(*f, "raw");
		vdi |= !strcmp(*f, "vdi");
	}
	assert_true(raw && vdi);
	assert_true(vd_format_can_create("vdi"));
	assert_true(vd_format_can_create("raw"));
	assert_false(vd_format_can_create("nosuch"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_size_valid),
		cmocka_unit_test(test_parse_size_invalid),
		cmocka_unit_test(test_opts_parse),
		cmocka_unit_test(test_opts_errors),
		cmocka_unit_test(test_create_options),
		cmocka_unit_test(test_create_sizes),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_is_zero_pow2),
		cmocka_unit_test(test_uuid),
		cmocka_unit_test(test_formats),
	};
	return unit_run(tests);
}
