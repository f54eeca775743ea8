/*
 * ext2/ext3/ext4: free blocks from the block bitmaps.
 *
 * The superblock (1024 bytes at offset 1024) gives the geometry; the group
 * descriptor table (after the superblock, or spread over the meta block
 * groups with META_BG) gives each group's block bitmap, 32-byte
 * descriptors or s_desc_size-byte ones with 64BIT.  A clear bit is a free
 * block (a free cluster with BIGALLOC).  Groups flagged BLOCK_UNINIT (only
 * meaningful with GDT_CSUM or METADATA_CSUM) have no bitmap on disk: as
 * the kernel does, their used blocks are the superblock backup and the
 * descriptor blocks (sparse_super, sparse_super2, meta_bg decide where
 * those are) and the bitmaps and inode tables of the groups of the same
 * flex group that lie inside them; everything else is free.
 *
 * A filesystem that needs journal recovery, is marked with errors or was
 * not cleanly unmounted is refused without VD_FS_FORCE: its bitmaps may
 * not say what the journal or the fsck would.  An external journal device
 * and compressed filesystems are not walked.  Memory: one descriptor block
 * and one bitmap block at a time.
 *
 * SPDX-License-Identifier: MIT
 */
#include "fs.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#define SB_OFF 1024
#define SB_LEN 1024
#define EXT_MAGIC 0xEF53

/* superblock fields (offsets inside the superblock) */
#define S_BLOCKS_COUNT_LO 0x04
#define S_FIRST_DATA_BLOCK 0x14
#define S_LOG_BLOCK_SIZE 0x18
#define S_LOG_CLUSTER_SIZE 0x1C
#define S_BLOCKS_PER_GROUP 0x20
#define S_CLUSTERS_PER_GROUP 0x24
#define S_INODES_PER_GROUP 0x28
#define S_MAGIC 0x38
#define S_STATE 0x3A
#define S_REV_LEVEL 0x4C
#define S_INODE_SIZE 0x58
#define S_FEATURE_COMPAT 0x5C
#define S_FEATURE_INCOMPAT 0x60
#define S_FEATURE_RO_COMPAT 0x64
#define S_UUID 0x68
#define S_VOLUME_NAME 0x78
#define S_RESERVED_GDT_BLOCKS 0xCE
#define S_DESC_SIZE 0xFE
#define S_FIRST_META_BG 0x104
#define S_BLOCKS_COUNT_HI 0x150
#define S_LOG_GROUPS_PER_FLEX 0x174
#define S_BACKUP_BGS 0x24C

#define STATE_VALID 0x0001
#define STATE_ERROR 0x0002

#define COMPAT_HAS_JOURNAL 0x0004
#define COMPAT_SPARSE_SUPER2 0x0200

#define INCOMPAT_COMPRESSION 0x0001
#define INCOMPAT_RECOVER 0x0004
#define INCOMPAT_JOURNAL_DEV 0x0008
#define INCOMPAT_META_BG 0x0010
#define INCOMPAT_EXTENTS 0x0040
#define INCOMPAT_64BIT 0x0080
#define INCOMPAT_FLEX_BG 0x0200
#define INCOMPAT_KNOWN 0x3ffdfu /* up to CASEFOLD (0x20000) */

#define RO_COMPAT_SPARSE_SUPER 0x0001
#define RO_COMPAT_HUGE_FILE 0x0008
#define RO_COMPAT_GDT_CSUM 0x0010
#define RO_COMPAT_DIR_NLINK 0x0020
#define RO_COMPAT_EXTRA_ISIZE 0x0040
#define RO_COMPAT_BIGALLOC 0x0200
#define RO_COMPAT_METADATA_CSUM 0x0400

/* group descriptor fields */
#define BG_BLOCK_BITMAP_LO 0x00
#define BG_INODE_BITMAP_LO 0x04
#define BG_INODE_TABLE_LO 0x08
#define BG_FLAGS 0x12
#define BG_BLOCK_BITMAP_HI 0x20
#define BG_INODE_BITMAP_HI 0x24
#define BG_INODE_TABLE_HI 0x28
#define BG_BLOCK_UNINIT 0x0002

