/*
 * Partition tables for reading: the MBR (through vd_mbr_read) or, behind a
 * protective or hybrid MBR, the GPT (UEFI specification, chapter 5): the
 * primary header at LBA 1, else the backup, each with its entry array,
 * every field validated before use; partitions that share sectors are
 * listed (vd_ptable_read_overlaps) or refused (vd_ptable_read).  Read
 * only; vdisk writes MBRs alone.
 *
 * SPDX-License-Identifier: MIT
 */
#include "../core/ops.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <zlib.h>

/* GPT header fields (offsets in the header sector) */
#define H_SIG 0
#define H_REV 8
#define H_SIZE 12
#define H_CRC 16
#define H_MY_LBA 24
#define H_ALT_LBA 32
#define H_FIRST 40
#define H_LAST 48
#define H_GUID 56
#define H_ENTRIES_LBA 72
#define H_NENTRIES 80
#define H_ENTRY_SIZE 84
#define H_ENTRIES_CRC 88
#define H_MIN_SIZE 92

/* entry fields */
#define E_TYPE 0
#define E_UUID 16
#define E_FIRST 32
#define E_LAST 40
#define E_ATTRS 48
#define E_NAME 56
#define E_NAME_UNITS 36
#define E_MIN_SIZE 128

#define MAX_ENTRIES_BYTES (1u << 20)

_Static_assert(E_NAME + 2 * E_NAME_UNITS == E_MIN_SIZE, "GPT entry layout");
_Static_assert(H_ENTRIES_CRC + 4 == H_MIN_SIZE, "GPT header layout");

/* ---- GUIDs and names ---- */

/* First three fields little-endian, the last eight bytes as stored. */
static void guid_format(const uint8_t *g, char out[37])
{
	snprintf(out, 37, "%08" PRIx32 "-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 le32dec(g), (unsigned)le16dec(g + 4), (unsigned)le16dec(g + 6), g[8], g[9],
		 g[10], g[11], g[12], g[13], g[14], g[15]);
}

