/*
 * mkvdidiff: a test reference for VirtualBox differencing VDIs (image type
 * 4), written from the published layout (VirtualBox's VDICore.h, and
 * /work/shared/FORMATS.md "VDI"), not from vdisk's code: qemu 7.2 cannot
 * create differencing VDIs and refuses to open them, so vdisk's chain
 * support needs an independent writer and reader to be checked against.
 * Standalone: libc only, never links libvdisk.
 *
 *   mkvdidiff create CHILD.vdi --parent PARENT.vdi [options]
 *       --block N[:COUNT]=PAT   data blocks N..N+COUNT-1; PAT is a fill byte
 *                               (0xAB) or a file whose bytes fill the blocks
 *                               in order (padded with zeros; COUNT defaults
 *                               to 1 for a fill, the file's blocks for a file)
 *       --zero N[:COUNT]        0xFFFFFFFE entries (read as zeros, hide parent)
 *       --uuid U, --modify-uuid U          the child's uuidCreate/uuidModify
 *       --linkage U, --parent-modify U     override the link (for bad chains)
 *       --type T                image type (default 4; 3 = undo)
 *       --align BYTES           alignment of offBlocks and offData (1 MiB)
 *       --comment TEXT
 *     Later options win for the same block.  Data slots are allocated in
 *     the order the blocks first appear on the command line, so listing a
 *     high block first gives a block map that is not in guest order.
 *     Untouched blocks are 0xFFFFFFFF (not in this layer: read the parent).
 *
 *   mkvdidiff read [--force] [--allow-partial] [-o OUT] CHILD.vdi PARENT.vdi
 *                  [GRANDPARENT.vdi...]
 *       The guest view of the chain (child first) on stdout or in OUT
 *       (sparse).  Per block the first layer whose entry is a data slot
 *       wins; a 0xFFFFFFFE entry reads as zeros; 0xFFFFFFFF in the last
 *       layer reads as zeros.  Each link is checked: layer i's uuidLinkage
 *       must equal layer i+1's uuidCreate and its uuidParentModify layer
 *       i+1's uuidModify (--force: warn and read anyway).  A last layer of
 *       type 3/4 is refused as an incomplete chain unless --allow-partial.
 *
 *   mkvdidiff dump [--map] IMAGE.vdi     header fields as key=value lines
 *
 *   mkvdidiff vbox VMDIR/VM.vbox --disk BASE.vdi [--child CHILD.vdi]...
 *       a minimal VirtualBox 6/7 machine file whose media registry nests
 *       each --child inside the previous disk.  Locations are written as
 *       given and, when relative, resolved against the .vbox's folder to
 *       read each disk's uuidCreate.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define VDI_SIGNATURE 0xbeda107fu
#define VDI_VERSION_1_1 0x00010001u
#define VDI_TYPE_NORMAL 1
#define VDI_TYPE_FIXED 2
#define VDI_TYPE_UNDO 3
#define VDI_TYPE_DIFF 4
#define VDI_BLOCK_FREE 0xffffffffu
#define VDI_BLOCK_ZERO 0xfffffffeu
#define HDR_BYTES 512
#define MAX_LAYERS 64

/* header v1.1 offsets from the file start */
enum {
	O_SIG = 64, O_VER = 68, O_CBHDR = 72, O_TYPE = 76, O_FLAGS = 80, O_COMMENT = 84,
	O_OFFBLOCKS = 340, O_OFFDATA = 344, O_LEGACY_GEO = 348, O_DUMMY = 364, O_CBDISK = 368,
	O_CBBLOCK = 376, O_CBEXTRA = 380, O_CBLOCKS = 384, O_CALLOC = 388, O_UUID_CREATE = 392,
	O_UUID_MODIFY = 408, O_UUID_LINK = 424, O_UUID_PMODIFY = 440, O_LCHS = 456, O_END_1_1P = 472,
};

struct vdi {
	const char *path;
	int fd;
	uint32_t version, cbheader, type, flags, offblocks, offdata;
	uint32_t cbblock, cbextra, cblocks, callocated;
	uint64_t cbdisk, filesize;
	uint8_t hdr[HDR_BYTES];
	uint32_t *map;
};

static const char *prog = "mkvdidiff";

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	/* the buffers of a refusal go back with the process: _exit skips
	 * LeakSanitizer's check at exit, which would turn it into an abort */
	_exit(1);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const uint8_t *p) { return le32(p) | (uint64_t)le32(p + 4) << 32; }
