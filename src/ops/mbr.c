/*
 * MBR partition tables: read (MBR + EBR chain), validate, write through the
 * block-I/O layer, and place the partitions of an sfdisk-style script (read
 * by mbr-script.c) the way sfdisk places them.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "../core/ops.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#define MBR_ID_OFF 440
#define MBR_TABLE_OFF 446
#define MBR_ENTRY_SIZE 16
#define MBR_SIG_OFF 510

/* ---- partition type names (as fdisk lists them) ---- */

static const struct {
	uint8_t type;
	const char *name;
} type_names[] = {
	{ 0x00, "Empty" }, { 0x01, "FAT12" }, { 0x04, "FAT16 <32M" },
	{ 0x05, "Extended" }, { 0x06, "FAT16" }, { 0x07, "HPFS/NTFS/exFAT" },
	{ 0x0b, "W95 FAT32" }, { 0x0c, "W95 FAT32 (LBA)" }, { 0x0e, "W95 FAT16 (LBA)" },
	{ 0x0f, "W95 Ext'd (LBA)" }, { 0x11, "Hidden FAT12" }, { 0x12, "Compaq diagnostics" },
	{ 0x14, "Hidden FAT16 <32M" }, { 0x16, "Hidden FAT16" }, { 0x17, "Hidden HPFS/NTFS" },
	{ 0x1b, "Hidden W95 FAT32" }, { 0x1c, "Hidden W95 FAT32 (LBA)" },
	{ 0x1e, "Hidden W95 FAT16 (LBA)" }, { 0x27, "Hidden NTFS WinRE" },
	{ 0x42, "SFS" }, { 0x63, "GNU HURD or SysV" }, { 0x80, "Old Minix" },
	{ 0x81, "Minix / old Linux" }, { 0x82, "Linux swap / Solaris" }, { 0x83, "Linux" },
	{ 0x85, "Linux extended" }, { 0x86, "NTFS volume set" }, { 0x87, "NTFS volume set" },
	{ 0x88, "Linux plaintext" }, { 0x8e, "Linux LVM" }, { 0xa5, "FreeBSD" },
	{ 0xa6, "OpenBSD" }, { 0xa8, "Darwin UFS" }, { 0xa9, "NetBSD" }, { 0xab, "Darwin boot" },
	{ 0xaf, "HFS / HFS+" }, { 0xbe, "Solaris boot" }, { 0xbf, "Solaris" },
	{ 0xda, "Non-FS data" }, { 0xde, "Dell Utility" }, { 0xeb, "BeOS fs" },
	{ 0xee, "GPT" }, { 0xef, "EFI (FAT-12/16/32)" }, { 0xfb, "VMware VMFS" },
	{ 0xfc, "VMware VMKCORE" }, { 0xfd, "Linux raid autodetect" },
};

const char *vd_mbr_type_name(uint8_t type)
{
	for (size_t i = 0; i < VD_ARRAY_SIZE(type_names); i++)
		if (type_names[i].type == type)
			return type_names[i].name;
	return "unknown";
}

/* ---- reading ---- */

struct entry {
	uint8_t status, type;
	uint8_t chs_start[3], chs_end[3];
	uint32_t lba, count;
};

static void entry_dec(const uint8_t *e, struct entry *x)
{
	x->status = e[0];
	memcpy(x->chs_start, e + 1, 3);
	x->type = e[4];
	memcpy(x->chs_end, e + 5, 3);
	x->lba = le32dec(e + 8);
	x->count = le32dec(e + 12);
}

static void entry_enc(uint8_t *e, const struct vd_mbr_part *p, uint64_t rel,
		      uint64_t count, uint8_t type, uint64_t chs_first,
		      uint32_t heads, uint32_t sectors)
{
	e[0] = p && p->bootable ? 0x80 : 0x00;
	vd_chs_encode(chs_first, heads, sectors, e + 1);
	e[4] = type;
	vd_chs_encode(chs_first + count - 1, heads, sectors, e + 5);
	le32enc(e + 8, (uint32_t)rel);
	le32enc(e + 12, (uint32_t)count);
}

