/*
 * mkcowd: a test reference for ESXi vmfsSparse ("COWD") delta extents,
 * written from VMware's published layout (Virtual Disk Format 5.0, "ESXi
 * Host Sparse Extents"; the COWDisk_Header), not from vdisk's code: qemu
 * reads these files but cannot write them.  Standalone: libc only.
 *
 * Layout (all little-endian u32, offsets and sizes in 512-byte sectors):
 *   header (4 sectors, 2048 bytes): magicNumber 0x44574f43 "COWD" at 0,
 *   version 1 at 4, flags 3 at 8, numSectors 12, grainSize 16 (sectors;
 *   ESXi uses 1), gdOffset 20 (4: right after the header), numGDEntries 24
 *   = ceil(numSectors / (4096 * grainSize)), freeSector 28 (next free
 *   sector of the file), then the union root {cylinders, heads, sectors} /
 *   child {parentFileName[1024], parentGeneration} at 32, generation 1060,
 *   name[60] 1064, description[512] 1124, savedGeneration 1636,
 *   reserved[8] 1640, uncleanShutdown 1648, padding to 2048.
 *   Grain directory at gdOffset: numGDEntries sector offsets of grain
 *   tables (0 = none).  A grain table has 4096 entries: the sector offset
 *   of the grain, 0 = not in this layer (read the parent).
 *
 *   mkcowd create DELTA-delta.vmdk DESCRIPTOR.vmdk --parent PARENT.vmdk
 *          [--size BYTES] [--grain-size SECTORS] [--grain OFF[:LEN]=PAT]...
 *          [--cid HEX] [--parent-cid HEX] [--hint NAME]
 *       writes the delta extent and its descriptor (createType="vmfsSparse",
 *       parentCID = the parent's CID unless --parent-cid, parentFileNameHint
 *       = NAME or the parent's file name, extent RW N VMFSSPARSE "DELTA").
 *       --size defaults to the parent's size (the sum of its extents).
 *       --grain: bytes OFF..OFF+LEN-1 (whole grains; LEN defaults to one
 *       grain for a fill, the file's size rounded up to grains for a file)
 *       get PAT: a fill byte (0xAB) or the bytes of a file (zero-padded).
 *       Grain tables are allocated only where a grain is written, in order.
 *
 *   mkcowd read DESCRIPTOR.vmdk|DELTA [--parent-raw RAW] [-o OUT]
 *       the guest view: allocated grains from the delta, the rest from the
 *       parent's raw guest image RAW (zeros past its end or without RAW).
 *
 *   mkcowd dump DELTA   header fields as key=value lines
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

#define COWD_MAGIC 0x44574f43u
#define COWD_HDR_SECTORS 4
#define COWD_GTES 4096
#define SECTOR 512u

enum {
	C_MAGIC = 0, C_VERSION = 4, C_FLAGS = 8, C_NUMSECTORS = 12, C_GRAIN = 16, C_GDOFF = 20,
	C_NUMGD = 24, C_FREE = 28, C_PARENTNAME = 32, C_PARENTGEN = 1056, C_GENERATION = 1060,
	C_NAME = 1064, C_DESC = 1124, C_SAVEDGEN = 1636, C_RESERVED = 1640, C_UNCLEAN = 1648,
	C_HDR_BYTES = 2048,
};

static const char *prog = "mkcowd";

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

static void *xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz);
	if (!p)
		die("out of memory");
	return p;
}

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

static const char *base_name(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

/* the descriptor text of a VMDK: a text descriptor file, or the one
 * embedded in a hosted sparse extent ("KDMV", descriptorOffset/Size) */
static char *read_descriptor(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0)
		die("%s: %s", path, strerror(errno));
	uint8_t h[512] = { 0 };
	size_t hn = st.st_size < 512 ? (size_t)st.st_size : 512;
	xpread(fd, h, hn, 0, path);
	uint64_t off = 0, len = (uint64_t)st.st_size;
	if (hn >= 44 && le32(h) == 0x564d444bu) {
		off = le64(h + 28) * SECTOR;
		len = le64(h + 36) * SECTOR;
		if (!off || !len || off + len > (uint64_t)st.st_size)
			die("%s: sparse extent without an embedded descriptor in the file", path);
	} else if (hn >= 4 && le32(h) == COWD_MAGIC)
		die("%s is a COWD delta extent, not a descriptor", path);
	if (len > (1 << 20))
		die("%s: descriptor of %" PRIu64 " bytes is too big", path, len);
	char *t = xcalloc(1, (size_t)len + 1);
	xpread(fd, t, (size_t)len, off, path);
	close(fd);
	t[strnlen(t, (size_t)len)] = 0;
	return t;
}

