/*
 * NTFS: free clusters from the $Bitmap.
 *
 * The boot sector gives the geometry (bytes per sector, sectors per
 * cluster, total sectors) and the cluster of record 0 of the MFT.  That
 * record, $MFT, describes the MFT itself: the runlist of its unnamed $DATA
 * attribute says where every later record lives, so records 3 ($Volume) and
 * 6 ($Bitmap) are read through it, never assumed to follow record 0.
 * $Bitmap's unnamed $DATA holds one bit per cluster, 1 = in use; it is read
 * through its own runlist in chunks, and every run of 0 bits becomes a free
 * range.  Bits past the last cluster are padding, not free space.
 *
 * Every record is checked before use: "FILE" magic, the update sequence
 * (the last two bytes of every 512-byte stride must carry the update
 * sequence number, and are replaced by the saved bytes), the header
 * offsets and sizes, the record number, every attribute header, and every
 * run (positive lengths, clusters inside the volume; sparse runs are
 * refused for $MFT and $Bitmap).  As a cross-check the boot sector, the
 * first cluster of every $MFT and $Bitmap run must be marked in use.
 *
 * A volume with the dirty flag of $VOLUME_INFORMATION set, or whose
 * journal ($LogFile, record 2) is not clean, is refused without
 * VD_FS_FORCE (see check_logfile).  Not handled: attribute lists that move $MFT's or
 * $Bitmap's $DATA out of the base record (refused), compressed or
 * encrypted $Bitmap (refused); hiberfil.sys itself is not looked at, so a
 * hibernated Windows is caught only by its journal (the man page says to
 * shut Windows down fully).  Memory: a
 * few MFT records (at most 64 KiB each), one runlist per attribute, bounded
 * by the record size, and one 64 KiB bitmap chunk.
 *
 * SPDX-License-Identifier: MIT
 */
#include "fs.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

/* boot sector */
#define BS_OEM 3
#define BS_BPS 11
#define BS_SPC 13
#define BS_TOTAL 40
#define BS_MFT_LCN 48
#define BS_MFTMIRR_LCN 56
#define BS_CPR 64
#define BS_CPI 68
#define BS_SERIAL 72
#define BS_SIG 510

/* MFT record header */
#define R_USA_OFS 4
#define R_USA_COUNT 6
#define R_ATTRS 20
#define R_FLAGS 22
#define R_USED 24
#define R_ALLOC 28
#define R_NUMBER 44
#define R_HDR_31 48      /* NTFS 3.1 header, with the record number */
#define R_IN_USE 0x0001
#define STRIDE 512u      /* update sequence stride, whatever the sector size */

/* attribute header */
#define A_TYPE 0
#define A_LEN 4
#define A_NONRES 8
#define A_NAME_LEN 9
#define A_NAME_OFS 10
#define A_FLAGS 12
#define A_VALUE_LEN 16   /* resident */
#define A_VALUE_OFS 20
#define A_LOWEST_VCN 16  /* non-resident */
#define A_HIGHEST_VCN 24
#define A_MP_OFS 32
#define A_ALLOC_SIZE 40
#define A_DATA_SIZE 48
#define A_INIT_SIZE 56
#define A_RES_HDR 24
#define A_NONRES_HDR 64
#define ATTR_END 0xFFFFFFFFu
#define AT_VOLUME_NAME 0x60
#define AT_VOLUME_INFORMATION 0x70
#define AT_DATA 0x80
#define ATTR_COMPRESSED 0x0001
#define ATTR_ENCRYPTED 0x4000

#define VOL_FLAGS 10     /* in $VOLUME_INFORMATION */
#define VOL_DIRTY 0x0001

#define REC_MFT 0
#define REC_LOGFILE 2
#define REC_VOLUME 3
#define REC_BITMAP 6

#define MAX_REC 65536u
#define MAX_CLUSTER (2u << 20)
#define CHUNK 65536u

struct run {
	uint64_t vcn, lcn, len; /* lcn UINT64_MAX: sparse */
};

struct runlist {
	struct run *r;
	size_t n;
	uint64_t clusters; /* sum of the lengths */
};