struct ext {
	struct vd_fs_walk *w;
	uint32_t bs;              /* block size */
	uint32_t unit;            /* bitmap unit: cluster size (= bs without BIGALLOC) */
	uint32_t ratio;           /* blocks per unit */
	uint64_t blocks;          /* s_blocks_count */
	uint32_t first_data_block;
	uint32_t blocks_per_group, units_per_group, inodes_per_group;
	uint32_t inode_size;
	uint32_t ngroups;
	uint32_t desc_size, descs_per_block;
	uint32_t desc_blocks;     /* blocks of the whole descriptor table */
	uint32_t reserved_gdt;
	uint32_t first_meta_bg;
	uint32_t flex;            /* groups per flex group (1 without FLEX_BG) */
	uint32_t backup_bgs[2];
	uint32_t compat, incompat, ro_compat;
	bool uninit_ok;           /* BLOCK_UNINIT is honoured (group checksums) */
	/* one cached descriptor block */
	uint8_t *dbuf;
	uint64_t dblock;          /* block number in dbuf, UINT64_MAX if none */
	uint8_t *bitmap;          /* one block */
	/* bitmaps and inode tables of the flex group META_FG (its first
	 * group), sorted and merged: what BLOCK_UNINIT groups mark used */
	uint32_t meta_fg;         /* UINT32_MAX if none loaded */
	struct meta { uint64_t start, end; } *meta;
	size_t nmeta, capmeta;
};

/* At most this many separate metadata extents in one flex group (mkfs
 * places each kind contiguously: a handful); more is refused rather than
 * using unbounded memory. */
#define MAX_META (1u << 20)

static bool is_power_of(uint32_t n, uint32_t base)
{
	while (n > 1 && n % base == 0)
		n /= base;
	return n == 1;
}

static bool has_super(const struct ext *e, uint32_t g)
{
	if (g == 0)
		return true;
	if (e->compat & COMPAT_SPARSE_SUPER2)
		return g == e->backup_bgs[0] || g == e->backup_bgs[1];
	if (!(e->ro_compat & RO_COMPAT_SPARSE_SUPER) || g == 1)
		return true;
	if (!(g & 1))
		return false;
	return is_power_of(g, 3) || is_power_of(g, 5) || is_power_of(g, 7);
}

static uint64_t group_first_block(const struct ext *e, uint32_t g)
{
	return e->first_data_block + (uint64_t)g * e->blocks_per_group;
}

/* Blocks of group G (the last one may be short). */
static uint64_t group_blocks(const struct ext *e, uint32_t g)
{
	uint64_t first = group_first_block(e, g);

	return VD_MIN((uint64_t)e->blocks_per_group, e->blocks - first);
}

/* Where descriptor block I (groups I*D .. I*D+D-1) lives, as
 * ext2fs_descriptor_block_loc2 computes it for the primary copy. */
static uint64_t desc_block_loc(const struct ext *e, uint32_t i)
{
	uint32_t g;

	if (!(e->incompat & INCOMPAT_META_BG) || i < e->first_meta_bg)
		return e->first_data_block + 1 + (uint64_t)i;
	g = i * e->descs_per_block;
	return group_first_block(e, g) + (has_super(e, g) ? 1 : 0);
}

/* The descriptor of group G (points into the cached block). */
static int get_desc(struct ext *e, uint32_t g, const uint8_t **out)
{
	uint32_t i = g / e->descs_per_block;
	uint64_t blk = desc_block_loc(e, i);
	int r;

	if (blk >= e->blocks)
		return vd_set_error(e->w->err, EINVAL,
				    "%s: ext at offset %" PRIu64 ": group descriptor block %u is at block %" PRIu64 ", beyond s_blocks_count %" PRIu64,
				    vd_path(e->w->img), e->w->part_off, i, blk, e->blocks);
	if (blk != e->dblock) {
		r = vd_fs_read(e->w, blk * e->bs, e->dbuf, e->bs, "ext group descriptors");
		if (r < 0)
			return r;
		e->dblock = blk;
	}
	*out = e->dbuf + (size_t)(g % e->descs_per_block) * e->desc_size;
	return 0;
}

static uint64_t desc_field(const struct ext *e, const uint8_t *d, unsigned lo, unsigned hi)
{
	uint64_t v = le32dec(d + lo);

	if (e->desc_size >= 64)
		v |= (uint64_t)le32dec(d + hi) << 32;
	return v;
}

static void set_bits(uint8_t *bm, uint64_t from, uint64_t n)
{
	for (uint64_t i = from; i < from + n; i++)
		bm[i / 8] |= (uint8_t)(1u << (i % 8));
}

/* Mark blocks [B, B+N) used in the synthesised bitmap of group G when
 * they fall inside it. */
