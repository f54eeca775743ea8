/*
 * FAT12/16/32: free clusters from the FAT.
 *
 * The boot sector's BPB gives the layout: reserved sectors, the FATs, the
 * fixed root directory (FAT12/16), then the data area of clusters 2..N+1.
 * The type follows from the cluster count as Microsoft's specification
 * says (< 4085: FAT12, < 65525: FAT16, else FAT32).  An entry of 0 is a
 * free cluster; bad-cluster marks and everything else are in use.  With
 * FAT32 mirroring disabled (BPB_ExtFlags bit 7) the active FAT is read,
 * else the first.  Sectors after the last whole cluster are not reported.
 *
 * A volume marked dirty in the boot sector (bit 0 of the byte after the
 * drive number, which Linux sets while it is mounted) is refused without
 * VD_FS_FORCE.  Memory: one chunk of the FAT at a time.
 *
 * SPDX-License-Identifier: MIT
 */
#include "fs.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#define BPB_BYTES_PER_SEC 0x0B
#define BPB_SEC_PER_CLUS 0x0D
#define BPB_RSVD_SEC_CNT 0x0E
#define BPB_NUM_FATS 0x10
#define BPB_ROOT_ENT_CNT 0x11
#define BPB_TOT_SEC16 0x13
#define BPB_MEDIA 0x15
#define BPB_FAT_SZ16 0x16
#define BPB_TOT_SEC32 0x20
#define BPB_FAT_SZ32 0x24
#define BPB_EXT_FLAGS 0x28
/* extended boot record: FAT12/16 at 0x24, FAT32 at 0x40 */
#define EBR16 0x24
#define EBR32 0x40
#define EBR_FLAGS 1   /* reserved byte: bit 0 = dirty */
#define EBR_SIG 2     /* 0x28 or 0x29 */
#define EBR_VOLID 3
#define EBR_LABEL 7

#define CHUNK (64u * 1024)

struct fat {
	uint32_t bps, spc, cluster;
	uint64_t fat_off;         /* byte offset of the FAT that is read */
	uint64_t fat_bytes;
	uint64_t data_off;        /* byte offset of cluster 2 */
	uint32_t clusters;        /* data clusters */
	int bits;                 /* 12, 16, 32 */
	uint64_t total_bytes;
};

/* Everything the probe and the walk need from the BPB; false if it is not
 * a FAT boot sector. */
static bool parse_bpb(const uint8_t *b, size_t len, struct fat *f, const char **why)
{
	uint32_t rsvd, nfats, root_ent, tot, fat_sz, root_sec, data_sec;
	uint64_t data_start;

	*why = "boot sector too short";
	if (len < 512)
		return false;
	*why = "no 55 AA signature or jump instruction";
	if (b[510] != 0x55 || b[511] != 0xAA || (b[0] != 0xEB && b[0] != 0xE9))
		return false;
	f->bps = le16dec(b + BPB_BYTES_PER_SEC);
	f->spc = b[BPB_SEC_PER_CLUS];
	rsvd = le16dec(b + BPB_RSVD_SEC_CNT);
	nfats = b[BPB_NUM_FATS];
	root_ent = le16dec(b + BPB_ROOT_ENT_CNT);
	tot = le16dec(b + BPB_TOT_SEC16) ? le16dec(b + BPB_TOT_SEC16) : le32dec(b + BPB_TOT_SEC32);
	fat_sz = le16dec(b + BPB_FAT_SZ16) ? le16dec(b + BPB_FAT_SZ16) : le32dec(b + BPB_FAT_SZ32);
	*why = "BPB_BytsPerSec, BPB_SecPerClus, BPB_RsvdSecCnt, BPB_NumFATs or BPB_Media out of range";
	if (f->bps < 512 || f->bps > 4096 || !vd_is_pow2(f->bps) || f->spc == 0 || !vd_is_pow2(f->spc) ||
	    rsvd == 0 || nfats == 0 || nfats > 4 || (b[BPB_MEDIA] < 0xF8 && b[BPB_MEDIA] != 0xF0))
		return false;
	*why = "BPB_TotSec or BPB_FATSz is 0";
	if (tot == 0 || fat_sz == 0)
		return false;
	f->cluster = f->bps * f->spc;
	root_sec = (root_ent * 32 + f->bps - 1) / f->bps;
	data_start = rsvd + (uint64_t)nfats * fat_sz + root_sec;
	*why = "the data area starts beyond BPB_TotSec";
	if (data_start >= tot)
		return false;
	data_sec = (uint32_t)(tot - data_start);
	f->clusters = data_sec / f->spc;
	f->bits = f->clusters < 4085 ? 12 : f->clusters < 65525 ? 16 : 32;
	*why = "FAT32 without BPB_FATSz32 or with a fixed root directory";
	if (f->bits == 32 && (le16dec(b + BPB_FAT_SZ16) != 0 || root_ent != 0))
		return false;
	f->fat_off = (uint64_t)rsvd * f->bps;
	f->fat_bytes = (uint64_t)fat_sz * f->bps;
	if (f->bits == 32 && (b[BPB_EXT_FLAGS] & 0x80)) {
		uint32_t active = b[BPB_EXT_FLAGS] & 0x0f;
		*why = "BPB_ExtFlags names a FAT that does not exist";
		if (active >= nfats)
			return false;
		f->fat_off += (uint64_t)active * f->fat_bytes;
	}
	*why = "BPB_FATSz is too small for the clusters";
	if (f->fat_bytes * 8 < ((uint64_t)f->clusters + 2) * (uint64_t)f->bits)
		return false;
	f->data_off = data_start * f->bps;
	f->total_bytes = (uint64_t)tot * f->bps;
	return true;
}