/* value of KEY=... in descriptor text (quotes stripped), or NULL */
static int desc_value(const char *t, const char *key, char *out, size_t outsz)
{
	size_t kl = strlen(key);
	for (const char *l = t; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		while (*l == ' ' || *l == '\t')
			l++;
		if (strncmp(l, key, kl))
			continue;
		const char *p = l + kl;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p != '=')
			continue;
		p++;
		while (*p == ' ' || *p == '\t' || *p == '"')
			p++;
		size_t n = 0;
		while (p[n] && p[n] != '"' && p[n] != '\n' && p[n] != '\r')
			n++;
		if (n >= outsz)
			n = outsz - 1;
		memcpy(out, p, n);
		out[n] = 0;
		return 1;
	}
	return 0;
}

/* extent lines: ACCESS SECTORS TYPE ["FILE" [OFFSET]]; calls back per line */
struct extent { char access[16]; uint64_t sectors; char type[32]; char file[1024]; };

static int parse_extents(const char *t, struct extent *ex, int max)
{
	int n = 0;
	for (const char *l = t; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		struct extent e;
		memset(&e, 0, sizeof(e));
		unsigned long long sec;
		int used = 0;
		if (sscanf(l, "%15s %llu %31s %n", e.access, &sec, e.type, &used) < 3)
			continue;
		if (strcmp(e.access, "RW") && strcmp(e.access, "RDONLY") && strcmp(e.access, "NOACCESS"))
			continue;
		e.sectors = sec;
		const char *q = l + used;
		if (*q == '"') {
			q++;
			size_t k = 0;
			while (q[k] && q[k] != '"' && q[k] != '\n' && k + 1 < sizeof(e.file))
				k++;
			memcpy(e.file, q, k);
		}
		if (n == max)
			die("more than %d extents", max);
		ex[n++] = e;
	}
	return n;
}

static uint64_t parse_size(const char *s)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || end == s)
		die("bad number '%s'", s);
	switch (*end) {
	case 'K': case 'k': v <<= 10; end++; break;
	case 'M': case 'm': v <<= 20; end++; break;
	case 'G': case 'g': v <<= 30; end++; break;
	default: break;
	}
	if (*end && *end != ':' && *end != '=' && *end != '+')
		die("bad number '%s'", s);
	return v;
}

static int parse_fill(const char *s)
{
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X') && s[2] && strlen(s) <= 4) {
		char *end;
		unsigned long v = strtoul(s, &end, 16);
		if (!*end && v <= 0xff)
			return (int)v;
	}
	return -1;
}

/* --- create --- */

struct grainop { int set; int fill; const char *file; uint64_t fileoff; };