static void part_from_entry(struct vd_mbr_part *p, unsigned number,
			    const struct entry *x, uint64_t base)
{
	memset(p, 0, sizeof(*p));
	p->number = number;
	p->start = base + x->lba;
	p->size = x->count;
	p->type = x->type;
	p->status = x->status;
	p->bootable = x->status == 0x80;
	memcpy(p->chs_start, x->chs_start, 3);
	memcpy(p->chs_end, x->chs_end, 3);
}

int vd_mbr_read(struct vd_image *img, struct vd_mbr *mbr, struct vd_error *err)
{
	uint8_t s[512];
	struct entry e[4];
	const struct vd_mbr_part *ext = NULL;
	struct vd_mbr_part logical[VD_MBR_MAX_PARTS];
	unsigned nlog = 0;
	int r;

	memset(mbr, 0, sizeof(*mbr));
	mbr->disk_sectors = vd_size(img) / VD_SECTOR;
	if (vd_size(img) < 512)
		return vd_set_error(err, ENOENT, "%s: no partition table (the disk is smaller than one sector)",
				    vd_path(img));
	r = vd_read(img, 0, s, sizeof(s), err);
	if (r < 0)
		return r;
	if (s[MBR_SIG_OFF] != 0x55 || s[MBR_SIG_OFF + 1] != 0xaa)
		return vd_set_error(err, ENOENT, "%s: no partition table (signature at byte 510 is %02x %02x, expected 55 aa)",
				    vd_path(img), s[MBR_SIG_OFF], s[MBR_SIG_OFF + 1]);
	for (unsigned i = 0; i < 4; i++) {
		entry_dec(s + MBR_TABLE_OFF + i * MBR_ENTRY_SIZE, &e[i]);
		if (e[i].status != 0 && e[i].status != 0x80)
			return vd_set_error(err, ENOENT, "%s: no partition table (status byte of entry %u is 0x%02x, expected 0x00 or 0x80)",
					    vd_path(img), i + 1, e[i].status);
	}
	/* a FAT/NTFS boot sector also ends in 55 aa; with no entry in use,
	 * a jump instruction and a BPB sector size it is not a table */
	if (vd_is_zero(s + MBR_TABLE_OFF, 4 * MBR_ENTRY_SIZE) && (s[0] == 0xeb || s[0] == 0xe9)) {
		unsigned bps = le16dec(s + 11);
		if (bps == 512 || bps == 1024 || bps == 2048 || bps == 4096)
			return vd_set_error(err, ENOENT, "%s: no partition table (sector 0 is a filesystem boot sector: jump 0x%02x, %u bytes per sector)",
					    vd_path(img), s[0], bps);
	}
	mbr->disk_id = le32dec(s + MBR_ID_OFF);
	for (unsigned i = 0; i < 4; i++) {
		if (!e[i].count)
			continue;
		part_from_entry(&mbr->part[mbr->nparts], i + 1, &e[i], 0);
		if (vd_mbr_is_extended(e[i].type) && !ext)
			ext = &mbr->part[mbr->nparts];
		mbr->nparts++;
	}
	if (!ext)
		return 0;

	/* the EBR chain: entry 1 the logical partition relative to its EBR,
	 * entry 2 the next EBR relative to the extended partition's start */
	uint64_t ext_start = ext->start, ext_end = ext->start + ext->size;
	uint64_t cur = ext_start;
	for (;;) {
		struct entry l, link;

		if (cur >= mbr->disk_sectors)
			return vd_set_error(err, EINVAL, "%s: EBR at sector %" PRIu64 " is past the end of the disk (%" PRIu64 " sectors)",
					    vd_path(img), cur, mbr->disk_sectors);
		r = vd_read(img, cur * VD_SECTOR, s, sizeof(s), err);
		if (r < 0)
			return r;
		entry_dec(s + MBR_TABLE_OFF, &l);
		entry_dec(s + MBR_TABLE_OFF + MBR_ENTRY_SIZE, &link);
		if (l.count) {
			if (nlog + 4 >= VD_MBR_MAX_PARTS)
				return vd_set_error(err, EINVAL, "%s: more than %u logical partitions in the EBR chain",
						    vd_path(img), VD_MBR_MAX_PARTS - 4);
			part_from_entry(&logical[nlog], 5 + nlog, &l, cur);
			logical[nlog].ebr = cur;
			nlog++;
		}
		if (!link.count || !vd_mbr_is_extended(link.type))
			break;
		uint64_t next = ext_start + link.lba;
		if (next <= cur || next >= ext_end)
			return vd_set_error(err, EINVAL, "%s: EBR at sector %" PRIu64 ": link to the next EBR (start field %" PRIu32 " = sector %" PRIu64 ") is %s",
					    vd_path(img), cur, link.lba, next,
					    next >= ext_end ? "outside the extended partition" : "not after this EBR");
		cur = next;
	}
	for (unsigned i = 0; i < nlog; i++)
		mbr->part[mbr->nparts++] = logical[i];
	return 0;
}

