/*
 * libFuzzer harness for the chain parsers: the first byte picks
 *   even: a VirtualBox media registry (.vbox / VirtualBox.xml text) given to
 *         vd_registry_find, looking up a fixed UUID and the first uuid=
 *         value in the text;
 *   odd, bit 1 clear: an ESXi vmfsSparse (COWD) delta extent on a memory
 *         host: opened, walked with block status, grains read, whole
 *         grains written into holes and over data, read back;
 *   odd, bit 1 set: an ESXi seSparse delta extent on a memory host:
 *         opened (capacity from the header), walked with block status,
 *         grains read (zero grains must read as zeros).
 * Oracles beyond the sanitizers: extents are contiguous and inside the
 * extent; a written grain reads back; a lookup result is NUL-terminated.
 *
 * SPDX-License-Identifier: MIT
 */
#include "vdisk-int.h"
#include "../../formats/vmdk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                        \
	do {                                                            \
		if (!(c)) {                                             \
			fprintf(stderr, "fuzz_chain: oracle failed: %s\n", #c); \
			abort();                                        \
		}                                                       \
	} while (0)

static void registry(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1), out[4096], u[64] = "";
	const char *p;

	if (!text)
		return;
	memcpy(text, data, size);
	text[size] = 0;
	out[0] = 0;
	if (vd_registry_find(text, "/nonexistent/VM.vbox", "0e3c1b6f-4e1d-4f5a-9b2a-1c2d3e4f5a6b",
			     out, sizeof(out)))
		CHECK(memchr(out, 0, sizeof(out)));
	p = strstr(text, "uuid=\"{");
	if (p && strlen(p + 7) >= 36) {
		memcpy(u, p + 7, 36);
		u[36] = 0;
		if (vd_registry_find(text, "rel.vbox", u, out, sizeof(out)))
			CHECK(memchr(out, 0, sizeof(out)));
	}
	free(text);
}

static void cowd(const uint8_t *data, size_t size)
{
	struct vd_host *h = vd_host_mem_new("/nonexistent/fuzz-delta.vmdk", 0);
	struct vd_error err = { 0 };
	struct vmdk_cowd *c = NULL;
	uint64_t budget = 64ull << 20, sectors, off = 0, gb, end;
	uint8_t *buf = NULL, *back = NULL;
	unsigned n = 0;

	if (!h)
		abort();
	vd_host_mem_faults(h)->capacity = 64ull << 20;
	if (vd_host_pwrite(h, data, size, 0, &err) < 0)
		goto out;
	sectors = size >= 16 ? le32dec(data + 12) : 1;
	if (sectors == 0)
		sectors = 1;
	if (vmdk_cowd_open(&c, h, sectors, &budget, &err) < 0)
		goto out;
	gb = vmdk_cowd_grain_bytes(c);
	end = VD_MIN(sectors * VD_SECTOR, 16ull << 20);
	buf = malloc(gb);
	back = malloc(gb);
	if (!buf || !back)
		abort();
	while (off < end && n++ < 20000) {
		struct vd_extent e = { 0 };
		e.start = off;
		if (vmdk_cowd_status(c, off, end - off, &e, &err) < 0)
			break;
		CHECK(e.length > 0 && e.length <= end - off);
		if (vmdk_cowd_read(c, VD_ALIGN_DOWN(off, gb), buf, gb, &err) < 0)
			break;
		off += e.length;
	}
	/* whole grains: the first, one in the middle, the last */
	for (int k = 0; k < 3; k++) {
		uint64_t at = k == 0 ? 0 : k == 1 ? VD_ALIGN_DOWN(end / 2, gb) : VD_ALIGN_DOWN(end - 1, gb);
		if (at + gb > sectors * VD_SECTOR)
			continue;
		memset(buf, 0xa5 + k, gb);
		if (vmdk_cowd_write(c, at, buf, gb, &err) < 0)
			continue;
		CHECK(vmdk_cowd_read(c, at, back, gb, &err) == 0);
		CHECK(!memcmp(buf, back, gb));
	}
out:
	free(buf);
	free(back);
	vmdk_cowd_close(c);
	vd_host_close(h);
}

static void sesparse(const uint8_t *data, size_t size)
{
	struct vd_host *h = vd_host_mem_new("/nonexistent/fuzz-sesparse.vmdk", 0);
	struct vd_error err = { 0 };
	struct vmdk_se *s = NULL;
	uint64_t budget = 64ull << 20, sectors, off = 0, gb, end;
	uint8_t *buf = NULL;
	unsigned n = 0;

	if (!h)
		abort();
	vd_host_mem_faults(h)->capacity = 64ull << 20;
	if (vd_host_pwrite(h, data, size, 0, &err) < 0)
		goto out;
	sectors = size >= 24 ? le64dec(data + 16) : 1;
	if (sectors == 0 || sectors > (1ull << 40))
		sectors = 1;
	if (vmdk_se_open(&s, h, sectors, &budget, &err) < 0)
		goto out;
	gb = vmdk_se_grain_bytes(s);
	end = VD_MIN(sectors * VD_SECTOR, 64ull << 20);
	buf = malloc(gb);
	if (!buf)
		abort();
	while (off < end && n++ < 20000) {
		struct vd_extent e = { 0 };
		int r;
		if (vmdk_se_status(s, off, end - off, &e, &err) < 0)
			break;
		CHECK(e.length > 0 && e.length <= end - off);
		r = vmdk_se_read(s, VD_ALIGN_DOWN(off, gb), buf, gb, &err);
		if (r < 0)
			break;
		if (e.flags & VD_BS_ZERO)
			CHECK(r == 0 && vd_is_zero(buf, gb));
		if (!e.flags)
			CHECK(r == 1); /* not in this layer */
		off += e.length;
	}
out:
	free(buf);
	vmdk_se_close(s);
	vd_host_close(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if ((data[0] & 3) == 3)
		sesparse(data + 1, size - 1);
	else if (data[0] & 1)
		cowd(data + 1, size - 1);
	else
		registry(data + 1, size - 1);
	return 0;
}
