/*
 * Unit tests of the block-I/O layer (bounds, read-only, alignment, split,
 * read-modify-write, write-zeroes, block status) and of the memory host with
 * fault injection, using the raw and VDI backends on memory hosts.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "unit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define MiB (1ull << 20)
#define KiB (1ull << 10)

/* ---- helpers ---- */




static uint64_t rng_state;

static void rng_seed(uint64_t s)
{
	rng_state = s ? s : 0x9e3779b97f4a7c15ull;
}

static uint64_t rnd(void)
{
	uint64_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

static uint64_t rnd_below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

static void fill_random(uint8_t *p, size_t n)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t v = rnd();
		memcpy(p + i, &v, 8);
	}
	for (; i < n; i++)
		p[i] = (uint8_t)rnd();
}

static void fill_pattern(uint8_t *p, size_t n, uint8_t seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed + i * 7 + (i >> 9));
}



static struct vd_image *open_raw(const char *name, uint64_t size, unsigned flags)
{
	struct vd_image *img = NULL;
	struct vd_error err = { 0 };
	struct vd_host *h = vd_host_mem_new(name, size);

	assert_non_null(h);
	assert_ok(vd_open_host(&img, h, "raw", flags, &err), &err);
	assert_non_null(img);
	assert_int_equal(vd_size(img), size);
	return img;
}

static struct vd_host *new_vdi_host(const char *name, uint64_t size, const char *opts)
{
	struct vd_error err = { 0 };
	struct vd_host *h = vd_host_mem_new(name, 0);

	assert_non_null(h);
	assert_ok(vd_create_on_host(h, "vdi", size, opts, VD_CREATE_DETERMINISTIC, NULL, &err), &err);
	return h;
}

static struct vd_image *open_vdi(const char *name, uint64_t size, const char *opts,
				 unsigned flags)
{
	struct vd_image *img = NULL;
	struct vd_error err = { 0 };
	struct vd_host *h = new_vdi_host(name, size, opts ? opts : "subformat=dynamic");

	assert_ok(vd_open_host(&img, h, "vdi", flags, &err), &err);
	assert_non_null(img);
	return img;
}

/* A fresh memory host holding a copy of IMG's file bytes. */
static struct vd_host *clone_host(struct vd_image *img, const char *name)
{
	uint64_t n;
	uint8_t *src = vd_host_mem_data(img->host, &n);
	struct vd_host *h = vd_host_mem_new(name, n);

	assert_non_null(src);
	assert_non_null(h);
	memcpy(vd_host_mem_data(h, NULL), src, n);
	return h;
}

static uint32_t host_le32(struct vd_image *img, uint64_t off)
{
	uint64_t n;
	uint8_t *p = vd_host_mem_data(img->host, &n);
	assert_true(off + 4 <= n);
	return le32dec(p + off);
}

static void read_all(struct vd_image *img, uint8_t *buf)
{
	struct vd_error err = { 0 };
	assert_ok(vd_read(img, 0, buf, (size_t)vd_size(img), &err), &err);
}

static void assert_image_is(struct vd_image *img, const uint8_t *shadow, const char *what)
{
	size_t n = (size_t)vd_size(img);
	uint8_t *buf = malloc(n);

	assert_non_null(buf);
	read_all(img, buf);
	assert_same(buf, shadow, n, what);
	free(buf);
}

/*
 * Random reads, writes and write-zeroes at odd offsets and lengths, biased
 * towards UNIT boundaries; every op is mirrored in SHADOW and (if FULL)
 * the whole image is compared after each op.
 */
static void random_ops(struct vd_image *img, uint8_t *shadow, unsigned nops,
		       uint64_t unit, uint64_t maxlen, bool full)
{
	uint64_t size = vd_size(img);
	uint8_t *buf = malloc(maxlen + 1), *all = malloc(size);
	struct vd_error err = { 0 };
	char what[128];

	assert_non_null(buf);
	assert_non_null(all);
	for (unsigned i = 0; i < nops; i++) {
		uint64_t off, len;
		unsigned kind = (unsigned)rnd_below(10);

		if (rnd_below(2)) {
			int64_t delta = (int64_t)rnd_below(1400) - 700;
			int64_t o = (int64_t)(rnd_below(size / unit + 1) * unit) + delta;
			off = o < 0 ? 0 : (uint64_t)o > size ? size : (uint64_t)o;
		} else {
			off = rnd_below(size + 1);
		}
		switch (rnd_below(3)) {
		case 0: len = rnd_below(1100); break;
		case 1: len = 1 + rnd_below(64 * KiB); break;
		default: len = 1 + rnd_below(maxlen); break;
		}
		len = VD_MIN(len, VD_MIN(size - off, maxlen));

		if (kind < 5) {
			fill_random(buf, (size_t)len);
			snprintf(what, sizeof(what), "op %u: write %llu at %llu", i,
				 (unsigned long long)len, (unsigned long long)off);
			if (vd_write(img, off, buf, (size_t)len, &err) != 0)
				fail_msg("%s: %s", what, err.msg);
			memcpy(shadow + off, buf, (size_t)len);
		} else if (kind < 7) {
			unsigned fl = rnd_below(2) ? VD_ZERO_MAY_UNMAP : 0;
			snprintf(what, sizeof(what), "op %u: write_zeroes %llu at %llu (flags %u)", i,
				 (unsigned long long)len, (unsigned long long)off, fl);
			if (vd_write_zeroes(img, off, len, fl, &err) != 0)
				fail_msg("%s: %s", what, err.msg);
			memset(shadow + off, 0, (size_t)len);
		} else {
			snprintf(what, sizeof(what), "op %u: read %llu at %llu", i,
				 (unsigned long long)len, (unsigned long long)off);
			/* canary after the buffer: reads must not overrun */
			buf[len] = 0xA5;
			if (vd_read(img, off, buf, (size_t)len, &err) != 0)
				fail_msg("%s: %s", what, err.msg);
			assert_same(buf, shadow + off, (size_t)len, what);
			assert_int_equal(buf[len], 0xA5);
		}
		if (full) {
			read_all(img, all);
			assert_same(all, shadow, (size_t)size, what);
		}
	}
	free(buf);
	free(all);
}

/* ---- memory host ---- */