static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)v); put32(p + 4, (uint32_t)(v >> 32)); }

static void xpread(int fd, void *buf, size_t n, uint64_t off, const char *path)
{
	uint8_t *p = buf;
	while (n) {
		ssize_t r = pread(fd, p, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die("%s: read at %" PRIu64 ": %s", path, off, strerror(errno));
		if (r == 0)
			die("%s: short read at %" PRIu64 " (file truncated?)", path, off);
		p += r; n -= (size_t)r; off += (uint64_t)r;
	}
}

static void xpwrite(int fd, const void *buf, size_t n, uint64_t off, const char *path)
{
	const uint8_t *p = buf;
	while (n) {
		ssize_t r = pwrite(fd, p, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			die("%s: write at %" PRIu64 ": %s", path, off, strerror(errno));
		p += r; n -= (size_t)r; off += (uint64_t)r;
	}
}

static void *xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz);
	if (!p)
		die("out of memory");
	return p;
}

/* --- UUIDs: stored in the GUID layout (first three fields little-endian) --- */

static int is_null_uuid(const uint8_t *u)
{
	for (int i = 0; i < 16; i++)
		if (u[i])
			return 0;
	return 1;
}

static void uuid_str(const uint8_t *u, char out[37])
{
	snprintf(out, 37, "%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 le32(u), (unsigned)(u[4] | u[5] << 8), (unsigned)(u[6] | u[7] << 8),
		 u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

/* text (optionally in braces) -> GUID layout */
static void uuid_parse(const char *s, uint8_t *u)
{
	uint8_t rfc[16];
	int n = 0;
	const char *p = s;
	if (*p == '{')
		p++;
	for (; *p && *p != '}' && n < 32; p++) {
		if (*p == '-')
			continue;
		int v = hexval(*p);
		if (v < 0)
			die("bad UUID '%s'", s);
		if (n & 1) rfc[n / 2] |= (uint8_t)v; else rfc[n / 2] = (uint8_t)(v << 4);
		n++;
	}
	if (n != 32)
		die("bad UUID '%s'", s);
	u[0] = rfc[3]; u[1] = rfc[2]; u[2] = rfc[1]; u[3] = rfc[0];
	u[4] = rfc[5]; u[5] = rfc[4]; u[6] = rfc[7]; u[7] = rfc[6];
	memcpy(u + 8, rfc + 8, 8);
}

static void uuid_random(uint8_t *u)
{
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die("/dev/urandom: %s", strerror(errno));
	xpread(fd, u, 16, 0, "/dev/urandom");
	close(fd);
	u[7] = (uint8_t)((u[7] & 0x0f) | 0x40);	/* version 4 (high byte of the LE third field) */
	u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);	/* RFC 4122 variant */
}

/* --- reading an image --- */

static void vdi_open(struct vdi *v, const char *path)
{
	struct stat st;
	memset(v, 0, sizeof(*v));
	v->path = path;
	v->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (v->fd < 0)
		die("%s: %s", path, strerror(errno));
	if (fstat(v->fd, &st) < 0)
		die("%s: %s", path, strerror(errno));
	v->filesize = (uint64_t)st.st_size;
	if (v->filesize < O_END_1_1P - 16)
		die("%s: %" PRIu64 " bytes is too small for a VDI header", path, v->filesize);
	size_t want = v->filesize < HDR_BYTES ? (size_t)v->filesize : HDR_BYTES;
	xpread(v->fd, v->hdr, want, 0, path);
	const uint8_t *h = v->hdr;
	if (le32(h + O_SIG) != VDI_SIGNATURE)
		die("%s: signature 0x%08x is not 0x%08x", path, le32(h + O_SIG), VDI_SIGNATURE);
	v->version = le32(h + O_VER);
	if (v->version >> 16 != 1)
		die("%s: header version 0x%08x is not 1.x", path, v->version);
	v->cbheader = le32(h + O_CBHDR);
	v->type = le32(h + O_TYPE);
	v->flags = le32(h + O_FLAGS);
	v->offblocks = le32(h + O_OFFBLOCKS);
	v->offdata = le32(h + O_OFFDATA);
	v->cbdisk = le64(h + O_CBDISK);
	v->cbblock = le32(h + O_CBBLOCK);
	v->cbextra = le32(h + O_CBEXTRA);
	v->cblocks = le32(h + O_CBLOCKS);
	v->callocated = le32(h + O_CALLOC);
	if (v->cbheader < 0x180 || v->cbheader > HDR_BYTES - 64)
		die("%s: cbHeader %u is not 384..448", path, v->cbheader);
	if (v->type < VDI_TYPE_NORMAL || v->type > VDI_TYPE_DIFF)
		die("%s: image type %u is not 1..4", path, v->type);
	if (!v->cbblock || (v->cbblock & (v->cbblock - 1)) || v->cbblock > (64u << 20))
		die("%s: cbBlock %u is not a power of two up to 64 MiB", path, v->cbblock);
	if (!v->cbdisk || !v->cblocks)
		die("%s: cbDisk %" PRIu64 " / cBlocks %u must be non-zero", path, v->cbdisk, v->cblocks);
	if ((uint64_t)v->cblocks * v->cbblock < v->cbdisk)
		die("%s: cBlocks %u * cbBlock %u is below cbDisk %" PRIu64, path, v->cblocks, v->cbblock, v->cbdisk);
	if (v->callocated > v->cblocks)
		die("%s: cBlocksAllocated %u is above cBlocks %u", path, v->callocated, v->cblocks);
	if (v->offblocks < 64 + v->cbheader || v->offblocks % 512)
		die("%s: offBlocks %u is inside the header or not sector-aligned", path, v->offblocks);
	if ((uint64_t)v->offdata < (uint64_t)v->offblocks + 4ull * v->cblocks || v->offdata % 512)
		die("%s: offData %u is below the block map end %" PRIu64 " or not sector-aligned", path,
		    v->offdata, (uint64_t)v->offblocks + 4 * (uint64_t)v->cblocks);
	if ((uint64_t)v->offblocks + 4ull * v->cblocks > v->filesize)
		die("%s: block map (%u entries at %u) past the end of the file (%" PRIu64 ")", path,
		    v->cblocks, v->offblocks, v->filesize);
	if (is_null_uuid(h + O_UUID_CREATE) || is_null_uuid(h + O_UUID_MODIFY))
		die("%s: uuidCreate or uuidModify is null", path);
	if ((v->type == VDI_TYPE_DIFF || v->type == VDI_TYPE_UNDO) &&
	    (is_null_uuid(h + O_UUID_LINK) || is_null_uuid(h + O_UUID_PMODIFY)))
		die("%s: image type %u with a null uuidLinkage or uuidParentModify", path, v->type);
	uint8_t *raw = xcalloc(v->cblocks, 4);
	xpread(v->fd, raw, 4ull * v->cblocks, v->offblocks, path);
	v->map = xcalloc(v->cblocks, sizeof(uint32_t));
	uint8_t *seen = xcalloc(v->cblocks, 1);
	uint32_t ndata = 0;
	for (uint32_t i = 0; i < v->cblocks; i++) {
		uint32_t e = le32(raw + 4ull * i);
		v->map[i] = e;
		if (e == VDI_BLOCK_FREE || e == VDI_BLOCK_ZERO)
			continue;
		if (e >= v->cblocks)
			die("%s: block %u: map entry %u is not below cBlocks %u", path, i, e, v->cblocks);
		if (seen[e]++)
			die("%s: block %u: data slot %u is used twice", path, i, e);
		ndata++;
	}
	if (ndata != v->callocated)
		fprintf(stderr, "%s: warning: %s: cBlocksAllocated %u but %u blocks point at data\n",
			prog, path, v->callocated, ndata);
	free(seen);
	free(raw);
}

/* guest bytes of block b of layer v into buf (cbblock bytes) */
static void vdi_read_slot(const struct vdi *v, uint32_t slot, uint8_t *buf)
{
	uint64_t off = v->offdata + (uint64_t)slot * ((uint64_t)v->cbextra + v->cbblock) + v->cbextra;
	uint64_t n = v->cbblock;
	memset(buf, 0, v->cbblock);
	if (off >= v->filesize)
		die("%s: data slot %u at %" PRIu64 " is past the end of the file (%" PRIu64 ")",
		    v->path, slot, off, v->filesize);
	if (off + n > v->filesize)
		die("%s: data slot %u at %" PRIu64 " runs past the end of the file (%" PRIu64 ")",
		    v->path, slot, off, v->filesize);
	xpread(v->fd, buf, n, off, v->path);
}

/* --- create --- */

struct blockop { uint32_t block; int zero; int fill; const char *file; uint64_t fileoff; };

static void parse_range(const char *s, uint32_t *first, uint32_t *count, const char **rest)
{
	char *end;
	errno = 0;
	unsigned long long a = strtoull(s, &end, 0), c = 0;
	if (errno || end == s || a > 0xffffffffull)
		die("bad block number in '%s'", s);
	if (*end == ':') {
		const char *cs = end + 1;
		c = strtoull(cs, &end, 0);
		if (errno || end == cs || c == 0 || c > 0xffffffffull)
			die("bad block count in '%s'", s);
	}
	*first = (uint32_t)a;
	*count = (uint32_t)c;
	*rest = end;
}

static int parse_fill(const char *s)
{
	if ((s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) && s[2] && strlen(s) <= 4) {
		char *end;
		unsigned long v = strtoul(s, &end, 16);
		if (!*end && v <= 0xff)
			return (int)v;
	}
	return -1;
}

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

static int cmd_create(int argc, char **argv)
{
	const char *child = NULL, *parent = NULL, *comment = "";
	uint8_t u_create[16], u_modify[16], u_link[16], u_pmod[16];
	int have_create = 0, have_modify = 0, have_link = 0, have_pmod = 0;
	uint32_t type = VDI_TYPE_DIFF;
	uint64_t align = 1 << 20;
	struct spec { int zero; const char *text; } *specs = xcalloc((size_t)argc + 1, sizeof(*specs));
	int nspecs = 0;

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;
#define NEEDVAL() do { if (!val) die("%s needs a value", a); i++; } while (0)
		if (!strcmp(a, "--parent")) { NEEDVAL(); parent = val; }
		else if (!strcmp(a, "--block") || !strcmp(a, "--zero")) {
			NEEDVAL();
			specs[nspecs].zero = a[2] == 'z';
			specs[nspecs++].text = val;
		}
		else if (!strcmp(a, "--uuid")) { NEEDVAL(); uuid_parse(val, u_create); have_create = 1; }
		else if (!strcmp(a, "--modify-uuid")) { NEEDVAL(); uuid_parse(val, u_modify); have_modify = 1; }
		else if (!strcmp(a, "--linkage")) { NEEDVAL(); uuid_parse(val, u_link); have_link = 1; }
		else if (!strcmp(a, "--parent-modify")) { NEEDVAL(); uuid_parse(val, u_pmod); have_pmod = 1; }
		else if (!strcmp(a, "--type")) { NEEDVAL(); type = (uint32_t)strtoul(val, NULL, 0); }
		else if (!strcmp(a, "--align")) { NEEDVAL(); align = strtoull(val, NULL, 0); }
		else if (!strcmp(a, "--comment")) { NEEDVAL(); comment = val; }
		else if (a[0] == '-' && a[1]) die("create: unknown option %s", a);
		else if (!child) child = a;
		else die("create: unexpected argument %s", a);
#undef NEEDVAL
	}
	if (!child || !parent)
		die("usage: mkvdidiff create CHILD.vdi --parent PARENT.vdi [--block N[:COUNT]=PAT]... [--zero N[:COUNT]]...");
	if (!align || align % 512 || align > (1u << 30))
		die("--align %" PRIu64 " is not a multiple of 512 up to 1 GiB", align);

	struct vdi p;
	vdi_open(&p, parent);
	uint32_t nb = p.cblocks, bs = p.cbblock;
	/* per block: the last op that names it */
	struct blockop *final = xcalloc(nb, sizeof(*final));
	uint8_t *has = xcalloc(nb, 1);
	uint32_t *order = xcalloc(nb, sizeof(uint32_t));
	uint32_t norder = 0;
	for (int s = 0; s < nspecs; s++) {
		const char *spec = specs[s].text, *rest;
		int zero = specs[s].zero;
		uint32_t first, count;
		parse_range(spec, &first, &count, &rest);
		int fill = -1;
		const char *file = NULL;
		if (zero) {
			if (*rest)
				die("--zero %s: trailing '%s'", spec, rest);
			if (!count) count = 1;
		} else {
			if (*rest != '=' || !rest[1])
				die("--block %s: expected N[:COUNT]=PATTERN", spec);
			fill = parse_fill(rest + 1);
			if (fill < 0) {
				struct stat st;
				file = rest + 1;
				if (stat(file, &st) < 0)
					die("--block %s: %s: %s", spec, file, strerror(errno));
				if (!count)
					count = st.st_size ? (uint32_t)(((uint64_t)st.st_size + bs - 1) / bs) : 1;
			} else if (!count)
				count = 1;
		}
		if ((uint64_t)first + count > nb)
			die("block range %u+%u is past the parent's %u blocks", first, count, nb);
		for (uint32_t k = 0; k < count; k++) {
			uint32_t b = first + k;
			struct blockop op = { b, zero, fill, file, (uint64_t)k * bs };
			final[b] = op;
			if (!has[b]) { has[b] = 1; order[norder++] = b; }
		}
	}

	/* layout */
	uint64_t offblocks = align_up(HDR_BYTES, align);
	uint64_t offdata = align_up(offblocks + 4ull * nb, align);
	if (offdata > 0xffffffffull)
		die("offData %" PRIu64 " does not fit 32 bits", offdata);
	uint32_t *map = xcalloc(nb, sizeof(uint32_t));
	for (uint32_t b = 0; b < nb; b++)
		map[b] = VDI_BLOCK_FREE;
	uint32_t nslots = 0;
	for (uint32_t k = 0; k < norder; k++) {
		uint32_t b = order[k];
		map[b] = final[b].zero ? VDI_BLOCK_ZERO : nslots++;
	}

	int fd = open(child, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		die("%s: %s", child, strerror(errno));
	uint8_t h[HDR_BYTES];
	memset(h, 0, sizeof(h));
	snprintf((char *)h, 64, "<<< Oracle VM VirtualBox Disk Image >>>\n");
	put32(h + O_SIG, VDI_SIGNATURE);
	put32(h + O_VER, VDI_VERSION_1_1);
	put32(h + O_CBHDR, 0x190);
	put32(h + O_TYPE, type);
	put32(h + O_FLAGS, 0);
	snprintf((char *)h + O_COMMENT, 256, "%s", comment);
	put32(h + O_OFFBLOCKS, (uint32_t)offblocks);
	put32(h + O_OFFDATA, (uint32_t)offdata);
	memcpy(h + O_LEGACY_GEO, p.hdr + O_LEGACY_GEO, 16);	/* the parent's legacy geometry */
	if (!le32(h + O_LEGACY_GEO + 12))
		put32(h + O_LEGACY_GEO + 12, 512);
	put64(h + O_CBDISK, p.cbdisk);
	put32(h + O_CBBLOCK, bs);
	put32(h + O_CBEXTRA, 0);
	put32(h + O_CBLOCKS, nb);
	put32(h + O_CALLOC, nslots);
	if (!have_create) uuid_random(u_create);
	if (!have_modify) uuid_random(u_modify);
	if (!have_link) memcpy(u_link, p.hdr + O_UUID_CREATE, 16);
	if (!have_pmod) memcpy(u_pmod, p.hdr + O_UUID_MODIFY, 16);
	memcpy(h + O_UUID_CREATE, u_create, 16);
	memcpy(h + O_UUID_MODIFY, u_modify, 16);
	memcpy(h + O_UUID_LINK, u_link, 16);
	memcpy(h + O_UUID_PMODIFY, u_pmod, 16);
	if (p.cbheader >= 0x190)
		memcpy(h + O_LCHS, p.hdr + O_LCHS, 16);
	xpwrite(fd, h, sizeof(h), 0, child);

	uint8_t *m = xcalloc(nb, 4);
	for (uint32_t b = 0; b < nb; b++)
		put32(m + 4ull * b, map[b]);
	xpwrite(fd, m, 4ull * nb, offblocks, child);

	uint8_t *buf = xcalloc(1, bs);
	for (uint32_t b = 0; b < nb; b++) {
		if (map[b] >= VDI_BLOCK_ZERO)
			continue;
		const struct blockop *op = &final[b];
		memset(buf, op->fill >= 0 ? op->fill : 0, bs);
		if (op->file) {
			int ffd = open(op->file, O_RDONLY | O_CLOEXEC);
			if (ffd < 0)
				die("%s: %s", op->file, strerror(errno));
			ssize_t r = pread(ffd, buf, bs, (off_t)op->fileoff);
			if (r < 0)
				die("%s: %s", op->file, strerror(errno));
			close(ffd);
		}
		xpwrite(fd, buf, bs, offdata + (uint64_t)map[b] * bs, child);
	}
	if (ftruncate(fd, (off_t)(offdata + (uint64_t)nslots * bs)) < 0)
		die("%s: %s", child, strerror(errno));
	if (close(fd) < 0)
		die("%s: %s", child, strerror(errno));
	free(buf); free(m); free(map); free(order); free(has); free(final);
	free(specs);
	free(p.map);
	close(p.fd);
	return 0;
}

/* --- read --- */

static int all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

static int cmd_read(int argc, char **argv)
{
	int force = 0, partial = 0;
	const char *out = NULL;
	const char *paths[MAX_LAYERS];
	int n = 0;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--force")) force = 1;
		else if (!strcmp(argv[i], "--allow-partial")) partial = 1;
		else if (!strcmp(argv[i], "-o") && i + 1 < argc) out = argv[++i];
		else if (argv[i][0] == '-' && argv[i][1]) die("read: unknown option %s", argv[i]);
		else if (n == MAX_LAYERS) die("read: more than %d layers", MAX_LAYERS);
		else paths[n++] = argv[i];
	}
	if (!n)
		die("usage: mkvdidiff read [--force] [--allow-partial] [-o OUT] CHILD.vdi [PARENT.vdi...]");
	static struct vdi L[MAX_LAYERS];
	for (int i = 0; i < n; i++)
		vdi_open(&L[i], paths[i]);
	int bad = 0;
	for (int i = 0; i + 1 < n; i++) {
		char a[37], b[37];
		const uint8_t *c = L[i].hdr, *p = L[i + 1].hdr;
		const char *what = force ? "warning" : "error";
		if (L[i].type != VDI_TYPE_DIFF && L[i].type != VDI_TYPE_UNDO) {
			fprintf(stderr, "%s: %s: %s is image type %u, not a differencing image, but has a parent %s\n",
				prog, what, L[i].path, L[i].type, L[i + 1].path);
			bad = 1;
		}
		if (memcmp(c + O_UUID_LINK, p + O_UUID_CREATE, 16)) {
			uuid_str(c + O_UUID_LINK, a); uuid_str(p + O_UUID_CREATE, b);
			fprintf(stderr, "%s: %s: %s: uuidLinkage %s is not the uuidCreate %s of parent %s\n",
				prog, what, L[i].path, a, b, L[i + 1].path);
			bad = 1;
		}
		if (memcmp(c + O_UUID_PMODIFY, p + O_UUID_MODIFY, 16)) {
			uuid_str(c + O_UUID_PMODIFY, a); uuid_str(p + O_UUID_MODIFY, b);
			fprintf(stderr, "%s: %s: %s: uuidParentModify %s is not the uuidModify %s of parent %s\n",
				prog, what, L[i].path, a, b, L[i + 1].path);
			bad = 1;
		}
		if (L[i].cbblock != L[i + 1].cbblock)
			die("%s: cbBlock %u differs from parent %s's %u (not supported by this reference)",
			    L[i].path, L[i].cbblock, L[i + 1].path, L[i + 1].cbblock);
		if (L[i].cbdisk != L[i + 1].cbdisk) {
			fprintf(stderr, "%s: %s: %s: cbDisk %" PRIu64 " differs from parent %s's %" PRIu64 "\n",
				prog, what, L[i].path, L[i].cbdisk, L[i + 1].path, L[i + 1].cbdisk);
			bad = 1;
		}
	}
	if (bad && !force)
		die("the chain's links do not match (--force reads it anyway)");
	if (!partial && (L[n - 1].type == VDI_TYPE_DIFF || L[n - 1].type == VDI_TYPE_UNDO))
		die("%s is image type %u: its parent is missing from the chain (--allow-partial reads its"
		    " free blocks as zeros)", L[n - 1].path, L[n - 1].type);

	int ofd = 1;
	if (out) {
		ofd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (ofd < 0)
			die("%s: %s", out, strerror(errno));
	}
	uint32_t bs = L[0].cbblock;
	uint8_t *buf = xcalloc(1, bs);
	uint64_t size = L[0].cbdisk, pos = 0;
	for (uint32_t b = 0; pos < size; b++) {
		memset(buf, 0, bs);
		for (int i = 0; i < n; i++) {
			uint32_t e = b < L[i].cblocks ? L[i].map[b] : VDI_BLOCK_FREE;
			if (e == VDI_BLOCK_FREE)
				continue;
			if (e != VDI_BLOCK_ZERO)
				vdi_read_slot(&L[i], e, buf);
			break;
		}
		/* a parent larger or smaller than the child: its bytes past its own size are zeros */
		size_t len = size - pos < bs ? (size_t)(size - pos) : bs;
		if (out && all_zero(buf, len)) {
			pos += len;
			continue;
		}
		if (out)
			xpwrite(ofd, buf, len, pos, out);
		else {
			size_t done = 0;
			while (done < len) {
				ssize_t r = write(1, buf + done, len - done);
				if (r < 0 && errno == EINTR)
					continue;
				if (r <= 0)
					die("stdout: %s", strerror(errno));
				done += (size_t)r;
			}
		}
		pos += len;
	}
	if (out) {
		if (ftruncate(ofd, (off_t)size) < 0 || close(ofd) < 0)
			die("%s: %s", out, strerror(errno));
	}
	free(buf);
	for (int i = 0; i < n; i++) {
		free(L[i].map);
		close(L[i].fd);
	}
	return 0;
}