static int cmd_create(int argc, char **argv)
{
	const char *delta = NULL, *descr = NULL, *parent = NULL, *hint = NULL;
	uint64_t size = 0;
	uint32_t grain = 1, cid = 0, pcid = 0;
	int have_pcid = 0, have_cid = 0;
	const char **gspecs = xcalloc((size_t)argc + 1, sizeof(char *));
	int ng = 0;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
#define NEEDVAL() do { if (!val) die("%s needs a value", a); i++; } while (0)
		if (!strcmp(a, "--parent")) { NEEDVAL(); parent = val; }
		else if (!strcmp(a, "--size")) { NEEDVAL(); size = parse_size(val); }
		else if (!strcmp(a, "--grain-size")) { NEEDVAL(); grain = (uint32_t)strtoul(val, NULL, 0); }
		else if (!strcmp(a, "--grain")) { NEEDVAL(); gspecs[ng++] = val; }
		else if (!strcmp(a, "--cid")) { NEEDVAL(); cid = (uint32_t)strtoul(val, NULL, 16); have_cid = 1; }
		else if (!strcmp(a, "--parent-cid")) { NEEDVAL(); pcid = (uint32_t)strtoul(val, NULL, 16); have_pcid = 1; }
		else if (!strcmp(a, "--hint")) { NEEDVAL(); hint = val; }
		else if (a[0] == '-' && a[1]) die("create: unknown option %s", a);
		else if (!delta) delta = a;
		else if (!descr) descr = a;
		else die("create: unexpected argument %s", a);
#undef NEEDVAL
	}
	if (!delta || !descr || !parent)
		die("usage: mkcowd create DELTA-delta.vmdk DESCRIPTOR.vmdk --parent PARENT.vmdk [--size BYTES]"
		    " [--grain-size SECTORS] [--grain OFF[:LEN]=PAT]...");
	if (!grain || (grain & (grain - 1)) || grain > 2048)
		die("--grain-size %u is not a power of two up to 2048 sectors", grain);

	char *pt = read_descriptor(parent), v[64];
	if (!have_pcid) {
		if (!desc_value(pt, "CID", v, sizeof(v)))
			die("%s: no CID= in its descriptor", parent);
		pcid = (uint32_t)strtoul(v, NULL, 16);
	}
	if (!size) {
		struct extent ex[64];
		int n = parse_extents(pt, ex, 64);
		for (int i = 0; i < n; i++)
			size += ex[i].sectors * SECTOR;
		if (!size)
			die("%s: no extents (give --size)", parent);
	}
	free(pt);
	if (size % SECTOR || size / SECTOR > 0xffffffffull)
		die("--size %" PRIu64 " is not a multiple of 512 below 2 TiB", size);
	if (!have_cid) {
		uint8_t r[4];
		int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			die("/dev/urandom: %s", strerror(errno));
		xpread(fd, r, 4, 0, "/dev/urandom");
		close(fd);
		cid = le32(r);
	}

	uint32_t nsect = (uint32_t)(size / SECTOR);
	uint64_t gbytes = (uint64_t)grain * SECTOR;
	uint64_t ngrains = (nsect + (uint64_t)grain - 1) / grain;
	uint32_t ngd = (uint32_t)((ngrains + COWD_GTES - 1) / COWD_GTES);
	struct grainop *ops = xcalloc((size_t)ngrains, sizeof(*ops));
	for (int s = 0; s < ng; s++) {
		const char *spec = gspecs[s], *eq = strchr(spec, '=');
		if (!eq || !eq[1])
			die("--grain %s: expected OFF[:LEN]=PATTERN", spec);
		uint64_t off = parse_size(spec), len = 0;
		const char *colon = strchr(spec, ':');
		if (colon && colon < eq)
			len = parse_size(colon + 1);
		int fill = parse_fill(eq + 1);
		const char *file = fill < 0 ? eq + 1 : NULL;
		if (file) {
			struct stat st;
			if (stat(file, &st) < 0)
				die("--grain %s: %s: %s", spec, file, strerror(errno));
			if (!len)
				len = ((uint64_t)st.st_size + gbytes - 1) / gbytes * gbytes;
		}
		if (!len)
			len = gbytes;
		if (off % gbytes || len % gbytes)
			die("--grain %s: offset and length must be whole grains of %" PRIu64 " bytes", spec, gbytes);
		if (off + len > ngrains * gbytes)
			die("--grain %s: past the disk size %" PRIu64, spec, size);
		for (uint64_t g = off / gbytes, k = 0; k < len / gbytes; g++, k++) {
			struct grainop op = { 1, fill, file, k * gbytes };
			ops[g] = op;
		}
	}

	/* layout: header, GD, then per used GD entry its table followed by its grains */
	uint32_t gdsect = (uint32_t)(((uint64_t)ngd * 4 + SECTOR - 1) / SECTOR);
	uint64_t next = COWD_HDR_SECTORS + gdsect;
	uint8_t *gd = xcalloc(gdsect, SECTOR);
	int fd = open(delta, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		die("%s: %s", delta, strerror(errno));
	uint8_t *gt = xcalloc(COWD_GTES, 4), *buf = xcalloc(1, gbytes);
	for (uint32_t t = 0; t < ngd; t++) {
		uint64_t g0 = (uint64_t)t * COWD_GTES, used = 0;
		for (uint64_t g = g0; g < g0 + COWD_GTES && g < ngrains; g++)
			used += ops[g].set;
		if (!used)
			continue;
		uint64_t gtsect = next;
		next += COWD_GTES * 4 / SECTOR;
		memset(gt, 0, COWD_GTES * 4);
		for (uint64_t g = g0; g < g0 + COWD_GTES && g < ngrains; g++) {
			if (!ops[g].set)
				continue;
			memset(buf, ops[g].fill >= 0 ? ops[g].fill : 0, gbytes);
			if (ops[g].file) {
				int ffd = open(ops[g].file, O_RDONLY | O_CLOEXEC);
				if (ffd < 0 || pread(ffd, buf, gbytes, (off_t)ops[g].fileoff) < 0)
					die("%s: %s", ops[g].file, strerror(errno));
				close(ffd);
			}
			if (next > 0xffffffffull - grain)
				die("delta file past 2 TiB");
			put32(gt + 4 * (g - g0), (uint32_t)next);
			xpwrite(fd, buf, gbytes, next * SECTOR, delta);
			next += grain;
		}
		put32(gd + 4ull * t, (uint32_t)gtsect);
		xpwrite(fd, gt, COWD_GTES * 4, gtsect * SECTOR, delta);
	}
	xpwrite(fd, gd, (size_t)gdsect * SECTOR, COWD_HDR_SECTORS * SECTOR, delta);

	uint8_t h[C_HDR_BYTES];
	memset(h, 0, sizeof(h));
	put32(h + C_MAGIC, COWD_MAGIC);
	put32(h + C_VERSION, 1);
	put32(h + C_FLAGS, 3);
	put32(h + C_NUMSECTORS, nsect);
	put32(h + C_GRAIN, grain);
	put32(h + C_GDOFF, COWD_HDR_SECTORS);
	put32(h + C_NUMGD, ngd);
	put32(h + C_FREE, (uint32_t)next);
	snprintf((char *)h + C_PARENTNAME, 1024, "%s", hint ? hint : base_name(parent));
	xpwrite(fd, h, sizeof(h), 0, delta);
	if (ftruncate(fd, (off_t)(next * SECTOR)) < 0 || close(fd) < 0)
		die("%s: %s", delta, strerror(errno));

	FILE *f = fopen(descr, "w");
	if (!f)
		die("%s: %s", descr, strerror(errno));
	fprintf(f, "# Disk DescriptorFile\nversion=1\nencoding=\"UTF-8\"\nCID=%08x\nparentCID=%08x\n"
		   "isNativeSnapshot=\"no\"\ncreateType=\"vmfsSparse\"\nparentFileNameHint=\"%s\"\n"
		   "# Extent description\nRW %u VMFSSPARSE \"%s\"\n\n# The Disk Data Base\n#DDB\n\n"
		   "ddb.longContentID = \"000000000000000000000000%08x\"\n",
		   cid, pcid, hint ? hint : base_name(parent), nsect, base_name(delta), cid);
	if (fclose(f) != 0)
		die("%s: %s", descr, strerror(errno));
	free(gd); free(gt); free(buf); free(ops); free(gspecs);
	return 0;
}