/* ---- validation ---- */

static uint64_t pend(const struct vd_mbr_part *p)
{
	return p->start + p->size - 1;
}

int vd_mbr_validate(const struct vd_mbr *m, struct vd_error *err)
{
	const struct vd_mbr_part *prim[5] = { 0 }, *ext = NULL, *prev = NULL;
	unsigned next_logical = 5;

	if (m->nparts > VD_MBR_MAX_PARTS)
		return vd_set_error(err, EINVAL, "%u partitions, at most %u", m->nparts, VD_MBR_MAX_PARTS);
	for (unsigned i = 0; i < m->nparts; i++) {
		const struct vd_mbr_part *p = &m->part[i];

		if (p->number < 1)
			return vd_set_error(err, EINVAL, "partition number %u is invalid", p->number);
		if (p->type == 0)
			return vd_set_error(err, EINVAL, "partition %u: type 0 marks an empty entry", p->number);
		if (p->size == 0)
			return vd_set_error(err, EINVAL, "partition %u: size is 0 sectors", p->number);
		if (p->start == 0)
			return vd_set_error(err, EINVAL, "partition %u: starts at sector 0, which holds the MBR", p->number);
		if (p->start > UINT32_MAX || p->size > UINT32_MAX)
			return vd_set_error(err, ERANGE, "partition %u: %s %" PRIu64 " does not fit the 32-bit field of an MBR entry",
					    p->number, p->start > UINT32_MAX ? "start sector" : "size", p->start > UINT32_MAX ? p->start : p->size);
		if (p->start + p->size > m->disk_sectors)
			return vd_set_error(err, ERANGE, "partition %u: sectors %" PRIu64 "..%" PRIu64 " end past the last sector of the disk (%" PRIu64 ")",
					    p->number, p->start, pend(p), m->disk_sectors - 1);
		if (p->number <= 4) {
			if (prev && prev->number > 4)
				return vd_set_error(err, EINVAL, "primary partition %u listed after logical partitions", p->number);
			if (prim[p->number])
				return vd_set_error(err, EINVAL, "partition %u is defined twice", p->number);
			for (unsigned j = 1; j <= 4; j++)
				if (prim[j] && p->start <= pend(prim[j]) && prim[j]->start <= pend(p))
					return vd_set_error(err, EINVAL, "partition %u (sectors %" PRIu64 "..%" PRIu64 ") overlaps partition %u (sectors %" PRIu64 "..%" PRIu64 ")",
							    p->number, p->start, pend(p), j, prim[j]->start, pend(prim[j]));
			prim[p->number] = p;
			if (vd_mbr_is_extended(p->type)) {
				if (ext)
					return vd_set_error(err, EINVAL, "partition %u: a second extended partition (partition %u is one)",
							    p->number, ext->number);
				ext = p;
			}
		} else {
			if (!ext)
				return vd_set_error(err, EINVAL, "logical partition %u without an extended partition", p->number);
			if (p->number != next_logical)
				return vd_set_error(err, EINVAL, "logical partition %u: expected number %u (logical partitions are numbered from 5 in chain order)",
						    p->number, next_logical);
			if (vd_mbr_is_extended(p->type))
				return vd_set_error(err, EINVAL, "logical partition %u: type 0x%02x is an extended type", p->number, p->type);
			if (next_logical == 5 && p->ebr != ext->start)
				return vd_set_error(err, EINVAL, "logical partition 5: its EBR is at sector %" PRIu64 ", not at the start of the extended partition (%" PRIu64 ")",
						    p->ebr, ext->start);
			if (p->ebr < ext->start || p->ebr >= p->start || pend(p) > pend(ext))
				return vd_set_error(err, EINVAL, "logical partition %u (EBR at sector %" PRIu64 ", sectors %" PRIu64 "..%" PRIu64 ") is not inside the extended partition %u (sectors %" PRIu64 "..%" PRIu64 ")",
						    p->number, p->ebr, p->start, pend(p), ext->number, ext->start, pend(ext));
			if (prev && prev->number > 4 && p->ebr <= pend(prev))
				return vd_set_error(err, EINVAL, "logical partition %u (EBR at sector %" PRIu64 ", sectors %" PRIu64 "..%" PRIu64 ") overlaps logical partition %u (sectors %" PRIu64 "..%" PRIu64 ")",
						    p->number, p->ebr, p->start, pend(p), prev->number, prev->start, pend(prev));
			next_logical++;
		}
		prev = p;
	}
	return 0;
}