static void mark_blocks(const struct ext *e, uint8_t *bm, uint32_t g, uint64_t b, uint64_t n)
{
	uint64_t first = group_first_block(e, g), end = first + group_blocks(e, g);
	uint64_t s = VD_MAX(b, first), t = VD_MIN(b + n, end);

	if (s >= t)
		return;
	set_bits(bm, (s - first) / e->ratio, (t - first + e->ratio - 1) / e->ratio - (s - first) / e->ratio);
}

static int cmp_meta(const void *a, const void *b)
{
	const struct meta *x = a, *y = b;
	return x->start < y->start ? -1 : x->start > y->start;
}

/* Add [B, B+N) (clipped to the filesystem) to the metadata list. */
static int meta_add(struct ext *e, uint64_t b, uint64_t n)
{
	struct meta *last = e->nmeta ? &e->meta[e->nmeta - 1] : NULL;
	uint64_t t;

	if (b >= e->blocks || n == 0)
		return 0;
	t = b + VD_MIN(n, e->blocks - b);
	if (last && b >= last->start && b <= last->end) {
		last->end = VD_MAX(last->end, t);
		return 0;
	}
	if (e->nmeta == e->capmeta) {
		size_t cap = e->capmeta ? 2 * e->capmeta : 64;
		struct meta *m;

		if (e->nmeta >= MAX_META)
			return vd_set_error(e->w->err, EINVAL,
					    "%s: ext at offset %" PRIu64 ": the bitmaps and inode tables of flex group %" PRIu32 " (s_log_groups_per_flex) are scattered over more than %u extents",
					    vd_path(e->w->img), e->w->part_off, e->meta_fg / e->flex, MAX_META);
		m = realloc(e->meta, cap * sizeof(*m));
		if (!m)
			return vd_set_error(e->w->err, ENOMEM, "out of memory");
		e->meta = m;
		e->capmeta = cap;
	}
	e->meta[e->nmeta].start = b;
	e->meta[e->nmeta].end = t;
	e->nmeta++;
	return 0;
}

/* Collect the metadata of the flex group starting at group FG: one pass
 * over its members' descriptors, however many BLOCK_UNINIT groups it has
 * (s_log_groups_per_flex can name 2^31 groups: the members are bounded by
 * the group count). */
static int load_flex_meta(struct ext *e, uint32_t fg, uint32_t itable_blocks)
{
	uint64_t lim = VD_MIN((uint64_t)fg + e->flex, (uint64_t)e->ngroups);
	size_t j = 0;
	int r;

	e->meta_fg = fg;
	e->nmeta = 0;
	for (uint64_t k = fg; k < lim; k++) {
		const uint8_t *d;

		if ((k - fg) % 4096 == 4095 && (r = vd_fs_cancelled(e->w)) < 0)
			return r;
		if ((r = get_desc(e, (uint32_t)k, &d)) < 0)
			return r;
		if ((r = meta_add(e, desc_field(e, d, BG_BLOCK_BITMAP_LO, BG_BLOCK_BITMAP_HI), 1)) < 0 ||
		    (r = meta_add(e, desc_field(e, d, BG_INODE_BITMAP_LO, BG_INODE_BITMAP_HI), 1)) < 0 ||
		    (r = meta_add(e, desc_field(e, d, BG_INODE_TABLE_LO, BG_INODE_TABLE_HI), itable_blocks)) < 0)
			return r;
	}
	if (e->nmeta < 2)
		return 0;
	qsort(e->meta, e->nmeta, sizeof(*e->meta), cmp_meta);
	for (size_t i = 1; i < e->nmeta; i++) {
		if (e->meta[i].start <= e->meta[j].end)
			e->meta[j].end = VD_MAX(e->meta[j].end, e->meta[i].end);
		else
			e->meta[++j] = e->meta[i];
	}
	e->nmeta = j + 1;
	return 0;
}

/* Blocks at the start of group G holding a superblock (copy) and group
 * descriptors (sparse_super, sparse_super2 and meta_bg decide). */
static uint64_t sb_gdt_blocks(const struct ext *e, uint32_t g)
{
	uint32_t m = g % e->descs_per_block;
	bool sup = has_super(e, g);
	uint64_t n = sup ? 1 : 0;

	if (!(e->incompat & INCOMPAT_META_BG) || g / e->descs_per_block < e->first_meta_bg) {
		if (sup)
			n += (e->incompat & INCOMPAT_META_BG) ? e->first_meta_bg
							      : (uint64_t)e->desc_blocks + e->reserved_gdt;
	} else if (m == 0 || m == 1 || m == e->descs_per_block - 1) {
		n += 1;
	}
	return n;
}