/* --- reading a delta --- */

struct cowd {
	const char *path;
	int fd;
	uint64_t filesize;
	uint32_t nsect, grain, gdoff, ngd, freesect;
	uint32_t *gd;
	uint8_t h[C_HDR_BYTES];
};

static void cowd_open(struct cowd *c, const char *path)
{
	struct stat st;
	memset(c, 0, sizeof(*c));
	c->path = path;
	c->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (c->fd < 0 || fstat(c->fd, &st) < 0)
		die("%s: %s", path, strerror(errno));
	c->filesize = (uint64_t)st.st_size;
	if (c->filesize < C_HDR_BYTES)
		die("%s: %" PRIu64 " bytes is smaller than the 2048-byte COWD header", path, c->filesize);
	xpread(c->fd, c->h, C_HDR_BYTES, 0, path);
	if (le32(c->h + C_MAGIC) != COWD_MAGIC)
		die("%s: magic 0x%08x is not 0x%08x (COWD)", path, le32(c->h + C_MAGIC), COWD_MAGIC);
	if (le32(c->h + C_VERSION) != 1)
		die("%s: version %u is not 1", path, le32(c->h + C_VERSION));
	c->nsect = le32(c->h + C_NUMSECTORS);
	c->grain = le32(c->h + C_GRAIN);
	c->gdoff = le32(c->h + C_GDOFF);
	c->ngd = le32(c->h + C_NUMGD);
	c->freesect = le32(c->h + C_FREE);
	if (!c->grain || (c->grain & (c->grain - 1)) || c->grain > 2048)
		die("%s: grainSize %u is not a power of two up to 2048", path, c->grain);
	uint64_t need = ((uint64_t)c->nsect + (uint64_t)COWD_GTES * c->grain - 1) / ((uint64_t)COWD_GTES * c->grain);
	if (c->ngd < need)
		die("%s: numGDEntries %u cannot map numSectors %u (needs %" PRIu64 ")", path, c->ngd, c->nsect, need);
	if (c->gdoff < COWD_HDR_SECTORS || (uint64_t)c->gdoff * SECTOR + 4ull * c->ngd > c->filesize)
		die("%s: grain directory (%u entries at sector %u) outside the file (%" PRIu64 " bytes)",
		    path, c->ngd, c->gdoff, c->filesize);
	uint8_t *raw = xcalloc(c->ngd, 4);
	xpread(c->fd, raw, 4ull * c->ngd, (uint64_t)c->gdoff * SECTOR, path);
	c->gd = xcalloc(c->ngd, 4);
	for (uint32_t i = 0; i < c->ngd; i++) {
		c->gd[i] = le32(raw + 4ull * i);
		if (c->gd[i] && (uint64_t)c->gd[i] * SECTOR + COWD_GTES * 4 > c->filesize)
			die("%s: grain table %u at sector %u is past the end of the file", path, i, c->gd[i]);
	}
	free(raw);
}

