/*
 * Unit tests of the fragmentation map (src/ops/fragmap.c) on VDI images in
 * memory hosts (no FIEMAP there, so image-file offsets stand in for host
 * positions): discontinuities and blocks out of order, run merging, the
 * exact median and the histogram median past VD_FRAG_SAMPLE runs, guest
 * ranges, a callback that stops the walk, unallocated and zero blocks.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "unit.h"

#include <errno.h>
#include <stdio.h>

#define KiB (1ull << 10)
#define MiB (1ull << 20)
#define BS (4 * KiB)

static struct vd_image *new_vdi(uint64_t size, const char *opts)
{
	struct vd_error err = { 0 };
	struct vd_host *h = vd_host_mem_new("frag.vdi", 0);
	struct vd_image *img = NULL;

	assert_ok(vd_create_on_host(h, "vdi", size, opts, VD_CREATE_DETERMINISTIC, NULL, &err), &err);
	assert_ok(vd_open_host(&img, h, "vdi", VD_OPEN_RDWR, &err), &err);
	return img;
}

static void write_block(struct vd_image *img, uint64_t b)
{
	struct vd_error err = { 0 };
	uint8_t buf[BS];

	memset(buf, (int)(b % 251) + 1, sizeof(buf));
	assert_ok(vd_write(img, b * BS, buf, sizeof(buf), &err), &err);
}

struct collect {
	uint64_t n, data, total, next_guest, seeks, disconts;
	int stop_after; /* > 0: return -EINTR at that run */
};

static int collect(void *ctx, const struct vd_frag_run *r)
{
	struct collect *c = ctx;

	if (r->guest_off != c->next_guest)
		fail_msg("run %llu starts at %llu, expected %llu", (unsigned long long)c->n,
			 (unsigned long long)r->guest_off, (unsigned long long)c->next_guest);
	c->next_guest += r->len;
	c->n++;
	c->total += r->len;
	if (r->kind == VD_FRAG_DATA)
		c->data += r->len;
	if (r->flags & VD_FRAG_SEEK)
		c->seeks++;
	if (r->flags & VD_FRAG_DISCONT)
		c->disconts++;
	if (c->stop_after && (int)c->n == c->stop_after)
		return -EINTR;
	return 0;
}

/* Groups of blocks written group by group in reverse order, each group in
 * order: every group is one run in the file. */
static void test_groups_exact_median(void **state)
{
	static const unsigned len[] = { 1, 3, 2, 5, 4 };
	struct vd_error err = { 0 };
	struct vd_frag_summary s;
	struct collect c = { 0 };
	struct vd_image *img;
	uint64_t start[5], b = 0;

	(void)state;
	img = new_vdi(64 * BS, "block_size=4K");
	for (int g = 0; g < 5; g++) {
		start[g] = b;
		b += len[g] + 1; /* one unallocated block between groups */
	}
	for (int g = 4; g >= 0; g--)
		for (unsigned i = 0; i < len[g]; i++)
			write_block(img, start[g] + i);
	assert_ok(vd_fragmap(img, NULL, collect, &c, &s, &err), &err);
	assert_int_equal(s.host_map, VD_FRAG_HOST_NONE);
	assert_non_null(strstr(s.host_note, "frag.vdi"));
	assert_int_equal(s.data_bytes, 15 * BS);
	assert_int_equal(c.data, 15 * BS);
	assert_int_equal(c.total, 64 * BS);
	assert_int_equal(s.data_blocks, 15);
	assert_int_equal(s.discontinuities, 4);
	assert_int_equal(s.out_of_order_blocks, 4);
	assert_int_equal(c.disconts, 4);
	assert_int_equal(s.host_runs, 5);
	assert_int_equal(c.seeks, 5);
	assert_int_equal(s.host_run_bytes, 15 * BS);
	assert_int_equal(s.host_run_max, 5 * BS);
	assert_true(s.host_run_median_exact);
	assert_int_equal(s.host_run_median, 3 * BS);
	assert_int_equal(s.bytes_in_runs_1m, 0);
	/* 5 data runs + 5 unallocated gaps (the last one to the end) */
	assert_int_equal(s.runs, 10);
	assert_int_equal(c.n, 10);
	assert_int_equal(s.unallocated_bytes, (64 - 15) * BS);
	vd_close(img, NULL);
}

/* The same groups written in guest order: one run, no discontinuity, even
 * though unallocated blocks lie between them in the guest. */
