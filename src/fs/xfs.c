/*
 * XFS: free extents from the by-block-number free-space btrees.
 *
 * The superblock (sector 0, big-endian like everything in XFS) gives the
 * geometry: sb_agcount allocation groups (AGs) of sb_agblocks blocks, the
 * last one possibly shorter.  The AGF, in the second sector of each AG,
 * holds the root and height of the AG's bno btree, whose leaf records are
 * the AG's free extents (AG-relative start, length) in block order.  The
 * blocks on the AG free list (AGFL) are reserved for btree growth and are
 * in no btree, so they are never reported.  Version 4 and version 5 (CRC)
 * filesystems; on v5 the CRC, UUID, owner and block number of every
 * superblock, AGF and btree block are checked.  Every record, key and
 * pointer is checked against the AG; the records of each AG must be sorted
 * and not overlap, must miss the AG headers and the internal log, and must
 * add up to agf_freeblks.
 *
 * XFS has no "clean" flag: whether the log needs recovery is decided from
 * the internal log itself, as at mount time.  Every 512-byte log block
 * starts with the cycle number of the pass that wrote it (record headers,
 * magic 0xFEEDBABE, carry it in their second word), so the head of the log
 * is where the cycle drops by one.  The head is found by bisection, then
 * every block within XFS_LOG_WINDOW of it must carry the cycle expected on
 * its side (a log write torn by a crash leaves holes there; at most eight
 * in-core logs of 256 KiB can be in flight), and the last record before the
 * head must be a single-operation unmount record that ends exactly at the
 * head.  Anything else is refused unless VD_FS_FORCE is given.
 *
 * Not walked: realtime sections (sb_rblocks), external logs (sb_logstart
 * 0), filesystems mkfs did not finish (sb_inprogress), unknown incompatible
 * features.  Memory: one block per btree level (at most XFS_MAX_LEVELS) and
 * a 64 KiB window of the log.
 *
 * SPDX-License-Identifier: MIT
 */
#include "fs.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#define XFS_SB_MAGIC 0x58465342u   /* "XFSB" */
#define XFS_AGF_MAGIC 0x58414746u  /* "XAGF" */
#define XFS_ABTB_MAGIC 0x41425442u /* "ABTB": v4 bno btree block */
#define XFS_AB3B_MAGIC 0x41423342u /* "AB3B": v5 bno btree block */
#define XLOG_MAGIC 0xFEEDBABEu
#define NULLAGBLOCK 0xFFFFFFFFu

/* superblock fields */
#define SB_MAGIC 0
#define SB_BLOCKSIZE 4
#define SB_DBLOCKS 8
#define SB_RBLOCKS 16
#define SB_UUID 32
#define SB_LOGSTART 48
#define SB_AGBLOCKS 84
#define SB_AGCOUNT 88
#define SB_LOGBLOCKS 96
#define SB_VERSIONNUM 100
#define SB_SECTSIZE 102
#define SB_FNAME 108
#define SB_BLOCKLOG 120
#define SB_SECTLOG 121
#define SB_AGBLKLOG 124
#define SB_INPROGRESS 126
#define SB_FEATURES_INCOMPAT 216
#define SB_CRC 224
#define SB_META_UUID 248
#define SB_V5_LEN 264

#define VERSION_NUMBITS 0x000f
#define INCOMPAT_META_UUID 0x04
#define INCOMPAT_NEEDSREPAIR 0x10
#define INCOMPAT_KNOWN 0xffu /* FTYPE .. PARENT; METADIR (0x100) and later are not */

/* AGF fields */
#define AGF_MAGIC 0
#define AGF_VERSIONNUM 4
#define AGF_SEQNO 8
#define AGF_LENGTH 12
#define AGF_BNO_ROOT 16
#define AGF_BNO_LEVEL 28
#define AGF_FREEBLKS 52
#define AGF_UUID 64
#define AGF_CRC 216
#define AGF_V5_LEN 224

/* short-form btree block header */
#define BB_MAGIC 0
#define BB_LEVEL 4
#define BB_NUMRECS 6
#define BB_LEFTSIB 8
#define BB_RIGHTSIB 12
#define BB_BLKNO 16
#define BB_UUID 32
#define BB_OWNER 48
#define BB_CRC 52
#define BB_HDR_V4 16
#define BB_HDR_V5 56
#define REC_LEN 8 /* ar_startblock, ar_blockcount; keys are the same */
#define PTR_LEN 4

