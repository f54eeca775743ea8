/*
 * Discard of whole blocks/grains (what zerofree builds on): the range reads
 * as zeros, neighbours are untouched, VDI leaves a zero block whose slot
 * check -r reclaims, sparse VMDK unallocates the grain in both tables.
 *
 * SPDX-License-Identifier: MIT
 */
#include "unit.h"

#define MiB (1u << 20)

static struct vd_image *make(const char *fmt, const char *opts, uint64_t size)
{
	struct vd_error err = { 0 };
	struct vd_host *h = vd_host_mem_new(fmt, 0);
	struct vd_image *img = NULL;

	assert_non_null(h);
	assert_ok(vd_create_on_host(h, fmt, size, opts, VD_CREATE_DETERMINISTIC, NULL, &err), &err);
	assert_ok(vd_open_host(&img, h, fmt, VD_OPEN_RDWR, &err), &err);
	return img;
}

static void fill(struct vd_image *img, uint64_t off, size_t len, uint8_t v)
{
	struct vd_error err = { 0 };
	uint8_t *b = malloc(len);

	assert_non_null(b);
	memset(b, v, len);
	assert_ok(vd_write(img, off, b, len, &err), &err);
	free(b);
}

static void expect_bytes(struct vd_image *img, uint64_t off, size_t len, uint8_t v)
{
	struct vd_error err = { 0 };
	uint8_t *b = malloc(len), *want = malloc(len);

	assert_non_null(b);
	assert_non_null(want);
	memset(want, v, len);
	assert_ok(vd_read(img, off, b, len, &err), &err);
	assert_same(b, want, len, "contents");
	free(b);
	free(want);
}

static void test_vdi_discard(void **state)
{
	struct vd_error err = { 0 };
	struct vd_check res = { 0 };
	struct vd_extent e;
	struct vd_image *img = make("vdi", NULL, 4 * MiB);

	(void)state;
	fill(img, 0, MiB, 0x11);
	fill(img, MiB, MiB, 0x22);
	fill(img, 2 * MiB, MiB, 0x33);
	/* a partial block is not discarded */
	assert_ok(vd_discard(img, MiB, 4096, &err), &err);
	expect_bytes(img, MiB, 4096, 0x22);
	/* the whole middle block is */
	assert_ok(vd_discard(img, MiB, MiB, &err), &err);
	expect_bytes(img, 0, MiB, 0x11);
	expect_bytes(img, MiB, MiB, 0);
	expect_bytes(img, 2 * MiB, MiB, 0x33);
	assert_ok(vd_block_status(img, MiB, MiB, &e, &err), &err);
	assert_int_equal(e.flags, VD_BS_ZERO | VD_BS_ALLOCATED);
	/* its slot is leaked until repair, which keeps the contents */
	assert_ok(vd_check(img, false, &res, &err), &err);
	assert_int_equal(res.corruptions, 0);
	assert_int_equal(res.leaks, 2); /* the slot, and the count that includes it */
	assert_ok(vd_check(img, true, &res, &err), &err);
	assert_ok(vd_check(img, false, &res, &err), &err);
	assert_int_equal(res.leaks + res.corruptions, 0);
	expect_bytes(img, 0, MiB, 0x11);
	expect_bytes(img, MiB, MiB, 0);
	expect_bytes(img, 2 * MiB, MiB, 0x33);
	vd_close(img, NULL);
}

static void test_vdi_fixed_not_discarded(void **state)
{
	struct vd_error err = { 0 };
	struct vd_extent e;
	struct vd_image *img = make("vdi", "subformat=fixed", 2 * MiB);

	(void)state;
	fill(img, 0, MiB, 0x44);
	assert_ok(vd_discard(img, 0, MiB, &err), &err);
	assert_ok(vd_block_status(img, 0, MiB, &e, &err), &err);
	assert_true(e.flags & VD_BS_DATA); /* a fixed image stays allocated */
	vd_close(img, NULL);
}

static void test_vmdk_discard(void **state)
{
	struct vd_error err = { 0 };
	struct vd_check res = { 0 };
	struct vd_extent e;
	struct vd_image *img = make("vmdk", NULL, 4 * MiB);

	(void)state;
	fill(img, 0, 3 * 65536, 0x55);
	assert_ok(vd_discard(img, 65536, 65536, &err), &err);
	expect_bytes(img, 0, 65536, 0x55);
	expect_bytes(img, 65536, 65536, 0);
	expect_bytes(img, 2 * 65536, 65536, 0x55);
	assert_ok(vd_block_status(img, 65536, 65536, &e, &err), &err);
	assert_int_equal(e.flags, VD_BS_ZERO);
	/* primary and redundant tables still agree */
	assert_ok(vd_check(img, false, &res, &err), &err);
	assert_int_equal(res.corruptions, 0);
	/* a partial grain is left alone */
	assert_ok(vd_discard(img, 0, 4096, &err), &err);
	expect_bytes(img, 0, 4096, 0x55);
	vd_close(img, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vdi_discard),
		cmocka_unit_test(test_vdi_fixed_not_discarded),
		cmocka_unit_test(test_vmdk_discard),
	};
	return unit_run(tests);
}