static void test_in_order(void **state)
{
	struct vd_error err = { 0 };
	struct vd_frag_summary s;
	struct vd_image *img;

	(void)state;
	img = new_vdi(64 * BS, "block_size=4K");
	for (uint64_t b = 0; b < 40; b += 3)
		write_block(img, b);
	assert_ok(vd_fragmap(img, NULL, NULL, NULL, &s, &err), &err);
	assert_int_equal(s.discontinuities, 0);
	assert_int_equal(s.host_runs, 1);
	assert_int_equal(s.host_run_median, 14 * BS);
	vd_close(img, NULL);
}

/* More runs than VD_FRAG_SAMPLE: the median comes from the histogram. */
static void test_histogram_median(void **state)
{
	const uint64_t n = VD_FRAG_SAMPLE + 1000;
	struct vd_error err = { 0 };
	struct vd_frag_summary s;
	struct vd_image *img;

	(void)state;
	img = new_vdi(n * BS, "block_size=4K");
	for (uint64_t b = n; b-- > 0;)
		write_block(img, b);
	assert_ok(vd_fragmap(img, NULL, NULL, NULL, &s, &err), &err);
	assert_int_equal(s.discontinuities, n - 1);
	assert_int_equal(s.host_runs, n);
	assert_false(s.host_run_median_exact);
	assert_int_equal(s.host_run_median, BS);
	assert_int_equal(s.run_hist[12], n);
	vd_close(img, NULL);
}

static void test_range_and_stop(void **state)
{
	struct vd_error err = { 0 };
	struct vd_frag_summary s;
	struct vd_fragmap_opts o = { 0 };
	struct collect c = { 0 };
	struct vd_image *img;

	(void)state;
	img = new_vdi(64 * BS, "block_size=4K");
	for (uint64_t b = 10; b-- > 0;)
		write_block(img, b);
	o.start = 2 * BS;
	o.length = 4 * BS;
	c.next_guest = 2 * BS;
	assert_ok(vd_fragmap(img, &o, collect, &c, &s, &err), &err);
	assert_int_equal(s.guest_start, 2 * BS);
	assert_int_equal(s.guest_length, 4 * BS);
	assert_int_equal(s.data_bytes, 4 * BS);
	assert_int_equal(s.discontinuities, 3);
	assert_int_equal(c.total, 4 * BS);

	o.start = 60 * BS;
	o.length = 8 * BS;
	assert_int_equal(vd_fragmap(img, &o, NULL, NULL, &s, &err), -EINVAL);
	assert_msg_has(&err, "frag.vdi");
	assert_msg_has(&err, "outside the virtual size");

	memset(&c, 0, sizeof(c));
	c.stop_after = 3;
	assert_int_equal(vd_fragmap(img, NULL, collect, &c, &s, &err), -EINTR);
	assert_int_equal(c.n, 3);

	{
		volatile int cancel = 1;
		struct vd_fragmap_opts oc = { .cancel = &cancel };
		assert_int_equal(vd_fragmap(img, &oc, NULL, NULL, &s, &err), -ECANCELED);
	}
	vd_close(img, NULL);
}

/* Discarded whole blocks become zero blocks: not data, not read. */
static void test_zero_blocks(void **state)
{
	struct vd_error err = { 0 };
	struct vd_frag_summary s;
	struct vd_image *img;

	(void)state;
	img = new_vdi(16 * BS, "block_size=4K");
	for (uint64_t b = 0; b < 4; b++)
		write_block(img, b);
	assert_ok(vd_discard(img, BS, BS, &err), &err);
	assert_ok(vd_fragmap(img, NULL, NULL, NULL, &s, &err), &err);
	assert_int_equal(s.data_bytes + s.zero_bytes + s.hole_bytes + s.unallocated_bytes, 16 * BS);
	if (s.zero_bytes == BS) {
		/* block 1 is a zero block between data in slots 0 and 2: the
		 * read skips it, so the file chain breaks there */
		assert_int_equal(s.data_bytes, 3 * BS);
		assert_int_equal(s.discontinuities, 1);
	} else {
		assert_int_equal(s.data_bytes, 4 * BS); /* discard kept the data */
	}
	vd_close(img, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_groups_exact_median),
		cmocka_unit_test(test_in_order),
		cmocka_unit_test(test_histogram_median),
		cmocka_unit_test(test_range_and_stop),
		cmocka_unit_test(test_zero_blocks),
	};
	return unit_run(tests);
}
