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
#include <zlib.h>
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
	assert_ok(vd_finish(img, &e), &e);
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

static uint8_t *pattern(uint64_t size, unsigned seed)
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

/* ---- defect 12: create writes a complete empty stream ---- */

static void test_stream_create_complete(void **state)
{
	uint8_t *bytes;
	uint64_t len;
	struct vd_host *h;
	struct vd_image *img;
	struct vd_check res = { 0 };
	struct vd_error e = { 0 };
	uint8_t buf[4096];

	(void)state;
	make_image("subformat=streamOptimized", 8 * MiB, NULL, &bytes, &len);
	/* header area (64 KiB), 1 GT marker + GT (4 sectors), GD marker + GD,
	 * footer marker, footer, EOS */
	assert_int_equal(len, 65536 + 512 * (1 + 4 + 1 + 1 + 3));
	assert_int_equal(le64dec(bytes + VH_GD), VMDK_GD_AT_END);
	assert_int_equal(le32dec(bytes + len - 1536 + 12), VMDK_MARKER_FOOTER);
	assert_int_equal(le32dec(bytes + len - 1024), VMDK_MAGIC);
	assert_zero(bytes + len - 512, 512, "end-of-stream marker");
	h = host_of(bytes, len);
	assert_ok(vd_open_host(&img, h, "vmdk", VD_OPEN_CHECK, &e), &e);
	assert_ok(vd_check(img, false, &res, &e), &e);
	assert_int_equal(res.corruptions, 0);
	assert_ok(vd_read(img, 8 * MiB - sizeof(buf), buf, sizeof(buf), &e), &e);
	assert_zero(buf, sizeof(buf), "an empty stream reads as zeros");
	vd_close(img, NULL);
	/* the old header-only file: refused to read, corrupt to check */
	h = host_of(bytes, 65536);
	assert_int_equal(vd_open_host(&img, h, "vmdk", 0, &e), -EINVAL);
	assert_msg_has(&e, "footer");
	h = host_of(bytes, 65536);
	assert_ok(vd_open_host(&img, h, "vmdk", VD_OPEN_CHECK, &e), &e);
	memset(&res, 0, sizeof(res));
	assert_ok(vd_check(img, false, &res, &e), &e);
	assert_true(res.corruptions > 0);
	vd_close(img, NULL);
	free(bytes);
}

/* ---- defect 13: a stream with data is write-once ---- */

static void test_stream_write_once(void **state)
{
	uint8_t *data = pattern(MiB, 1), *bytes;
	uint64_t len;
	struct vd_host *h;
	struct vd_image *img;
	struct vd_error e = { 0 };

	(void)state;
	make_image("subformat=streamOptimized", MiB, data, &bytes, &len);
	h = host_of(bytes, len);
	assert_int_equal(vd_open_host(&img, h, "vmdk", VD_OPEN_RDWR, &e), -EROFS);
	assert_msg_has(&e, "img.vmdk: streamOptimized VMDK images are write-once; convert it to another subformat to change it");
	h = host_of(bytes, len);
	assert_int_equal(vd_open_host(&img, h, "vmdk", VD_OPEN_RDWR | VD_OPEN_CHECK, &e), -EROFS);
	/* read-only is fine and reads the data */
	h = host_of(bytes, len);
	assert_ok(vd_open_host(&img, h, "vmdk", 0, &e), &e);
	{
		uint8_t *got = malloc(MiB);
		assert_non_null(got);
		assert_ok(vd_read(img, 0, got, MiB, &e), &e);
		assert_same(got, data, MiB, "stream contents");
		free(got);
	}
	vd_close(img, NULL);
	free(bytes);
	free(data);
}

/* An empty stream opened to write is written by the stream writer: what
 * it took cannot be read back before it finishes, and a read says so
 * instead of returning zeros (make fuzz found the zeros); after close the
 * data is there. */
static void test_stream_no_readback(void **state)
{
	uint8_t *bytes, buf[4096], got[4096];
	uint64_t len;
	struct vd_host *h;
	struct vd_image *img;
	struct vd_error e = { 0 };

	(void)state;
	make_image("subformat=streamOptimized", MiB, NULL, &bytes, &len);
	h = host_of(bytes, len);
	assert_ok(vd_open_host(&img, h, "vmdk", VD_OPEN_RDWR, &e), &e);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7 + 1) | 1;
	assert_ok(vd_write(img, 0, buf, sizeof(buf), &e), &e);
	assert_int_equal(vd_read(img, 0, got, sizeof(got), &e), -EACCES);
	assert_msg_has(&e, "cannot be read back before it is finished");
	{
		uint64_t n;
		uint8_t *after;
		assert_ok(vd_finish(img, &e), &e);
		after = vd_host_mem_data(h, &n);
		free(bytes);
		bytes = malloc(n);
		assert_non_null(bytes);
		memcpy(bytes, after, n);
		len = n;
	}
	vd_close(img, NULL);
	/* finished: the data reads back */
	h = host_of(bytes, len);
	assert_ok(vd_open_host(&img, h, "vmdk", 0, &e), &e);
	assert_ok(vd_read(img, 0, got, sizeof(got), &e), &e);
	assert_same(got, buf, sizeof(got), "after the stream finished");
	vd_close(img, NULL);
	free(bytes);
}