static void test_memhost_basic(void **state)
{
	struct vd_error err = { 0 };
	struct vd_host *h = vd_host_mem_new("mem0", 1000);
	uint8_t buf[64], *data;
	uint64_t size;

	(void)state;
	assert_non_null(h);
	assert_string_equal(h->path, "mem0");
	assert_ok(vd_host_size(h, &size, &err), &err);
	assert_int_equal(size, 1000);
	data = vd_host_mem_data(h, &size);
	assert_non_null(data);
	assert_int_equal(size, 1000);
	assert_zero(data, 1000, "new memory host");

	/* raw ops: short at EOF, 0 past it */
	assert_int_equal(h->ops->pread(h, buf, 64, 990), 10);
	assert_int_equal(h->ops->pread(h, buf, 64, 1000), 0);
	assert_int_equal(h->ops->pread(h, buf, 64, 5000), 0);

	/* full-transfer helper: EOF inside the request is an error naming the file */
	memset(&err, 0, sizeof(err));
	assert_int_equal(vd_host_pread(h, buf, 64, 990, &err), -EIO);
	assert_int_equal(err.code, -EIO);
	assert_msg_has(&err, "mem0");
	assert_msg_has(&err, "unexpected end of file");

	/* write past the end extends the host; the gap reads as zeros */
	memset(buf, 0x5c, sizeof(buf));
	assert_ok(vd_host_pwrite(h, buf, 64, 5000, &err), &err);
	assert_ok(vd_host_size(h, &size, &err), &err);
	assert_int_equal(size, 5064);
	data = vd_host_mem_data(h, NULL);
	assert_zero(data + 1000, 4000, "gap after extending write");
	assert_int_equal(data[5000], 0x5c);
	assert_int_equal(data[5063], 0x5c);

	/* truncate down then up: no stale bytes come back */
	assert_ok(vd_host_truncate(h, 5010, &err), &err);
	assert_ok(vd_host_truncate(h, 6000, &err), &err);
	data = vd_host_mem_data(h, &size);
	assert_int_equal(size, 6000);
	assert_int_equal(data[5009], 0x5c);
	assert_zero(data + 5010, 990, "regrown tail");

	/* write_zeroes through the host layer */
	assert_ok(vd_host_write_zeroes(h, 5000, 5, true, &err), &err);
	assert_ok(vd_host_write_zeroes(h, 5005, 2, false, &err), &err);
	data = vd_host_mem_data(h, NULL);
	assert_zero(data + 5000, 7, "zeroed range");
	assert_int_equal(data[5007], 0x5c);

	/* flush and allocate: no-op / unsupported on memory */
	assert_ok(vd_host_flush(h, &err), &err);
	assert_int_equal(vd_host_allocate(h, 0, 100, &err), -ENOTSUP);

	vd_host_close(h);
}

static void test_memhost_counters_and_faults(void **state)
{
	struct vd_error err = { 0 };
	struct vd_host *h = vd_host_mem_new("mem1", 4096);
	struct vd_mem_faults *f;
	uint8_t buf[4096], want[4096];

	(void)state;
	assert_non_null(h);
	f = vd_host_mem_faults(h);
	assert_non_null(f);
	assert_int_equal(f->nreads, 0);
	assert_int_equal(f->nwrites, 0);

	fill_pattern(want, sizeof(want), 3);
	assert_ok(vd_host_pwrite(h, want, sizeof(want), 0, &err), &err);
	assert_int_equal(f->nwrites, 1);
	assert_ok(vd_host_pread(h, buf, sizeof(buf), 0, &err), &err);
	assert_int_equal(f->nreads, 1);

	/* exactly the Nth read fails, with the default EIO */
	f->fail_read_nth = 3;
	assert_ok(vd_host_pread(h, buf, 16, 0, &err), &err); /* read 2 */
	memset(&err, 0, sizeof(err));
	assert_int_equal(vd_host_pread(h, buf, 16, 0, &err), -EIO); /* read 3 */
	assert_int_equal(err.code, -EIO);
	assert_msg_has(&err, "mem1");
	assert_ok(vd_host_pread(h, buf, 16, 0, &err), &err); /* read 4 */
	assert_int_equal(f->nreads, 4);

	/* fail_errno is honoured, for writes too */
	f->fail_write_nth = f->nwrites + 1;
	f->fail_errno = EPERM;
	memset(&err, 0, sizeof(err));
	assert_int_equal(vd_host_pwrite(h, buf, 16, 0, &err), -EPERM);
	assert_int_equal(err.code, -EPERM);
	assert_msg_has(&err, "mem1");
	f->fail_errno = 0;
	/* the failed write changed nothing */
	assert_same(vd_host_mem_data(h, NULL), want, sizeof(want), "after failed write");

	/* short I/O: the raw op does at most short_io bytes, the helper loops */
	f->short_io = 7;
	assert_int_equal(h->ops->pread(h, buf, 100, 0), 7);
	assert_int_equal(h->ops->pwrite(h, buf, 100, 0), 7);
	{
		unsigned before = f->nreads;
		memset(buf, 0, sizeof(buf));
		assert_ok(vd_host_pread(h, buf, 100, 1, &err), &err);
		assert_int_equal(f->nreads - before, 15); /* ceil(100 / 7) */
		assert_same(buf, want + 1, 100, "short reads");
	}
	fill_pattern(want, sizeof(want), 99);
	assert_ok(vd_host_pwrite(h, want, sizeof(want), 0, &err), &err);
	f->short_io = 0;
	assert_same(vd_host_mem_data(h, NULL), want, sizeof(want), "short writes");

	vd_host_close(h);
}

static void test_memhost_capacity(void **state)
{
	struct vd_error err = { 0 };
	struct vd_host *h = vd_host_mem_new("cap.img", 0);
	struct vd_mem_faults *f = vd_host_mem_faults(h);
	uint8_t buf[1000];
	uint64_t size;

	(void)state;
	f->capacity = 4096;
	memset(buf, 1, sizeof(buf));
	/* straddling the capacity: the raw op does what fits, then fails */
	assert_int_equal(h->ops->pwrite(h, buf, 1000, 3500), 596);
	assert_int_equal(h->ops->pwrite(h, buf, 1000, 4096), -ENOSPC);
	memset(&err, 0, sizeof(err));
	assert_int_equal(vd_host_pwrite(h, buf, 1000, 3500, &err), -ENOSPC);
	assert_int_equal(err.code, -ENOSPC);
	assert_msg_has(&err, "cap.img");
	assert_msg_has(&err, "no space");
	memset(&err, 0, sizeof(err));
	assert_int_equal(vd_host_truncate(h, 8192, &err), -ENOSPC);
	assert_msg_has(&err, "cap.img");
	assert_msg_has_nocase(&err, "no space");
	assert_ok(vd_host_size(h, &size, &err), &err);
	assert_int_equal(size, 4096);
	vd_host_close(h);

	/* hosts refuse absurd sizes instead of allocating them */
	h = vd_host_mem_new("big", 0);
	assert_true(h->ops->pwrite(h, buf, 10, 5ull << 30) < 0);
	assert_true(h->ops->truncate(h, 5ull << 30) < 0);
	vd_host_close(h);
	assert_null(vd_host_mem_new("toobig", 5ull << 30));
}

static void test_memhost_faults_null_for_files(void **state)
{
	char path[] = "/tmp/vdisk-unit-XXXXXX";
	struct vd_error err = { 0 };
	struct vd_host *h = NULL;
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	assert_ok(vd_host_open_file(&h, path, VD_HOST_RDWR, &err), &err);
	assert_null(vd_host_mem_faults(h));
	assert_null(vd_host_mem_data(h, NULL));
	vd_host_close(h);
	unlink(path);
}

/* ---- bounds ---- */