#define XFS_MAX_LEVELS 9

/* log record header and operation header */
#define LH_MAGIC 0
#define LH_CYCLE 4
#define LH_VERSION 8
#define LH_LEN 12
#define LH_LSN 16
#define LH_NUM_LOGOPS 40
#define LH_FMT 300
#define LH_FS_UUID 304
#define LH_SIZE 320
#define OH_CLIENTID 8
#define OH_FLAGS 9
#define OH_DATA 12
#define XFS_LOG_CLIENT 0xAA
#define XLOG_UNMOUNT_TRANS 0x20
#define XLOG_UNMOUNT_TYPE 0x556e /* in the byte order of h_fmt */
#define XLOG_FMT_LINUX_LE 1
#define XLOG_HEADER_CYCLE_SIZE 32768u
#define XLOG_MAX_RECORD_BSIZE (256u * 1024)
#define LOG_BB 512u
#define LOG_CHUNK 65536u
/* blocks checked on each side of the head: eight in-core logs of the
 * largest size, twice over */
#define XFS_LOG_WINDOW (2u * 8 * XLOG_MAX_RECORD_BSIZE / LOG_BB)

static uint16_t be16dec(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32dec(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64dec(const uint8_t *p)
{
	return (uint64_t)be32dec(p) << 32 | be32dec(p + 4);
}

struct xfs {
	struct vd_fs_walk *w;
	uint32_t bs, sectsize, agblocks, agcount, logblocks;
	uint64_t dblocks;
	unsigned blocklog, agblklog;
	bool v5;
	uint32_t incompat;
	uint8_t uuid[16];          /* sb_uuid: in log record headers */
	uint8_t meta_uuid[16];     /* in v5 metadata blocks */
	uint32_t log_ag, log_agbno; /* where the internal log is */
	uint32_t hdr;              /* btree block header size */
	uint32_t crc_table[256];
	/* the bno walk of one AG */
	uint32_t ag, aglen, first_free;
	uint8_t *lvl;              /* one block per level */
	uint32_t prev[XFS_MAX_LEVELS]; /* last block visited at each level */
	uint64_t visited, freeblks;
	uint32_t next_start;       /* end of the previous record */
	/* a window of the log */
	uint8_t *lbuf;
	uint64_t lbuf_bb, lbuf_n;  /* first log block held, blocks held */
};

/* CRC-32C (Castagnoli, reflected), as stored little-endian by XFS v5. */
static void crc_init(struct xfs *x)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		x->crc_table[i] = c;
	}
}

/* CRC of BUF[0..LEN) with the four bytes at CRC_OFF taken as zero. */
static uint32_t crc32c(const struct xfs *x, const uint8_t *buf, size_t len, size_t crc_off)
{
	uint32_t c = 0xFFFFFFFFu;

	for (size_t i = 0; i < len; i++) {
		uint8_t b = i - crc_off < 4 ? 0 : buf[i];
		c = x->crc_table[(c ^ b) & 0xff] ^ (c >> 8);
	}
	return ~c;
}

static int bad_sb(struct xfs *x, const char *field, uint64_t v, const char *why)
{
	return vd_set_error(x->w->err, EINVAL, "%s: XFS superblock at offset %" PRIu64 ": %s %" PRIu64 " %s",
			    vd_path(x->w->img), x->w->part_off, field, v, why);
}