/* --- dump --- */

static int cmd_dump(int argc, char **argv)
{
	int showmap = 0;
	const char *path = NULL;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--map")) showmap = 1;
		else if (!path) path = argv[i];
		else die("dump: unexpected argument %s", argv[i]);
	}
	if (!path)
		die("usage: mkvdidiff dump [--map] IMAGE.vdi");
	struct vdi v;
	vdi_open(&v, path);
	char u[37], comment[257];
	const uint8_t *h = v.hdr;
	memcpy(comment, h + O_COMMENT, 256);
	comment[256] = 0;
	printf("version=%u.%u\nheader_size=%u\ntype=%u\nflags=%u\ncomment=%s\n",
	       v.version >> 16, v.version & 0xffff, v.cbheader, v.type, v.flags, comment);
	printf("offset_blocks=%u\noffset_data=%u\ndisk_size=%" PRIu64 "\nblock_size=%u\nblock_extra=%u\n",
	       v.offblocks, v.offdata, v.cbdisk, v.cbblock, v.cbextra);
	printf("blocks=%u\nblocks_allocated=%u\n", v.cblocks, v.callocated);
	uuid_str(h + O_UUID_CREATE, u); printf("uuid_create=%s\n", u);
	uuid_str(h + O_UUID_MODIFY, u); printf("uuid_modify=%s\n", u);
	uuid_str(h + O_UUID_LINK, u); printf("uuid_linkage=%s\n", u);
	uuid_str(h + O_UUID_PMODIFY, u); printf("uuid_parent_modify=%s\n", u);
	uint32_t nd = 0, nz = 0, nf = 0;
	for (uint32_t b = 0; b < v.cblocks; b++) {
		uint32_t e = v.map[b];
		if (e == VDI_BLOCK_FREE) nf++;
		else if (e == VDI_BLOCK_ZERO) nz++;
		else nd++;
	}
	printf("map_data=%u\nmap_zero=%u\nmap_free=%u\nfile_size=%" PRIu64 "\n", nd, nz, nf, v.filesize);
	if (showmap)
		for (uint32_t b = 0; b < v.cblocks; b++) {
			uint32_t e = v.map[b];
			if (e == VDI_BLOCK_FREE) continue;
			if (e == VDI_BLOCK_ZERO) printf("block.%u=zero\n", b);
			else printf("block.%u=%u\n", b, e);
		}
	free(v.map);
	close(v.fd);
	return 0;
}

