/* src/core/deflate.c: zlib streams that any inflater reads, the stored
 * form only for incompressible data. */
#include "unit.h"
#include "deflate.h"

#include <zlib.h>

#define G 65536

static uint64_t rng = 0x243f6a8885a308d3ull;
static void fill_random(uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		rng = rng * 6364136223846793005ull + 1442695040888963407ull;
		b[i] = (uint8_t)(rng >> 56);
	}
}

/* Compress IN, check zlib's uncompress and vd_inflate give it back;
 * return the compressed size. */
static size_t roundtrip(const uint8_t *in, int level)
{
	struct vd_deflater *d = vd_deflater_new(level);
	size_t cap = vd_deflate_bound(G), n = 0, got = 0;
	uint8_t *out = malloc(cap), *back = malloc(G + 1);
	uLongf zl = G;
	const char *why;

	assert_non_null(d);
	assert_int_equal(vd_deflate(d, in, G, out, cap, &n), 0);
	assert_true(n <= cap);
	assert_int_equal(uncompress(back, &zl, out, (uLong)n), Z_OK);
	assert_int_equal(zl, G);
	assert_memory_equal(back, in, G);
	memset(back, 0, G);
	assert_int_equal(vd_inflate(out, n, back, G + 1, &got, &why), VD_INFLATE_OK);
	assert_int_equal(got, G);
	assert_memory_equal(back, in, G);
	/* a grain's worth of output is too much: the reader's check */
	assert_int_equal(vd_inflate(out, n, back, G - 1, &got, &why), VD_INFLATE_TOO_BIG);
	vd_deflater_free(d);
	free(out);
	free(back);
	return n;
}

static void test_random_is_stored(void **state)
{
	uint8_t *in = malloc(G);
	(void)state;
	fill_random(in, G);
	/* stored blocks: 2 + 2 * 5 + G + 4 */
	assert_int_equal(roundtrip(in, 0), 2 + 10 + G + 4);
	assert_int_equal(roundtrip(in, 12), 2 + 10 + G + 4);
	free(in);
}

static void test_repeated_random_is_compressed(void **state)
{
	uint8_t *in = malloc(G);
	(void)state;
	/* high byte entropy, but 4 KiB repeated 16 times: deflate's matches
	 * find it, so must the stored-form check */
	fill_random(in, 4096);
	for (int i = 1; i < 16; i++)
		memcpy(in + i * 4096, in, 4096);
	assert_true(roundtrip(in, 0) < 4096 * 4);
	/* repeats at odd shifts in random data, 2000 bytes each, within
	 * deflate's 32 KiB window: deflate saves about 6000 bytes, the
	 * stored form would not */
	fill_random(in, G);
	memcpy(in + 20001, in + 1003, 2000);
	memcpy(in + 40003, in + 22007, 2000);
	memcpy(in + 60005, in + 43011, 2000);
	assert_true(roundtrip(in, 0) < G - 4000);
	free(in);
}

static void test_text_levels(void **state)
{
	uint8_t *in = malloc(G);
	size_t l1, l6, l12;
	(void)state;
	for (size_t i = 0; i < G; i++)
		in[i] = (uint8_t)("the quick brown fox jumps over the lazy dog "[i % 44] + (i / 4099) % 3);
	l1 = roundtrip(in, 1);
	l6 = roundtrip(in, 6);
	l12 = roundtrip(in, 12);
	assert_true(l6 < G / 10);
	assert_true(l12 <= l1);
	free(in);
}

static void test_corrupt(void **state)
{
	uint8_t in[8192], out[9000], back[8193];
	struct vd_deflater *d = vd_deflater_new(0);
	size_t n, got;
	const char *why = NULL;
	(void)state;
	memset(in, 'a', sizeof(in));
	assert_int_equal(vd_deflate(d, in, sizeof(in), out, sizeof(out), &n), 0);
	out[n - 1] ^= 1; /* the Adler-32 */
	assert_int_equal(vd_inflate(out, n, back, sizeof(back), &got, &why), VD_INFLATE_BAD);
	assert_non_null(why);
	assert_int_equal(vd_inflate(out, n / 2, back, sizeof(back), &got, &why), VD_INFLATE_BAD);
	vd_deflater_free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_random_is_stored),
		cmocka_unit_test(test_repeated_random_is_compressed),
		cmocka_unit_test(test_text_levels),
		cmocka_unit_test(test_corrupt),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