/* ---- the contract: flush does not finish a stream, vd_finish does ---- */

static void test_stream_finish_explicit(void **state)
{
	uint8_t *data = pattern(MiB, 4);
	struct vd_host *h = vd_host_mem_new("img.vmdk", 0);
	struct vd_image *img;
	struct vd_error e = { 0 };

	(void)state;
	assert_ok(vd_create_on_host(h, "vmdk", 2 * MiB, "subformat=streamOptimized", 0, NULL, &e), &e);
	assert_ok(vd_open_host(&img, h, "vmdk", VD_OPEN_RDWR, &e), &e);
	assert_ok(vd_write(img, 0, data, MiB, &e), &e);
	assert_ok(vd_flush(img, &e), &e);
	/* still open for the rest of the stream */
	assert_ok(vd_write(img, MiB, data, MiB, &e), &e);
	assert_ok(vd_finish(img, &e), &e);
	assert_int_equal(vd_write(img, MiB, data, 512, &e), -EROFS);
	assert_msg_has(&e, "finished");
	assert_ok(vd_close(img, &e), &e);
	free(data);
}

/* ---- defect 14b: a failed stream finish stays failed (vd_flush does not finish a stream) ---- */

static void test_stream_flush_sticky(void **state)
{
	uint8_t *data = pattern(2 * MiB, 2);
	struct vd_host *h = vd_host_mem_new("img.vmdk", 0);
	struct vd_image *img;
	struct vd_mem_faults *f;
	struct vd_error e = { 0 };

	(void)state;
	assert_ok(vd_create_on_host(h, "vmdk", 2 * MiB, "subformat=streamOptimized", 0, NULL, &e), &e);
	assert_ok(vd_open_host(&img, h, "vmdk", VD_OPEN_RDWR, &e), &e);
	assert_ok(vd_write(img, 0, data, 2 * MiB, &e), &e);
	f = vd_host_mem_faults(img->host);
	f->fail_write_nth = f->nwrites + 3; /* inside the final flush */
	f->fail_errno = EIO;
	assert_int_equal(vd_finish(img, &e), -EIO);
	assert_msg_has(&e, "img.vmdk");
	memset(&e, 0, sizeof(e));
	assert_int_equal(vd_finish(img, &e), -EIO);
	assert_msg_has(&e, "earlier write of the stream failed");
	assert_int_equal(vd_write(img, 0, data, 512, &e), -EIO);
	assert_int_equal(vd_close(img, &e), -EIO);
	free(data);
}

/* ---- defect 8: check finds what read trips over ---- */

static char notes[8192];

static void note(void *ctx, int kind, const char *msg)
{
	(void)ctx;
	if (kind == VD_CHECK_NOTE_ERROR && strlen(notes) + strlen(msg) + 2 < sizeof(notes)) {
		strcat(notes, msg);
		strcat(notes, "\n");
	}
}

/* Check BYTES; the corruptions found; the notes in NOTES. */
static unsigned check_of(const uint8_t *bytes, uint64_t len)
{
	struct vd_image *img;
	struct vd_check res = { .note = note };
	struct vd_error e = { 0 };

	notes[0] = '\0';
	if (vd_open_host(&img, host_of(bytes, len), "vmdk", VD_OPEN_CHECK, &e) < 0) {
		snprintf(notes, sizeof(notes), "%s", e.msg);
		return 1000; /* refused at open: vdisk check says corrupt (EINVAL) */
	}
	assert_ok(vd_check(img, false, &res, &e), &e);
	vd_close(img, NULL);
	return res.corruptions;
}

#define assert_notes_have(s)                                                       \
	do {                                                                       \
		if (!strstr(notes, (s)))                                           \
			fail_msg("check notes \"%s\" do not contain \"%s\"", notes, (s)); \
	} while (0)

/* Read all of BYTES as convert would: true when something fails. */
static bool read_fails(const uint8_t *bytes, uint64_t len)
{
	struct vd_image *img;
	struct vd_error e = { 0 };
	uint8_t *buf = malloc(MiB);
	bool failed = false;

	assert_non_null(buf);
	if (vd_open_host(&img, host_of(bytes, len), "vmdk", 0, &e) < 0) {
		free(buf);
		return true;
	}
	for (uint64_t off = 0; off < vd_size(img) && !failed; off += MiB)
		failed = vd_read(img, off, buf, (size_t)VD_MIN((uint64_t)MiB, vd_size(img) - off), &e) < 0;
	vd_close(img, NULL);
	free(buf);
	return failed;
}

