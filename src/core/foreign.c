/*
 * Foreign formats: image and container formats vdisk has no backend for,
 * recognised by their magic so that a probed open refuses them instead of
 * reading the container bytes as a raw disk (vdisk info said "raw" for a
 * qcow2 file and convert copied its metadata as the guest disk).
 *
 * This is its own table, not a set of backends, because none of these can
 * be read: all a probe learns is a name for the refusal.  When one of these
 * formats gets a real backend in formats/, its driver's probe scores above
 * raw and this check is never reached for it; drop its row here then.
 *
 * Only the top-level probe consults it, and only when no backend scored
 * above raw; "-f raw" (an explicit format) never gets here, so any file can
 * still be copied byte for byte.
 *
 * Sources of the magic numbers: the qcow/qcow2 and QED specifications in
 * QEMU's docs/interop, Microsoft's VHD and VHDX specifications, QEMU's
 * parallels and vmdk drivers (COWD: the ESX vmfsSparse delta header;
 * seSparse: the little-endian u64 0xcafebabe constant header), the LUKS1
 * and LUKS2 on-disk format documents, and the xz, gzip (RFC 1952), zstd
 * (RFC 8878) and bzip2 stream headers.
 *
 * SPDX-License-Identifier: MIT
 */
#include "vdisk-int.h"

#include <errno.h>

/* Where a magic is looked for. */
enum where {
	AT_START,   /* offset 0 */
	AT_END_512, /* the last 512 bytes (VHD footer) */
	AT_END_511, /* the last 511 bytes (footer of old Virtual PC images) */
};

struct foreign_magic {
	enum where where;
	uint8_t len;
	const char *magic;
	const char *name;
	bool compressed;
	/* NULL: the magic alone decides.  Else the name for the bytes at the
	 * magic's position (AVAIL of them), or NULL for "not this format". */
	const char *(*refine)(const uint8_t *p, size_t avail);
};

static uint32_t be32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* qcow and qcow2 share the magic; the big-endian version at offset 4
 * tells them apart (1: qcow, 2 and 3: qcow2).  A file too short for the
 * version is still refused. */
static const char *qcow_name(const uint8_t *p, size_t avail)
{
	return avail >= 8 && be32(p + 4) == 1 ? "qcow" : "qcow2";
}

/* "BZh" is also plain text: require the block size digit and the magic of
 * the first block (pi) or of the end of an empty stream (sqrt(pi)). */
static const char *bzip2_name(const uint8_t *p, size_t avail)
{
	static const uint8_t block[6] = { 0x31, 0x41, 0x59, 0x26, 0x53, 0x59 };
	static const uint8_t eos[6] = { 0x17, 0x72, 0x45, 0x38, 0x50, 0x90 };

	if (avail < 10 || p[3] < '1' || p[3] > '9')
		return NULL;
	if (memcmp(p + 4, block, 6) && memcmp(p + 4, eos, 6))
		return NULL;
	return "bzip2";
}

static const struct foreign_magic magics[] = {
	{ AT_START, 4, "QFI\xfb", "qcow2", false, qcow_name },
	{ AT_START, 4, "QED\0", "QED", false, NULL },
	{ AT_START, 8, "conectix", "VHD", false, NULL }, /* dynamic, differencing */
	{ AT_END_512, 8, "conectix", "VHD", false, NULL }, /* fixed */
	{ AT_END_511, 8, "conectix", "VHD", false, NULL },
	{ AT_START, 8, "vhdxfile", "VHDX", false, NULL },
	{ AT_START, 16, "WithoutFreeSpace", "Parallels", false, NULL },
	{ AT_START, 16, "WithouFreSpacExt", "Parallels", false, NULL },
	{ AT_START, 4, "COWD", "VMDK vmfsSparse (COWD)", false, NULL },
	{ AT_START, 8, "\xbe\xba\xfe\xca\0\0\0\0", "VMDK seSparse", false, NULL },
	{ AT_START, 6, "LUKS\xba\xbe", "LUKS", false, NULL },
	{ AT_START, 6, "\xfd" "7zXZ\0", "xz", true, NULL },
	{ AT_START, 3, "\x1f\x8b\x08", "gzip", true, NULL },
	{ AT_START, 4, "\x28\xb5\x2f\xfd", "zstd", true, NULL },
	{ AT_START, 3, "BZh", "bzip2", true, bzip2_name },
};

const char *vd_foreign_probe(const uint8_t *head, size_t hlen, const uint8_t *tail,
			     size_t tlen, bool *compressed)
{
	for (size_t i = 0; i < VD_ARRAY_SIZE(magics); i++) {
		const struct foreign_magic *m = &magics[i];
		const uint8_t *p;
		size_t avail;
		const char *name;

		switch (m->where) {
		case AT_START:
			p = head;
			avail = hlen;
			break;
		case AT_END_512:
		case AT_END_511:
			avail = m->where == AT_END_512 ? 512 : 511;
			if (!tail || tlen < avail)
				continue;
			p = tail + (tlen - avail);
			break;
		default:
			continue;
		}
		if (!p || avail < m->len || memcmp(p, m->magic, m->len))
			continue;
		name = m->refine ? m->refine(p, avail) : m->name;
		if (!name)
			continue;
		if (compressed)
			*compressed = m->compressed;
		return name;
	}
	return NULL;
}

int vd_foreign_refuse(const char *path, const uint8_t *head, size_t hlen,
		      const uint8_t *tail, size_t tlen, struct vd_error *err)
{
	bool compressed = false;
	const char *name = vd_foreign_probe(head, hlen, tail, tlen, &compressed);

	if (!name)
		return 0;
	if (compressed)
		return vd_set_error(err, EMEDIUMTYPE,
				    "%s is %s-compressed; only vdisk convert, compare and create --part read %s-compressed images, as a raw disk front to back "
				    "(decompress it first, or use -f raw to copy its bytes as a raw disk)",
				    path, name, name);
	/* ESXi delta extents are read through the descriptor naming them */
	if (!strncmp(name, "VMDK ", 5))
		return vd_set_error(err, EMEDIUMTYPE,
				    "%s is a %s delta extent; vdisk reads it through the descriptor (.vmdk) that names it "
				    "(use -f raw to copy its bytes as a raw disk)",
				    path, name);
	return vd_set_error(err, EMEDIUMTYPE,
			    "%s is a %s image; vdisk does not read %s "
			    "(use -f raw to copy its bytes as a raw disk)",
			    path, name, name);
}