/* The bitmap of a BLOCK_UNINIT group, as the kernel builds it; SPAN_END:
 * the end of the superblock and descriptor copies of the groups up to G,
 * which can reach past their own group (e2fsprogs marks them across). */
static int uninit_bitmap(struct ext *e, uint32_t g, uint64_t span_end, uint8_t *bm)
{
	uint64_t first = group_first_block(e, g), last = first + group_blocks(e, g);
	uint32_t fg;
	uint32_t itable_blocks = (uint32_t)VD_MIN(((uint64_t)e->inodes_per_group * e->inode_size + e->bs - 1) / e->bs,
						  (uint64_t)UINT32_MAX);
	size_t lo, hi;

	memset(bm, 0, e->bs);
	if (span_end > first)
		mark_blocks(e, bm, g, first, span_end - first);
	/* bitmaps and inode tables of this flex group's members that lie in
	 * this group: the first extent ending after FIRST, by bisection */
	fg = g - g % e->flex;
	if (e->meta_fg != fg) {
		int r = load_flex_meta(e, fg, itable_blocks);
		if (r < 0)
			return r;
	}
	lo = 0;
	hi = e->nmeta;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (e->meta[mid].end <= first)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t i = lo; i < e->nmeta && e->meta[i].start < last; i++)
		mark_blocks(e, bm, g, e->meta[i].start, e->meta[i].end - e->meta[i].start);
	return 0;
}

/* Emit the clear bits of BM (group G) as byte ranges. */
static int emit_bitmap(struct ext *e, uint32_t g, const uint8_t *bm)
{
	uint64_t nunits = (group_blocks(e, g) + e->ratio - 1) / e->ratio;
	uint64_t base = group_first_block(e, g) * e->bs;
	uint64_t i = 0;

	while (i < nunits) {
		uint64_t s;
		int r;

		if (i % 8 == 0 && i + 8 <= nunits && bm[i / 8] == 0xff) {
			i += 8;
			continue;
		}
		if ((bm[i / 8] >> (i % 8)) & 1) {
			i++;
			continue;
		}
		s = i;
		while (i < nunits && !((bm[i / 8] >> (i % 8)) & 1)) {
			if (i % 8 == 0 && i + 8 <= nunits && bm[i / 8] == 0)
				i += 8;
			else
				i++;
		}
		r = vd_fs_emit(e->w, base + s * e->unit, (i - s) * e->unit);
		if (r)
			return r;
	}
	return 0;
}

static bool ext_probe(const uint8_t *buf, size_t len)
{
	return len >= SB_OFF + SB_LEN && le16dec(buf + SB_OFF + S_MAGIC) == EXT_MAGIC;
}

static int bad(struct ext *e, const char *field, uint64_t v, const char *why)
{
	return vd_set_error(e->w->err, EINVAL, "%s: ext superblock at offset %" PRIu64 ": %s %" PRIu64 " %s",
			    vd_path(e->w->img), e->w->part_off + SB_OFF, field, v, why);
}