/* ---- writing ---- */

int vd_mbr_write(struct vd_image *img, const struct vd_mbr *m,
		 const uint8_t *bootcode, uint32_t heads, uint32_t sectors,
		 struct vd_error *err)
{
	uint8_t old[512];
	struct vd_mbr_sector *sec;
	unsigned n = 0;
	int r;

	if (m->disk_sectors != vd_size(img) / VD_SECTOR)
		return vd_set_error(err, EINVAL, "%s: the table is for a disk of %" PRIu64 " sectors, the image has %" PRIu64,
				    vd_path(img), m->disk_sectors, vd_size(img) / VD_SECTOR);
	/* boot code already there is kept unless new code is given */
	r = vd_read(img, 0, old, sizeof(old), err);
	if (r < 0)
		return r;
	sec = vd_malloc(VD_MBR_MAX_SECTORS * sizeof(*sec), err);
	if (!sec)
		return -ENOMEM;
	r = vd_mbr_encode(m, bootcode ? bootcode : old, heads, sectors, sec, &n, err);
	if (r < 0) {
		vd_prefix_error(err, "%s", vd_path(img));
		goto out;
	}
	/* EBRs first (sec[0] is sector 0): a crash before sector 0 is
	 * written leaves the old MBR */
	for (unsigned i = 1; i < n && r == 0; i++)
		r = vd_write(img, sec[i].lba * VD_SECTOR, sec[i].data, VD_SECTOR, err);
	if (r == 0 && n > 1)
		r = vd_flush(img, err);
	if (r == 0)
		r = vd_write(img, 0, sec[0].data, VD_SECTOR, err);
	if (r == 0)
		r = vd_flush(img, err);
out:
	free(sec);
	return r;
}

/* ---- placing a script's partitions (as sfdisk does) ---- */

#define SERR(...) vd_set_error(err, EINVAL, __VA_ARGS__)

struct lay {
	uint64_t grain;  /* alignment unit in sectors */
	uint64_t first;  /* first usable sector / EBR-to-logical gap */
	bool cylinder;
};

static uint64_t al_up(uint64_t x, uint64_t g) { return (x + g - 1) / g * g; }
static uint64_t al_down(uint64_t x, uint64_t g) { return x / g * g; }
static uint64_t al_start(const struct lay *L, uint64_t x)
{
	return x <= L->first ? L->first : al_up(x, L->grain);
}

/* The end of a partition at START of the script's size, free up to LIMIT.
 * A size given with a unit ("+size{K,M,G}" in sfdisk's words) is not exact:
 * like sfdisk, its last sector + 1 goes to the nearest grain boundary
 * (within the free space), so the next partition starts aligned. */
static int place_end(const struct lay *L, const struct vd_mbr_spec *sp, unsigned num,
		     uint64_t start, uint64_t limit, uint64_t *size, struct vd_error *err)
{
	uint64_t stop;

	if (sp->size_mode == VD_SIZE_REST) {
		stop = limit;
		if (L->cylinder && al_down(limit + 1, L->grain) > start + 1)
			stop = al_down(limit + 1, L->grain) - 1;
	} else {
		if (sp->size > limit - start + 1)
			return SERR("line %u: partition %u of %" PRIu64 " sectors at sector %" PRIu64 " does not fit: the free space ends at sector %" PRIu64,
				    sp->line, num, sp->size, start, limit);
		stop = start + sp->size - 1;
		/* sfdisk 2.38 makes sub-grain sizes one sector too big;
		 * vdisk keeps them exact */
		if (stop < limit && sp->size_mode == VD_SIZE_BYTES && L->grain > 1 &&
		    sp->size >= L->grain) {
			uint64_t lo = al_up(start, L->grain), hi = al_down(limit, L->grain);
			uint64_t n = (start + sp->size + L->grain / 2) / L->grain * L->grain;

			n = n < lo ? lo : n > hi ? hi : n;
			if (n <= start)
				return SERR("line %u: partition %u of %" PRIu64 " sectors is too small to end on a %" PRIu64 "-sector boundary; give its size in sectors",
					    sp->line, num, sp->size, L->grain);
			stop = VD_MIN(n - 1, limit);
		}
	}
	*size = stop - start + 1;
	return 0;
}

