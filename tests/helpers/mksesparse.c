/*
 * mksesparse: a test reference for ESXi seSparse delta extents, written
 * from the published layout (the SESparse constant and volatile headers,
 * grain directory and grain tables as VMware documents them and qemu
 * reads them), not from vdisk's code: qemu reads these files but cannot
 * write them, and no seSparse sample is in the shared collection.
 * Standalone: libc only.
 *
 * Layout written (all little-endian u64; offsets and sizes in sectors):
 *   sector 0 constant header: magic 0xcafebabe, version 0x200000001,
 *     capacity, grain size 8, grain-table size 64, flags 0, 4 reserved 0,
 *     then offset/size of the volatile header (1, 1), journal header
 *     (2, 1), journal (3, 1), grain directory (4, GD), grain tables,
 *     free bitmap, back map and grains; padding 0.
 *   sector 1 volatile header: magic 0xcafecafe, free GT number, next
 *     transaction 1, replay-journal 0; padding 0.
 *   Directory entry: 0x1000000000000000 | table number; tables are
 *     numbered in the reverse of their directory order, and grains are
 *     stored in the reverse of their guest order, so that a reader that
 *     assumes identity mappings reads the wrong bytes.
 *   Table entry: 0 not in this layer, 0x1... unmapped, 0x2... zeroed,
 *     0x3... | (n & 0xfff) << 48 | n >> 12 for grain number n.
 *
 *   mksesparse DESC.vmdk EXTENT.vmdk --size BYTES --parent-cid HEX
 *              --hint PARENT [--data G=0xBB]... [--zero G]... [--unmap G]...
 *       G is a 4 KiB grain number of the guest; --data fills it with the
 *       byte.  DESC names EXTENT by its base name.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SECTOR 512u
#define GRAIN 4096u
#define GTES 4096u
#define GT_SECTORS 64u
#define MAXG 4096u

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "mksesparse: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	_exit(1); /* leaves its buffers to the process's end (no LSan abort) */
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void pwrite_all(int fd, const void *b, size_t n, uint64_t off, const char *path)
{
	if (pwrite(fd, b, n, (off_t)off) != (ssize_t)n)
		die("%s: write at %llu: %s", path, (unsigned long long)off, strerror(errno));
}

enum { K_NONE, K_DATA, K_ZERO, K_UNMAP };