static int parse_super(struct ext *e, const uint8_t *sb)
{
	struct vd_fs_walk *w = e->w;
	uint32_t log_bs = le32dec(sb + S_LOG_BLOCK_SIZE), log_cs = le32dec(sb + S_LOG_CLUSTER_SIZE);
	uint16_t state = le16dec(sb + S_STATE);
	uint32_t unknown;

	e->compat = le32dec(sb + S_FEATURE_COMPAT);
	e->incompat = le32dec(sb + S_FEATURE_INCOMPAT);
	e->ro_compat = le32dec(sb + S_FEATURE_RO_COMPAT);
	if (log_bs > 6)
		return bad(e, "s_log_block_size", log_bs, "is above 6 (64 KiB blocks)");
	e->bs = 1024u << log_bs;
	if (e->ro_compat & RO_COMPAT_BIGALLOC) {
		if (log_cs < log_bs || log_cs > 29)
			return bad(e, "s_log_cluster_size", log_cs, "is out of range");
		e->unit = 1024u << log_cs;
	} else {
		e->unit = e->bs;
	}
	e->ratio = e->unit / e->bs;
	e->blocks = le32dec(sb + S_BLOCKS_COUNT_LO);
	if (e->incompat & INCOMPAT_64BIT)
		e->blocks |= (uint64_t)le32dec(sb + S_BLOCKS_COUNT_HI) << 32;
	e->first_data_block = le32dec(sb + S_FIRST_DATA_BLOCK);
	e->blocks_per_group = le32dec(sb + S_BLOCKS_PER_GROUP);
	e->units_per_group = le32dec(sb + S_CLUSTERS_PER_GROUP);
	if (!(e->ro_compat & RO_COMPAT_BIGALLOC))
		e->units_per_group = e->blocks_per_group;
	e->inodes_per_group = le32dec(sb + S_INODES_PER_GROUP);
	e->inode_size = le32dec(sb + S_REV_LEVEL) == 0 ? 128 : le16dec(sb + S_INODE_SIZE);
	e->reserved_gdt = le16dec(sb + S_RESERVED_GDT_BLOCKS);
	e->first_meta_bg = le32dec(sb + S_FIRST_META_BG);
	e->backup_bgs[0] = le32dec(sb + S_BACKUP_BGS);
	e->backup_bgs[1] = le32dec(sb + S_BACKUP_BGS + 4);
	e->flex = 1;
	if (e->incompat & INCOMPAT_FLEX_BG) {
		uint8_t lf = sb[S_LOG_GROUPS_PER_FLEX];
		if (lf > 31)
			return bad(e, "s_log_groups_per_flex", lf, "is above 31");
		e->flex = 1u << lf;
	}
	e->desc_size = 32;
	if (e->incompat & INCOMPAT_64BIT) {
		e->desc_size = le16dec(sb + S_DESC_SIZE);
		if (e->desc_size < 64 || e->desc_size > 1024 || !vd_is_pow2(e->desc_size))
			return bad(e, "s_desc_size", e->desc_size, "is not a power of two in 64..1024");
	}
	e->descs_per_block = e->bs / e->desc_size;
	e->uninit_ok = (e->ro_compat & (RO_COMPAT_GDT_CSUM | RO_COMPAT_METADATA_CSUM)) != 0;

	/* what we cannot walk */
	if (e->incompat & INCOMPAT_JOURNAL_DEV)
		return vd_set_error(w->err, ENOTSUP, "%s: ext at offset %" PRIu64 " is an external journal device, not a filesystem",
				    vd_path(w->img), w->part_off);
	if (e->incompat & INCOMPAT_COMPRESSION)
		return vd_set_error(w->err, ENOTSUP, "%s: ext at offset %" PRIu64 ": compression (s_feature_incompat 0x1) is not supported",
				    vd_path(w->img), w->part_off);
	unknown = e->incompat & ~INCOMPAT_KNOWN;
	if (unknown)
		return vd_set_error(w->err, ENOTSUP, "%s: ext at offset %" PRIu64 ": unknown s_feature_incompat bits 0x%x",
				    vd_path(w->img), w->part_off, unknown);

	/* geometry */
	if (e->blocks_per_group == 0 || e->units_per_group == 0 || e->units_per_group > 8 * e->bs ||
	    (uint64_t)e->units_per_group * e->ratio != e->blocks_per_group)
		return bad(e, "s_blocks_per_group", e->blocks_per_group, "does not match the bitmap block size or s_clusters_per_group");
	if (e->first_data_block != (e->bs == 1024 && e->ratio == 1 ? 1u : 0u))
		return bad(e, "s_first_data_block", e->first_data_block, "is not what the block size implies");
	if (e->blocks <= e->first_data_block)
		return bad(e, "s_blocks_count", e->blocks, "is too small");
	if (e->blocks > w->part_len / e->bs)
		return bad(e, "s_blocks_count", e->blocks, "blocks do not fit the partition");
	if (e->inode_size < 128 || e->inode_size > e->bs || !vd_is_pow2(e->inode_size))
		return bad(e, "s_inode_size", e->inode_size, "is not a power of two in 128..block size");
	e->ngroups = (uint32_t)((e->blocks - e->first_data_block + e->blocks_per_group - 1) / e->blocks_per_group);
	e->desc_blocks = (e->ngroups + e->descs_per_block - 1) / e->descs_per_block;
	if ((e->incompat & INCOMPAT_META_BG) && e->first_meta_bg > e->desc_blocks)
		return bad(e, "s_first_meta_bg", e->first_meta_bg, "is beyond the descriptor table");

	snprintf(w->info->type, sizeof(w->info->type), "%s",
		 (e->incompat & (INCOMPAT_EXTENTS | INCOMPAT_64BIT | INCOMPAT_FLEX_BG)) ||
		 (e->ro_compat & (RO_COMPAT_HUGE_FILE | RO_COMPAT_GDT_CSUM | RO_COMPAT_DIR_NLINK |
				  RO_COMPAT_EXTRA_ISIZE | RO_COMPAT_METADATA_CSUM)) ? "ext4" :
		 (e->compat & COMPAT_HAS_JOURNAL) ? "ext3" : "ext2");
	snprintf(w->info->label, sizeof(w->info->label), "%.16s", (const char *)sb + S_VOLUME_NAME);
	vd_uuid_format(sb + S_UUID, w->info->uuid);
	w->info->block_size = e->unit;
	w->info->total_bytes = e->blocks * e->bs;

	/* is the on-disk state trustworthy? */
	if (!(w->flags & VD_FS_FORCE)) {
		if (e->incompat & INCOMPAT_RECOVER)
			return vd_set_error(w->err, EUCLEAN, "%s: %s at offset %" PRIu64 " needs journal recovery (s_feature_incompat has RECOVER): run e2fsck, or use --force",
					    vd_path(w->img), w->info->type, w->part_off);
		if (state & STATE_ERROR)
			return vd_set_error(w->err, EUCLEAN, "%s: %s at offset %" PRIu64 " has errors (s_state 0x%x): run e2fsck, or use --force",
					    vd_path(w->img), w->info->type, w->part_off, state);
		if (!(state & STATE_VALID))
			return vd_set_error(w->err, EUCLEAN, "%s: %s at offset %" PRIu64 " was not cleanly unmounted (s_state 0x%x): run e2fsck, or use --force",
					    vd_path(w->img), w->info->type, w->part_off, state);
	}
	return 0;
}

