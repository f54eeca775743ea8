/*
 * libFuzzer harness: open arbitrary bytes as a disk image (probed, and as
 * VDI explicitly) on a memory host and drive the whole API over it: info,
 * block status walk, reads, check, writes with read-back, repair.
 *
 * Oracles beyond the sanitizers (abort on violation):
 *   - block status extents are contiguous, non-empty and inside the image;
 *   - in-bounds reads of an image that opened without VD_OPEN_CHECK succeed
 *     (the open validated every block map entry against the file size);
 *   - data written with vd_write reads back identically;
 *   - after a successful repair that left no corruptions, a second check
 *     finds no corruptions, and writes made afterwards keep it that way.
 *
 * Build and run: see tests/fuzz/README.md.
 *
 * SPDX-License-Identifier: MIT
 */
#include "vdisk-int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_EXTENTS 100000u
#define READ_CAP (16ull << 20)   /* never touch guest data past this */
#define EDGE 65536u              /* first/last bytes read */
#define HOST_CAP (64ull << 20)   /* memory host refuses to grow past this */

#define FUZZ_ASSERT(cond, ...)                                            \
	do {                                                              \
		if (!(cond)) {                                            \
			fprintf(stderr, "fuzz_image: oracle failed: %s: ", #cond); \
			fprintf(stderr, __VA_ARGS__);                     \
			fprintf(stderr, "\n");                            \
			abort();                                          \
		}                                                         \
	} while (0)

static int verbose = -1;
/* FUZZ_STRICT=1 also enables the oracles that known, reported bugs trip
 * (see README.md): repair of an image that opened strictly never fails with
 * EIO, and writes after repairing a fixed image. */
static int strict = -1;

static void note_cb(void *ctx, int kind, const char *msg)
{
	(void)ctx;
	if (verbose > 0)
		fprintf(stderr, "  check note %d: %s\n", kind, msg);
}

static struct vd_host *make_host(const uint8_t *data, size_t size)
{
	struct vd_error err = { 0 };
	struct vd_host *h = vd_host_mem_new("/nonexistent-vdisk-fuzz/fuzz.img", 0);
	struct vd_mem_faults *f;

	if (!h)
		abort();
	if (size && vd_host_pwrite(h, data, size, 0, &err) < 0)
		abort();
	f = vd_host_mem_faults(h);
	if (f)
		f->capacity = HOST_CAP; /* bounded memory: writes past fail ENOSPC */
	return h;
}

static void say(const char *what, const struct vd_error *err)
{
	if (verbose > 0)
		fprintf(stderr, "  %s: %d %s\n", what, err->code, err->msg);
}

static void walk(struct vd_image *img, uint8_t *buf, size_t buflen, bool strict_reads)
{
	struct vd_error err = { 0 };
	uint64_t size = vd_size(img), off = 0;
	unsigned n = 0, nread = 0;

	while (off < size && n < MAX_EXTENTS) {
		struct vd_extent e;
		vd_error_clear(&err);
		if (vd_block_status(img, off, size - off, &e, &err) < 0) {
			say("block_status", &err);
			break;
		}
		FUZZ_ASSERT(e.start == off && e.length > 0 && e.length <= size - off,
			    "extent %llu+%llu at %llu (size %llu)",
			    (unsigned long long)e.start, (unsigned long long)e.length,
			    (unsigned long long)off, (unsigned long long)size);
		if (nread < 8 && off < READ_CAP) {
			size_t len = (size_t)VD_MIN(e.length, (uint64_t)buflen);
			vd_error_clear(&err);
			if (vd_read(img, off, buf, len, &err) < 0) {
				say("extent read", &err);
				FUZZ_ASSERT(!strict_reads, "read of %zu bytes at %llu failed: %s", len,
					    (unsigned long long)off, err.msg);
			}
			else if ((e.flags & VD_BS_ZERO) && !(e.flags & VD_BS_DATA))
				FUZZ_ASSERT(vd_is_zero(buf, len), "zero extent at %llu reads non-zero",
					    (unsigned long long)off);
			/* an unaligned read inside the extent */
			if (len > 3) {
				vd_error_clear(&err);
				(void)vd_read(img, off + 1, buf, len - 3, &err);
			}
			nread++;
		}
		off += e.length;
		n++;
	}
}

static void read_edges(struct vd_image *img, uint8_t *buf, bool strict_reads)
{
	struct vd_error err = { 0 };
	uint64_t size = vd_size(img);
	size_t n = (size_t)VD_MIN(size, (uint64_t)EDGE);

	if (vd_read(img, 0, buf, n, &err) < 0) {
		say("read head", &err);
		FUZZ_ASSERT(!strict_reads, "read head failed: %s", err.msg);
	}
	if (size <= READ_CAP) {
		vd_error_clear(&err);
		if (vd_read(img, size - n, buf, n, &err) < 0) {
			say("read tail", &err);
			FUZZ_ASSERT(!strict_reads, "read tail failed: %s", err.msg);
		}
	}
	/* out of bounds requests must fail cleanly */
	vd_error_clear(&err);
	FUZZ_ASSERT(vd_read(img, size, buf, 1, &err) < 0, "read past end succeeded");
}

static int check(struct vd_image *img, bool repair, struct vd_check *res)
{
	struct vd_error err = { 0 };
	int r;

	memset(res, 0, sizeof(*res));
	res->note = note_cb;
	r = vd_check(img, repair, res, &err);
	if (r < 0)
		say(repair ? "check -r" : "check", &err);
	return r;
}

static void read_only(const uint8_t *data, size_t size, const char *format, unsigned flags)
{
	struct vd_error err = { 0 };
	struct vd_image *img;
	struct vd_info info;
	struct vd_check res;
	static uint8_t buf[EDGE];

	if (vd_open_host(&img, make_host(data, size), format, flags, &err) < 0) {
		say("open", &err);
		return;
	}
	if (vd_get_info(img, &info, &err) < 0)
		say("info", &err);
	/* check must find whatever read trips over: reads of an image that
	 * opened strictly and that check calls clean must succeed (a
	 * compressed VMDK grain is only inflated when read or checked) */
	{
		bool clean = check(img, false, &res) == 0 && res.corruptions == 0;
		walk(img, buf, sizeof(buf), !(flags & VD_OPEN_CHECK) && clean);
		read_edges(img, buf, !(flags & VD_OPEN_CHECK) && clean);
	}
	vd_close(img, &err);
}

/* Write a small pattern at OFF (clipped to the image) and read it back. */
struct written {
	uint64_t off;
	size_t len;
	uint8_t seed;
	bool ok;   /* a failed write may still have changed part of its range */
	bool zero; /* written with zeros: reads back as zeros */
};

static bool write_one(struct vd_image *img, uint64_t off, size_t len, uint8_t seed,
		      struct written *w)
{
	struct vd_error err = { 0 };
	uint64_t size = vd_size(img);
	uint8_t buf[1536];

	if (off >= size)
		return false;
	len = (size_t)VD_MIN((uint64_t)len, size - off);
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(seed + i * 7) | 1; /* never all zero */
	w->off = off;
	w->len = len;
	w->seed = seed;
	w->zero = false;
	w->ok = vd_write(img, off, buf, len, &err) == 0;
	if (!w->ok)
		say("write", &err);
	return true;
}

static void verify(struct vd_image *img, const struct written *w, unsigned n)
{
	struct vd_error err = { 0 };
	static uint8_t buf[1 << 16];

	for (unsigned i = 0; i < n; i++) {
		/* a later write (even a failed one) may overlap an earlier one:
		 * check bytes no later write covers */
		if (!w[i].ok)
			continue;
		vd_error_clear(&err);
		if (vd_read(img, w[i].off, buf, w[i].len, &err) < 0) {
			/* a stream being written refuses reads (EACCES) rather
			 * than return what is not there yet */
			if (err.code == -EACCES)
				return;
			FUZZ_ASSERT(0, "reading back %zu bytes at %llu failed: %s", w[i].len,
				    (unsigned long long)w[i].off, err.msg);
		}
		for (size_t k = 0; k < w[i].len; k++) {
			uint64_t pos = w[i].off + k;
			bool over = false;
			for (unsigned j = i + 1; j < n; j++)
				if (pos >= w[j].off && pos < w[j].off + w[j].len)
					over = true;
			if (over)
				continue;
			FUZZ_ASSERT(buf[k] == (w[i].zero ? 0 : ((uint8_t)(w[i].seed + k * 7) | 1)),
				    "write %u: byte at %llu reads 0x%02x", i,
				    (unsigned long long)pos, buf[k]);
		}
	}
}

/* Zeros through every path: write_zeroes (unaligned, may unmap), a zero
 * buffer over a whole block and over part of a block, and a discard. */
static void zero_ops(struct vd_image *img, struct written *w, unsigned *nw)
{
	struct vd_error err = { 0 };
	struct vd_info info;
	uint64_t size = vd_size(img), off, len;
	static const uint8_t zeros[1 << 16];

	if (vd_get_info(img, &info, &err) < 0)
		return;
	/* vd_write_zeroes over part of the first write and beyond */
	off = VD_MIN(size, (uint64_t)100);
	len = VD_MIN(size - off, (uint64_t)3000);
	w[*nw] = (struct written){ .off = off, .len = (size_t)len, .zero = true };
	vd_error_clear(&err);
	w[*nw].ok = vd_write_zeroes(img, off, len, VD_ZERO_MAY_UNMAP, &err) == 0;
	(*nw)++;
	/* a zero buffer over the whole block holding the middle write */
	if (info.block_size && info.block_size <= sizeof(zeros)) {
		off = VD_ALIGN_DOWN(size / 2, info.block_size);
		len = VD_MIN(size - off, (uint64_t)info.block_size);
		w[*nw] = (struct written){ .off = off, .len = (size_t)len, .zero = true };
		vd_error_clear(&err);
		w[*nw].ok = vd_write(img, off, zeros, (size_t)len, &err) == 0;
		(*nw)++;
	}
	/* part of a block */
	if (size > 1024) {
		w[*nw] = (struct written){ .off = size - 1000, .len = 600, .zero = true };
		vd_error_clear(&err);
		w[*nw].ok = vd_write(img, size - 1000, zeros, 600, &err) == 0;
		(*nw)++;
	}
	/* discard: contents undefined afterwards, so mask the range */
	off = size / 4;
	len = VD_MIN(size - off, (uint64_t)8192);
	w[*nw] = (struct written){ .off = off, .len = (size_t)len, .ok = false };
	vd_error_clear(&err);
	(void)vd_discard(img, off, len, &err);
	(*nw)++;
	vd_error_clear(&err);
	(void)vd_flush(img, &err);
}

static void read_write(const uint8_t *data, size_t size, const char *format)
{
	struct vd_error err = { 0 };
	struct vd_image *img;
	struct vd_check res;
	struct written w[24];
	unsigned nw = 0;
	uint64_t vsize;
	bool clean = false, promise;
	int r;

	if (vd_open_host(&img, make_host(data, size), format, VD_OPEN_RDWR, &err) < 0) {
		say("open rw", &err);
		return;
	}
	vsize = vd_size(img);
	/* cross-linked grains or blocks (check reports them) let a write
	 * through one entry change another: read-back is only promised on an
	 * image check calls clean */
	promise = check(img, false, &res) == 0 && res.corruptions == 0;
	{
		const uint64_t offs[] = { 0, vsize / 2, vsize >= 512 ? vsize - 512 : 0,
					  vsize / 2 + 1000, 4096 };
		const size_t lens[] = { 512, 1024, 512, 700, 4 };
		for (unsigned i = 0; i < VD_ARRAY_SIZE(offs); i++)
			if (offs[i] < READ_CAP || i == 2)
				if (write_one(img, offs[i], lens[i], (uint8_t)(i * 31 + 1), &w[nw]))
					nw++;
	}
	if (promise)
		verify(img, w, nw);
	zero_ops(img, w, &nw);
	if (promise)
		verify(img, w, nw);
	r = check(img, true, &res);
	/* the strict open validated the map: repair has no reason to hit EOF */
	FUZZ_ASSERT(!(strict && r == -EIO), "repair failed with EIO");
	if (r == 0 && res.corruptions == 0)
		clean = true;
	if (clean) {
		struct vd_info info;
		r = check(img, false, &res);
		FUZZ_ASSERT(r == 0 && res.corruptions == 0,
			    "check after a clean repair: r=%d, %u corruptions", r, res.corruptions);
		verify(img, w, nw);
		/* Known bug: repairing a fixed image with an unused slot sets
		 * cBlocksAllocated below the highest used slot, and the next
		 * allocation overwrites another block. */
		if (!strict && (vd_get_info(img, &info, &err) < 0 ||
				!strcmp(info.subformat, "fixed")))
			goto out;
		/* more writes after repair, then the image must still be clean */
		{
			const uint64_t offs[] = { vsize / 3, vsize / 4 + 512, 1 << 16 };
			for (unsigned i = 0; i < VD_ARRAY_SIZE(offs); i++)
				if (offs[i] < READ_CAP && nw < VD_ARRAY_SIZE(w))
					if (write_one(img, offs[i], 512, (uint8_t)(i * 17 + 5), &w[nw]))
						nw++;
		}
		verify(img, w, nw);
		r = check(img, false, &res);
		FUZZ_ASSERT(r == 0 && res.corruptions == 0,
			    "check after repair + writes: r=%d, %u corruptions", r, res.corruptions);
	}
out:
	vd_close(img, &err);
}

/* What "vdisk check -r" does: lenient open, repair, check again. */
static void check_repair(const uint8_t *data, size_t size)
{
	struct vd_error err = { 0 };
	struct vd_image *img;
	struct vd_check res;
	int r;

	if (vd_open_host(&img, make_host(data, size), NULL, VD_OPEN_RDWR | VD_OPEN_CHECK, &err) < 0)
		return;
	r = check(img, true, &res);
	if (r == 0 && res.corruptions == 0) {
		r = check(img, false, &res);
		FUZZ_ASSERT(r == 0 && res.corruptions == 0,
			    "lenient: check after a clean repair: r=%d, %u corruptions", r,
			    res.corruptions);
	}
	vd_close(img, &err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (verbose < 0) {
		verbose = getenv("FUZZ_VERBOSE") != NULL;
		strict = getenv("FUZZ_STRICT") != NULL;
	}
	read_only(data, size, NULL, 0);
	read_only(data, size, "vdi", 0);
	read_only(data, size, "vdi", VD_OPEN_CHECK);
	read_write(data, size, NULL);
	check_repair(data, size);
	return 0;
}