/* Errors inside AG x->ag. */
static int bad_ag(struct xfs *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad_ag(struct xfs *x, const char *fmt, ...)
{
	char msg[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return vd_set_error(x->w->err, EINVAL, "%s: xfs at offset %" PRIu64 ": AG %u: %s",
			    vd_path(x->w->img), x->w->part_off, x->ag, msg);
}

static bool xfs_probe(const uint8_t *buf, size_t len)
{
	return len >= 512 && be32dec(buf + SB_MAGIC) == XFS_SB_MAGIC;
}

static bool pow2_log(uint32_t v, unsigned lg, uint32_t lo, uint32_t hi)
{
	return v >= lo && v <= hi && vd_is_pow2(v) && lg < 32 && (1u << lg) == v;
}

static int parse_super(struct xfs *x, const uint8_t *sb, size_t sblen)
{
	struct vd_fs_walk *w = x->w;
	uint16_t version = be16dec(sb + SB_VERSIONNUM);
	uint64_t rblocks = be64dec(sb + SB_RBLOCKS), logstart = be64dec(sb + SB_LOGSTART);
	uint64_t end;

	x->bs = be32dec(sb + SB_BLOCKSIZE);
	x->blocklog = sb[SB_BLOCKLOG];
	x->sectsize = be16dec(sb + SB_SECTSIZE);
	x->dblocks = be64dec(sb + SB_DBLOCKS);
	x->agblocks = be32dec(sb + SB_AGBLOCKS);
	x->agcount = be32dec(sb + SB_AGCOUNT);
	x->agblklog = sb[SB_AGBLKLOG];
	x->logblocks = be32dec(sb + SB_LOGBLOCKS);
	memcpy(x->uuid, sb + SB_UUID, 16);
	memcpy(x->meta_uuid, sb + SB_UUID, 16);

	if ((version & VERSION_NUMBITS) != 4 && (version & VERSION_NUMBITS) != 5)
		return vd_set_error(w->err, ENOTSUP, "%s: XFS superblock at offset %" PRIu64 ": sb_versionnum 0x%04x: version %u is not 4 or 5",
				    vd_path(w->img), w->part_off, version, version & VERSION_NUMBITS);
	x->v5 = (version & VERSION_NUMBITS) == 5;
	if (!pow2_log(x->sectsize, sb[SB_SECTLOG], 512, 32768))
		return bad_sb(x, "sb_sectsize", x->sectsize, "is not a power of two in 512..32768 matching sb_sectlog");
	if (!pow2_log(x->bs, x->blocklog, 512, 65536))
		return bad_sb(x, "sb_blocksize", x->bs, "is not a power of two in 512..65536 matching sb_blocklog");
	if (x->bs < x->sectsize)
		return bad_sb(x, "sb_blocksize", x->bs, "is smaller than sb_sectsize");
	if (x->v5) {
		uint32_t want, got;

		if (sblen < SB_V5_LEN || x->sectsize < SB_V5_LEN)
			return bad_sb(x, "sb_sectsize", x->sectsize, "is too small for a v5 superblock");
		want = crc32c(x, sb, x->sectsize, SB_CRC);
		got = le32dec(sb + SB_CRC);
		if (got != want)
			return vd_set_error(w->err, EINVAL, "%s: XFS superblock at offset %" PRIu64 ": sb_crc 0x%08x does not match the contents (0x%08x)",
					    vd_path(w->img), w->part_off, got, want);
		x->incompat = be32dec(sb + SB_FEATURES_INCOMPAT);
		if (x->incompat & ~INCOMPAT_KNOWN)
			return vd_set_error(w->err, ENOTSUP, "%s: xfs at offset %" PRIu64 ": unknown or unsupported sb_features_incompat bits 0x%x",
					    vd_path(w->img), w->part_off, x->incompat & ~INCOMPAT_KNOWN);
		if (x->incompat & INCOMPAT_META_UUID)
			memcpy(x->meta_uuid, sb + SB_META_UUID, 16);
	}
	if (sb[SB_INPROGRESS])
		return bad_sb(x, "sb_inprogress", sb[SB_INPROGRESS], "is set: mkfs did not finish");
	if (rblocks)
		return vd_set_error(w->err, ENOTSUP, "%s: xfs at offset %" PRIu64 ": sb_rblocks %" PRIu64 ": realtime sections are not supported",
				    vd_path(w->img), w->part_off, rblocks);
	if (logstart == 0)
		return vd_set_error(w->err, ENOTSUP, "%s: xfs at offset %" PRIu64 ": sb_logstart 0: external logs are not supported",
				    vd_path(w->img), w->part_off);

	/* geometry */
	if (x->agblocks < 64 || x->agblocks > (1u << 31))
		return bad_sb(x, "sb_agblocks", x->agblocks, "is not in 64..2^31");
	if (x->agblklog > 31 || (1u << x->agblklog) < x->agblocks || (1u << x->agblklog) / 2 >= x->agblocks)
		return bad_sb(x, "sb_agblklog", x->agblklog, "is not log2(sb_agblocks) rounded up");
	if (x->agcount == 0 || x->dblocks == 0 ||
	    x->dblocks > (uint64_t)x->agcount * x->agblocks ||
	    x->dblocks <= (uint64_t)(x->agcount - 1) * x->agblocks)
		return vd_set_error(w->err, EINVAL,
				    "%s: XFS superblock at offset %" PRIu64 ": sb_agcount %u does not match sb_dblocks %" PRIu64 " / sb_agblocks %u",
				    vd_path(w->img), w->part_off, x->agcount, x->dblocks, x->agblocks);
	if (x->dblocks > w->part_len / x->bs)
		return bad_sb(x, "sb_dblocks", x->dblocks, "blocks do not fit the partition");
	/* the internal log: one extent inside one AG, after its headers */
	x->log_ag = (uint32_t)(logstart >> x->agblklog);
	x->log_agbno = (uint32_t)(logstart & ((1u << x->agblklog) - 1));
	end = (uint64_t)x->log_ag * x->agblocks + x->log_agbno + x->logblocks;
	if ((logstart >> x->agblklog) >= x->agcount || x->log_agbno == 0 ||
	    (uint64_t)x->log_agbno + x->logblocks > x->agblocks || end > x->dblocks)
		return bad_sb(x, "sb_logstart", logstart, "is not inside an AG");
	if (x->logblocks == 0 || (uint64_t)x->logblocks * x->bs / LOG_BB < 2)
		return bad_sb(x, "sb_logblocks", x->logblocks, "is too small");

	snprintf(w->info->type, sizeof(w->info->type), "xfs");
	snprintf(w->info->label, sizeof(w->info->label), "%.12s", (const char *)sb + SB_FNAME);
	vd_uuid_format(x->uuid, w->info->uuid);
	w->info->block_size = x->bs;
	w->info->total_bytes = x->dblocks * x->bs;
	x->hdr = x->v5 ? BB_HDR_V5 : BB_HDR_V4;
	return 0;
}

/* ---- the log ---- */

/* The log block (512 bytes) BB, through a 64 KiB window. */
static int log_block(struct xfs *x, uint64_t bb, const uint8_t **out)
{
	uint64_t nbb = (uint64_t)x->logblocks * x->bs / LOG_BB;
	uint64_t base = ((uint64_t)x->log_ag * x->agblocks + x->log_agbno) * x->bs;
	int r;

	if (bb < x->lbuf_bb || bb >= x->lbuf_bb + x->lbuf_n) {
		x->lbuf_bb = bb - bb % (LOG_CHUNK / LOG_BB);
		x->lbuf_n = VD_MIN((uint64_t)(LOG_CHUNK / LOG_BB), nbb - x->lbuf_bb);
		r = vd_fs_read(x->w, base + x->lbuf_bb * LOG_BB, x->lbuf, (size_t)(x->lbuf_n * LOG_BB), "XFS log");
		if (r < 0) {
			x->lbuf_n = 0;
			return r;
		}
	}
	*out = x->lbuf + (bb - x->lbuf_bb) * LOG_BB;
	return 0;
}

/* Cycle number stamped in log block BB. */
static int log_cycle(struct xfs *x, uint64_t bb, uint32_t *cycle)
{
	const uint8_t *b;
	int r = log_block(x, bb, &b);

	if (r < 0)
		return r;
	*cycle = be32dec(b) == XLOG_MAGIC ? be32dec(b + LH_CYCLE) : be32dec(b);
	return 0;
}

static int dirty(struct xfs *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int dirty(struct xfs *x, const char *fmt, ...)
{
	char why[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	return vd_set_error(x->w->err, EUCLEAN,
			    "%s: xfs at offset %" PRIu64 ": XFS log needs recovery: mount and unmount the filesystem, or run xfs_repair, or use --force (%s)",
			    vd_path(x->w->img), x->w->part_off, why);
}

/* Is the internal log clean (its last record an unmount record at the
 * head)?  0 yes, -EUCLEAN no, other -errno when it could not be read. */
static int check_log(struct xfs *x)
{
	uint64_t nbb = (uint64_t)x->logblocks * x->bs / LOG_BB;
	uint64_t head, lo, hi, from, to, rec = UINT64_MAX, hblks, lenbb;
	uint32_t c0, cn, cycle, c, version, hlen, hsize, fmt;
	const uint8_t *b;
	int r;

	x->lbuf = vd_malloc(LOG_CHUNK, x->w->err);
	if (!x->lbuf)
		return -ENOMEM;
	x->lbuf_n = 0;
	if ((r = log_cycle(x, 0, &c0)) < 0 || (r = log_cycle(x, nbb - 1, &cn)) < 0)
		return r;
	/* head: the first block of the older pass, nbb when the whole log
	 * belongs to one pass */
	cycle = c0;
	if (c0 == 0)
		return dirty(x, "log block 0 has cycle 0: the log was never written");
	if (cn == c0) {
		head = nbb;
	} else if (cn == c0 - 1) {
		lo = 0;
		hi = nbb - 1;
		while (hi - lo > 1) {
			uint64_t mid = lo + (hi - lo) / 2;
			if ((r = log_cycle(x, mid, &c)) < 0)
				return r;
			if (c == cycle)
				lo = mid;
			else if (c == cycle - 1)
				hi = mid;
			else
				return dirty(x, "log block %" PRIu64 " has cycle %u, expected %u or %u", mid, c, cycle, cycle - 1);
		}
		head = hi;
	} else {
		return dirty(x, "the first and last log blocks have cycles %u and %u", c0, cn);
	}
	/* no torn writes around the head: every block before it is of the
	 * current pass, every block after it of the previous one */
	if (2 * (uint64_t)XFS_LOG_WINDOW >= nbb) {
		from = 0;
		to = nbb;
	} else {
		from = head + nbb - XFS_LOG_WINDOW;
		to = head + nbb + XFS_LOG_WINDOW;
	}
	for (uint64_t i = from; i < to; i++) {
		uint64_t p = i % nbb;
		uint32_t want = p < head ? cycle : cycle - 1;
		if ((r = log_cycle(x, p, &c)) < 0)
			return r;
		if (c != want)
			return dirty(x, "log block %" PRIu64 " has cycle %u, expected %u (head at block %" PRIu64 ")",
				     p, c, want, head % nbb);
	}
	/* the last record header before the head */
	for (uint64_t i = 1; i <= VD_MIN(nbb, (uint64_t)XFS_LOG_WINDOW); i++) {
		uint64_t p = (head + nbb - i) % nbb;
		if ((r = log_block(x, p, &b)) < 0)
			return r;
		if (be32dec(b + LH_MAGIC) == XLOG_MAGIC) {
			rec = p;
			break;
		}
	}
	if (rec == UINT64_MAX)
		return dirty(x, "no log record header before the head at block %" PRIu64, head % nbb);
	if ((r = log_block(x, rec, &b)) < 0)
		return r;
	version = be32dec(b + LH_VERSION);
	hlen = be32dec(b + LH_LEN);
	hsize = be32dec(b + LH_SIZE);
	fmt = be32dec(b + LH_FMT);
	c = be32dec(b + LH_CYCLE);
	if (c != (rec < head ? cycle : cycle - 1) ||
	    be64dec(b + LH_LSN) != ((uint64_t)c << 32 | rec))
		return dirty(x, "log record at block %" PRIu64 ": h_lsn 0x%" PRIx64 " does not match its place and cycle %u",
			     rec, be64dec(b + LH_LSN), c);
	if (version != 1 && version != 2)
		return dirty(x, "log record at block %" PRIu64 ": h_version %u", rec, version);
	if (memcmp(b + LH_FS_UUID, x->uuid, 16) != 0)
		return dirty(x, "log record at block %" PRIu64 ": h_fs_uuid is not the filesystem's", rec);
	hblks = 1;
	if (version == 2 && hsize > XLOG_HEADER_CYCLE_SIZE) {
		if (hsize > XLOG_MAX_RECORD_BSIZE)
			return dirty(x, "log record at block %" PRIu64 ": h_size %u", rec, hsize);
		hblks = (hsize + XLOG_HEADER_CYCLE_SIZE - 1) / XLOG_HEADER_CYCLE_SIZE;
	}
	lenbb = ((uint64_t)hlen + LOG_BB - 1) / LOG_BB;
	if (hlen == 0 || hblks + lenbb > nbb || (rec + hblks + lenbb) % nbb != head % nbb)
		return dirty(x, "the last log record (block %" PRIu64 ", h_len %u) does not end at the head (block %" PRIu64 ")",
			     rec, hlen, head % nbb);
	if (be32dec(b + LH_NUM_LOGOPS) != 1)
		return dirty(x, "the last log record (block %" PRIu64 ") has %u operations, an unmount record has 1",
			     rec, be32dec(b + LH_NUM_LOGOPS));
	/* its operation: the first word of the block is the cycle stamp; the
	 * payload is in the byte order of the machine that wrote it; oh_len
	 * is 0 in the records of recent kernels, 8 in those of mkfs */
	if ((r = log_block(x, (rec + hblks) % nbb, &b)) < 0)
		return r;
	if (b[OH_CLIENTID] != XFS_LOG_CLIENT || !(b[OH_FLAGS] & XLOG_UNMOUNT_TRANS) ||
	    (fmt == XLOG_FMT_LINUX_LE ? le16dec(b + OH_DATA) : be16dec(b + OH_DATA)) != XLOG_UNMOUNT_TYPE)
		return dirty(x, "the last log record (block %" PRIu64 ") is not an unmount record (oh_clientid 0x%02x, oh_flags 0x%02x)",
			     rec, b[OH_CLIENTID], b[OH_FLAGS]);
	return 0;
}

/* ---- the bno btree of one AG ---- */

static int check_v5_block(struct xfs *x, const uint8_t *b, uint32_t len, uint32_t agbno,
			  unsigned uuid_off, unsigned crc_off, const char *what)
{
	uint32_t want = crc32c(x, b, len, crc_off), got = le32dec(b + crc_off);

	if (got != want)
		return bad_ag(x, "%s at block %u: CRC 0x%08x does not match the contents (0x%08x)", what, agbno, got, want);
	if (memcmp(b + uuid_off, x->meta_uuid, 16) != 0)
		return bad_ag(x, "%s at block %u: UUID is not the filesystem's", what, agbno);
	return 0;
}

/* Read btree block AGBNO into level LEVEL's buffer and check its header. */
static int read_node(struct xfs *x, uint32_t agbno, unsigned level, uint8_t **out)
{
	uint8_t *b = x->lvl + (size_t)level * x->bs;
	uint32_t magic, maxrecs, left, right;
	uint16_t lv, n;
	int r;

	if (agbno < x->first_free || agbno >= x->aglen)
		return bad_ag(x, "bno btree pointer %u is outside the AG (%u..%u)", agbno, x->first_free, x->aglen - 1);
	if (++x->visited > x->aglen)
		return bad_ag(x, "bno btree has more blocks than the AG (a loop?)");
	r = vd_fs_read(x->w, ((uint64_t)x->ag * x->agblocks + agbno) * x->bs, b, x->bs, "XFS bno btree block");
	if (r < 0)
		return r;
	magic = be32dec(b + BB_MAGIC);
	if (magic != (x->v5 ? XFS_AB3B_MAGIC : XFS_ABTB_MAGIC))
		return bad_ag(x, "bno btree block %u: magic 0x%08x is not 0x%08x", agbno, magic,
			      x->v5 ? XFS_AB3B_MAGIC : XFS_ABTB_MAGIC);
	if (x->v5) {
		uint64_t daddr = ((uint64_t)x->ag * x->agblocks + agbno) << (x->blocklog - 9);
		r = check_v5_block(x, b, x->bs, agbno, BB_UUID, BB_CRC, "bno btree block");
		if (r < 0)
			return r;
		if (be64dec(b + BB_BLKNO) != daddr)
			return bad_ag(x, "bno btree block %u: bb_blkno %" PRIu64 " is not its address %" PRIu64,
				      agbno, be64dec(b + BB_BLKNO), daddr);
		if (be32dec(b + BB_OWNER) != x->ag)
			return bad_ag(x, "bno btree block %u: bb_owner %u is not the AG", agbno, be32dec(b + BB_OWNER));
	}
	lv = be16dec(b + BB_LEVEL);
	n = be16dec(b + BB_NUMRECS);
	if (lv != level)
		return bad_ag(x, "bno btree block %u: bb_level %u, expected %u", agbno, lv, level);
	maxrecs = (x->bs - x->hdr) / (level ? REC_LEN + PTR_LEN : REC_LEN);
	if (n == 0 || n > maxrecs)
		return bad_ag(x, "bno btree block %u: bb_numrecs %u is not in 1..%u", agbno, n, maxrecs);
	left = be32dec(b + BB_LEFTSIB);
	right = be32dec(b + BB_RIGHTSIB);
	if (left != x->prev[level])
		return bad_ag(x, "bno btree block %u: bb_leftsib %u, expected %u", agbno, left, x->prev[level]);
	if (right != NULLAGBLOCK && (right < x->first_free || right >= x->aglen))
		return bad_ag(x, "bno btree block %u: bb_rightsib %u is outside the AG", agbno, right);
	x->prev[level] = agbno;
	*out = b;
	return 0;
}

/* Walk the subtree at AGBNO (LEVEL) left to right; its records must start
 * at or after LO and end at or before HI. */
static int walk_node(struct xfs *x, uint32_t agbno, unsigned level, uint64_t lo, uint64_t hi)
{
	uint8_t *b = NULL;
	uint16_t n;
	int r = vd_fs_cancelled(x->w);

	if (r == 0)
		r = read_node(x, agbno, level, &b);

	if (r)
		return r;
	n = be16dec(b + BB_NUMRECS);
	if (level == 0) {
		for (unsigned i = 0; i < n; i++) {
			const uint8_t *rec = b + x->hdr + (size_t)i * REC_LEN;
			uint32_t start = be32dec(rec), len = be32dec(rec + 4);
			uint64_t end = (uint64_t)start + len;

			if (len == 0 || start < x->first_free || end > x->aglen)
				return bad_ag(x, "bno btree block %u: record %u (%u, %u blocks) is outside the AG (%u..%u)",
					      agbno, i, start, len, x->first_free, x->aglen - 1);
			if (start < x->next_start || start < lo || end > hi)
				return bad_ag(x, "bno btree block %u: record %u (%u, %u blocks) is out of order or overlaps the previous one",
					      agbno, i, start, len);
			if (x->ag == x->log_ag && start < (uint64_t)x->log_agbno + x->logblocks && end > x->log_agbno)
				return bad_ag(x, "bno btree block %u: record %u (%u, %u blocks) overlaps the log",
					      agbno, i, start, len);
			x->next_start = (uint32_t)end;
			x->freeblks += len;
			r = vd_fs_emit(x->w, ((uint64_t)x->ag * x->agblocks + start) * x->bs, (uint64_t)len * x->bs);
			if (r)
				return r;
		}
		return 0;
	}
	/* a node: N keys, then the pointers after maxrecs keys */
	{
		uint32_t maxrecs = (x->bs - x->hdr) / (REC_LEN + PTR_LEN);
		const uint8_t *keys = b + x->hdr, *ptrs = keys + (size_t)maxrecs * REC_LEN;
		uint32_t prev_key = 0;

		for (unsigned i = 0; i < n; i++) {
			uint32_t key = be32dec(keys + (size_t)i * REC_LEN);
			uint32_t ptr = be32dec(ptrs + (size_t)i * PTR_LEN);
			uint64_t next;

			if ((i > 0 && key <= prev_key) || key < lo || key >= hi)
				return bad_ag(x, "bno btree block %u: key %u (%u) is out of order", agbno, i, key);
			prev_key = key;
			/* the next key bounds this child; the level buffer is
			 * overwritten below, so read it first */
			next = i + 1 < n ? be32dec(keys + (size_t)(i + 1) * REC_LEN) : hi;
			if (next <= key)
				return bad_ag(x, "bno btree block %u: key %u (%u) is out of order", agbno, i + 1, (uint32_t)next);
			r = walk_node(x, ptr, level - 1, key, next);
			if (r)
				return r;
			/* the child used other buffers; ours is intact */
		}
	}
	return 0;
}

static int walk_ag(struct xfs *x, uint32_t g, uint8_t *agf)
{
	uint32_t magic, root, levels, freeblks, want_len;
	int r;

	x->ag = g;
	x->aglen = g + 1 < x->agcount ? x->agblocks : (uint32_t)(x->dblocks - (uint64_t)g * x->agblocks);
	/* the AG headers: superblock, AGF, AGI, AGFL sectors */
	x->first_free = (4 * x->sectsize + x->bs - 1) / x->bs;
	r = vd_fs_read(x->w, (uint64_t)g * x->agblocks * x->bs + x->sectsize, agf, x->sectsize, "XFS AGF");
	if (r < 0)
		return r;
	magic = be32dec(agf + AGF_MAGIC);
	if (magic != XFS_AGF_MAGIC)
		return bad_ag(x, "AGF magic 0x%08x is not 0x%08x (XAGF)", magic, XFS_AGF_MAGIC);
	if (x->v5) {
		if (x->sectsize < AGF_V5_LEN)
			return bad_ag(x, "sector size %u is too small for a v5 AGF", x->sectsize);
		r = check_v5_block(x, agf, x->sectsize, 0, AGF_UUID, AGF_CRC, "AGF");
		if (r < 0)
			return r;
	}
	if (be32dec(agf + AGF_VERSIONNUM) != 1)
		return bad_ag(x, "agf_versionnum %u is not 1", be32dec(agf + AGF_VERSIONNUM));
	if (be32dec(agf + AGF_SEQNO) != g)
		return bad_ag(x, "agf_seqno %u is not the AG number", be32dec(agf + AGF_SEQNO));
	want_len = x->aglen;
	if (be32dec(agf + AGF_LENGTH) != want_len)
		return bad_ag(x, "agf_length %u, expected %u from the superblock", be32dec(agf + AGF_LENGTH), want_len);
	root = be32dec(agf + AGF_BNO_ROOT);
	levels = be32dec(agf + AGF_BNO_LEVEL);
	freeblks = be32dec(agf + AGF_FREEBLKS);
	if (levels == 0 || levels > XFS_MAX_LEVELS)
		return bad_ag(x, "agf_levels[0] %u is not in 1..%u", levels, XFS_MAX_LEVELS);
	if (root < x->first_free || root >= x->aglen)
		return bad_ag(x, "agf_roots[0] %u is outside the AG (%u..%u)", root, x->first_free, x->aglen - 1);
	if (freeblks > x->aglen)
		return bad_ag(x, "agf_freeblks %u is larger than the AG (%u blocks)", freeblks, x->aglen);

	x->visited = 0;
	x->freeblks = 0;
	x->next_start = 0;
	for (unsigned l = 0; l < XFS_MAX_LEVELS; l++)
		x->prev[l] = NULLAGBLOCK;
	r = walk_node(x, root, levels - 1, 0, x->aglen);
	if (r)
		return r;
	/* every level ended with its rightmost block */
	for (unsigned l = 0; l < levels; l++) {
		uint8_t *b = x->lvl + (size_t)l * x->bs;
		if (be32dec(b + BB_RIGHTSIB) != NULLAGBLOCK)
			return bad_ag(x, "bno btree block %u (level %u): bb_rightsib %u, but no block follows",
				      x->prev[l], l, be32dec(b + BB_RIGHTSIB));
	}
	if (x->freeblks != freeblks)
		return bad_ag(x, "agf_freeblks %u, but the bno btree holds %" PRIu64 " free blocks", freeblks, x->freeblks);
	return 0;
}

static int xfs_walk(struct vd_fs_walk *w)
{
	struct xfs x = { .w = w };
	uint8_t *buf;
	size_t n = (size_t)VD_MIN((uint64_t)32768, w->part_len);
	int r;

	crc_init(&x);
	if (n < 512)
		return vd_set_error(w->err, EINVAL, "%s: xfs at offset %" PRIu64 ": the partition is too small",
				    vd_path(w->img), w->part_off);
	buf = vd_malloc(32768, w->err);
	if (!buf)
		return -ENOMEM;
	r = vd_fs_read(w, 0, buf, n, "XFS superblock");
	if (r < 0)
		goto out;
	if (be32dec(buf + SB_MAGIC) != XFS_SB_MAGIC) {
		r = vd_set_error(w->err, EINVAL, "%s: XFS superblock at offset %" PRIu64 ": sb_magicnum 0x%08x is not 0x%08x (XFSB)",
				 vd_path(w->img), w->part_off, be32dec(buf + SB_MAGIC), XFS_SB_MAGIC);
		goto out;
	}
	if (be16dec(buf + SB_SECTSIZE) > n) {
		r = bad_sb(&x, "sb_sectsize", be16dec(buf + SB_SECTSIZE), "is larger than the partition");
		goto out;
	}
	r = parse_super(&x, buf, n);
	if (r < 0)
		goto out;
	if (x.v5 && (x.incompat & INCOMPAT_NEEDSREPAIR) && !(w->flags & VD_FS_FORCE)) {
		r = vd_set_error(w->err, EUCLEAN, "%s: xfs at offset %" PRIu64 " needs xfs_repair (sb_features_incompat has NEEDSREPAIR), or use --force",
				 vd_path(w->img), w->part_off);
		goto out;
	}
	if (!(w->flags & VD_FS_FORCE)) {
		r = check_log(&x);
		if (r < 0)
			goto out;
	}
	x.lvl = vd_malloc((size_t)XFS_MAX_LEVELS * x.bs, w->err);
	if (!x.lvl) {
		r = -ENOMEM;
		goto out;
	}
	for (uint32_t g = 0; g < x.agcount; g++) {
		r = vd_fs_cancelled(w);
		if (r == 0)
			r = walk_ag(&x, g, buf);
		if (r)
			goto out;
	}
out:
	free(x.lvl);
	free(x.lbuf);
	free(buf);
	return r;
}

const struct vd_fs_walker vd_fs_xfs = {
	.name = "xfs",
	.probe = xfs_probe,
	.walk = xfs_walk,
};