static int all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

static int cmd_read(int argc, char **argv)
{
	const char *in = NULL, *praw = NULL, *out = NULL;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--parent-raw") && i + 1 < argc) praw = argv[++i];
		else if (!strcmp(argv[i], "-o") && i + 1 < argc) out = argv[++i];
		else if (argv[i][0] == '-' && argv[i][1]) die("read: unknown option %s", argv[i]);
		else if (!in) in = argv[i];
		else die("read: unexpected argument %s", argv[i]);
	}
	if (!in)
		die("usage: mkcowd read DESCRIPTOR.vmdk|DELTA [--parent-raw RAW] [-o OUT]");
	/* a descriptor names one VMFSSPARSE extent beside it; a delta is read directly */
	char deltapath[4096];
	uint8_t m[4] = { 0 };
	int tfd = open(in, O_RDONLY | O_CLOEXEC);
	if (tfd < 0)
		die("%s: %s", in, strerror(errno));
	if (pread(tfd, m, 4, 0) != 4)
		die("%s: too short", in);
	close(tfd);
	uint64_t dsect = 0;
	if (le32(m) == COWD_MAGIC)
		snprintf(deltapath, sizeof(deltapath), "%s", in);
	else {
		char *t = read_descriptor(in), ct[64];
		struct extent ex[8];
		if (!desc_value(t, "createType", ct, sizeof(ct)) || strcmp(ct, "vmfsSparse"))
			die("%s: createType is not vmfsSparse", in);
		int n = parse_extents(t, ex, 8);
		if (n != 1 || strcmp(ex[0].type, "VMFSSPARSE") || !ex[0].file[0])
			die("%s: expected one VMFSSPARSE extent line", in);
		if (strchr(ex[0].file, '/'))
			die("%s: extent file '%s' is not in the descriptor's folder", in, ex[0].file);
		const char *slash = strrchr(in, '/');
		snprintf(deltapath, sizeof(deltapath), "%.*s%s", slash ? (int)(slash - in + 1) : 0, in, ex[0].file);
		dsect = ex[0].sectors;
		free(t);
	}
	struct cowd c;
	cowd_open(&c, deltapath);
	if (dsect && dsect != c.nsect)
		die("%s: extent of %" PRIu64 " sectors but %s has numSectors %u", in, dsect, deltapath, c.nsect);
	int pfd = -1;
	uint64_t psize = 0;
	if (praw) {
		struct stat st;
		pfd = open(praw, O_RDONLY | O_CLOEXEC);
		if (pfd < 0 || fstat(pfd, &st) < 0)
			die("%s: %s", praw, strerror(errno));
		psize = (uint64_t)st.st_size;
	}
	int ofd = 1;
	if (out && (ofd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0)
		die("%s: %s", out, strerror(errno));
	uint64_t gbytes = (uint64_t)c.grain * SECTOR, size = (uint64_t)c.nsect * SECTOR;
	uint8_t *gt = xcalloc(COWD_GTES, 4), *buf = xcalloc(1, gbytes);
	uint32_t cur = UINT32_MAX;
	for (uint64_t g = 0, pos = 0; pos < size; g++) {
		uint32_t t = (uint32_t)(g / COWD_GTES), e = 0;
		if (t != cur) {
			memset(gt, 0, COWD_GTES * 4);
			if (c.gd[t])
				xpread(c.fd, gt, COWD_GTES * 4, (uint64_t)c.gd[t] * SECTOR, c.path);
			cur = t;
		}
		e = le32(gt + 4 * (g % COWD_GTES));
		size_t len = size - pos < gbytes ? (size_t)(size - pos) : (size_t)gbytes;
		memset(buf, 0, gbytes);
		if (e) {
			if ((uint64_t)e * SECTOR + gbytes > c.filesize)
				die("%s: grain %" PRIu64 " at sector %u is past the end of the file", c.path, g, e);
			xpread(c.fd, buf, len, (uint64_t)e * SECTOR, c.path);
		} else if (pfd >= 0 && pos < psize)
			xpread(pfd, buf, psize - pos < len ? (size_t)(psize - pos) : len, pos, praw);
		if (out) {
			if (!all_zero(buf, len))
				xpwrite(ofd, buf, len, pos, out);
		} else {
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
	if (out && (ftruncate(ofd, (off_t)size) < 0 || close(ofd) < 0))
		die("%s: %s", out, strerror(errno));
	free(gt); free(buf); free(c.gd);
	close(c.fd);
	if (pfd >= 0)
		close(pfd);
	return 0;
}

static int cmd_dump(int argc, char **argv)
{
	if (argc != 1)
		die("usage: mkcowd dump DELTA");
	struct cowd c;
	cowd_open(&c, argv[0]);
	char name[1025];
	memcpy(name, c.h + C_PARENTNAME, 1024);
	name[1024] = 0;
	printf("magic=COWD\nversion=%u\nflags=%u\nnum_sectors=%u\ngrain_size=%u\ngd_offset=%u\n"
	       "num_gd_entries=%u\nfree_sector=%u\nparent_file_name=%s\ngeneration=%u\n"
	       "saved_generation=%u\nunclean_shutdown=%u\nfile_size=%" PRIu64 "\n",
	       le32(c.h + C_VERSION), le32(c.h + C_FLAGS), c.nsect, c.grain, c.gdoff, c.ngd, c.freesect,
	       name, le32(c.h + C_GENERATION), le32(c.h + C_SAVEDGEN), le32(c.h + C_UNCLEAN), c.filesize);
	uint32_t tables = 0;
	for (uint32_t i = 0; i < c.ngd; i++)
		tables += c.gd[i] != 0;
	printf("grain_tables=%u\n", tables);
	free(c.gd);
	close(c.fd);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		die("usage: mkcowd create|read|dump ... (see the comment at the top of mkcowd.c)");
	if (!strcmp(argv[1], "create")) return cmd_create(argc - 2, argv + 2);
	if (!strcmp(argv[1], "read")) return cmd_read(argc - 2, argv + 2);
	if (!strcmp(argv[1], "dump")) return cmd_dump(argc - 2, argv + 2);
	die("unknown command '%s' (create, read, dump)", argv[1]);
}