static size_t utf8_put(uint32_t c, char *o)
{
	if (c < 0x80) {
		o[0] = (char)c;
		return 1;
	}
	if (c < 0x800) {
		o[0] = (char)(0xc0 | (c >> 6));
		o[1] = (char)(0x80 | (c & 0x3f));
		return 2;
	}
	if (c < 0x10000) {
		o[0] = (char)(0xe0 | (c >> 12));
		o[1] = (char)(0x80 | ((c >> 6) & 0x3f));
		o[2] = (char)(0x80 | (c & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | (c >> 18));
	o[1] = (char)(0x80 | ((c >> 12) & 0x3f));
	o[2] = (char)(0x80 | ((c >> 6) & 0x3f));
	o[3] = (char)(0x80 | (c & 0x3f));
	return 4;
}

void vd_gpt_name_decode(const uint8_t *in, unsigned nunits, char *out, size_t outlen)
{
	size_t n = 0;

	if (!outlen)
		return;
	for (unsigned i = 0; i < nunits; i++) {
		uint32_t c = le16dec(in + 2 * i);
		char b[4];
		size_t k;

		if (c == 0)
			break;
		if (c >= 0xd800 && c <= 0xdbff && i + 1 < nunits &&
		    le16dec(in + 2 * i + 2) >= 0xdc00 && le16dec(in + 2 * i + 2) <= 0xdfff) {
			c = 0x10000 + ((c - 0xd800) << 10) + (le16dec(in + 2 * i + 2) - 0xdc00u);
			i++;
		} else if (c >= 0xd800 && c <= 0xdfff) {
			c = 0xfffd;
		}
		k = utf8_put(c, b);
		if (n + k + 1 > outlen)
			break;
		memcpy(out + n, b, k);
		n += k;
	}
	out[n] = '\0';
}

static const struct {
	const char *guid, *name;
} gpt_types[] = {
	{ "c12a7328-f81f-11d2-ba4b-00a0c93ec93b", "EFI System" },
	{ "21686148-6449-6e6f-744e-656564454649", "BIOS boot" },
	{ "0fc63daf-8483-4772-8e79-3d69d8477de4", "Linux filesystem" },
	{ "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f", "Linux swap" },
	{ "e6d6d379-f507-44c2-a23c-238f2a3df928", "Linux LVM" },
	{ "a19d880f-05fc-4d3b-a006-743f0f84911e", "Linux RAID" },
	{ "bc13c2ff-59e6-4262-a352-b275fd6f7172", "Linux extended boot" },
	{ "933ac7e1-2eb4-4f13-b844-0e14e2aef915", "Linux home" },
	{ "4f68bce3-e8cd-4db1-96e7-fbcaf984b709", "Linux root (x86-64)" },
	{ "44479540-f297-41b2-9af7-d131d5f0458a", "Linux root (x86)" },
	{ "b921b045-1df0-41c3-af44-4c6f280d3fae", "Linux root (ARM-64)" },
	{ "ca7d7ccb-63ed-4c53-861c-1742536059cc", "Linux LUKS" },
	{ "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7", "Microsoft basic data" },
	{ "e3c9e316-0b5c-4db8-817d-f92df00215ae", "Microsoft reserved" },
	{ "de94bba4-06d1-4d40-a16a-bfd50179d6ac", "Windows recovery environment" },
	{ "48465300-0000-11aa-aa11-00306543ecac", "Apple HFS/HFS+" },
	{ "516e7cb4-6ecf-11d6-8ff8-00022d09712b", "FreeBSD data" },
};

const char *vd_gpt_type_name(const char *guid)
{
	for (size_t i = 0; i < VD_ARRAY_SIZE(gpt_types); i++)
		if (!strcasecmp(gpt_types[i].guid, guid))
			return gpt_types[i].name;
	return "unknown";
}

/* ---- GPT ---- */

struct hdr {
	uint64_t my_lba, alt_lba, first, last, entries_lba;
	uint32_t nentries, entry_size, entries_crc;
	uint8_t guid[16];
};

/* Header sector S read at LBA: every field checked against the disk. */
static int hdr_check(const uint8_t *s, uint64_t lba, uint64_t disk, struct hdr *h,
		     struct vd_error *err)
{
	uint8_t tmp[512];
	uint32_t rev = le32dec(s + H_REV), size = le32dec(s + H_SIZE), crc, want;
	uint64_t esect;

	if (memcmp(s + H_SIG, "EFI PART", 8))
		return vd_set_error(err, EINVAL, "signature %02x %02x %02x %02x %02x %02x %02x %02x is not \"EFI PART\"",
				    s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]);
	if (rev >> 16 != 1)
		return vd_set_error(err, EINVAL, "revision 0x%08" PRIx32 " is not 1.x (0x0001xxxx)", rev);
	if (size < H_MIN_SIZE || size > 512)
		return vd_set_error(err, EINVAL, "header size %" PRIu32 " is outside %u..512", size, H_MIN_SIZE);
	memcpy(tmp, s, 512);
	memset(tmp + H_CRC, 0, 4);
	crc = le32dec(s + H_CRC);
	want = (uint32_t)crc32(0, tmp, size);
	if (crc != want)
		return vd_set_error(err, EINVAL, "header CRC32 0x%08" PRIx32 " does not match the header (0x%08" PRIx32 ")",
				    crc, want);
	h->my_lba = le64dec(s + H_MY_LBA);
	h->alt_lba = le64dec(s + H_ALT_LBA);
	h->first = le64dec(s + H_FIRST);
	h->last = le64dec(s + H_LAST);
	memcpy(h->guid, s + H_GUID, 16);
	h->entries_lba = le64dec(s + H_ENTRIES_LBA);
	h->nentries = le32dec(s + H_NENTRIES);
	h->entry_size = le32dec(s + H_ENTRY_SIZE);
	h->entries_crc = le32dec(s + H_ENTRIES_CRC);
	if (h->my_lba != lba)
		return vd_set_error(err, EINVAL, "my LBA %" PRIu64 " is not the header's own sector %" PRIu64,
				    h->my_lba, lba);
	if (h->first > h->last || h->last >= disk || h->first < 2)
		return vd_set_error(err, EINVAL, "usable LBAs %" PRIu64 "..%" PRIu64 " are not an ordered range inside 2..%" PRIu64,
				    h->first, h->last, disk - 1);
	if (lba >= h->first && lba <= h->last)
		return vd_set_error(err, EINVAL, "header LBA %" PRIu64 " is inside the usable LBAs %" PRIu64 "..%" PRIu64,
				    lba, h->first, h->last);
	if (h->entry_size < E_MIN_SIZE || !vd_is_pow2(h->entry_size) || h->entry_size > MAX_ENTRIES_BYTES)
		return vd_set_error(err, EINVAL, "partition entry size %" PRIu32 " is not 128 times a power of two",
				    h->entry_size);
	if (h->nentries == 0 || (uint64_t)h->nentries * h->entry_size > MAX_ENTRIES_BYTES)
		return vd_set_error(err, EINVAL, "number of partition entries %" PRIu32 " (of %" PRIu32 " bytes) is not 1..%u",
				    h->nentries, h->entry_size, MAX_ENTRIES_BYTES / h->entry_size);
	esect = ((uint64_t)h->nentries * h->entry_size + 511) / 512;
	if (h->entries_lba < 1 || h->entries_lba >= disk || esect > disk - h->entries_lba)
		return vd_set_error(err, EINVAL, "partition entries at LBA %" PRIu64 " (%" PRIu64 " sectors) are not inside the disk (%" PRIu64 " sectors)",
				    h->entries_lba, esect, disk);
	if ((h->entries_lba <= h->last && h->entries_lba + esect > h->first) ||
	    (lba >= h->entries_lba && lba < h->entries_lba + esect))
		return vd_set_error(err, EINVAL, "partition entries at LBA %" PRIu64 "..%" PRIu64 " overlap the usable LBAs %" PRIu64 "..%" PRIu64 " or the header",
				    h->entries_lba, h->entries_lba + esect - 1, h->first, h->last);
	return 0;
}

/* Entries array E of header H into PT. */
static int entries_parse(const uint8_t *e, const struct hdr *h, struct vd_ptable *pt,
			 struct vd_error *err)
{
	static const uint8_t zero[16];
	uint32_t crc = (uint32_t)crc32(0, e, (uInt)((size_t)h->nentries * h->entry_size));

	if (crc != h->entries_crc)
		return vd_set_error(err, EINVAL, "partition entries CRC32 0x%08" PRIx32 " does not match the entries (0x%08" PRIx32 ")",
				    h->entries_crc, crc);
	pt->nparts = 0;
	for (uint32_t i = 0; i < h->nentries; i++) {
		const uint8_t *x = e + (size_t)i * h->entry_size;
		struct vd_ptable_part *p;
		uint64_t first = le64dec(x + E_FIRST), last = le64dec(x + E_LAST);

		if (!memcmp(x + E_TYPE, zero, 16))
			continue;
		if (pt->nparts == VD_PTABLE_MAX_PARTS)
			return vd_set_error(err, EINVAL, "more than %u partition entries in use", VD_PTABLE_MAX_PARTS);
		if (first > last)
			return vd_set_error(err, EINVAL, "partition %" PRIu32 ": first LBA %" PRIu64 " is after its last LBA %" PRIu64,
					    i + 1, first, last);
		if (first < h->first || last > h->last)
			return vd_set_error(err, EINVAL, "partition %" PRIu32 ": LBAs %" PRIu64 "..%" PRIu64 " are outside the usable LBAs %" PRIu64 "..%" PRIu64,
					    i + 1, first, last, h->first, h->last);
		p = &pt->part[pt->nparts++];
		memset(p, 0, sizeof(*p));
		p->number = i + 1;
		p->start = first;
		p->size = last - first + 1;
		guid_format(x + E_TYPE, p->type_guid);
		guid_format(x + E_UUID, p->uuid);
		p->attrs = le64dec(x + E_ATTRS);
		vd_gpt_name_decode(x + E_NAME, E_NAME_UNITS, p->name, sizeof(p->name));
	}
	return 0;
}

/* One copy: header at LBA, its entries into BUF.  *H is filled as far as
 * the header got (h->alt_lba is what the caller needs). */
static int gpt_copy(struct vd_image *img, uint64_t lba, uint8_t *buf, struct hdr *h,
		    struct vd_ptable *pt, struct vd_error *err)
{
	uint8_t s[512];
	int r;

	memset(h, 0, sizeof(*h));
	r = vd_read(img, lba * VD_SECTOR, s, sizeof(s), err);
	if (r < 0)
		return r;
	r = hdr_check(s, lba, pt->disk_sectors, h, err);
	if (r < 0)
		return r;
	r = vd_read(img, h->entries_lba * VD_SECTOR, buf, (size_t)h->nentries * h->entry_size, err);
	if (r < 0)
		return r;
	r = entries_parse(buf, h, pt, err);
	if (r < 0)
		return r;
	guid_format(h->guid, pt->disk_guid);
	pt->first_lba = h->first;
	pt->last_lba = h->last;
	pt->header_lba = lba;
	pt->nentries = h->nentries;
	return 0;
}

static int gpt_read(struct vd_image *img, struct vd_ptable *pt, struct vd_error *err)
{
	struct vd_error e1 = { 0 }, e2 = { 0 };
	uint64_t disk = pt->disk_sectors, alt;
	struct hdr h;
	uint8_t *buf;
	int r;

	snprintf(pt->label, sizeof(pt->label), "gpt");
	if (disk < 3)
		return vd_set_error(err, EINVAL, "%s: GPT: the disk (%" PRIu64 " sectors) is too small for a GPT",
				    vd_path(img), disk);
	buf = vd_malloc(MAX_ENTRIES_BYTES, err);
	if (!buf)
		return -ENOMEM;
	r = gpt_copy(img, 1, buf, &h, pt, &e1);
	if (r != -EINVAL) { /* valid, or an I/O error */
		if (r < 0)
			*err = e1;
		goto out;
	}
	/* the backup: where the primary says, when it got that far and
	 * points inside the disk, else the last sector */
	alt = h.alt_lba > 1 && h.alt_lba < disk ? h.alt_lba : disk - 1;
	r = gpt_copy(img, alt, buf, &h, pt, &e2);
	if (r == 0) {
		pt->backup_used = true;
		snprintf(pt->note, sizeof(pt->note), "primary GPT at LBA 1 is damaged (%s); using the backup at LBA %" PRIu64,
			 e1.msg, alt);
	} else if (r == -EINVAL) {
		pt->nparts = 0;
		r = vd_set_error(err, EINVAL, "%s: GPT header at LBA 1: %s; backup GPT header at LBA %" PRIu64 ": %s",
				 vd_path(img), e1.msg, alt, e2.msg);
	} else {
		*err = e2;
	}
out:
	free(buf);
	return r;
}

/* ---- overlaps ---- */

static void overlap_add(struct vd_ptable *pt, const struct vd_ptable_part *a, unsigned b, bool ebr,
			uint64_t b_start, uint64_t b_end)
{
	if (pt->noverlaps < VD_PTABLE_MAX_OVERLAPS) {
		struct vd_ptable_overlap *o = &pt->overlap[pt->noverlaps];
		o->a = a->number;
		o->a_start = a->start;
		o->a_end = a->start + a->size - 1;
		o->b = b;
		o->b_ebr = ebr;
		o->b_start = b_start;
		o->b_end = b_end;
	}
	pt->noverlaps++;
}

static bool meets(uint64_t s1, uint64_t e1, uint64_t s2, uint64_t e2)
{
	return s1 <= e2 && s2 <= e1;
}

/* Every pair of partitions that share a sector (at most 256 x 255 / 2
 * comparisons).  The extended partition holds the logicals and their
 * EBRs: it only conflicts with primaries.  EBRS[i] is the EBR sector of
 * logical partition i (0 for the others). */
static void find_overlaps(struct vd_ptable *pt, const uint64_t *ebrs)
{
	bool dos = strcmp(pt->label, "gpt") != 0;

	pt->noverlaps = 0;
	for (unsigned i = 0; i < pt->nparts; i++) {
		const struct vd_ptable_part *p = &pt->part[i];
		uint64_t pe = p->start + p->size - 1;

		if (dos && p->start == 0)
			overlap_add(pt, p, 0, false, 0, 0);
		for (unsigned j = 0; j < i; j++) {
			const struct vd_ptable_part *q = &pt->part[j];
			bool logical_p = dos && p->number > 4, logical_q = dos && q->number > 4;

			if ((p->extended && logical_q) || (q->extended && logical_p))
				continue;
			if (meets(p->start, pe, q->start, q->start + q->size - 1))
				overlap_add(pt, p, q->number, false, q->start, q->start + q->size - 1);
		}
		if (!dos || p->extended)
			continue;
		for (unsigned j = 0; j < pt->nparts; j++)
			if (ebrs[j] && j != i && ebrs[j] >= p->start && ebrs[j] <= pe)
				overlap_add(pt, p, pt->part[j].number, true, ebrs[j], ebrs[j]);
	}
}

void vd_ptable_overlap_text(const struct vd_ptable *pt, const struct vd_ptable_overlap *o,
			    char *buf, size_t len)
{
	const char *u = strcmp(pt->label, "gpt") ? "sectors" : "LBAs";

	if (o->b == 0)
		snprintf(buf, len, "partition %u (%s %" PRIu64 "..%" PRIu64 ") overlaps the MBR (sector 0)",
			 o->a, u, o->a_start, o->a_end);
	else if (o->b_ebr)
		snprintf(buf, len, "partition %u (%s %" PRIu64 "..%" PRIu64 ") overlaps the EBR of partition %u (sector %" PRIu64 ")",
			 o->a, u, o->a_start, o->a_end, o->b, o->b_start);
	else
		snprintf(buf, len, "partition %u (%s %" PRIu64 "..%" PRIu64 ") overlaps partition %u (%s %" PRIu64 "..%" PRIu64 ")",
			 o->a, u, o->a_start, o->a_end, o->b, u, o->b_start, o->b_end);
}

bool vd_ptable_part_overlaps(const struct vd_ptable *pt, unsigned number)
{
	for (unsigned i = 0; i < VD_MIN(pt->noverlaps, (unsigned)VD_PTABLE_MAX_OVERLAPS); i++)
		if (pt->overlap[i].a == number || (pt->overlap[i].b == number && !pt->overlap[i].b_ebr))
			return true;
	return false;
}

/* ---- either ---- */

int vd_ptable_read_overlaps(struct vd_image *img, struct vd_ptable *pt, struct vd_error *err)
{
	struct vd_mbr *mbr;
	uint64_t *ebrs = NULL;
	bool gpt = false;
	int r;

	memset(pt, 0, sizeof(*pt));
	mbr = vd_malloc(sizeof(*mbr), err);
	if (!mbr)
		return -ENOMEM;
	r = vd_mbr_read(img, mbr, err);
	if (r < 0)
		goto out;
	pt->disk_sectors = mbr->disk_sectors;
	for (unsigned i = 0; i < mbr->nparts; i++)
		if (mbr->part[i].number <= 4 && mbr->part[i].type == 0xee)
			gpt = true;
	ebrs = vd_calloc(VD_PTABLE_MAX_PARTS, sizeof(*ebrs), err);
	if (!ebrs) {
		r = -ENOMEM;
		goto out;
	}
	if (gpt) {
		r = gpt_read(img, pt, err);
		if (r == 0)
			find_overlaps(pt, ebrs);
		goto out;
	}
	snprintf(pt->label, sizeof(pt->label), "dos");
	pt->disk_id = mbr->disk_id;
	pt->nparts = mbr->nparts;
	for (unsigned i = 0; i < mbr->nparts; i++) {
		const struct vd_mbr_part *m = &mbr->part[i];
		struct vd_ptable_part *p = &pt->part[i];

		p->number = m->number;
		p->start = m->start;
		p->size = m->size;
		p->mbr_type = m->type;
		p->extended = vd_mbr_is_extended(m->type);
		p->bootable = m->bootable;
		ebrs[i] = m->number > 4 ? m->ebr : 0;
	}
	find_overlaps(pt, ebrs);
out:
	free(ebrs);
	free(mbr);
	return r;
}

int vd_ptable_read(struct vd_image *img, struct vd_ptable *pt, struct vd_error *err)
{
	char t[200];
	int r = vd_ptable_read_overlaps(img, pt, err);

	if (r < 0 || pt->noverlaps == 0)
		return r;
	vd_ptable_overlap_text(pt, &pt->overlap[0], t, sizeof(t));
	r = vd_set_error(err, EINVAL, "%s: %s partition table: %s%s", vd_path(img),
			 strcmp(pt->label, "gpt") ? "MBR" : "GPT", t,
			 pt->noverlaps > 1 ? " (and more overlaps)" : "");
	pt->nparts = 0;
	return r;
}

const struct vd_ptable_part *vd_ptable_find(const struct vd_ptable *pt, unsigned number)
{
	for (unsigned i = 0; i < pt->nparts; i++)
		if (pt->part[i].number == number)
			return &pt->part[i];
	return NULL;
}

/* ---- stale GPTs under a new MBR ---- */

static int gpt_sig_at(struct vd_image *img, uint64_t lba, bool *found, struct vd_error *err)
{
	uint8_t sig[8];
	int r;

	*found = false;
	if ((lba + 1) * VD_SECTOR > vd_size(img))
		return 0;
	r = vd_read(img, lba * VD_SECTOR, sig, sizeof(sig), err);
	if (r == 0)
		*found = !memcmp(sig, "EFI PART", 8);
	return r;
}

int vd_gpt_signatures(struct vd_image *img, struct vd_error *err)
{
	uint64_t last = vd_size(img) / VD_SECTOR - 1;
	bool p, b;
	int r;

	if (vd_size(img) < 2 * VD_SECTOR)
		return 0;
	r = gpt_sig_at(img, 1, &p, err);
	if (r == 0 && last > 1)
		r = gpt_sig_at(img, last, &b, err);
	else
		b = false;
	if (r < 0)
		return r;
	return (p ? 1 : 0) | (b ? 2 : 0);
}

int vd_gpt_wipe(struct vd_image *img, struct vd_error *err)
{
	uint64_t last = vd_size(img) / VD_SECTOR - 1;
	int found = vd_gpt_signatures(img, err), r = 0;

	if (found < 0)
		return found;
	if (found & 1)
		r = vd_write(img, VD_SECTOR, vd_zero_buf(), 8, err);
	if (r == 0 && (found & 2))
		r = vd_write(img, last * VD_SECTOR, vd_zero_buf(), 8, err);
	if (r == 0 && found)
		r = vd_flush(img, err);
	return r;
}