int main(int argc, char **argv)
{
	static uint8_t kind[1u << 20], fill[1u << 20];
	uint64_t size = 0, ngrains, ngd, ngt, gd_sectors, gt_off, bm_off, back_off, grains_off;
	uint64_t gt_num[256], ndata = 0, order[MAXG], maxg = 0;
	const char *desc, *ext, *hint = NULL, *base;
	unsigned long pcid = 0;
	bool have_pcid = false;
	uint8_t hd[SECTOR] = { 0 }, vh[SECTOR] = { 0 };
	FILE *f;
	int fd;

	if (argc < 3)
		die("usage: mksesparse DESC.vmdk EXTENT.vmdk --size BYTES --parent-cid HEX --hint PARENT [--data G=0xBB] [--zero G] [--unmap G]");
	desc = argv[1];
	ext = argv[2];
	for (int i = 3; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		char *end;
		unsigned long long g;

		if (!v)
			die("%s needs a value", a);
		i++;
		if (!strcmp(a, "--size")) {
			size = strtoull(v, &end, 0);
		} else if (!strcmp(a, "--parent-cid")) {
			pcid = strtoul(v, &end, 16);
			have_pcid = true;
		} else if (!strcmp(a, "--hint")) {
			hint = v;
		} else if (!strcmp(a, "--data") || !strcmp(a, "--zero") || !strcmp(a, "--unmap")) {
			g = strtoull(v, &end, 0);
			if (g >= sizeof(kind))
				die("grain %llu: too far for this helper", g);
			if (!strcmp(a, "--data")) {
				if (*end != '=')
					die("--data G=BYTE, not %s", v);
				fill[g] = (uint8_t)strtoul(end + 1, NULL, 0);
				kind[g] = K_DATA;
			} else {
				kind[g] = !strcmp(a, "--zero") ? K_ZERO : K_UNMAP;
			}
			if (g + 1 > maxg)
				maxg = g + 1;
		} else {
			die("unknown option %s", a);
		}
	}
	if (!size || size % GRAIN || !have_pcid || !hint)
		die("--size (whole 4 KiB grains), --parent-cid and --hint are required");
	ngrains = size / GRAIN;
	if (maxg > ngrains)
		die("a grain is past --size");
	ngd = (ngrains + GTES - 1) / GTES;
	if (ngd > 256)
		die("--size too large for this helper");
	gd_sectors = (ngd * 8 + SECTOR - 1) / SECTOR;
	/* tables: one per directory entry that has a grain */
	ngt = 0;
	for (uint64_t d = 0; d < ngd; d++) {
		gt_num[d] = UINT64_MAX;
		for (uint64_t g = d * GTES; g < (d + 1) * GTES && g < maxg; g++)
			if (kind[g]) {
				gt_num[d] = ngt++;
				break;
			}
	}
	/* reverse the table numbers */
	for (uint64_t d = 0; d < ngd; d++)
		if (gt_num[d] != UINT64_MAX)
			gt_num[d] = ngt - 1 - gt_num[d];
	for (uint64_t g = 0; g < maxg; g++)
		if (kind[g] == K_DATA) {
			if (ndata == MAXG)
				die("too many data grains");
			order[ndata++] = g;
		}
	gt_off = 4 + gd_sectors;
	bm_off = gt_off + (ngt ? ngt : 1) * GT_SECTORS;
	back_off = bm_off + 1;
	grains_off = back_off + 1;

	put64(hd + 0, 0xcafebabeull);
	put64(hd + 8, 0x200000001ull);
	put64(hd + 16, size / SECTOR);
	put64(hd + 24, 8);
	put64(hd + 32, GT_SECTORS);
	put64(hd + 80, 1);   put64(hd + 88, 1);   /* volatile header */
	put64(hd + 96, 2);   put64(hd + 104, 1);  /* journal header */
	put64(hd + 112, 3);  put64(hd + 120, 1);  /* journal */
	put64(hd + 128, 4);  put64(hd + 136, gd_sectors);
	put64(hd + 144, gt_off); put64(hd + 152, (ngt ? ngt : 1) * GT_SECTORS);
	put64(hd + 160, bm_off); put64(hd + 168, 1);
	put64(hd + 176, back_off); put64(hd + 184, 1);
	put64(hd + 192, grains_off); put64(hd + 200, (ndata ? ndata : 1) * 8);
	put64(vh + 0, 0xcafecafeull);
	put64(vh + 8, ngt);
	put64(vh + 16, 1);

	fd = open(ext, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		die("%s: %s", ext, strerror(errno));
	pwrite_all(fd, hd, SECTOR, 0, ext);
	pwrite_all(fd, vh, SECTOR, SECTOR, ext);
	for (uint64_t d = 0; d < ngd; d++) {
		uint8_t e[8] = { 0 };
		if (gt_num[d] != UINT64_MAX)
			put64(e, 0x1000000000000000ull | gt_num[d]);
		pwrite_all(fd, e, 8, 4 * SECTOR + 8 * d, ext);
	}
	/* grains in reverse guest order: the last data grain is number 0 */
	for (uint64_t i = 0; i < ndata; i++) {
		uint64_t g = order[i], n = ndata - 1 - i;
		uint8_t buf[GRAIN];
		memset(buf, fill[g], sizeof(buf));
		/* a marker so that a misplaced grain shows */
		snprintf((char *)buf, 32, "grain %llu", (unsigned long long)g);
		pwrite_all(fd, buf, GRAIN, (grains_off + n * 8) * SECTOR, ext);
	}
	for (uint64_t g = 0; g < maxg; g++) {
		uint64_t d = g / GTES, e = 0;
		if (!kind[g])
			continue;
		if (kind[g] == K_UNMAP)
			e = 0x1000000000000000ull;
		else if (kind[g] == K_ZERO)
			e = 0x2000000000000000ull;
		else
			for (uint64_t i = 0; i < ndata; i++)
				if (order[i] == g) {
					uint64_t n = ndata - 1 - i;
					e = 0x3000000000000000ull | ((n & 0xfff) << 48) | (n >> 12);
				}
		uint8_t b[8];
		put64(b, e);
		pwrite_all(fd, b, 8, (gt_off + gt_num[d] * GT_SECTORS) * SECTOR + 8 * (g % GTES), ext);
	}
	/* the file reaches the end of the last region written */
	if (ftruncate(fd, (off_t)((grains_off + (ndata ? ndata : 1) * 8) * SECTOR)) < 0)
		die("%s: %s", ext, strerror(errno));
	close(fd);

	base = strrchr(ext, '/') ? strrchr(ext, '/') + 1 : ext;
	f = fopen(desc, "w");
	if (!f)
		die("%s: %s", desc, strerror(errno));
	fprintf(f, "# Disk DescriptorFile\nversion=1\nencoding=\"UTF-8\"\nCID=%08x\nparentCID=%08lx\n"
		"createType=\"seSparse\"\nparentFileNameHint=\"%s\"\n"
		"# Extent description\nRW %llu SESPARSE \"%s\"\n\n# The Disk Data Base\n#DDB\n\n"
		"ddb.adapterType = \"lsilogic\"\nddb.virtualHWVersion = \"14\"\n",
		0x5e5e0001u, pcid, hint, (unsigned long long)(size / SECTOR), base);
	if (fclose(f))
		die("%s: %s", desc, strerror(errno));
	return 0;
}