static void test_check_sparse(void **state)
{
	/* 64 MiB: two grain tables; data in the first MiB and at 40 MiB */
	uint64_t size = 64ull * MiB, len;
	uint8_t *data = calloc(1, size), *p = pattern(MiB, 3), *bytes, *v;
	uint32_t gd, gt0, gt1;

	(void)state;
	assert_non_null(data);
	memcpy(data, p, MiB);
	free(p);
	memset(data + 40 * MiB, 0x5a, 65536);
	make_image("subformat=monolithicSparse", size, data, &bytes, &len);
	assert_int_equal(check_of(bytes, len), 0);
	assert_false(read_fails(bytes, len));
	gd = (uint32_t)le64dec(bytes + VH_GD);
	gt0 = le32dec(bytes + gd * 512ull);
	gt1 = le32dec(bytes + gd * 512ull + 4);
	assert_true(gt0 && gt1);
	v = malloc(len);
	assert_non_null(v);

	/* two entries pointing at one grain */
	memcpy(v, bytes, len);
	le32enc(v + gt0 * 512ull + 4, le32dec(v + gt0 * 512ull));
	assert_true(check_of(v, len) > 0);
	assert_notes_have("cross-linked grains");
	/* an entry pointing into another grain (unaligned, same unit) */
	le32enc(v + gt0 * 512ull + 4, le32dec(v + gt0 * 512ull) + 8);
	assert_true(check_of(v, len) > 0);
	assert_notes_have("cross-linked");

	/* two directory entries pointing at one grain table */
	memcpy(v, bytes, len);
	le32enc(v + gd * 512ull + 4, gt0);
	assert_true(check_of(v, len) > 0);
	assert_notes_have("cross-linked");

	/* truncated inside the last grain: check and read agree */
	assert_true(check_of(bytes, len - 512) > 0);
	assert_notes_have("past the end of the file");
	assert_true(read_fails(bytes, len - 512));
	free(v);
	free(bytes);
	free(data);
}

/* The grain record of guest grain GI of stream BYTES. */
static uint8_t *stream_grain(uint8_t *bytes, uint64_t len, unsigned gi)
{
	uint64_t gd = le64dec(bytes + len - 1024 + VH_GD);
	uint32_t gt = le32dec(bytes + gd * 512);

	assert_true(gt != 0);
	assert_true(le32dec(bytes + gt * 512ull + 4 * gi) != 0);
	return bytes + le32dec(bytes + gt * 512ull + 4 * gi) * 512ull;
}

static void test_check_stream(void **state)
{
	uint8_t *data = pattern(MiB, 4), *bytes, *v, *g;
	uint64_t len;
	uint32_t gt;

	(void)state;
	make_image("subformat=streamOptimized", MiB, data, &bytes, &len);
	assert_int_equal(check_of(bytes, len), 0);
	assert_false(read_fails(bytes, len));
	v = malloc(len);
	assert_non_null(v);

	static const uint32_t sizes[] = { 0, 0xffffffffu };
	for (unsigned i = 0; i < 2; i++) {
		memcpy(v, bytes, len);
		le32enc(stream_grain(v, len, 3) + 8, sizes[i]);
		assert_true(check_of(v, len) > 0);
		assert_notes_have("out of range");
		assert_true(read_fails(v, len));
	}
	/* bad zlib data */
	memcpy(v, bytes, len);
	g = stream_grain(v, len, 5);
	memset(g + 12, 0xa5, 64);
	assert_true(check_of(v, len) > 0);
	assert_notes_have("does not inflate");
	assert_true(read_fails(v, len));
	/* data inflating to half a grain */
	memcpy(v, bytes, len);
	{
		uint8_t half[32768], out[40000];
		uLongf n = sizeof(out);
		memset(half, 7, sizeof(half));
		assert_int_equal(compress(out, &n, half, sizeof(half)), Z_OK);
		g = stream_grain(v, len, 2);
		le32enc(g + 8, (uint32_t)n);
		memcpy(g + 12, out, n);
	}
	assert_true(check_of(v, len) > 0);
	assert_notes_have("inflates to 32768 bytes");
	assert_true(read_fails(v, len));
	/* two table entries pointing at one grain record */
	memcpy(v, bytes, len);
	gt = le32dec(v + le64dec(v + len - 1024 + VH_GD) * 512);
	le32enc(v + gt * 512ull + 4, le32dec(v + gt * 512ull));
	assert_true(check_of(v, len) > 0);
	assert_notes_have("cross-linked");
	/* no end-of-stream marker, no footer marker */
	memcpy(v, bytes, len);
	v[len - 512 + 12] = 9;
	assert_true(check_of(v, len) > 0);
	assert_notes_have("end-of-stream");
	memcpy(v, bytes, len);
	v[len - 1536 + 12] = 9;
	assert_true(check_of(v, len) > 0);
	assert_notes_have("footer marker");
	free(v);
	free(bytes);
	free(data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_meta_budget),
		cmocka_unit_test(test_stream_create_complete),
		cmocka_unit_test(test_stream_write_once),
		cmocka_unit_test(test_stream_finish_explicit),
		cmocka_unit_test(test_stream_flush_sticky),
		cmocka_unit_test(test_stream_no_readback),
		cmocka_unit_test(test_check_sparse),
		cmocka_unit_test(test_check_stream),
	};
	return unit_run(tests);
}
