/* Common includes and assertions for the cmocka unit tests. */
#ifndef VDISK_UNIT_H
#define VDISK_UNIT_H
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "vdisk-int.h"

#define assert_msg_has(e, s)                                                       \
	do {                                                                       \
		if (!strstr((e)->msg, (s)))                                        \
			fail_msg("error message \"%s\" does not contain \"%s\"",   \
				 (e)->msg, (s));                                   \
	} while (0)

#define assert_msg_has_nocase(e, s)                                                \
	do {                                                                       \
		if (!strcasestr((e)->msg, (s)))                                    \
			fail_msg("error message \"%s\" does not contain \"%s\"",   \
				 (e)->msg, (s));                                   \
	} while (0)

/* Successful call, or fail showing the library's message. */
#define assert_ok(call, e)                                                         \
	do {                                                                       \
		int r_ = (call);                                                   \
		if (r_ != 0)                                                       \
			fail_msg("%s returned %d: %s", #call, r_, (e)->msg);       \
	} while (0)

/* Fail with the first differing offset. */
static inline void assert_same(const uint8_t *got, const uint8_t *want, size_t n,
			const char *what)
{
	if (memcmp(got, want, n) == 0)
		return;
	for (size_t i = 0; i < n; i++)
		if (got[i] != want[i])
			fail_msg("%s: first difference at byte %zu: got 0x%02x, expected 0x%02x",
				 what, i, got[i], want[i]);
}

static inline void assert_zero(const uint8_t *p, size_t n, const char *what)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			fail_msg("%s: byte %zu is 0x%02x, expected 0", what, i, p[i]);
}

/* Run TESTS; UNIT_FILTER / UNIT_SKIP are glob patterns of test names to
 * run / skip. */
#define unit_run_setup(tests, setup, teardown)                                   \
	(getenv("UNIT_FILTER") ? cmocka_set_test_filter(getenv("UNIT_FILTER")) : (void)0, \
	 getenv("UNIT_SKIP") ? cmocka_set_skip_filter(getenv("UNIT_SKIP")) : (void)0,   \
	 cmocka_run_group_tests(tests, setup, teardown))
#define unit_run(tests) unit_run_setup(tests, NULL, NULL)

#endif