static bool fat_probe(const uint8_t *buf, size_t len)
{
	struct fat f;
	const char *why;

	return parse_bpb(buf, len, &f, &why);
}

/* Entry C of the FAT chunk BUF that starts at FAT byte BASE. */
static uint32_t entry(const struct fat *f, const uint8_t *buf, uint64_t base, uint32_t c)
{
	if (f->bits == 32)
		return le32dec(buf + (uint64_t)c * 4 - base) & 0x0fffffff;
	if (f->bits == 16)
		return le16dec(buf + (uint64_t)c * 2 - base);
	{
		uint16_t v = le16dec(buf + (uint64_t)c * 3 / 2 - base);
		return c & 1 ? v >> 4 : v & 0xfff;
	}
}

static int fat_walk(struct vd_fs_walk *w)
{
	uint8_t bs[512];
	struct fat f;
	const char *why;
	const uint8_t *ebr;
	uint8_t *buf;
	uint32_t c, run = 0, end;
	uint64_t base = 0, have = 0;
	int r;

	r = vd_fs_read(w, 0, bs, sizeof(bs), "FAT boot sector");
	if (r < 0)
		return r;
	if (!parse_bpb(bs, sizeof(bs), &f, &why))
		return vd_set_error(w->err, EINVAL, "%s: FAT boot sector at offset %" PRIu64 ": %s",
				    vd_path(w->img), w->part_off, why);
	if (f.total_bytes > w->part_len)
		return vd_set_error(w->err, EINVAL, "%s: FAT at offset %" PRIu64 ": BPB_TotSec (%" PRIu64 " bytes) is larger than the partition (%" PRIu64 " bytes)",
				    vd_path(w->img), w->part_off, f.total_bytes, w->part_len);
	ebr = bs + (f.bits == 32 ? EBR32 : EBR16);
	snprintf(w->info->type, sizeof(w->info->type), "fat%d", f.bits);
	if (ebr[EBR_SIG] == 0x29) {
		size_t n = 11;
		while (n > 0 && ebr[EBR_LABEL + n - 1] == ' ')
			n--;
		if (n != 11 || memcmp(ebr + EBR_LABEL, "NO NAME    ", 11))
			snprintf(w->info->label, sizeof(w->info->label), "%.*s", (int)n, (const char *)ebr + EBR_LABEL);
		snprintf(w->info->uuid, sizeof(w->info->uuid), "%04X-%04X",
			 le16dec(ebr + EBR_VOLID + 2), le16dec(ebr + EBR_VOLID));
	}
	w->info->block_size = f.cluster;
	w->info->total_bytes = f.total_bytes;
	if ((ebr[EBR_SIG] == 0x29 || ebr[EBR_SIG] == 0x28) && (ebr[EBR_FLAGS] & 1) && !(w->flags & VD_FS_FORCE))
		return vd_set_error(w->err, EUCLEAN, "%s: %s at offset %" PRIu64 " is marked dirty (boot sector byte 0x%x): run fsck.fat, or use --force",
				    vd_path(w->img), w->info->type, w->part_off,
				    (unsigned)(ebr - bs) + EBR_FLAGS);

	buf = vd_malloc(CHUNK + 4, w->err);
	if (!buf)
		return -ENOMEM;
	end = f.clusters + 2;
	for (c = 2; c < end; c++) {
		/* bytes of entry c: [lo, hi) in the FAT */
		uint64_t lo = f.bits == 32 ? (uint64_t)c * 4 : f.bits == 16 ? (uint64_t)c * 2 : (uint64_t)c * 3 / 2;
		uint64_t hi = lo + (f.bits == 32 ? 4 : 2);
		if (lo < base || hi > base + have) {
			base = lo;
			have = VD_MIN((uint64_t)CHUNK, f.fat_bytes - base);
			r = vd_fs_read(w, f.fat_off + base, buf, (size_t)have, "FAT");
			if (r < 0)
				goto out;
			if (hi > base + have) { /* FAT12: entry split at the FAT's end */
				r = vd_set_error(w->err, EINVAL, "%s: FAT at offset %" PRIu64 ": cluster %u is beyond the FAT",
						 vd_path(w->img), w->part_off, c);
				goto out;
			}
		}
		if (entry(&f, buf, base, c) == 0) {
			run++;
			continue;
		}
		if (run) {
			r = vd_fs_emit(w, f.data_off + (uint64_t)(c - run - 2) * f.cluster, (uint64_t)run * f.cluster);
			if (r)
				goto out;
			run = 0;
		}
	}
	r = run ? vd_fs_emit(w, f.data_off + (uint64_t)(c - run - 2) * f.cluster, (uint64_t)run * f.cluster) : 0;
out:
	free(buf);
	return r;
}

const struct vd_fs_walker vd_fs_fat = {
	.name = "fat",
	.probe = fat_probe,
	.walk = fat_walk,
};