static int cmp_part_start(const void *a, const void *b)
{
	const struct vd_mbr_part *x = a, *y = b;
	return x->start < y->start ? -1 : x->start > y->start;
}

int vd_mbr_layout(const struct vd_mbr_script *s, uint64_t disk_sectors, int align,
		  uint32_t heads, uint32_t sectors, uint32_t disk_id,
		  struct vd_mbr *m, struct vd_error *err)
{
	struct vd_mbr_part prim[5], logical[VD_MBR_MAX_PARTS];
	bool used[5] = { false };
	unsigned nlog = 0, ext = 0;
	uint64_t lfirst;
	struct lay L;
	int r;

	if (!heads)
		heads = 255;
	if (!sectors)
		sectors = 63;
	memset(m, 0, sizeof(*m));
	m->disk_sectors = disk_sectors;
	m->disk_id = s->label_id_set ? s->label_id : disk_id;
	if (align == VD_ALIGN_CYLINDER) {
		L.grain = (uint64_t)heads * sectors;
		L.first = sectors;
		L.cylinder = true;
	} else if (disk_sectors <= 4 * 2048) {
		/* sfdisk: no 1 MiB grain on disks of 4 MiB or less */
		L.grain = 1;
		L.first = 1;
		L.cylinder = false;
	} else {
		L.grain = 2048;
		L.first = 2048;
		L.cylinder = false;
	}
	lfirst = L.first;
	if (disk_sectors < 2)
		return SERR("the disk (%" PRIu64 " sectors) is too small for a partition table", disk_sectors);