/* --- .vbox --- */

static void xml_attr(FILE *f, const char *s)
{
	for (; *s; s++)
		switch (*s) {
		case '&': fputs("&amp;", f); break;
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '"': fputs("&quot;", f); break;
		default: fputc(*s, f);
		}
}

static int cmd_vbox(int argc, char **argv)
{
	const char *vbox = NULL, *disks[MAX_LAYERS];
	int n = 0;
	for (int i = 0; i < argc; i++) {
		if ((!strcmp(argv[i], "--disk") && n == 0) || (!strcmp(argv[i], "--child") && n > 0)) {
			if (i + 1 >= argc) die("%s needs a value", argv[i]);
			if (n == MAX_LAYERS) die("vbox: more than %d disks", MAX_LAYERS);
			disks[n++] = argv[++i];
		} else if (argv[i][0] == '-')
			die("vbox: unexpected %s (one --disk first, then --child...)", argv[i]);
		else if (!vbox) vbox = argv[i];
		else die("vbox: unexpected argument %s", argv[i]);
	}
	if (!vbox || !n)
		die("usage: mkvdidiff vbox VMDIR/VM.vbox --disk BASE.vdi [--child CHILD.vdi]...");
	char *dir = strdup(vbox), *slash = strrchr(dir, '/');
	if (slash) *slash = 0; else strcpy(dir, ".");
	const char *base = strrchr(vbox, '/') ? strrchr(vbox, '/') + 1 : vbox;
	char name[256];
	snprintf(name, sizeof(name), "%s", base);
	char *dot = strrchr(name, '.');
	if (dot) *dot = 0;
	char uuids[MAX_LAYERS][37], mach[37];
	uint8_t mu[16];
	uuid_random(mu);
	uuid_str(mu, mach);
	for (int i = 0; i < n; i++) {
		char path[4096];
		if (disks[i][0] == '/') snprintf(path, sizeof(path), "%s", disks[i]);
		else snprintf(path, sizeof(path), "%s/%s", dir, disks[i]);
		struct vdi v;
		vdi_open(&v, path);
		uuid_str(v.hdr + O_UUID_CREATE, uuids[i]);
		free(v.map);
		close(v.fd);
	}
	FILE *f = fopen(vbox, "w");
	if (!f)
		die("%s: %s", vbox, strerror(errno));
	fprintf(f, "<?xml version=\"1.0\"?>\n<!--\n** DO NOT EDIT THIS FILE.\n"
		   "** (a minimal machine file written by vdisk's test helper mkvdidiff)\n-->\n");
	fprintf(f, "<VirtualBox xmlns=\"http://www.virtualbox.org/\" version=\"1.16-linux\">\n");
	fprintf(f, "  <Machine uuid=\"{%s}\" name=\"", mach);
	xml_attr(f, name);
	fprintf(f, "\" OSType=\"Other\" snapshotFolder=\"Snapshots\" lastStateChange=\"2024-01-01T00:00:00Z\">\n");
	fprintf(f, "    <MediaRegistry>\n      <HardDisks>\n");
	for (int i = 0; i < n; i++) {
		fprintf(f, "%*s<HardDisk uuid=\"{%s}\" location=\"", 8 + 2 * i, "", uuids[i]);
		xml_attr(f, disks[i]);
		fprintf(f, "\" format=\"VDI\"%s%s\n", i == 0 ? " type=\"Normal\"" : "", i == n - 1 ? "/>" : ">");
	}
	for (int i = n - 2; i >= 0; i--)
		fprintf(f, "%*s</HardDisk>\n", 8 + 2 * i, "");
	fprintf(f, "      </HardDisks>\n    </MediaRegistry>\n");
	fprintf(f, "    <Hardware>\n      <Memory RAMSize=\"128\"/>\n    </Hardware>\n");
	fprintf(f, "    <StorageControllers>\n"
		   "      <StorageController name=\"SATA\" type=\"AHCI\" PortCount=\"1\" useHostIOCache=\"false\" Bootable=\"true\">\n"
		   "        <AttachedDevice type=\"HardDisk\" hotpluggable=\"false\" port=\"0\" device=\"0\">\n"
		   "          <Image uuid=\"{%s}\"/>\n        </AttachedDevice>\n      </StorageController>\n"
		   "    </StorageControllers>\n  </Machine>\n</VirtualBox>\n", uuids[n - 1]);
	if (fclose(f) != 0)
		die("%s: %s", vbox, strerror(errno));
	free(dir);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		die("usage: mkvdidiff create|read|dump|vbox ... (see the comment at the top of mkvdidiff.c)");
	if (!strcmp(argv[1], "create")) return cmd_create(argc - 2, argv + 2);
	if (!strcmp(argv[1], "read")) return cmd_read(argc - 2, argv + 2);
	if (!strcmp(argv[1], "dump")) return cmd_dump(argc - 2, argv + 2);
	if (!strcmp(argv[1], "vbox")) return cmd_vbox(argc - 2, argv + 2);
	die("unknown command '%s' (create, read, dump, vbox)", argv[1]);
}