static int ext_walk(struct vd_fs_walk *w)
{
	struct ext e = { .w = w, .dblock = UINT64_MAX, .meta_fg = UINT32_MAX };
	uint64_t span_end = 0;
	uint8_t sb[SB_LEN];
	int r;

	r = vd_fs_read(w, SB_OFF, sb, SB_LEN, "ext superblock");
	if (r < 0)
		return r;
	if (le16dec(sb + S_MAGIC) != EXT_MAGIC)
		return vd_set_error(w->err, EINVAL, "%s: ext superblock at offset %" PRIu64 ": s_magic 0x%04x is not 0xef53",
				    vd_path(w->img), w->part_off + SB_OFF, le16dec(sb + S_MAGIC));
	r = parse_super(&e, sb);
	if (r < 0)
		return r;
	e.dbuf = vd_malloc(e.bs, w->err);
	e.bitmap = vd_malloc(e.bs, w->err);
	if (!e.dbuf || !e.bitmap) {
		r = -ENOMEM;
		goto out;
	}
	for (uint32_t g = 0; g < e.ngroups; g++) {
		uint64_t first = group_first_block(&e, g);
		const uint8_t *d;
		uint64_t bb;
		uint16_t flags;

		r = vd_fs_cancelled(w);
		if (r == 0)
			r = get_desc(&e, g, &d);
		if (r < 0)
			goto out;
		flags = le16dec(d + BG_FLAGS);
		bb = desc_field(&e, d, BG_BLOCK_BITMAP_LO, BG_BLOCK_BITMAP_HI);
		span_end = VD_MAX(span_end, first + sb_gdt_blocks(&e, g));
		if (e.uninit_ok && (flags & BG_BLOCK_UNINIT)) {
			r = uninit_bitmap(&e, g, span_end, e.bitmap);
		} else {
			if (bb < e.first_data_block || bb >= e.blocks) {
				r = vd_set_error(w->err, EINVAL,
						 "%s: %s at offset %" PRIu64 ": group %u: bg_block_bitmap %" PRIu64 " is outside the filesystem (%" PRIu64 " blocks)",
						 vd_path(w->img), w->info->type, w->part_off, g, bb, e.blocks);
				goto out;
			}
			r = vd_fs_read(w, bb * e.bs, e.bitmap, e.bs, "ext block bitmap");
		}
		if (r < 0)
			goto out;
		r = emit_bitmap(&e, g, e.bitmap);
		if (r)
			goto out;
	}
out:
	free(e.meta);
	free(e.dbuf);
	free(e.bitmap);
	return r;
}

const struct vd_fs_walker vd_fs_ext = {
	.name = "ext",
	.probe = ext_probe,
	.walk = ext_walk,
};