	for (unsigned i = 0; i < s->n; i++) {
		const struct vd_mbr_spec *sp = &s->spec[i];
		unsigned num = sp->number;
		bool is_ext = vd_mbr_is_extended(sp->type);
		struct vd_mbr_part *e = ext ? &prim[ext] : NULL;

		if (!num) {
			unsigned freep = 0;
			for (unsigned j = 4; j >= 1; j--)
				if (!used[j])
					freep = j;
			/* sfdisk: a start inside the extended partition makes a
			 * logical one; else primary while there is a free entry
			 * and a grain of free space outside the primaries
			 * (checked in entry order, as sfdisk does) */
			uint64_t last = L.first;
			bool free_sectors = false;
			for (unsigned j = 1; j <= 4; j++) {
				if (!used[j])
					continue;
				if (last + L.grain <= prim[j].start)
					free_sectors = true;
				last = prim[j].start + prim[j].size;
			}
			if (last + L.grain < disk_sectors - 1)
				free_sectors = true;
			if (!is_ext && e && sp->start_set && sp->start >= e->start && sp->start <= pend(e))
				num = 5 + nlog;
			else if (freep && (free_sectors || is_ext || sp->start_set || !e))
				num = freep;
			else if (e && !is_ext)
				num = 5 + nlog;
			else
				return SERR("line %u: too many partitions: the 4 primary entries are used%s", sp->line,
					    e ? "" : " and there is no extended partition for logical ones");
		}
		if (num <= 4) {
			struct vd_mbr_part tmp[5];
			unsigned nt = 0;
			uint64_t start = 0, limit = 0, prev_end;
			bool found = false;

			if (used[num])
				return SERR("line %u: partition %u is defined twice", sp->line, num);
			if (is_ext && ext)
				return SERR("line %u: a second extended partition (partition %u is one)", sp->line, ext);
			for (unsigned j = 1; j <= 4; j++)
				if (used[j])
					tmp[nt++] = prim[j];
			qsort(tmp, nt, sizeof(tmp[0]), cmp_part_start);
			/* walk the free regions of the disk between primaries */
			prev_end = 0; /* sector 0: the MBR */
			for (unsigned j = 0; j <= nt && !found; j++) {
				uint64_t a = prev_end + 1, b = j < nt ? tmp[j].start - 1 : disk_sectors - 1;
				if (j < nt && tmp[j].start == 0)
					b = 0;
				if (a <= b || (j < nt && tmp[j].start > a)) {
					if (sp->start_set) {
						if (sp->start >= a && sp->start <= b) {
							start = sp->start;
							limit = b;
							found = true;
						}
					} else {
						/* the first aligned free sector where the
						 * partition fits */
						uint64_t c = al_start(&L, a);
						if (a <= b && c <= b &&
						    (sp->size_mode == VD_SIZE_REST || sp->size - 1 <= b - c)) {
							start = c;
							limit = b;
							found = true;
						}
					}
				}
				if (j < nt)
					prev_end = VD_MAX(prev_end, pend(&tmp[j]));
			}
			if (!found) {
				if (!sp->start_set && sp->size_mode != VD_SIZE_REST)
					return SERR("line %u: partition %u of %" PRIu64 " sectors does not fit in any free space of the disk (%" PRIu64 " sectors)",
						    sp->line, num, sp->size, disk_sectors);
				if (!sp->start_set)
					return SERR("line %u: no free space left for partition %u", sp->line, num);
				if (sp->start == 0)
					return SERR("line %u: partition %u cannot start at sector 0, which holds the MBR", sp->line, num);
				if (sp->start >= disk_sectors)
					return SERR("line %u: partition %u starts at sector %" PRIu64 ", past the last sector of the disk (%" PRIu64 ")",
						    sp->line, num, sp->start, disk_sectors - 1);
				for (unsigned j = 0; j < nt; j++)
					if (sp->start >= tmp[j].start && sp->start <= pend(&tmp[j]))
						return SERR("line %u: partition %u starts at sector %" PRIu64 ", inside partition %u (sectors %" PRIu64 "..%" PRIu64 ")",
							    sp->line, num, sp->start, tmp[j].number, tmp[j].start, pend(&tmp[j]));
				return SERR("line %u: start sector %" PRIu64 " of partition %u is not free", sp->line, sp->start, num);
			}
			memset(&prim[num], 0, sizeof(prim[num]));
			prim[num].number = num;
			prim[num].start = start;
			prim[num].type = sp->type;
			prim[num].bootable = sp->bootable;
			if ((r = place_end(&L, sp, num, start, limit, &prim[num].size, err)) < 0)
				return r;
			used[num] = true;
			if (is_ext)
				ext = num;
		} else {
			struct vd_mbr_part *p, *last = nlog ? &logical[nlog - 1] : NULL;
			uint64_t x, ebr, start;

			if (!e)
				return SERR("line %u: logical partition %u needs an extended partition first", sp->line, num);
			if (is_ext)
				return SERR("line %u: partition %u: an extended partition must be primary (1-4)", sp->line, num);
			if (num != 5 + nlog)
				return SERR("line %u: logical partition %u: expected number %u (logical partitions are numbered from 5 in disk order)",
					    sp->line, num, 5 + nlog);
			if (nlog + 4 >= VD_MBR_MAX_PARTS)
				return SERR("line %u: too many logical partitions (at most %u)", sp->line, VD_MBR_MAX_PARTS - 4);
			x = last ? pend(last) + 1 : e->start;
			if (x > pend(e))
				return SERR("line %u: no free space left in the extended partition for partition %u", sp->line, num);
			if (sp->start_set) {
				start = sp->start;
				if (start > pend(e) || start <= e->start)
					return SERR("line %u: logical partition %u starts at sector %" PRIu64 ", outside the extended partition (sectors %" PRIu64 "..%" PRIu64 ")",
						    sp->line, num, start, e->start, pend(e));
				/* sfdisk: the EBR goes L.first sectors before the
				 * partition; where that is not free (a legacy
				 * layout), the sector before it, from then on */
				if (!last) {
					ebr = e->start;
					if (start < e->start + lfirst)
						lfirst = 1;
				} else {
					ebr = start >= lfirst ? start - lfirst : 0;
					if (ebr < x && start - 1 >= x) {
						lfirst = 1;
						ebr = start - 1;
					}
				}
				if (ebr < x)
					return SERR("line %u: logical partition %u at sector %" PRIu64 " leaves no room for its EBR at sector %" PRIu64 " after partition %u (ends at sector %" PRIu64 ")",
						    sp->line, num, start, ebr, last->number, pend(last));
			} else {
				/* the EBR sits L.first sectors before the partition;
				 * by cylinders, both on a cylinder boundary + 0 / + S */
				if (!last) {
					ebr = e->start;
					start = L.cylinder ? ebr + L.first : al_start(&L, ebr + L.first);
				} else if (L.cylinder) {
					ebr = al_up(x, L.grain);
					start = ebr + L.first;
				} else {
					start = al_start(&L, x + L.first);
					ebr = start - L.first;
				}
				if (start > pend(e))
					return SERR("line %u: no free space left in the extended partition for partition %u", sp->line, num);
			}
			p = &logical[nlog];
			memset(p, 0, sizeof(*p));
			p->number = num;
			p->start = start;
			p->ebr = ebr;
			p->type = sp->type;
			p->bootable = sp->bootable;
			if ((r = place_end(&L, sp, num, start, pend(e), &p->size, err)) < 0)
				return r;
			nlog++;
		}
	}
	for (unsigned j = 1; j <= 4; j++)
		if (used[j])
			m->part[m->nparts++] = prim[j];
	for (unsigned j = 0; j < nlog; j++)
		m->part[m->nparts++] = logical[j];
	return vd_mbr_validate(m, err);
}

