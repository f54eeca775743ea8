/*
 * The content digest devcopy --verify uses for a source read once
 * (src/ops/chash.c): the same bytes give the same digest however they are
 * cut into data and zero ranges; one changed byte, a zero block turned
 * into data, or a shifted block change it.
 *
 * SPDX-License-Identifier: MIT
 */
#include "unit.h"
#include "../../src/ops/chash.h"

#include <stdlib.h>
#include <string.h>

#define VIEW (300u * 1024 + 777) /* not a whole number of blocks */

static uint8_t *view(void)
{
	uint8_t *v = calloc(1, VIEW);
	assert_non_null(v);
	for (size_t i = 0; i < 5000; i++)
		v[i] = (uint8_t)(i * 7 + 1);            /* data at the start */
	memset(v + 200 * 1024 + 3, 0xa5, 1000);       /* data across no boundary */
	v[VIEW - 1] = 9;                              /* the last byte */
	return v;
}

static void digest_whole(const uint8_t *v, size_t n, uint8_t out[32])
{
	struct vd_chash h;
	assert_int_equal(vd_chash_init(&h), 0);
	vd_chash_data(&h, v, n);
	vd_chash_final(&h, out);
	vd_chash_free(&h);
}

/* feed V in pieces of varying length; runs of zeros as zero ranges */
static void digest_cut(const uint8_t *v, size_t n, unsigned seed, uint8_t out[32])
{
	struct vd_chash h;
	size_t off = 0;

	assert_int_equal(vd_chash_init(&h), 0);
	srand(seed);
	while (off < n) {
		size_t len = 1 + (size_t)rand() % 70000;
		if (len > n - off)
			len = n - off;
		bool zero = true;
		for (size_t i = 0; i < len && zero; i++)
			zero = v[off + i] == 0;
		if (zero && rand() % 2)
			vd_chash_zero(&h, len);
		else
			vd_chash_data(&h, v + off, len);
		off += len;
	}
	vd_chash_final(&h, out);
	vd_chash_free(&h);
}

static void test_segmentation(void **state)
{
	(void)state;
	uint8_t *v = view(), a[32], b[32];

	digest_whole(v, VIEW, a);
	for (unsigned s = 1; s <= 40; s++) {
		digest_cut(v, VIEW, s, b);
		assert_memory_equal(a, b, 32);
	}
	free(v);
}

static void test_changes(void **state)
{
	(void)state;
	uint8_t *v = view(), a[32], b[32];

	digest_whole(v, VIEW, a);
	v[123456] = 1; /* in a zero block */
	digest_whole(v, VIEW, b);
	assert_memory_not_equal(a, b, 32);
	v[123456] = 0;
	v[10] ^= 0x40; /* in a data block */
	digest_whole(v, VIEW, b);
	assert_memory_not_equal(a, b, 32);
	v[10] ^= 0x40;
	digest_whole(v, VIEW - 1, b); /* one byte shorter: the last byte gone */
	assert_memory_not_equal(a, b, 32);
	/* the same data block one block later */
	memmove(v + VD_CHASH_BLOCK, v, 5000);
	memset(v, 0, 5000);
	digest_whole(v, VIEW, b);
	assert_memory_not_equal(a, b, 32);
	free(v);
}

static void test_all_zero(void **state)
{
	(void)state;
	struct vd_chash h;
	uint8_t a[32], b[32];
	uint8_t *z = calloc(1, 3 * VD_CHASH_BLOCK);

	assert_non_null(z);
	assert_int_equal(vd_chash_init(&h), 0);
	vd_chash_zero(&h, 3 * VD_CHASH_BLOCK);
	vd_chash_final(&h, a);
	vd_chash_free(&h);
	assert_int_equal(vd_chash_init(&h), 0);
	vd_chash_data(&h, z, 3 * VD_CHASH_BLOCK);
	vd_chash_final(&h, b);
	vd_chash_free(&h);
	assert_memory_equal(a, b, 32); /* zeros as a range or as data */
	assert_int_equal(vd_chash_init(&h), 0);
	vd_chash_zero(&h, (uint64_t)1 << 40); /* a TiB of zeros costs nothing */
	vd_chash_final(&h, b);
	vd_chash_free(&h);
	assert_memory_not_equal(a, b, 32); /* the length counts */
	free(z);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_segmentation),
		cmocka_unit_test(test_changes),
		cmocka_unit_test(test_all_zero),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