static void check_oob(struct vd_image *img)
{
	uint64_t size = vd_size(img);
	struct vd_error err;
	struct vd_extent ext;
	uint8_t buf[1024];
	int r;

#define EXPECT_EINVAL(call)                                                        \
	do {                                                                       \
		memset(&err, 0, sizeof(err));                                      \
		r = (call);                                                        \
		if (r != -EINVAL)                                                  \
			fail_msg("%s returned %d, expected -EINVAL", #call, r);    \
		assert_int_equal(err.code, -EINVAL);                               \
		assert_msg_has(&err, vd_path(img));                                \
		assert_msg_has(&err, "beyond the end");                            \
	} while (0)

	EXPECT_EINVAL(vd_read(img, size - 511, buf, 512, &err));
	EXPECT_EINVAL(vd_read(img, size, buf, 1, &err));
	EXPECT_EINVAL(vd_read(img, size + 512, buf, 0, &err));
	EXPECT_EINVAL(vd_read(img, UINT64_MAX - 10, buf, 20, &err));
	EXPECT_EINVAL(vd_read(img, UINT64_MAX - 511, buf, 512, &err));
	EXPECT_EINVAL(vd_read(img, 512, buf, SIZE_MAX, &err));
	EXPECT_EINVAL(vd_write(img, size - 100, buf, 200, &err));
	EXPECT_EINVAL(vd_write(img, UINT64_MAX, buf, 1, &err));
	EXPECT_EINVAL(vd_write(img, 1, buf, SIZE_MAX, &err));
	EXPECT_EINVAL(vd_write_zeroes(img, 512, UINT64_MAX, 0, &err));
	EXPECT_EINVAL(vd_write_zeroes(img, UINT64_MAX - 511, 1024, 0, &err));
	EXPECT_EINVAL(vd_write_zeroes(img, size, 1, VD_ZERO_MAY_UNMAP, &err));
	EXPECT_EINVAL(vd_discard(img, size - 512, 1024, &err));
	EXPECT_EINVAL(vd_discard(img, UINT64_MAX - 511, 1024, &err));
	EXPECT_EINVAL(vd_block_status(img, size, 1, &ext, &err));
	EXPECT_EINVAL(vd_block_status(img, 0, size + 1, &ext, &err));
	EXPECT_EINVAL(vd_block_status(img, 1, UINT64_MAX, &ext, &err));
#undef EXPECT_EINVAL

	/* empty block-status range: rejected too */
	memset(&err, 0, sizeof(err));
	assert_int_equal(vd_block_status(img, 0, 0, &ext, &err), -EINVAL);
	assert_msg_has(&err, "empty");

	/* the edges themselves are fine */
	memset(&err, 0, sizeof(err));
	assert_ok(vd_read(img, size, buf, 0, &err), &err);
	assert_ok(vd_read(img, size - 512, buf, 512, &err), &err);
	assert_ok(vd_write(img, size, buf, 0, &err), &err);
	assert_ok(vd_write_zeroes(img, size, 0, 0, &err), &err);
	assert_ok(vd_block_status(img, size - 1, 1, &ext, &err), &err);
	assert_int_equal(ext.start, size - 1);
	assert_int_equal(ext.length, 1);
}

static void test_oob_raw(void **state)
{
	struct vd_image *img = open_raw("oob.raw", 1 * MiB, VD_OPEN_RDWR);
	struct vd_error err = { 0 };
	uint8_t buf[200];

	(void)state;
	fill_pattern(buf, sizeof(buf), 1);
	assert_ok(vd_write(img, MiB - 100, buf, 100, &err), &err);
	check_oob(img);
	/* the rejected straddling write did not write its in-bounds part */
	{
		uint8_t got[100];
		assert_ok(vd_read(img, MiB - 100, got, 100, &err), &err);
		assert_same(got, buf, 100, "tail after rejected write");
	}
	/* nor did the host grow */
	{
		uint64_t n;
		vd_host_mem_data(img->host, &n);
		assert_int_equal(n, MiB);
	}
	assert_ok(vd_close(img, &err), &err);
}

static void test_oob_vdi(void **state)
{
	struct vd_image *img = open_vdi("oob.vdi", 3 * MiB, NULL, VD_OPEN_RDWR);
	struct vd_error err = { 0 };

	(void)state;
	check_oob(img);
	/* nothing was allocated by the rejected requests */
	assert_int_equal(host_le32(img, 388), 0);
	assert_ok(vd_close(img, &err), &err);
}

/* ---- read-only ---- */

static void check_rofs(struct vd_image *img)
{
	struct vd_error err;
	struct vd_check chk = { 0 };
	uint8_t buf[1024] = { 1 };
	int r;

#define EXPECT_EROFS(call)                                                         \
	do {                                                                       \
		memset(&err, 0, sizeof(err));                                      \
		r = (call);                                                        \
		if (r != -EROFS)                                                   \
			fail_msg("%s returned %d, expected -EROFS", #call, r);     \
		assert_int_equal(err.code, -EROFS);                                \
		assert_msg_has(&err, vd_path(img));                                \
		assert_msg_has(&err, "read-only");                                 \
	} while (0)

	EXPECT_EROFS(vd_write(img, 0, buf, 512, &err));
	EXPECT_EROFS(vd_write(img, 3, buf, 10, &err));
	EXPECT_EROFS(vd_write(img, 0, buf, 0, &err));
	EXPECT_EROFS(vd_write_zeroes(img, 0, 512, 0, &err));
	EXPECT_EROFS(vd_write_zeroes(img, 0, 512, VD_ZERO_MAY_UNMAP, &err));
	EXPECT_EROFS(vd_discard(img, 0, 4096, &err));
#undef EXPECT_EROFS
	memset(&err, 0, sizeof(err));
	r = vd_check(img, true, &chk, &err);
	assert_int_equal(r, -EROFS);
	assert_msg_has(&err, "read-write");
	/* reads and flush still work */
	memset(&err, 0, sizeof(err));
	assert_ok(vd_read(img, 0, buf, sizeof(buf), &err), &err);
	assert_ok(vd_flush(img, &err), &err);
}

static void test_rofs_raw(void **state)
{
	struct vd_error err = { 0 };
	struct vd_image *img = NULL;
	struct vd_host *h = vd_host_mem_new("ro.raw", 64 * KiB);
	uint8_t buf[1024];

	(void)state;
	fill_pattern(vd_host_mem_data(h, NULL), 64 * KiB, 5);
	assert_ok(vd_open_host(&img, h, "raw", 0, &err), &err);
	check_rofs(img);
	assert_ok(vd_read(img, 0, buf, sizeof(buf), &err), &err);
	{
		uint8_t want[1024];
		fill_pattern(want, sizeof(want), 5);
		assert_same(buf, want, sizeof(buf), "read-only image unchanged");
	}
	assert_int_equal(vd_host_mem_faults(img->host)->nwrites, 0);
	assert_ok(vd_close(img, &err), &err);
}

static void test_rofs_vdi(void **state)
{
	struct vd_image *img = open_vdi("ro.vdi", 2 * MiB, NULL, 0);
	struct vd_error err = { 0 };

	(void)state;
	check_rofs(img);
	assert_int_equal(host_le32(img, 388), 0);
	assert_ok(vd_close(img, &err), &err);
}

/* ---- probing ---- */

static void test_probe(void **state)
{
	struct vd_error err = { 0 };
	struct vd_image *img = NULL;

	(void)state;
	assert_ok(vd_open_host(&img, new_vdi_host("p.vdi", MiB, NULL), NULL, 0, &err), &err);
	assert_string_equal(vd_format(img), "vdi");
	assert_int_equal(vd_size(img), MiB);
	vd_close(img, &err);

	assert_ok(vd_open_host(&img, vd_host_mem_new("p.raw", 12345), NULL, 0, &err), &err);
	assert_string_equal(vd_format(img), "raw");
	assert_int_equal(vd_size(img), 12345);
	vd_close(img, &err);

	/* an empty file probes as raw of size 0 */
	assert_ok(vd_open_host(&img, vd_host_mem_new("empty", 0), NULL, 0, &err), &err);
	assert_string_equal(vd_format(img), "raw");
	assert_int_equal(vd_size(img), 0);
	vd_close(img, &err);

	memset(&err, 0, sizeof(err));
	assert_int_equal(vd_open_host(&img, vd_host_mem_new("x", 10), "nosuchformat", 0, &err),
			 -EINVAL);
	assert_null(img);
	assert_msg_has(&err, "nosuchformat");
}

/* ---- alignment, split, read-modify-write ---- */

static void test_raw_random(void **state)
{
	uint64_t size = 10 * MiB + 777;
	struct vd_image *img = open_raw("rnd.raw", size, VD_OPEN_RDWR);
	uint8_t *shadow = calloc(1, size);
	struct vd_error err = { 0 };

	(void)state;
	rng_seed(0x1234);
	random_ops(img, shadow, 150, MiB, 3 * MiB, false);
	assert_image_is(img, shadow, "raw after random ops");
	/* a single request larger than the backend transfer limit */
	{
		uint8_t *big = malloc(9 * MiB + 3);
		fill_random(big, 9 * MiB + 3);
		assert_ok(vd_write(img, 11, big, 9 * MiB + 3, &err), &err);
		memcpy(shadow + 11, big, 9 * MiB + 3);
		assert_same(vd_host_mem_data(img->host, NULL), shadow, size, "raw host bytes");
		assert_ok(vd_read(img, 0, big, 9 * MiB + 3, &err), &err);
		assert_same(big, shadow, 9 * MiB + 3, "raw big read");
		free(big);
	}
	free(shadow);
	assert_ok(vd_close(img, &err), &err);
}

static void test_vdi_unaligned_fixed_cases(void **state)
{
	/* 3 blocks and a partial one */
	uint64_t size = 3 * MiB + 1536;
	struct vd_image *img = open_vdi("ua.vdi", size, NULL, VD_OPEN_RDWR);
	uint8_t *shadow = calloc(1, size);
	struct vd_error err = { 0 };
	static const struct { uint64_t off, len; } cases[] = {
		{ 0, 1 },                 /* first byte */
		{ 511, 2 },               /* crosses a sector */
		{ MiB - 1, 2 },           /* crosses a block */
		{ MiB - 3, 1 },           /* inside one sector before a block */
		{ 2 * MiB - 700, 1400 },  /* unaligned both ends, over a block */
		{ 100, 2 * MiB + 100 },   /* three blocks, unaligned both ends */
		{ 3 * MiB + 1000, 536 },  /* last partial block, up to the end */
		{ 3 * MiB - 5, 1541 },    /* into the partial block, to the end */
		{ 4096, 512 },            /* aligned */
		{ 1000, 24 },             /* inside one sector */
	};

	(void)state;
	assert_int_equal(vd_size(img), size);
	rng_seed(42);
	for (size_t i = 0; i < VD_ARRAY_SIZE(cases); i++) {
		uint8_t *buf = malloc(cases[i].len), *got = malloc(cases[i].len + 2);
		char what[64];

		fill_random(buf, cases[i].len);
		assert_ok(vd_write(img, cases[i].off, buf, cases[i].len, &err), &err);
		memcpy(shadow + cases[i].off, buf, cases[i].len);
		snprintf(what, sizeof(what), "case %zu", i);
		assert_image_is(img, shadow, what);
		/* read back the same odd range (exact length, no overrun) */
		got[cases[i].len] = 0x5a;
		assert_ok(vd_read(img, cases[i].off, got, cases[i].len, &err), &err);
		assert_same(got, buf, cases[i].len, what);
		assert_int_equal(got[cases[i].len], 0x5a);
		free(buf);
		free(got);
	}
	/* one slot per touched block, nothing more */
	assert_ok(vd_flush(img, &err), &err); /* the map reaches the file on flush */
	assert_int_equal(host_le32(img, 388), 4);
	free(shadow);
	assert_ok(vd_close(img, &err), &err);
}

static void test_vdi_random(void **state)
{
	uint64_t size = 5 * MiB - 1536; /* last block partial */
	struct vd_image *img = open_vdi("rnd.vdi", size, NULL, VD_OPEN_RDWR);
	uint8_t *shadow = calloc(1, size);
	struct vd_error err = { 0 };
	struct vd_check chk = { 0 };
	struct vd_image *img2 = NULL;

	(void)state;
	assert_int_equal(img->align, 512);
	assert_int_equal(img->split, MiB);
	rng_seed(0xC0FFEE);
	random_ops(img, shadow, 200, MiB, 5 * MiB / 2, true);

	/* metadata is consistent: check is clean, a fresh open sees the same */
	assert_ok(vd_check(img, false, &chk, &err), &err);
	assert_int_equal(chk.corruptions, 0);
	assert_int_equal(chk.leaks, 0);
	assert_ok(vd_flush(img, &err), &err); /* the map reaches the file on flush */
	assert_ok(vd_open_host(&img2, clone_host(img, "rnd2.vdi"), "vdi", VD_OPEN_RDWR, &err), &err);
	assert_image_is(img2, shadow, "reopened copy");
	vd_close(img2, &err);
	free(shadow);
	assert_ok(vd_close(img, &err), &err);
}

static void test_vdi_short_io(void **state)
{
	uint64_t size = 3 * MiB;
	struct vd_image *img = open_vdi("short.vdi", size, NULL, VD_OPEN_RDWR);
	uint8_t *shadow = calloc(1, size);
	struct vd_mem_faults *f = vd_host_mem_faults(img->host);
	struct vd_error err = { 0 };
	struct vd_image *img2 = NULL;
	unsigned r0;

	(void)state;
	f->short_io = 7;
	rng_seed(7);
	random_ops(img, shadow, 40, MiB, 300 * KiB, false);
	r0 = f->nreads;
	assert_image_is(img, shadow, "short I/O image");
	/* the transfers really were short */
	assert_true(f->nreads - r0 > 1000);
	f->short_io = 0;
	assert_image_is(img, shadow, "short I/O image, normal reads");
	assert_ok(vd_flush(img, &err), &err); /* the map reaches the file on flush */
	assert_ok(vd_open_host(&img2, clone_host(img, "short2.vdi"), "vdi", 0, &err), &err);
	vd_host_mem_faults(img2->host)->short_io = 7;
	assert_image_is(img2, shadow, "short I/O reopened");
	vd_close(img2, &err);
	free(shadow);
	assert_ok(vd_close(img, &err), &err);
}

/* ---- write zeroes ---- */

static void test_vdi_write_zeroes_edges(void **state)
{
	uint64_t size = 4 * MiB;
	struct vd_image *img = open_vdi("wz.vdi", size, NULL, VD_OPEN_RDWR);
	uint8_t *shadow = malloc(size);
	struct vd_error err = { 0 };
	static const struct { uint64_t off, len; unsigned flags; } cases[] = {
		{ MiB - 100, MiB + 300, 0 },               /* both edges unaligned, crosses */
		{ 1000, 10, 0 },                           /* inside one sector */
		{ 2 * MiB + 1, 510, VD_ZERO_MAY_UNMAP },  /* inside one sector, to its end -1 */
		{ 3 * MiB - 511, MiB + 511, VD_ZERO_MAY_UNMAP }, /* to the end of the image */
		{ 512, 1024, VD_ZERO_MAY_UNMAP },          /* aligned */
		{ 5000, 0, 0 },                            /* empty */
	};

	(void)state;
	rng_seed(99);
	fill_random(shadow, size);
	assert_ok(vd_write(img, 0, shadow, size, &err), &err);
	for (size_t i = 0; i < VD_ARRAY_SIZE(cases); i++) {
		char what[64];
		assert_ok(vd_write_zeroes(img, cases[i].off, cases[i].len, cases[i].flags, &err), &err);
		memset(shadow + cases[i].off, 0, cases[i].len);
		snprintf(what, sizeof(what), "write_zeroes case %zu", i);
		assert_image_is(img, shadow, what);
	}
	free(shadow);
	assert_ok(vd_close(img, &err), &err);
}

static void test_vdi_write_zeroes_unallocated(void **state)
{
	uint64_t size = 4 * MiB;
	struct vd_image *img = open_vdi("wz0.vdi", size, NULL, VD_OPEN_RDWR);
	uint8_t *zero = calloc(1, size);
	struct vd_error err = { 0 };
	uint64_t before, after;

	(void)state;
	vd_host_mem_data(img->host, &before);
	/* aligned zeroing of never-written blocks allocates nothing */
	assert_ok(vd_write_zeroes(img, 0, size, 0, &err), &err);
	assert_ok(vd_write_zeroes(img, MiB, 2 * MiB, VD_ZERO_MAY_UNMAP, &err), &err);
	assert_int_equal(host_le32(img, 388), 0);
	vd_host_mem_data(img->host, &after);
	assert_int_equal(before, after);
	/* unaligned zeroing still reads as zeros, and allocates nothing either */
	assert_ok(vd_write_zeroes(img, 3, MiB + 7, 0, &err), &err);
	assert_ok(vd_write_zeroes(img, 2 * MiB + 1, 10, VD_ZERO_MAY_UNMAP, &err), &err);
	assert_image_is(img, zero, "zeroed fresh image");
	assert_int_equal(host_le32(img, 388), 0);
	free(zero);
	assert_ok(vd_close(img, &err), &err);
}

static void test_raw_write_zeroes(void **state)
{
	uint64_t size = 3 * MiB + 5;
	struct vd_image *img = open_raw("wz.raw", size, VD_OPEN_RDWR);
	uint8_t *shadow = malloc(size);
	struct vd_error err = { 0 };

	(void)state;
	rng_seed(5);
	fill_random(shadow, size);
	assert_ok(vd_write(img, 0, shadow, size, &err), &err);
	assert_ok(vd_write_zeroes(img, 3, 2 * MiB + 1, VD_ZERO_MAY_UNMAP, &err), &err);
	memset(shadow + 3, 0, 2 * MiB + 1);
	assert_ok(vd_write_zeroes(img, size - 2, 2, 0, &err), &err);
	memset(shadow + size - 2, 0, 2);
	assert_image_is(img, shadow, "raw after write_zeroes");
	/* discard on raw: contents of the range become old or zero; edges untouched */
	assert_ok(vd_discard(img, MiB * 2 + 100, 4096, &err), &err);
	{
		uint8_t got[4096];
		assert_ok(vd_read(img, MiB * 2 + 100, got, sizeof(got), &err), &err);
		for (size_t i = 0; i < sizeof(got); i++)
			assert_true(got[i] == 0 || got[i] == shadow[MiB * 2 + 100 + i]);
	}
	free(shadow);
	assert_ok(vd_close(img, &err), &err);
}

/* ---- block status ---- */

static void test_block_status_raw(void **state)
{
	struct vd_image *img = open_raw("bs.raw", MiB, VD_OPEN_RDWR);
	struct vd_error err = { 0 };
	struct vd_extent e;

	(void)state;
	/* memory host cannot tell holes: everything is data at its own offset */
	assert_ok(vd_block_status(img, 4096, 10000, &e, &err), &err);
	assert_int_equal(e.start, 4096);
	assert_int_equal(e.length, 10000);
	assert_int_equal(e.flags, VD_BS_DATA | VD_BS_ALLOCATED | VD_BS_OFFSET_VALID);
	assert_int_equal(e.offset, 4096);
	assert_ok(vd_close(img, &err), &err);
}

static void test_block_status_vdi(void **state)
{
	uint64_t size = 6 * MiB;
	struct vd_image *img = open_vdi("bs.vdi", size, NULL, VD_OPEN_RDWR);
	struct vd_error err = { 0 };
	struct vd_extent e;
	uint8_t buf[4096], got[4096];
	uint64_t off_data = host_le32(img, 344);

	(void)state;
	assert_int_equal(off_data % 512, 0);
	/* fresh: one unallocated extent covers everything */
	assert_ok(vd_block_status(img, 0, size, &e, &err), &err);
	assert_int_equal(e.start, 0);
	assert_int_equal(e.length, size);
	assert_int_equal(e.flags, VD_BS_ZERO);
	assert_ok(vd_block_status(img, 1234, size - 1234, &e, &err), &err);
	assert_int_equal(e.start, 1234);
	assert_int_equal(e.length, size - 1234);
	assert_int_equal(e.flags, VD_BS_ZERO);

	/* block 1 -> slot 0, block 2 -> slot 1, block 4 -> slot 2, block 0 -> slot 3 */
	fill_pattern(buf, sizeof(buf), 11);
	assert_ok(vd_write(img, MiB + 8192, buf, sizeof(buf), &err), &err);
	assert_ok(vd_write(img, 2 * MiB, buf, 512, &err), &err);
	assert_ok(vd_write(img, 4 * MiB + 3, buf, 5, &err), &err);
	assert_ok(vd_write(img, 100, buf, 5, &err), &err);
	assert_ok(vd_flush(img, &err), &err); /* the map reaches the file on flush */
	assert_int_equal(host_le32(img, 388), 4);

	assert_ok(vd_block_status(img, 0, size, &e, &err), &err);
	assert_int_equal(e.length, MiB);
	assert_int_equal(e.flags, VD_BS_DATA | VD_BS_ALLOCATED | VD_BS_OFFSET_VALID);
	assert_int_equal(e.offset, off_data + 3 * MiB);

	/* blocks 1 and 2 are in consecutive slots: one extent */
	assert_ok(vd_block_status(img, MiB, size - MiB, &e, &err), &err);
	assert_int_equal(e.length, 2 * MiB);
	assert_int_equal(e.flags, VD_BS_DATA | VD_BS_ALLOCATED | VD_BS_OFFSET_VALID);
	assert_int_equal(e.offset, off_data);

	/* mid-block start: the offset follows */
	assert_ok(vd_block_status(img, MiB + 8192, 100000, &e, &err), &err);
	assert_int_equal(e.start, MiB + 8192);
	assert_int_equal(e.length, 100000);
	assert_int_equal(e.offset, off_data + 8192);
	{
		uint8_t *host = vd_host_mem_data(img->host, NULL);
		assert_same(host + e.offset, buf, sizeof(buf), "data at the reported offset");
		assert_ok(vd_read(img, MiB + 8192, got, sizeof(got), &err), &err);
		assert_same(got, buf, sizeof(got), "read back");
	}

	/* block 3 is unallocated, block 4 data (slot 2), block 5 unallocated */
	assert_ok(vd_block_status(img, 3 * MiB, size - 3 * MiB, &e, &err), &err);
	assert_int_equal(e.length, MiB);
	assert_int_equal(e.flags, VD_BS_ZERO);
	assert_ok(vd_block_status(img, 4 * MiB + 512, size - 4 * MiB - 512, &e, &err), &err);
	assert_int_equal(e.length, MiB - 512);
	assert_int_equal(e.offset, off_data + 2 * MiB + 512);
	assert_ok(vd_block_status(img, 5 * MiB, MiB, &e, &err), &err);
	assert_int_equal(e.length, MiB);
	assert_int_equal(e.flags, VD_BS_ZERO);

	/* walking the extents covers the image exactly */
	{
		uint64_t off = 0, data = 0;
		unsigned n = 0;
		while (off < size) {
			assert_ok(vd_block_status(img, off, size - off, &e, &err), &err);
			assert_int_equal(e.start, off);
			assert_true(e.length > 0 && e.length <= size - off);
			if (e.flags & VD_BS_DATA)
				data += e.length;
			off += e.length;
			n++;
		}
		assert_int_equal(off, size);
		assert_int_equal(data, 4 * MiB);
		assert_int_equal(n, 5); /* [0] [1,2] [3] [4] [5] */
	}
	assert_ok(vd_close(img, &err), &err);
}

/* ---- fault injection ---- */

/*
 * Fail the Nth host write of a block allocation and its flush (1: data,
 * 2: the commit, which writes cBlocksAllocated and the block-map entry in
 * one write).  The error must propagate; afterwards the handle must stay
 * coherent: allocating another block must not alias the failed one, and
 * the file must stay valid.
 */
static void alloc_write_fault(unsigned nth, size_t len)
{
	uint64_t size = 4 * MiB;
	struct vd_image *img = open_vdi("fault.vdi", size, NULL, VD_OPEN_RDWR);
	struct vd_mem_faults *f = vd_host_mem_faults(img->host);
	struct vd_error err = { 0 };
	uint8_t *x = malloc(MiB), *y = malloc(MiB), *got = malloc(MiB);
	struct vd_image *img2 = NULL;
	struct vd_check chk = { 0 };
	int r;

	memset(x, 0x11, MiB);
	memset(y, 0x22, MiB);
	f->fail_write_nth = f->nwrites + nth;
	r = vd_write(img, 0, x, len, &err);
	if (r == 0)
		r = vd_flush(img, &err);
	if (r != -EIO)
		fail_msg("write with write #%u failing returned %d (%s), expected -EIO", nth, r, err.msg);
	assert_int_equal(err.code, -EIO);
	assert_msg_has(&err, "fault.vdi");
	f->fail_write_nth = 0;

	/* block 0 reads as either its old or its new contents */
	assert_ok(vd_read(img, 0, got, len, &err), &err);
	assert_true(vd_is_zero(got, len) || memcmp(got, x, len) == 0);

	/* a new allocation for block 1 must not share block 0's slot */
	assert_ok(vd_write(img, MiB, y, len, &err), &err);
	assert_ok(vd_read(img, MiB, got, len, &err), &err);
	assert_same(got, y, len, "block 1");
	assert_ok(vd_read(img, 0, got, len, &err), &err);
	if (memcmp(got, y, len) == 0)
		fail_msg("write #%u failed: block 0 now reads block 1's data (slot reused while still mapped)",
			 nth);
	assert_true(vd_is_zero(got, len) || memcmp(got, x, len) == 0);

	/* the file on "disk" is valid and holds block 1 */
	assert_ok(vd_flush(img, &err), &err); /* the map reaches the file on flush */
	assert_ok(vd_open_host(&img2, clone_host(img, "fault2.vdi"), "vdi", 0, &err), &err);
	assert_ok(vd_read(img2, MiB, got, len, &err), &err);
	assert_same(got, y, len, "block 1 after reopen");
	assert_ok(vd_check(img2, false, &chk, &err), &err);
	assert_int_equal(chk.corruptions, 0);
	vd_close(img2, &err);

	free(x);
	free(y);
	free(got);
	vd_close(img, &err);
}

static void test_alloc_fault_data(void **state)
{
	(void)state;
	alloc_write_fault(1, 64 * KiB);
	alloc_write_fault(1, MiB);
}

static void test_alloc_fault_bmap(void **state)
{
	(void)state;
	alloc_write_fault(2, 64 * KiB);
}

static void test_alloc_fault_count(void **state)
{
	(void)state;
	alloc_write_fault(2, MiB);
}

/*
 * A data write that fails part-way through a block allocation leaves bytes
 * in the slot; the next allocation that reuses the slot must not expose
 * them ("the rest of the block reads as zeros").
 */
static void test_alloc_partial_fault_no_stale_data(void **state)
{
	struct vd_image *img = open_vdi("stale.vdi", 4 * MiB, NULL, VD_OPEN_RDWR);
	struct vd_mem_faults *f = vd_host_mem_faults(img->host);
	struct vd_error err = { 0 };
	uint8_t x[4096], y[512], got[4096];

	(void)state;
	memset(x, 0x77, sizeof(x));
	memset(y, 0x33, sizeof(y));
	f->short_io = 512;
	f->fail_write_nth = f->nwrites + 3; /* 1024 bytes land, then EIO */
	assert_int_equal(vd_write(img, 0, x, sizeof(x), &err), -EIO);
	assert_msg_has(&err, "stale.vdi");
	f->short_io = 0;
	f->fail_write_nth = 0;

	assert_ok(vd_write(img, MiB + 8192, y, sizeof(y), &err), &err);
	assert_ok(vd_read(img, MiB, got, sizeof(got), &err), &err);
	assert_zero(got, sizeof(got), "unwritten start of a newly allocated block");
	vd_close(img, &err);
}

static void test_enospc(void **state)
{
	struct vd_image *img = open_vdi("full.vdi", 4 * MiB, NULL, VD_OPEN_RDWR);
	struct vd_mem_faults *f = vd_host_mem_faults(img->host);
	struct vd_error err = { 0 };
	uint8_t *buf = malloc(MiB), *got = malloc(MiB);
	uint64_t size0;
	int r;

	(void)state;
	vd_host_mem_data(img->host, &size0);
	f->capacity = size0 + 4096;
	memset(buf, 0x44, MiB);

	/* partial block: the file cannot grow to hold the slot */
	r = vd_write(img, 0, buf, 4096, &err);
	assert_int_equal(r, -ENOSPC);
	assert_int_equal(err.code, -ENOSPC);
	assert_msg_has(&err, "full.vdi");
	assert_msg_has_nocase(&err, "no space");
	/* whole block: the data write runs out */
	memset(&err, 0, sizeof(err));
	r = vd_write(img, MiB, buf, MiB, &err);
	assert_int_equal(r, -ENOSPC);
	assert_msg_has(&err, "full.vdi");
	assert_msg_has(&err, "no space");
	/* nothing got mapped */
	assert_int_equal(host_le32(img, 388), 0);
	assert_ok(vd_read(img, 0, got, MiB, &err), &err);
	assert_zero(got, MiB, "block 0 after ENOSPC");
	assert_ok(vd_read(img, MiB, got, MiB, &err), &err);
	assert_zero(got, MiB, "block 1 after ENOSPC");

	/* with room again, writes work and read back */
	f->capacity = 0;
	assert_ok(vd_write(img, MiB, buf, MiB, &err), &err);
	assert_ok(vd_read(img, MiB, got, MiB, &err), &err);
	assert_same(got, buf, MiB, "block 1 after space freed");
	assert_ok(vd_flush(img, &err), &err); /* the map reaches the file on flush */
	assert_int_equal(host_le32(img, 388), 1);
	vd_close(img, &err);

	/* raw: ENOSPC from the host comes through unchanged */
	img = open_raw("full.raw", MiB, VD_OPEN_RDWR);
	f = vd_host_mem_faults(img->host);
	f->capacity = 512 * KiB;
	memset(&err, 0, sizeof(err));
	assert_int_equal(vd_write(img, 768 * KiB, buf, 100, &err), -ENOSPC);
	assert_msg_has(&err, "full.raw");
	assert_msg_has(&err, "no space");
	vd_close(img, &err);
	free(buf);
	free(got);
}

static void test_read_faults(void **state)
{
	struct vd_image *img = open_vdi("rf.vdi", 4 * MiB, NULL, VD_OPEN_RDWR);
	struct vd_mem_faults *f = vd_host_mem_faults(img->host);
	struct vd_error err = { 0 };
	uint8_t buf[8192], got[8192];
	unsigned r0;

	(void)state;
	fill_pattern(buf, sizeof(buf), 9);
	assert_ok(vd_write(img, 0, buf, sizeof(buf), &err), &err);

	/* aligned read of allocated data */
	f->fail_read_nth = f->nreads + 1;
	memset(&err, 0, sizeof(err));
	assert_int_equal(vd_read(img, 0, got, sizeof(got), &err), -EIO);
	assert_int_equal(err.code, -EIO);
	assert_msg_has(&err, "rf.vdi");
	assert_msg_has(&err, "read");

	/* unaligned read: the head, middle and tail pieces all propagate */
	for (unsigned k = 1; k <= 3; k++) {
		f->fail_read_nth = f->nreads + k;
		memset(&err, 0, sizeof(err));
		assert_int_equal(vd_read(img, 5, got, 5000, &err), -EIO);
		assert_msg_has(&err, "rf.vdi");
	}
	/* the read-modify-write of an unaligned write fails before writing */
	f->fail_read_nth = f->nreads + 1;
	r0 = f->nwrites;
	memset(&err, 0, sizeof(err));
	assert_int_equal(vd_write(img, 3, got, 10, &err), -EIO);
	assert_int_equal(f->nwrites, r0);

	/* unallocated blocks need no host read: a pending fault does not hit them */
	f->fail_read_nth = f->nreads + 1;
	assert_ok(vd_read(img, 2 * MiB, got, sizeof(got), &err), &err);
	assert_zero(got, sizeof(got), "unallocated block");
	f->fail_read_nth = 0;

	assert_ok(vd_read(img, 0, got, sizeof(got), &err), &err);
	assert_same(got, buf, sizeof(got), "read after faults");
	vd_close(img, &err);

	/* faults while opening: header, block map */
	for (unsigned k = 1; k <= 2; k++) {
		struct vd_host *h = new_vdi_host("of.vdi", 4 * MiB, NULL);
		struct vd_image *i2 = NULL;
		vd_host_mem_faults(h)->fail_read_nth = vd_host_mem_faults(h)->nreads + k;
		memset(&err, 0, sizeof(err));
		assert_int_equal(vd_open_host(&i2, h, "vdi", 0, &err), -EIO);
		assert_null(i2);
		assert_msg_has(&err, "of.vdi");
	}
}

static void test_create_write_faults(void **state)
{
	/* every host write of vdi create can fail and reports it */
	(void)state;
	for (unsigned k = 1; k <= 3; k++) {
		struct vd_host *h = vd_host_mem_new("cf.vdi", 0);
		struct vd_error err = { 0 };
		int r;
		vd_host_mem_faults(h)->fail_write_nth = k;
		r = vd_create_on_host(h, "vdi", 4 * MiB, NULL, 0, NULL, &err);
		if (vd_host_mem_faults(h)->nwrites >= k) {
			assert_int_equal(r, -EIO);
			assert_msg_has(&err, "cf.vdi");
		} else {
			assert_int_equal(r, 0);
		}
		vd_host_close(h);
	}
}

/* ---- a fake backend: checks what the layer hands to drivers ---- */

struct fake {
	uint8_t *data;
	unsigned nreads, nwrites, nzeroes, ndiscards;
	uint64_t max_len;
};

static void fake_check(struct vd_image *img, uint64_t off, uint64_t len)
{
	struct fake *f = img->priv;
	if (off % img->align || len % img->align)
		fail_msg("backend got unaligned request %llu+%llu (align %u)",
			 (unsigned long long)off, (unsigned long long)len, img->align);
	if (len == 0 || off + len > img->size)
		fail_msg("backend got bad request %llu+%llu", (unsigned long long)off,
			 (unsigned long long)len);
	if (img->split && off / img->split != (off + len - 1) / img->split)
		fail_msg("backend got request %llu+%llu crossing a %u split", (unsigned long long)off,
			 (unsigned long long)len, img->split);
	if (len > f->max_len)
		f->max_len = len;
}

static int fake_read(struct vd_image *img, uint64_t off, void *buf, size_t len,
		     struct vd_error *err)
{
	struct fake *f = img->priv;
	(void)err;
	fake_check(img, off, len);
	f->nreads++;
	memcpy(buf, f->data + off, len);
	return 0;
}

static int fake_write(struct vd_image *img, uint64_t off, const void *buf, size_t len,
		      struct vd_error *err)
{
	struct fake *f = img->priv;
	(void)err;
	fake_check(img, off, len);
	f->nwrites++;
	memcpy(f->data + off, buf, len);
	return 0;
}

static int fake_write_zeroes(struct vd_image *img, uint64_t off, uint64_t len,
			     unsigned flags, struct vd_error *err)
{
	struct fake *f = img->priv;
	(void)flags;
	fake_check(img, off, len);
	f->nzeroes++;
	/* unsupported, with a message the layer must not leak */
	vd_set_error(err, ENOTSUP, "fake: no write_zeroes");
	return -ENOTSUP;
}

static int fake_discard(struct vd_image *img, uint64_t off, uint64_t len,
			struct vd_error *err)
{
	struct fake *f = img->priv;
	fake_check(img, off, len);
	f->ndiscards++;
	vd_set_error(err, ENOTSUP, "fake: no discard");
	return -ENOTSUP;
}

static int fake_open(struct vd_image *img, struct vd_error *err)
{
	(void)img;
	(void)err;
	return 0;
}

static void fake_close(struct vd_image *img)
{
	struct fake *f = img->priv;
	free(f->data);
	free(f);
}

static const struct vd_driver fake_driver = {
	.name = "fake",
	.open = fake_open,
	.close = fake_close,
	.read = fake_read,
	.write = fake_write,
	.write_zeroes = fake_write_zeroes,
	.discard = fake_discard,
};

static struct vd_image *fake_image(uint64_t size, uint32_t align, uint32_t split)
{
	struct vd_image *img = calloc(1, sizeof(*img));
	struct fake *f = calloc(1, sizeof(*f));

	assert_non_null(img);
	assert_non_null(f);
	f->data = calloc(1, size);
	img->drv = &fake_driver;
	img->host = vd_host_mem_new("fake.img", 0);
	img->priv = f;
	img->size = size;
	img->align = align;
	img->split = split;
	img->flags = VD_OPEN_RDWR;
	img->writable = true;
	return img;
}

static void test_fake_backend_contract(void **state)
{
	uint64_t size = 12 * MiB;
	struct vd_image *img = fake_image(size, 4096, 64 * KiB);
	struct fake *f = img->priv;
	uint8_t *shadow = calloc(1, size);
	struct vd_error err = { 0 };
	struct vd_extent e;

	(void)state;
	rng_seed(0xFA4E);
	random_ops(img, shadow, 150, 64 * KiB, 300 * KiB, false);
	assert_image_is(img, shadow, "fake backend");
	assert_same(f->data, shadow, size, "fake backend storage");
	/* the write_zeroes fallback ran and left no error behind */
	assert_true(f->nzeroes > 0);

	/* no split: requests are still capped at the transfer limit */
	img->split = 0;
	{
		uint8_t *big = malloc(10 * MiB);
		fill_random(big, 10 * MiB);
		f->max_len = 0;
		assert_ok(vd_write(img, MiB, big, 10 * MiB, &err), &err);
		assert_true(f->max_len <= 8 * MiB);
		assert_ok(vd_read(img, MiB, big + 1, 10 * MiB - 4096, &err), &err);
		assert_same(big + 1, f->data + MiB, 10 * MiB - 4096, "big read");
		free(big);
	}
	f->nzeroes = 0;
	memset(&err, 0, sizeof(err));
	assert_ok(vd_write_zeroes(img, 0, size, 0, &err), &err);
	assert_true(f->nzeroes > 0);
	assert_int_equal(err.code, 0);
	assert_string_equal(err.msg, "");
	assert_true(vd_is_zero(f->data, size));

	/* discard: only whole aligned units reach the backend; ENOTSUP is success */
	memset(&err, 0, sizeof(err));
	assert_ok(vd_discard(img, 100, 3 * 4096, &err), &err);
	assert_int_equal(f->ndiscards, 1);
	assert_string_equal(err.msg, "");
	assert_ok(vd_discard(img, 100, 4000, &err), &err);
	assert_int_equal(f->ndiscards, 1);

	/* block-status fallback without a driver callback: all data */
	assert_ok(vd_block_status(img, 4096, 5000, &e, &err), &err);
	assert_int_equal(e.start, 4096);
	assert_int_equal(e.length, 5000);
	assert_int_equal(e.flags, VD_BS_DATA | VD_BS_ALLOCATED);

	/* info falls back to summing the extents */
	{
		struct vd_info info;
		assert_ok(vd_get_info(img, &info, &err), &err);
		assert_int_equal(info.allocated_bytes, size);
		assert_string_equal(info.format, "fake");
	}
	/* check: the format has nothing to check */
	{
		struct vd_check chk = { 0 };
		memset(&err, 0, sizeof(err));
		assert_int_equal(vd_check(img, false, &chk, &err), -ENOTSUP);
		assert_msg_has(&err, "fake");
	}
	free(shadow);
	assert_ok(vd_close(img, &err), &err);
}

static void test_fake_read_only_backend(void **state)
{
	static const struct vd_driver ro_driver = {
		.name = "rofake", .open = fake_open, .close = fake_close, .read = fake_read,
	};
	struct vd_image *img = fake_image(MiB, 512, 0);
	struct vd_error err = { 0 };
	uint8_t buf[512] = { 0 };

	(void)state;
	img->drv = &ro_driver;
	assert_int_equal(vd_write(img, 0, buf, 512, &err), -ENOTSUP);
	assert_msg_has(&err, "rofake");
	memset(&err, 0, sizeof(err));
	assert_int_equal(vd_write_zeroes(img, 0, 512, 0, &err), -ENOTSUP);
	assert_msg_has(&err, "rofake");
	assert_ok(vd_discard(img, 0, 512, &err), &err);
	assert_ok(vd_read(img, 1, buf, 100, &err), &err);
	assert_ok(vd_close(img, &err), &err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_memhost_basic),
		cmocka_unit_test(test_memhost_counters_and_faults),
		cmocka_unit_test(test_memhost_capacity),
		cmocka_unit_test(test_memhost_faults_null_for_files),
		cmocka_unit_test(test_oob_raw),
		cmocka_unit_test(test_oob_vdi),
		cmocka_unit_test(test_rofs_raw),
		cmocka_unit_test(test_rofs_vdi),
		cmocka_unit_test(test_probe),
		cmocka_unit_test(test_raw_random),
		cmocka_unit_test(test_vdi_unaligned_fixed_cases),
		cmocka_unit_test(test_vdi_random),
		cmocka_unit_test(test_vdi_short_io),
		cmocka_unit_test(test_vdi_write_zeroes_edges),
		cmocka_unit_test(test_vdi_write_zeroes_unallocated),
		cmocka_unit_test(test_raw_write_zeroes),
		cmocka_unit_test(test_block_status_raw),
		cmocka_unit_test(test_block_status_vdi),
		cmocka_unit_test(test_alloc_fault_data),
		cmocka_unit_test(test_alloc_fault_bmap),
		cmocka_unit_test(test_alloc_fault_count),
		cmocka_unit_test(test_alloc_partial_fault_no_stale_data),
		cmocka_unit_test(test_enospc),
		cmocka_unit_test(test_read_faults),
		cmocka_unit_test(test_create_write_faults),
		cmocka_unit_test(test_fake_backend_contract),
		cmocka_unit_test(test_fake_read_only_backend),
	};
	return unit_run(tests);
}