/* ---- encoding without an image (vd_build streams sectors in guest order) ---- */

int vd_mbr_encode(const struct vd_mbr *m, const uint8_t *bootcode,
		  uint32_t heads, uint32_t sectors, struct vd_mbr_sector *out,
		  unsigned *n, struct vd_error *err)
{
	const struct vd_mbr_part *ext = NULL;
	unsigned first_logical = m->nparts, k = 0;
	uint8_t *s0 = out[0].data;
	int r;

	if (!heads)
		heads = 255;
	if (!sectors)
		sectors = 63;
	r = vd_mbr_validate(m, err);
	if (r < 0)
		return r;
	memset(s0, 0, VD_SECTOR);
	if (bootcode)
		memcpy(s0, bootcode, MBR_ID_OFF);
	le32enc(s0 + MBR_ID_OFF, m->disk_id);
	for (unsigned i = 0; i < m->nparts; i++) {
		const struct vd_mbr_part *p = &m->part[i];
		if (p->number > 4) {
			if (first_logical == m->nparts)
				first_logical = i;
			continue;
		}
		entry_enc(s0 + MBR_TABLE_OFF + (p->number - 1) * MBR_ENTRY_SIZE, p, p->start,
			  p->size, p->type, p->start, heads, sectors);
		if (vd_mbr_is_extended(p->type))
			ext = p;
	}
	s0[MBR_SIG_OFF] = 0x55;
	s0[MBR_SIG_OFF + 1] = 0xaa;
	out[k++].lba = 0;
	if (ext && first_logical == m->nparts) {
		/* an empty extended partition: one empty EBR at its start */
		memset(out[k].data, 0, VD_SECTOR);
		out[k].data[MBR_SIG_OFF] = 0x55;
		out[k].data[MBR_SIG_OFF + 1] = 0xaa;
		out[k++].lba = ext->start;
	}
	for (unsigned i = first_logical; ext && i < m->nparts; i++) {
		const struct vd_mbr_part *p = &m->part[i], *nx = i + 1 < m->nparts ? &m->part[i + 1] : NULL;
		uint8_t *e = out[k].data;

		memset(e, 0, VD_SECTOR);
		entry_enc(e + MBR_TABLE_OFF, p, p->start - p->ebr, p->size, p->type,
			  p->start, heads, sectors);
		if (nx)
			entry_enc(e + MBR_TABLE_OFF + MBR_ENTRY_SIZE, NULL, nx->ebr - ext->start,
				  pend(nx) + 1 - nx->ebr, 0x05, nx->ebr, heads, sectors);
		e[MBR_SIG_OFF] = 0x55;
		e[MBR_SIG_OFF + 1] = 0xaa;
		out[k++].lba = p->ebr;
	}
	*n = k;
	return 0;
}
