/*
 * Linux swap (SWAPSPACE2): the first page is the header (boot bits, then
 * version, last_page, nr_badpages, UUID and label at 1024), the signature
 * sits in the last 10 bytes of that page.  Everything from the second
 * page to last_page holds only what was swapped out while the system ran,
 * so all of it is free.  A hibernation image (S1SUSPEND, ...) has another
 * signature and is not recognised, so it is never zeroed.
 *
 * SPDX-License-Identifier: MIT
 */
#include "fs.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#define SWAP_SIG "SWAPSPACE2"
#define SWAP_SIG_LEN 10
#define OFF_VERSION 1024
#define OFF_LAST_PAGE 1028
#define OFF_UUID 1036
#define OFF_LABEL 1052

/* Page size: the smallest one whose last 10 bytes hold the signature. */
static uint32_t swap_page(const uint8_t *buf, size_t len)
{
	for (uint32_t ps = 4096; ps <= 65536 && ps <= len; ps <<= 1)
		if (memcmp(buf + ps - SWAP_SIG_LEN, SWAP_SIG, SWAP_SIG_LEN) == 0)
			return ps;
	return 0;
}

static bool swap_probe(const uint8_t *buf, size_t len)
{
	return swap_page(buf, len) != 0;
}

static uint32_t swap32(uint32_t v, bool be)
{
	return be ? __builtin_bswap32(v) : v;
}

static int swap_walk(struct vd_fs_walk *w)
{
	uint8_t buf[65536];
	uint32_t ps, version, last;
	size_t n = (size_t)VD_MIN((uint64_t)sizeof(buf), w->part_len);
	bool be = false;
	int r;

	r = vd_fs_read(w, 0, buf, n, "swap header");
	if (r < 0)
		return r;
	ps = swap_page(buf, n);
	if (!ps)
		return vd_set_error(w->err, EINVAL, "%s: swap signature not found", vd_path(w->img));
	version = le32dec(buf + OFF_VERSION);
	if (version != 1 && __builtin_bswap32(version) == 1)
		be = true; /* written by a big-endian machine */
	version = swap32(version, be);
	last = swap32(le32dec(buf + OFF_LAST_PAGE), be);
	if (version != 1)
		return vd_set_error(w->err, EINVAL, "%s: swap at offset %" PRIu64 ": version %u is not 1",
				    vd_path(w->img), w->part_off, version);
	if (last == 0 || ((uint64_t)last + 1) * ps > w->part_len)
		return vd_set_error(w->err, EINVAL,
				    "%s: swap at offset %" PRIu64 ": last_page %u (page size %u) does not fit the partition (%" PRIu64 " bytes)",
				    vd_path(w->img), w->part_off, last, ps, w->part_len);
	snprintf(w->info->type, sizeof(w->info->type), "swap");
	snprintf(w->info->label, sizeof(w->info->label), "%.16s", (const char *)buf + OFF_LABEL);
	if (!vd_is_zero(buf + OFF_UUID, 16))
		vd_uuid_format(buf + OFF_UUID, w->info->uuid);
	w->info->block_size = ps;
	w->info->total_bytes = ((uint64_t)last + 1) * ps;
	return vd_fs_emit(w, ps, (uint64_t)last * ps);
}

const struct vd_fs_walker vd_fs_swap = {
	.name = "swap",
	.probe = swap_probe,
	.walk = swap_walk,
};