struct ntfs {
	struct vd_fs_walk *w;
	uint32_t bps, cluster, recsize;
	uint64_t nclusters, mft_lcn;
	uint8_t *rec;           /* one MFT record */
	struct runlist mft;     /* $MFT's $DATA */
	struct runlist bmp;     /* $Bitmap's $DATA */
	uint64_t bmp_size;      /* bytes of $Bitmap that hold cluster bits */
};

static int bad(struct ntfs *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(struct ntfs *n, const char *fmt, ...)
{
	char msg[240];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return vd_set_error(n->w->err, EINVAL, "%s: ntfs at offset %" PRIu64 ": %s",
			    vd_path(n->w->img), n->w->part_off, msg);
}

/* Up to 8 bytes of P as text, non-printable bytes as '?'. */
static const char *text(char out[9], const uint8_t *p, size_t len)
{
	size_t i;

	for (i = 0; i < len && i < 8; i++)
		out[i] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
	out[i] = 0;
	return out;
}

static bool ntfs_probe(const uint8_t *buf, size_t len)
{
	return len >= 512 && memcmp(buf + BS_OEM, "NTFS    ", 8) == 0 &&
	       buf[BS_SIG] == 0x55 && buf[BS_SIG + 1] == 0xAA;
}

/* Size in bytes of an MFT or index record from its boot-sector byte:
 * positive, clusters; negative, 2^-v bytes.  0 if out of range. */
static uint32_t rec_size(uint8_t v, uint32_t cluster)
{
	int8_t s = (int8_t)v;

	if (s > 0)
		return (uint64_t)s * cluster <= MAX_REC ? (uint32_t)s * cluster : 0;
	if (s < -16 || s > -9)   /* 512 .. 64 KiB */
		return 0;
	return 1u << -s;
}

static int parse_boot(struct ntfs *n, const uint8_t *b)
{
	struct vd_fs_walk *w = n->w;
	uint8_t spc_raw = b[BS_SPC];
	uint64_t spc, total = le64dec(b + BS_TOTAL), mirr = le64dec(b + BS_MFTMIRR_LCN);
	uint32_t irec;
	char t[9];

	if (memcmp(b + BS_OEM, "NTFS    ", 8) != 0)
		return bad(n, "boot sector OEM id \"%s\" is not \"NTFS    \"", text(t, b + BS_OEM, 8));
	if (b[BS_SIG] != 0x55 || b[BS_SIG + 1] != 0xAA)
		return bad(n, "boot sector end marker %02x %02x is not 55 AA", b[BS_SIG], b[BS_SIG + 1]);
	n->bps = le16dec(b + BS_BPS);
	if (n->bps < 256 || n->bps > 4096 || !vd_is_pow2(n->bps))
		return bad(n, "bytes per sector %u is not a power of two in 256..4096", n->bps);
	if (spc_raw == 0 || (spc_raw > 0x80 && spc_raw < 0xF4) || (spc_raw <= 0x80 && !vd_is_pow2(spc_raw)))
		return bad(n, "sectors per cluster 0x%02x is not a power of two (or 2^(256-v) for v >= 0xf4)", spc_raw);
	spc = spc_raw <= 0x80 ? spc_raw : 1u << (256 - spc_raw);
	if (spc * n->bps > MAX_CLUSTER)
		return bad(n, "sectors per cluster 0x%02x: clusters of %" PRIu64 " bytes are larger than %u", spc_raw,
			   spc * n->bps, MAX_CLUSTER);
	n->cluster = (uint32_t)(spc * n->bps);
	if (total == 0 || total > w->part_len / n->bps)
		return bad(n, "total sectors %" PRIu64 " is 0 or larger than the partition (%" PRIu64 " sectors of %u bytes)",
			   total, w->part_len / n->bps, n->bps);
	n->nclusters = total / spc;
	if (n->nclusters < 8)
		return bad(n, "total sectors %" PRIu64 ": only %" PRIu64 " clusters", total, n->nclusters);
	n->recsize = rec_size(b[BS_CPR], n->cluster);
	if (n->recsize == 0 || !vd_is_pow2(n->recsize) || n->recsize < STRIDE)
		return bad(n, "clusters per MFT record 0x%02x is not a record size in 512..65536 bytes", b[BS_CPR]);
	irec = rec_size(b[BS_CPI], n->cluster);
	if (irec == 0 || !vd_is_pow2(irec) || irec < STRIDE)
		return bad(n, "clusters per index record 0x%02x is not a record size in 512..65536 bytes", b[BS_CPI]);
	n->mft_lcn = le64dec(b + BS_MFT_LCN);
	if (n->mft_lcn == 0 || n->mft_lcn >= n->nclusters)
		return bad(n, "MFT LCN %" PRIu64 " is not inside the volume (1..%" PRIu64 ")", n->mft_lcn, n->nclusters - 1);
	if (mirr == 0 || mirr >= n->nclusters)
		return bad(n, "MFT mirror LCN %" PRIu64 " is not inside the volume (1..%" PRIu64 ")", mirr, n->nclusters - 1);
	return 0;
}

/* Check and undo the update sequence of the record in n->rec, which should
 * be record NUM. */
static int fixup(struct ntfs *n, uint64_t num)
{
	uint8_t *r = n->rec;
	uint32_t usa = le16dec(r + R_USA_OFS), cnt = le16dec(r + R_USA_COUNT);
	uint32_t sectors = n->recsize / STRIDE, attrs, used, alloc;
	char t[9];

	if (memcmp(r, "FILE", 4) != 0)
		return bad(n, "MFT record %" PRIu64 ": magic \"%s\" is not \"FILE\"", num, text(t, r, 4));
	if (cnt != sectors + 1)
		return bad(n, "MFT record %" PRIu64 ": update sequence count %u, expected %u", num, cnt, sectors + 1);
	if (usa < 40 || usa % 2 || usa + 2 * cnt > STRIDE - 2)
		return bad(n, "MFT record %" PRIu64 ": update sequence offset %u is out of range", num, usa);
	for (uint32_t i = 0; i < sectors; i++) {
		uint8_t *end = r + (size_t)(i + 1) * STRIDE - 2;
		if (memcmp(end, r + usa, 2) != 0)
			return bad(n, "MFT record %" PRIu64 ": update sequence mismatch in sector %u (0x%04x, expected 0x%04x): torn write",
				   num, i, le16dec(end), le16dec(r + usa));
		memcpy(end, r + usa + 2 * (i + 1), 2);
	}
	attrs = le16dec(r + R_ATTRS);
	used = le32dec(r + R_USED);
	alloc = le32dec(r + R_ALLOC);
	if (alloc != n->recsize)
		return bad(n, "MFT record %" PRIu64 ": allocated size %u is not the record size %u", num, alloc, n->recsize);
	if (used > n->recsize || used < attrs + 8)
		return bad(n, "MFT record %" PRIu64 ": bytes in use %u is out of range", num, used);
	if (attrs % 8 || attrs < usa + 2 * cnt)
		return bad(n, "MFT record %" PRIu64 ": first attribute offset %u is out of range", num, attrs);
	if (!(le16dec(r + R_FLAGS) & R_IN_USE))
		return bad(n, "MFT record %" PRIu64 " is not in use", num);
	if (usa >= R_HDR_31 && le32dec(r + R_NUMBER) != num)
		return bad(n, "MFT record %" PRIu64 ": record number field says %u", num, le32dec(r + R_NUMBER));
	return 0;
}

/* The unnamed attribute TYPE of the record in n->rec (already fixed up);
 * its offset in *AOFF and length in *ALEN.  -ENOENT (no message) when
 * there is none. */
static int find_attr(struct ntfs *n, uint64_t num, uint32_t type, uint32_t *aoff, uint32_t *alen)
{
	const uint8_t *r = n->rec;
	uint32_t used = le32dec(r + R_USED), off = le16dec(r + R_ATTRS);

	/* each attribute takes at least 16 bytes: the loop is bounded */
	while (off + 8 <= used) {
		uint32_t t = le32dec(r + off + A_TYPE), len;
		if (t == ATTR_END)
			return -ENOENT;
		len = le32dec(r + off + A_LEN);
		if (len < A_RES_HDR || len % 8 || len > used - off)
			return bad(n, "MFT record %" PRIu64 ": attribute 0x%x at %u: length %u is out of range (record holds %u bytes)",
				   num, t, off, len, used);
		if (r[off + A_NONRES] > 1)
			return bad(n, "MFT record %" PRIu64 ": attribute 0x%x: non-resident flag %u", num, t, r[off + A_NONRES]);
		if (r[off + A_NONRES] ? len < A_NONRES_HDR : false)
			return bad(n, "MFT record %" PRIu64 ": non-resident attribute 0x%x: length %u is too short", num, t, len);
		if (r[off + A_NAME_LEN] &&
		    (uint32_t)le16dec(r + off + A_NAME_OFS) + 2u * r[off + A_NAME_LEN] > len)
			return bad(n, "MFT record %" PRIu64 ": attribute 0x%x: name at %u is beyond its end", num, t,
				   le16dec(r + off + A_NAME_OFS));
		if (t == type && r[off + A_NAME_LEN] == 0) {
			*aoff = off;
			*alen = len;
			return 0;
		}
		off += len;
	}
	return bad(n, "MFT record %" PRIu64 ": attribute list not terminated by 0xffffffff", num);
}

/* The value of a resident attribute. */
static int resident(struct ntfs *n, uint64_t num, uint32_t aoff, uint32_t alen, uint32_t min,
		    const uint8_t **val, uint32_t *vlen)
{
	const uint8_t *a = n->rec + aoff;
	uint32_t vo = le16dec(a + A_VALUE_OFS), vl = le32dec(a + A_VALUE_LEN);

	if (a[A_NONRES])
		return bad(n, "MFT record %" PRIu64 ": attribute 0x%x is non-resident", num, le32dec(a));
	if (vo > alen || vl > alen - vo || vl < min)
		return bad(n, "MFT record %" PRIu64 ": attribute 0x%x: value (%u bytes at %u) is out of range", num,
			   le32dec(a), vl, vo);
	*val = a + vo;
	*vlen = vl;
	return 0;
}

/* Decode the runlist of the non-resident attribute at AOFF into RL; it must
 * start at VCN 0 and hold every cluster up to its highest VCN. */
static int decode_runs(struct ntfs *n, uint64_t num, const char *what, uint32_t aoff, uint32_t alen,
		       struct runlist *rl)
{
	const uint8_t *a = n->rec + aoff;
	uint32_t mp = le16dec(a + A_MP_OFS), p;
	uint64_t vcn = 0, highest = le64dec(a + A_HIGHEST_VCN);
	int64_t lcn = 0;
	size_t cap;

	if (!a[A_NONRES])
		return bad(n, "%s (MFT record %" PRIu64 "): $DATA is resident", what, num);
	if (le16dec(a + A_FLAGS) & (ATTR_COMPRESSED | ATTR_ENCRYPTED))
		return vd_set_error(n->w->err, ENOTSUP, "%s: ntfs at offset %" PRIu64 ": %s is compressed or encrypted (flags 0x%04x)",
				    vd_path(n->w->img), n->w->part_off, what, le16dec(a + A_FLAGS));
	if (le64dec(a + A_LOWEST_VCN) != 0)
		return vd_set_error(n->w->err, ENOTSUP, "%s: ntfs at offset %" PRIu64 ": %s: $DATA starts at VCN %" PRIu64 " (attribute lists are not supported)",
				    vd_path(n->w->img), n->w->part_off, what, le64dec(a + A_LOWEST_VCN));
	if (mp < A_NONRES_HDR || mp >= alen)
		return bad(n, "%s (MFT record %" PRIu64 "): mapping pairs offset %u is out of range", what, num, mp);
	if (highest >= n->nclusters)
		return bad(n, "%s (MFT record %" PRIu64 "): highest VCN %" PRIu64 " is beyond the volume (%" PRIu64 " clusters)",
			   what, num, highest, n->nclusters);
	/* every run takes at least two bytes */
	cap = (alen - mp) / 2 + 1;
	rl->r = vd_calloc(cap, sizeof(*rl->r), n->w->err);
	if (!rl->r)
		return -ENOMEM;
	rl->n = 0;
	for (p = aoff + mp; ; ) {
		uint8_t h;
		unsigned ls, os;
		uint64_t len = 0;
		int64_t delta = 0;

		if (p >= aoff + alen)
			return bad(n, "%s (MFT record %" PRIu64 "): runlist is not terminated inside the attribute", what, num);
		h = n->rec[p++];
		if (h == 0)
			break;
		ls = h & 0xf;
		os = h >> 4;
		if (ls == 0 || ls > 8 || os > 8 || p + ls + os > aoff + alen)
			return bad(n, "%s (MFT record %" PRIu64 "): run %zu: header byte 0x%02x is invalid or runs past the attribute",
				   what, num, rl->n, h);
		for (unsigned i = 0; i < ls; i++)
			len |= (uint64_t)n->rec[p + i] << (8 * i);
		p += ls;
		if (os) {
			uint64_t u = 0;
			for (unsigned i = 0; i < os; i++)
				u |= (uint64_t)n->rec[p + i] << (8 * i);
			if (os < 8 && (u >> (8 * os - 1)) & 1)
				u |= ~(uint64_t)0 << (8 * os);
			delta = (int64_t)u;
			p += os;
		}
		if (len == 0 || len > n->nclusters || vcn + len > highest + 1)
			return bad(n, "%s (MFT record %" PRIu64 "): run %zu: length %" PRIu64 " is 0 or past the highest VCN %" PRIu64,
				   what, num, rl->n, len, highest);
		if (os) {
			if ((delta < 0 && (uint64_t)-delta > (uint64_t)lcn) ||
			    (delta > 0 && (uint64_t)delta >= n->nclusters - (uint64_t)lcn))
				return bad(n, "%s (MFT record %" PRIu64 "): run %zu: LCN offset %" PRId64 " leaves the volume",
					   what, num, rl->n, delta);
			lcn += delta;
			if ((uint64_t)lcn + len > n->nclusters)
				return bad(n, "%s (MFT record %" PRIu64 "): run %zu (LCN %" PRId64 ", %" PRIu64 " clusters) is past the end of the volume (%" PRIu64 " clusters)",
					   what, num, rl->n, lcn, len, n->nclusters);
		}
		rl->r[rl->n].vcn = vcn;
		rl->r[rl->n].lcn = os ? (uint64_t)lcn : UINT64_MAX;
		rl->r[rl->n].len = len;
		rl->n++;
		vcn += len;
	}
	if (vcn != highest + 1)
		return bad(n, "%s (MFT record %" PRIu64 "): runlist holds %" PRIu64 " clusters, highest VCN is %" PRIu64,
			   what, num, vcn, highest);
	rl->clusters = vcn;
	for (size_t i = 0; i < rl->n; i++)
		if (rl->r[i].lcn == UINT64_MAX)
			return vd_set_error(n->w->err, ENOTSUP, "%s: ntfs at offset %" PRIu64 ": %s has a sparse run at VCN %" PRIu64,
					    vd_path(n->w->img), n->w->part_off, what, rl->r[i].vcn);
	return 0;
}

/* Read LEN bytes at byte OFF of the stream described by RL. */
static int read_stream(struct ntfs *n, const struct runlist *rl, uint64_t off, uint8_t *buf, size_t len,
		       const char *what)
{
	size_t i = 0;

	while (len) {
		uint64_t vcn = off / n->cluster, in, take;
		while (i < rl->n && rl->r[i].vcn + rl->r[i].len <= vcn)
			i++;
		if (i == rl->n)
			return bad(n, "%s: byte %" PRIu64 " is beyond its runlist (%" PRIu64 " clusters)", what, off, rl->clusters);
		in = off - rl->r[i].vcn * n->cluster;
		take = VD_MIN((uint64_t)len, rl->r[i].len * n->cluster - in);
		{
			int r = vd_fs_read(n->w, rl->r[i].lcn * n->cluster + in, buf, (size_t)take, what);
			if (r < 0)
				return r;
		}
		buf += take;
		off += take;
		len -= (size_t)take;
	}
	return 0;
}

static int read_record(struct ntfs *n, uint64_t num)
{
	char what[40];
	int r;

	snprintf(what, sizeof(what), "MFT record %" PRIu64, num);
	if (num == REC_MFT)
		r = vd_fs_read(n->w, n->mft_lcn * n->cluster, n->rec, n->recsize, what);
	else
		r = read_stream(n, &n->mft, num * n->recsize, n->rec, n->recsize, what);
	return r < 0 ? r : fixup(n, num);
}

/* Is cluster C marked in use?  1 yes, 0 no, -errno. */
static int in_use(struct ntfs *n, uint64_t c)
{
	uint8_t b;
	int r = read_stream(n, &n->bmp, c / 8, &b, 1, "$Bitmap");

	return r < 0 ? r : (b >> (c % 8)) & 1;
}

static int check_used(struct ntfs *n, const struct runlist *rl, const char *what)
{
	int r = in_use(n, 0);

	if (r <= 0)
		return r < 0 ? r : bad(n, "$Bitmap marks cluster 0 (the boot sector) free");
	for (size_t i = 0; i < rl->n; i++) {
		r = in_use(n, rl->r[i].lcn);
		if (r < 0)
			return r;
		if (r == 0)
			return bad(n, "$Bitmap marks cluster %" PRIu64 " (%s, run %zu) free", rl->r[i].lcn, what, i);
	}
	return 0;
}

static void volume_name(struct ntfs *n, const uint8_t *v, uint32_t vlen)
{
	char *out = n->w->info->label;
	size_t o = 0, cap = sizeof(n->w->info->label) - 1;

	for (uint32_t i = 0; i + 1 < vlen; i += 2) {
		unsigned c = le16dec(v + i);
		if (c >= 0xD800 && c < 0xE000)
			c = '?';
		if (c < 0x80 && o + 1 <= cap) {
			out[o++] = (char)c;
		} else if (c < 0x800 && o + 2 <= cap) {
			out[o++] = (char)(0xC0 | c >> 6);
			out[o++] = (char)(0x80 | (c & 0x3f));
		} else if (c >= 0x800 && o + 3 <= cap) {
			out[o++] = (char)(0xE0 | c >> 12);
			out[o++] = (char)(0x80 | ((c >> 6) & 0x3f));
			out[o++] = (char)(0x80 | (c & 0x3f));
		} else {
			break;
		}
	}
	out[o] = 0;
}

static int check_volume(struct ntfs *n)
{
	struct vd_fs_walk *w = n->w;
	uint32_t aoff, alen, vlen;
	const uint8_t *v;
	int r;

	r = read_record(n, REC_VOLUME);
	if (r < 0)
		return r;
	r = find_attr(n, REC_VOLUME, AT_VOLUME_NAME, &aoff, &alen);
	if (r == 0 && resident(n, REC_VOLUME, aoff, alen, 0, &v, &vlen) == 0)
		volume_name(n, v, vlen);
	else if (r != -ENOENT && r < 0)
		return r;
	r = find_attr(n, REC_VOLUME, AT_VOLUME_INFORMATION, &aoff, &alen);
	if (r == -ENOENT)
		return bad(n, "$Volume (MFT record 3) has no $VOLUME_INFORMATION");
	if (r < 0)
		return r;
	r = resident(n, REC_VOLUME, aoff, alen, 12, &v, &vlen);
	if (r < 0)
		return r;
	if (v[8] < 1 || v[8] > 3)
		return vd_set_error(w->err, ENOTSUP, "%s: ntfs at offset %" PRIu64 ": NTFS version %u.%u is not supported",
				    vd_path(w->img), w->part_off, v[8], v[9]);
	if ((le16dec(v + VOL_FLAGS) & VOL_DIRTY) && !(w->flags & VD_FS_FORCE))
		return vd_set_error(w->err, EUCLEAN, "%s: ntfs at offset %" PRIu64 ": NTFS volume is marked dirty ($VOLUME_INFORMATION flags 0x%04x): run chkdsk in Windows (or ntfsfix), or use --force",
				    vd_path(w->img), w->part_off, le16dec(v + VOL_FLAGS));
	return 0;
}

static int load_data(struct ntfs *n, uint64_t num, const char *what, struct runlist *rl, uint64_t *size);

/* $LogFile restart pages (the first two log pages) */
#define RP_SYS_PAGE 16
#define RP_LOG_PAGE 20
#define RP_RA_OFS 24
#define RA_IN_USE 12     /* client_in_use_list: 0xFFFF = no client */
#define RA_FLAGS 14
#define RA_CLEAN 0x0002  /* RESTART_VOLUME_IS_CLEAN */

static int unclean(struct ntfs *n, const char *why)
{
	return vd_set_error(n->w->err, EUCLEAN,
			    "%s: ntfs at offset %" PRIu64 ": the NTFS journal ($LogFile) is not clean (%s): Windows was not shut down cleanly, or it hibernated or used fast startup; boot it and shut it down fully, or use --force",
			    vd_path(n->w->img), n->w->part_off, why);
}

/* The volume's journal must hold nothing to replay: a free cluster may be
 * one a logged transaction allocated, and zeroing it would lose data when
 * Windows replays the log.  Each of the two restart pages must be empty
 * (all 0xFF, as mkntfs and ntfs-3g leave it) or an "RSTR" page whose
 * restart area has no client in use or the volume-is-clean flag. */
static int check_logfile(struct ntfs *n)
{
	struct runlist rl = { 0 };
	uint64_t size, psize = 4096;
	uint8_t pg[512];
	int r;

	if (n->w->flags & VD_FS_FORCE)
		return 0;
	r = load_data(n, REC_LOGFILE, "$LogFile", &rl, &size);
	for (int copy = 0; r == 0 && copy < 2; copy++) {
		uint64_t off = copy ? psize : 0;
		uint32_t sys, logp;
		uint16_t ra;
		bool empty = true;

		if (off + sizeof(pg) > size) {
			r = bad(n, "$LogFile data size %" PRIu64 " is too small for two restart pages of %" PRIu64 " bytes",
				size, psize);
			break;
		}
		r = read_stream(n, &rl, off, pg, sizeof(pg), "$LogFile");
		if (r < 0)
			break;
		for (size_t i = 0; i < sizeof(pg) && empty; i++)
			empty = pg[i] == 0xFF;
		if (empty)
			continue;
		if (!memcmp(pg, "CHKD", 4)) {
			r = unclean(n, "chkdsk left a CHKD restart page");
			break;
		}
		if (memcmp(pg, "RSTR", 4)) {
			r = unclean(n, copy ? "the second restart page is neither empty nor RSTR" :
					      "the first restart page is neither empty nor RSTR");
			break;
		}
		sys = le32dec(pg + RP_SYS_PAGE);
		logp = le32dec(pg + RP_LOG_PAGE);
		ra = le16dec(pg + RP_RA_OFS);
		if (sys < 512 || sys > 65536 || !vd_is_pow2(sys) || logp < 512 || logp > 65536 || !vd_is_pow2(logp)) {
			r = bad(n, "$LogFile restart page %d: system page size %" PRIu32 " / log page size %" PRIu32 " are not powers of two in 512..65536",
				copy, sys, logp);
			break;
		}
		if (ra % 8 || ra < 30 || (size_t)ra + RA_FLAGS + 2 > sizeof(pg)) {
			r = bad(n, "$LogFile restart page %d: restart area offset %u is not inside its first sector", copy, ra);
			break;
		}
		if (copy == 0)
			psize = sys;
		if (le16dec(pg + ra + RA_IN_USE) != 0xFFFF && !(le16dec(pg + ra + RA_FLAGS) & RA_CLEAN)) {
			char why[96];
			snprintf(why, sizeof(why), "restart area %d: a client is in use and the clean flag is not set (flags 0x%04x)",
				 copy, le16dec(pg + ra + RA_FLAGS));
			r = unclean(n, why);
		}
	}
	free(rl.r);
	return r;
}

/* $DATA of record NUM into RL. */
static int load_data(struct ntfs *n, uint64_t num, const char *what, struct runlist *rl, uint64_t *size)
{
	uint32_t aoff, alen;
	const uint8_t *a;
	int r;

	r = read_record(n, num);
	if (r < 0)
		return r;
	r = find_attr(n, num, AT_DATA, &aoff, &alen);
	if (r == -ENOENT)
		return bad(n, "%s (MFT record %" PRIu64 ") has no unnamed $DATA attribute", what, num);
	if (r < 0)
		return r;
	r = decode_runs(n, num, what, aoff, alen, rl);
	if (r < 0)
		return r;
	a = n->rec + aoff;
	*size = le64dec(a + A_DATA_SIZE);
	if (*size > rl->clusters * n->cluster || le64dec(a + A_INIT_SIZE) > *size)
		return bad(n, "%s (MFT record %" PRIu64 "): data size %" PRIu64 " (initialized %" PRIu64 ") is larger than its %" PRIu64 " clusters",
			   what, num, *size, le64dec(a + A_INIT_SIZE), rl->clusters);
	if (le64dec(a + A_INIT_SIZE) < *size)
		return bad(n, "%s (MFT record %" PRIu64 "): initialized size %" PRIu64 " is smaller than the data size %" PRIu64,
			   what, num, le64dec(a + A_INIT_SIZE), *size);
	return 0;
}

static int emit_free(struct ntfs *n, uint64_t first, uint64_t count)
{
	return vd_fs_emit(n->w, first * n->cluster, count * n->cluster);
}

static int walk_bitmap(struct ntfs *n)
{
	uint64_t need = (n->nclusters + 7) / 8, run = 0, c = 0;
	uint8_t *buf;
	int r = 0;

	buf = vd_malloc(CHUNK, n->w->err);
	if (!buf)
		return -ENOMEM;
	for (uint64_t off = 0; off < need && r == 0; off += CHUNK) {
		size_t len = (size_t)VD_MIN((uint64_t)CHUNK, need - off);
		r = vd_fs_cancelled(n->w);
		if (r == 0)
			r = read_stream(n, &n->bmp, off, buf, len, "$Bitmap");
		for (size_t i = 0; r == 0 && i < len; i++) {
			uint8_t b = buf[i];
			unsigned bits = (unsigned)VD_MIN((uint64_t)8, n->nclusters - c);
			if (b == 0 && bits == 8) {
				run += 8;
				c += 8;
				continue;
			}
			for (unsigned k = 0; k < bits; k++, c++) {
				if (!((b >> k) & 1)) {
					run++;
				} else if (run) {
					r = emit_free(n, c - run, run);
					run = 0;
					if (r)
						break;
				}
			}
		}
	}
	if (r == 0 && run)
		r = emit_free(n, c - run, run);
	free(buf);
	return r;
}

static int ntfs_walk(struct vd_fs_walk *w)
{
	struct ntfs n = { .w = w };
	uint8_t boot[512];
	uint64_t mft_size;
	int r;

	if (w->part_len < sizeof(boot))
		return vd_set_error(w->err, EINVAL, "%s: ntfs at offset %" PRIu64 ": the partition is too small",
				    vd_path(w->img), w->part_off);
	r = vd_fs_read(w, 0, boot, sizeof(boot), "NTFS boot sector");
	if (r < 0)
		return r;
	r = parse_boot(&n, boot);
	if (r < 0)
		return r;
	snprintf(w->info->type, sizeof(w->info->type), "ntfs");
	snprintf(w->info->uuid, sizeof(w->info->uuid), "%016" PRIX64, le64dec(boot + BS_SERIAL));
	w->info->block_size = n.cluster;
	w->info->total_bytes = n.nclusters * n.cluster;

	n.rec = vd_malloc(n.recsize, w->err);
	if (!n.rec)
		return -ENOMEM;
	r = load_data(&n, REC_MFT, "$MFT", &n.mft, &mft_size);
	if (r < 0)
		goto out;
	if (n.mft.r[0].lcn != n.mft_lcn) {
		r = bad(&n, "$MFT's runlist starts at LCN %" PRIu64 ", the boot sector says %" PRIu64, n.mft.r[0].lcn, n.mft_lcn);
		goto out;
	}
	if (mft_size < (uint64_t)(REC_BITMAP + 1) * n.recsize) {
		r = bad(&n, "$MFT data size %" PRIu64 " holds fewer than %u records", mft_size, REC_BITMAP + 1);
		goto out;
	}
	r = check_volume(&n);
	if (r == 0)
		r = check_logfile(&n);
	if (r < 0)
		goto out;
	r = load_data(&n, REC_BITMAP, "$Bitmap", &n.bmp, &n.bmp_size);
	if (r < 0)
		goto out;
	if (n.bmp_size < (n.nclusters + 7) / 8) {
		r = bad(&n, "$Bitmap data size %" PRIu64 " bytes is shorter than the %" PRIu64 " clusters need (%" PRIu64 " bytes)",
			n.bmp_size, n.nclusters, (n.nclusters + 7) / 8);
		goto out;
	}
	r = check_used(&n, &n.mft, "$MFT");
	if (r == 0)
		r = check_used(&n, &n.bmp, "$Bitmap");
	if (r == 0)
		r = walk_bitmap(&n);
out:
	free(n.mft.r);
	free(n.bmp.r);
	free(n.rec);
	return r;
}

const struct vd_fs_walker vd_fs_ntfs = {
	.name = "ntfs",
	.probe = ntfs_probe,
	.walk = ntfs_walk,
};
