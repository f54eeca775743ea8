/*
 * The sequential output host (src/core/seqhost.c), written into a regular
 * file opened for plain write(2) so that the bytes it sends can be read
 * back: the first 1 MiB held (rewritten, read back, shrunk) until the image
 * goes past it; gaps and the tail sent as zeros; a write across the held
 * bytes split right; writes behind what was sent, and reads past the held
 * bytes, refused with ESPIPE.
 *
 * SPDX-License-Identifier: MIT
 */
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#define MIB (1u << 20)

struct sink {
	char path[64];
	int fd;
	struct vd_host *h;
};

static void sink_open(struct sink *s)
{
	struct vd_error e = { 0 };

	snprintf(s->path, sizeof(s->path), "/tmp/vdisk-seqhost-XXXXXX");
	s->fd = mkstemp(s->path);
	assert_true(s->fd >= 0);
	assert_ok(vd_host_open_seq(&s->h, s->fd, "the sink", &e), &e);
	assert_true(s->h->sequential);
}

/* What the host sent: the file's bytes. */
static uint8_t *sink_bytes(struct sink *s, size_t *n)
{
	struct stat st;
	uint8_t *b;

	assert_int_equal(fstat(s->fd, &st), 0);
	*n = (size_t)st.st_size;
	b = malloc(*n ? *n : 1);
	assert_non_null(b);
	assert_int_equal(pread(s->fd, b, *n, 0), (ssize_t)*n);
	return b;
}

static void sink_close(struct sink *s)
{
	vd_host_close(s->h);
	close(s->fd);
	unlink(s->path);
}

static void test_held_then_sent(void **state)
{
	struct vd_error e = { 0 };
	struct sink s;
	uint8_t rb[8];
	uint8_t *b;
	size_t n;

	(void)state;
	sink_open(&s);
	assert_ok(vd_host_truncate(s.h, 3 * MIB, &e), &e);
	assert_ok(vd_host_pwrite(s.h, "AAAA", 4, 0, &e), &e);
	assert_ok(vd_host_pwrite(s.h, "BB", 2, 0, &e), &e);   /* rewritten while held */
	assert_ok(vd_host_pread(s.h, rb, 4, 0, &e), &e);
	assert_memory_equal(rb, "BBAA", 4);
	b = sink_bytes(&s, &n);
	assert_int_equal(n, 0);                                /* nothing sent yet */
	free(b);
	/* across the end of the held bytes: split, the first part held */
	assert_ok(vd_host_pwrite(s.h, "0123456789", 10, MIB - 4, &e), &e);
	/* a gap, then data */
	assert_ok(vd_host_pwrite(s.h, "tail", 4, 2 * MIB, &e), &e);
	/* behind what was sent: refused */
	assert_int_equal(vd_host_pwrite(s.h, "x", 1, MIB + 100, &e), -ESPIPE);
	vd_error_clear(&e);
	/* the held bytes stay readable; past them is refused */
	assert_ok(vd_host_pread(s.h, rb, 4, 0, &e), &e);
	assert_memory_equal(rb, "BBAA", 4);
	assert_true(vd_host_pread(s.h, rb, 4, 2 * MIB, &e) < 0);
	vd_error_clear(&e);
	assert_ok(vd_host_seq_finish(s.h, &e), &e);
	b = sink_bytes(&s, &n);
	assert_int_equal(n, 3 * MIB);
	assert_memory_equal(b, "BBAA", 4);
	for (size_t i = 4; i < MIB - 4; i++)
		if (b[i])
			fail_msg("byte %zu is %u, not zero", i, b[i]);
	assert_memory_equal(b + MIB - 4, "0123456789", 10);
	for (size_t i = MIB + 6; i < 2 * MIB; i++)
		if (b[i])
			fail_msg("byte %zu is %u, not zero", i, b[i]);
	assert_memory_equal(b + 2 * MIB, "tail", 4);
	for (size_t i = 2 * MIB + 4; i < n; i++)
		if (b[i])
			fail_msg("byte %zu is %u, not zero", i, b[i]);
	free(b);
	sink_close(&s);
}

static void test_small_image(void **state)
{
	struct vd_error e = { 0 };
	struct sink s;
	uint8_t *b;
	size_t n;

	(void)state;
	sink_open(&s);
	assert_ok(vd_host_pwrite(s.h, "header--", 8, 0, &e), &e);
	assert_ok(vd_host_pwrite(s.h, "later", 5, 5000, &e), &e);
	assert_ok(vd_host_truncate(s.h, 4096, &e), &e);        /* shrunk while held */
	assert_ok(vd_host_seq_finish(s.h, &e), &e);
	b = sink_bytes(&s, &n);
	assert_int_equal(n, 4096);
	assert_memory_equal(b, "header--", 8);
	free(b);
	sink_close(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_held_then_sent),
		cmocka_unit_test(test_small_image),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
