/*
 * vdisk convert: copy an image into another format (or onto an existing
 * image with -n, or onto a block device in place).
 *
 * SPDX-License-Identifier: MIT
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage[] =
	"Usage: vdisk convert [-f FMT] -O FMT [-o OPTS] [-p|-q] [-S BYTES] [--force]\n"
	"                     [--deterministic] [--allow-devices] [--no-sync]\n"
	"                     [--size BYTES] [--source-offset BYTES] [--source-size BYTES]\n"
	"                     SRC DST\n"
	"       vdisk convert [-f FMT] [-O FMT] -n [--target-is-zero] [--no-sync] [-p|-q]\n"
	"                     SRC DST\n"
	"       vdisk convert [-f FMT] [--direct] [--verify] [--target-is-zero]\n"
	"                     [--rawvmdk OUT.vmdk] [--owner USER[:GROUP]] [-p|-q]\n"
	"                     SRC {DEVICE | --lv VG/NAME}\n"
	"\n"
	"Copy the guest contents of SRC into DST.  Ranges SRC reports as zero\n"
	"or unallocated are never read.  A new DST is built in a temporary file\n"
	"beside it and renamed into place only on success; on error or on\n"
	"SIGINT/SIGTERM the temporary file is removed and SRC is untouched.\n"
	"\n"
	"A block device as DST is a raw target written in place (no temporary\n"
	"file): opened exclusively (refused when mounted or in use), refused\n"
	"before anything is written when smaller than the image, its tail past\n"
	"the image left as it was; zero ranges are zeroed (discard that\n"
	"guarantees zeros or BLKZEROOUT, else written), the copy ends with fsync\n"
	"and a summary.  An interrupted copy leaves the device partly written.\n"
	"A block device as SRC is read as a raw disk (no --allow-devices needed).\n"
	"\n"
	"SRC may be compressed with xz, zstd, gzip or bzip2 (told by its magic;\n"
	"the contents are a raw disk), or - for standard input (raw or compressed):\n"
	"it is read once, front to back, and its zero runs are left unallocated.\n"
	"DST - writes -O raw or streamOptimized VMDK to standard output.\n"
	"\n"
	"  -f, --source-format FMT  source format (default: probe)\n"
	"  -O, --target-format FMT  output format: raw, vdi or vmdk\n"
	"  -o OPTS                  output options (see vdisk-create(1)):\n"
	"                             vdi: subformat=dynamic|fixed, block_size=SIZE\n"
	"                             raw: preallocation=off|falloc, compression=zstd|xz\n"
	"                               (a compressed raw DST, compression_level=N)\n"
	"                             vmdk: subformat=, adapter_type=, hwversion=, compat=,\n"
	"                             grain_size=, compression_level=1..12 (streamOptimized)\n"
	"  -B, --target-backing PARENT  write DST as a new child of PARENT (vdi,\n"
	"                           vmdk) holding only what differs from it; a\n"
	"                           relative PARENT is relative to DST's folder\n"
	"  -S, --sparse-size BYTES  zero runs of at least BYTES are left unallocated\n"
	"                           (default 4K; 0 allocates everything)\n"
	"  -n, --no-create          write into the existing image DST (not atomic:\n"
	"                           an interrupted run leaves DST partly written)\n"
	"      --target-is-zero     with -n or a device: DST already reads as zeros\n"
	"      --force              replace an existing DST; a device DST: write over a\n"
	"                           filesystem signature or a device open elsewhere;\n"
	"                           a child SRC: read a parent changed since the snapshot\n"
	"      --backing FILE       a parent candidate of a child SRC (repeatable;\n"
	"                           see vdisk(1)); a chain is copied flattened\n"
	"      --deterministic      fixed UUIDs, for reproducible images\n"
	"      --no-sync            do not flush DST to disk before renaming it into\n"
	"                           place (like qemu-img convert's default cache=unsafe):\n"
	"                           faster; a host crash soon after may damage DST\n"
	"      --allow-devices      allow block devices as SRC or (with -n) DST\n"
	"      --direct             device DST: bypass the page cache (O_DIRECT)\n"
	"      --verify             device DST: read it back and compare with SRC\n"
	"      --lv VG/NAME         the LVM logical volume as DST, created with\n"
	"                           lvcreate (size rounded up to the extent size)\n"
	"                           when it does not exist\n"
	"      --rawvmdk OUT.vmdk   device DST: then write the VirtualBox raw-disk\n"
	"                           descriptor for it (see vdisk-rawvmdk(1))\n"
	"      --owner USER[:GROUP] device DST: print a udev rule giving it to USER\n"
	"                           and the chown command (never installed)\n"
	"      --size BYTES         a compressed or piped SRC: its size, when the\n"
	"                           container does not record it (xz index and zstd\n"
	"                           frame header do; else found at the end of the\n"
	"                           stream, required onto a device)\n"
	"      --source-offset BYTES  read SRC as a raw disk from this byte\n"
	"      --source-size BYTES  read SRC as a raw disk of this many bytes (with\n"
	"                           --source-offset: from there; default: to its end)\n"
	"  -p, --progress           show progress (default when stderr is a terminal)\n"
	"  -q, --quiet              no progress\n"
	"  -h, --help               show this help\n";

static double rate_of(uint64_t bytes, double secs)
{
	return secs > 0 ? (double)bytes / secs : 0;
}

static void summary(const char *src, const char *dev, const struct vd_devcopy_result *res)
{
	char a[32], b[32], c[32];
	double t = res->copy_seconds + res->flush_seconds;

	printf("%s -> %s: %s image (%llu bytes) on a %s device (%llu bytes)\n", src, dev,
	       cli_human(res->image_size, a, sizeof(a)), (unsigned long long)res->image_size,
	       cli_human(res->device_size, b, sizeof(b)), (unsigned long long)res->device_size);
	printf("  written:  %s (%llu bytes) of data\n", cli_human(res->data_bytes, a, sizeof(a)),
	       (unsigned long long)res->data_bytes);
	printf("  zeroed:   %s (%llu bytes), %s of it without writing (discard/BLKZEROOUT)\n",
	       cli_human(res->zero_bytes, a, sizeof(a)), (unsigned long long)res->zero_bytes,
	       cli_human(res->zeroed_fast, b, sizeof(b)));
	if (res->tail_kept)
		printf("  kept:     the last %s (%llu bytes) of the device, past the image, as they were\n",
		       cli_human(res->tail_kept, a, sizeof(a)), (unsigned long long)res->tail_kept);
	printf("  time:     %.2f s (copy %.2f s, fsync %.2f s), %s/s (data %s/s)\n", t,
	       res->copy_seconds, res->flush_seconds,
	       cli_human((uint64_t)rate_of(res->image_size, t), b, sizeof(b)),
	       cli_human((uint64_t)rate_of(res->data_bytes, t), c, sizeof(c)));
	if (res->verified)
		printf("  verified: the device holds the image (read back in %.2f s, %s/s)\n",
		       res->verify_seconds,
		       cli_human((uint64_t)rate_of(res->image_size, res->verify_seconds), a, sizeof(a)));
}

static int convert_to_device(const char *src, const char *dst, const char *lv,
			     const char *rawvmdk, const char *owner,
			     const struct vd_convert_opts *o, struct vd_devcopy_opts *dev,
			     int pmode)
{
	struct vd_devcopy_result res;
	struct vd_error err = { 0 };
	struct cli_progress prog;
	char lvpath[4096], a[32];
	int r;

	if ((o->dst_format && strcmp(o->dst_format, "raw")) || o->dst_opts || o->existing_target) {
		cli_err("convert", "a block device is written as a raw disk: -O (other than raw), -o and -n do not apply");
		return 1;
	}
	if (lv) {
		struct vd_image *img;
		uint64_t size;
		bool created;

		if (vd_open(&img, src, o->src_format, o->src_open_flags, &err) < 0)
			return cli_fail("convert", &err, 1);
		size = vd_size(img);
		vd_close(img, NULL);
		r = vd_lv_ensure(lv, size, lvpath, sizeof(lvpath), &created, &err);
		if (r < 0)
			return cli_fail("convert", &err, 1);
		if (created)
			printf("created logical volume %s (%s) for the %s image\n", lv, lvpath,
			       cli_human(size, a, sizeof(a)));
		dst = lvpath;
	}
	dev->src_format = o->src_format;
	dev->src_open_flags = o->src_open_flags;
	dev->stream_size = o->stream_size;
	dev->source_offset = o->source_offset;
	dev->source_size = o->source_size;
	dev->target_is_zero = o->target_is_zero;
	dev->force = o->force;
	cli_catch_signals();
	cli_progress_init(&prog, pmode);
	dev->progress = cli_progress_cb;
	dev->progress_ctx = &prog;
	dev->cancel = &cli_cancel;
	r = vd_devcopy(src, dst, dev, &res, &err);
	cli_progress_end(&prog);
	if (res.warning[0])
		cli_err("convert", "warning: %s", res.warning);
	if (r < 0) {
		int rc = cli_fail("convert", &err, 1);
		if (res.started && res.reached < res.image_size)
			cli_err("convert", "%s is partly written: the image's first %s (%llu bytes) of %llu are on it, the rest of the device holds old data",
				dst, cli_human(res.reached, a, sizeof(a)),
				(unsigned long long)res.reached,
				(unsigned long long)res.image_size);
		return rc;
	}
	fflush(stderr);
	summary(src, dst, &res);
	if (rawvmdk) {
		struct vd_rawvmdk_opts ro = { 0 };
		ro.force = o->force;
		ro.deterministic = (o->create_flags & VD_CREATE_DETERMINISTIC) != 0;
		if (vd_rawvmdk(dst, rawvmdk, &ro, &err) < 0)
			return cli_fail("convert", &err, 1);
		printf("wrote %s (VirtualBox raw-disk descriptor for %s)\n", rawvmdk, dst);
	}
	if (owner)
		cli_owner_hint(dst, lv, owner);
	return 0;
}

/* Take compression=KIND and compression_level=N out of the -o text O (a
 * new string in *REST, NULL when nothing is left). */
static int take_compression(const char *o, char **rest, const char **kind, int *level)
{
	char *dup = o ? strdup(o) : NULL, *out, *tok, *save = NULL;
	static char kbuf[16];

	*rest = NULL;
	*kind = NULL;
	*level = 0;
	if (!o)
		return 0;
	out = calloc(1, strlen(o) + 1);
	if (!dup || !out) {
		free(dup);
		free(out);
		return -1;
	}
	for (tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (!strncmp(tok, "compression=", 12)) {
			snprintf(kbuf, sizeof(kbuf), "%s", tok + 12);
			*kind = kbuf;
		} else if (!strncmp(tok, "compression_level=", 18)) {
			*level = atoi(tok + 18);
			if (*level <= 0)
				*level = -1;
		} else {
			if (*out)
				strcat(out, ",");
			strcat(out, tok);
		}
	}
	free(dup);
	if (*out)
		*rest = out;
	else
		free(out);
	return 0;
}

/* DST "-" (the two sequential formats, raw and streamOptimized VMDK, to
 * standard output): sent as they are made (src/core/seqhost.c).
 * -O raw -o compression=zstd|xz: the raw image is built in a private
 * directory (under $TMPDIR, default /var/tmp, for standard output; beside
 * DST otherwise) and then compressed out of it, so the writers and the
 * temporary-file discipline stay as they are; a compressed DST file is
 * written to a temporary file beside it and renamed into place.  The
 * directory is removed whatever happens.  Returns the exit status. */
static int convert_staged(const char *src, const char *dst, struct vd_convert_opts *o,
			  const char *kind, int level)
{
	const char *tmpdir = getenv("TMPDIR");
	bool to_stdout = !strcmp(dst, "-");
	char dir[4096], path[4200], tmp[4200] = "";
	struct vd_error err = { 0 };
	char buf[1 << 16];
	int fd = -1, out = STDOUT_FILENO, r, rc = 0;
	bool stream = o->dst_format && !strcmp(o->dst_format, "vmdk") && o->dst_opts &&
		      strstr(o->dst_opts, "subformat=streamOptimized");
	bool no_sync = o->no_sync;
	struct stat st;

	if (kind && (!o->dst_format || strcmp(o->dst_format, "raw"))) {
		cli_err("convert", "-o compression= applies to -O raw");
		return 1;
	}
	if (to_stdout && (!o->dst_format || (strcmp(o->dst_format, "raw") && !stream) || o->existing_target)) {
		cli_err("convert", "standard output (-) takes -O raw or -O vmdk -o subformat=streamOptimized, the formats written front to back");
		return 1;
	}
	if (to_stdout && isatty(STDOUT_FILENO)) {
		cli_err("convert", "standard output is a terminal: redirect it to a file or a pipe");
		return 1;
	}
	if (!to_stdout && !o->force && lstat(dst, &st) == 0) {
		cli_err("convert", "%s: already exists (use --force to replace it)", dst);
		return 1;
	}
	if (to_stdout && !kind) {
		/* the image goes out as it is made, nothing staged */
		o->dst_is_fd = true;
		o->dst_fd = STDOUT_FILENO;
		r = vd_convert(src, "standard output", o, &err);
		if (r < 0 && err.code == -ECANCELED && cli_cancel) {
			cli_err("convert", "interrupted by signal %d; standard output got part of the image",
				cli_cancel);
			return 128 + cli_cancel;
		}
		return r < 0 ? cli_fail("convert", &err, 1) : 0;
	}
	if (to_stdout) {
		snprintf(dir, sizeof(dir), "%s/vdisk-stdout.XXXXXX", tmpdir && *tmpdir ? tmpdir : "/var/tmp");
	} else {
		char *d = strdup(dst), *slash = d ? strrchr(d, '/') : NULL;
		if (slash)
			*slash = 0;
		snprintf(dir, sizeof(dir), "%s/.vdisk-stage.XXXXXX", slash ? (*d ? d : "/") : ".");
		free(d);
	}
	if (!mkdtemp(dir)) {
		cli_err("convert", "cannot make a staging directory %s: %s", dir, strerror(errno));
		return 1;
	}
	snprintf(path, sizeof(path), "%s/out", dir);
	o->no_sync = true; /* a staging file: nothing to keep on disk */
	r = vd_convert(src, path, o, &err);
	if (r < 0 && err.code == -ECANCELED && cli_cancel) {
		cli_err("convert", "interrupted by signal %d; nothing was changed", cli_cancel);
		rc = 128 + cli_cancel;
	} else if (r < 0) {
		rc = cli_fail("convert", &err, 1);
	}
	if (!rc && !to_stdout) {
		/* the name the library's temporary files have (.NAME.vdisk-tmp-PID-XXXXXX
		 * beside NAME), so the next output to NAME removes it after a crash */
		const char *base = strrchr(dst, '/');
		snprintf(tmp, sizeof(tmp), "%.*s.%s.vdisk-tmp-%ld-XXXXXX", base ? (int)(base - dst + 1) : 0, dst,
			 base ? base + 1 : dst, (long)getpid());
		out = mkstemp(tmp);
		if (out < 0) {
			cli_err("convert", "%s: %s", tmp, strerror(errno));
			tmp[0] = 0;
			rc = 1;
		} else {
			fchmod(out, 0644);
		}
	}
	if (!rc && kind) {
		r = vd_compress_raw(path, out, to_stdout ? "standard output" : dst, kind, level, &cli_cancel, &err);
		if (r < 0)
			rc = cli_fail("convert", &err, 1);
	} else if (!rc) {
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			cli_err("convert", "%s: %s", path, strerror(errno));
			rc = 1;
		}
	}
	while (fd >= 0 && !rc) {
		ssize_t n = read(fd, buf, sizeof(buf)), w = 0;
		if (n == 0)
			break;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || cli_cancel) {
			cli_err("convert", "reading the output back: %s", n < 0 ? strerror(errno) : "interrupted");
			rc = 1;
			break;
		}
		while (w < n) {
			ssize_t m = write(out, buf + w, (size_t)(n - w));
			if (m < 0 && errno == EINTR)
				continue;
			if (m < 0) {
				cli_err("convert", "writing to %s: %s", to_stdout ? "standard output" : dst, strerror(errno));
				rc = 1;
				break;
			}
			w += m;
		}
	}
	if (fd >= 0)
		close(fd);
	if (!to_stdout && out >= 0 && tmp[0]) {
		if (!rc && !no_sync && fsync(out) < 0) {
			cli_err("convert", "%s: fsync: %s", tmp, strerror(errno));
			rc = 1;
		}
		close(out);
		if (!rc && rename(tmp, dst) < 0) {
			cli_err("convert", "%s: rename: %s", dst, strerror(errno));
			rc = 1;
		}
		if (rc)
			unlink(tmp);
	}
	unlink(path);
	rmdir(dir);
	return rc;
}

int cmd_convert(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "source-format", required_argument, NULL, 'f' },
		{ "target-format", required_argument, NULL, 'O' },
		/* the former name of --target-format, not shown: --format is the
		 * format of the image read (-f) in every other command */
		{ "format", required_argument, NULL, 'O' },
		{ "sparse-size", required_argument, NULL, 'S' },
		{ "no-create", no_argument, NULL, 'n' },
		{ "target-is-zero", no_argument, NULL, 'z' },
		{ "force", no_argument, NULL, 'F' },
		{ "deterministic", no_argument, NULL, 'd' },
		{ "allow-devices", no_argument, NULL, 'D' },
		{ "progress", no_argument, NULL, 'p' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ "direct", no_argument, NULL, 1000 },
		{ "verify", no_argument, NULL, 1001 },
		{ "lv", required_argument, NULL, 1002 },
		{ "rawvmdk", required_argument, NULL, 1003 },
		{ "owner", required_argument, NULL, 1004 },
		{ "no-sync", no_argument, NULL, 1005 },
		{ "target-backing", required_argument, NULL, 'B' },
		CLI_CHAIN_OPTION,
		{ "size", required_argument, NULL, 1006 },
		{ "source-offset", required_argument, NULL, 1007 },
		{ "source-size", required_argument, NULL, 1008 },
		{ 0 },
	};
	struct vd_convert_opts o = { 0 };
	struct vd_devcopy_opts dev = { 0 };
	struct vd_error err = { 0 };
	struct cli_progress prog;
	const char *lv = NULL, *rawvmdk = NULL, *owner = NULL, *src, *dst, *kind = NULL;
	char *rest = NULL;
	int zlevel = 0;
	struct stat st;
	bool to_device;
	int c, r, pmode = CLI_PROGRESS_AUTO;

	o.min_sparse = 4096;
	while ((c = getopt_long(argc, argv, "f:O:o:S:B:npqh", lo, NULL)) != -1) {
		switch (c) {
		case 'B': o.backing = optarg; break;
		case 'f': o.src_format = optarg; break;
		case 'O': o.dst_format = optarg; break;
		case 'o': o.dst_opts = optarg; break;
		case 'S':
			if (vd_parse_size(optarg, &o.min_sparse) < 0) {
				cli_err("convert", "invalid -S size '%s'", optarg);
				return 1;
			}
			break;
		case 'n': o.existing_target = true; break;
		case 'z': o.target_is_zero = true; break;
		case 'F': o.force = true; break;
		case 'd': o.create_flags |= VD_CREATE_DETERMINISTIC; break;
		case 'D': o.src_open_flags |= VD_OPEN_ALLOW_DEVICES; break;
		case 'p': pmode = CLI_PROGRESS_ON; break;
		case 'q': pmode = CLI_PROGRESS_OFF; break;
		case 'h': cli_usage(stdout, usage); return 0;
		case 1000: dev.direct = true; break;
		case 1001: dev.verify = true; break;
		case 1002: lv = optarg; break;
		case 1003: rawvmdk = optarg; break;
		case 1004:
			if (cli_owner_check("convert", optarg) < 0)
				return 1;
			owner = optarg;
			break;
		case 1005: o.no_sync = true; break;
		case CLI_OPT_BACKING:
			if (cli_chain_backing("convert", optarg))
				return 1;
			break;
		case 1006:
		case 1007:
		case 1008: {
			uint64_t *v = c == 1006 ? &o.stream_size : c == 1007 ? &o.source_offset : &o.source_size;
			const char *name = c == 1006 ? "size" : c == 1007 ? "source-offset" : "source-size";
			if (vd_parse_size(optarg, v) < 0 || (c != 1007 && *v == 0)) {
				cli_err("convert", "invalid --%s '%s'", name, optarg);
				return 1;
			}
			break;
		}
		default: cli_usage(stderr, usage); return 1;
		}
	}
	cli_chain_apply("convert", o.force);
	if (optind + (lv ? 1 : 2) != argc) {
		cli_usage(stderr, usage);
		return 1;
	}
	src = argv[optind];
	dst = lv ? NULL : argv[optind + 1];
	if (o.dst_opts && strstr(o.dst_opts, "compression=") &&
	    (!o.dst_format || strcmp(o.dst_format, "vmdk"))) {
		if (take_compression(o.dst_opts, &rest, &kind, &zlevel) < 0) {
			cli_err("convert", "out of memory");
			return 1;
		}
		if (!kind || (strcmp(kind, "zstd") && strcmp(kind, "xz"))) {
			cli_err("convert", "compression must be zstd or xz, not '%s'", kind ? kind : "");
			free(rest);
			return 1;
		}
		if (zlevel < 0 || zlevel > (strcmp(kind, "xz") ? 19 : 9)) {
			cli_err("convert", "compression_level for %s must be a number from 1 to %d",
				kind, strcmp(kind, "xz") ? 19 : 9);
			free(rest);
			return 1;
		}
		o.dst_opts = rest;
	}
	/* a block device named as SRC is a raw disk: the user named it, so
	 * --allow-devices (which guards paths found inside images) is not
	 * needed; another format on a device needs -f FMT --allow-devices */
	if (!o.src_format && stat(src, &st) == 0 && S_ISBLK(st.st_mode)) {
		o.src_format = "raw";
		o.src_open_flags |= VD_OPEN_ALLOW_DEVICES;
	}
	to_device = lv || (stat(dst, &st) == 0 && S_ISBLK(st.st_mode));
	if (to_device && o.backing) {
		cli_err("convert", "-B makes a child image file; a block device is written as a raw disk");
		return 1;
	}
	if (to_device && o.no_sync) {
		cli_err("convert", "--no-sync applies to image files; a copy to a block device always ends with fsync");
		return 1;
	}
	if (to_device)
		return convert_to_device(src, dst, lv, rawvmdk, owner, &o, &dev, pmode);
	if (dev.direct || dev.verify || rawvmdk || owner) {
		cli_err("convert", "--direct, --verify, --rawvmdk and --owner need a block device as DST");
		return 1;
	}
	if (vd_is_nbd_uri(dst) && !o.existing_target) {
		/* an export exists: its raw disk is written in place, as -n */
		if ((o.dst_format && strcmp(o.dst_format, "raw")) || o.dst_opts) {
			cli_err("convert", "%s: an NBD export is written as the raw disk it serves: -O (other than raw) and -o do not apply (-n writes into an image the export holds)",
				dst);
			return 1;
		}
		o.existing_target = true;
		o.dst_format = "raw";
	}
	if (!o.dst_format && !o.existing_target) {
		cli_usage(stderr, usage);
		return 1;
	}
	if (o.target_is_zero && !o.existing_target) {
		cli_err("convert", "--target-is-zero needs -n");
		return 1;
	}
	if (o.existing_target && o.dst_opts) {
		cli_err("convert", "-o cannot be used with -n (the target exists)");
		return 1;
	}
	cli_catch_signals();
	cli_progress_init(&prog, pmode);
	o.progress = cli_progress_cb;
	o.progress_ctx = &prog;
	o.cancel = &cli_cancel;
	if (!strcmp(dst, "-") || kind) {
		r = convert_staged(src, dst, &o, kind, zlevel);
		cli_progress_end(&prog);
		free(rest);
		return r;
	}
	r = vd_convert(src, dst, &o, &err);
	cli_progress_end(&prog);
	if (r < 0 && err.code == -ECANCELED && cli_cancel) {
		/* what vdisk-convert(1) promises: a new DST is built in a
		 * temporary file that is removed, -n writes in place */
		if (o.existing_target)
			cli_err("convert", "interrupted by signal %d; %s is partly written (-n writes in place)",
				cli_cancel, dst);
		else
			cli_err("convert", "interrupted by signal %d; nothing was changed (the temporary file was removed, %s left as it was)",
				cli_cancel, dst);
		return 128 + cli_cancel;
	}
	if (r < 0)
		return cli_fail("convert", &err, 1);
	if (!o.existing_target) {
		char warn[512];

		vd_create_warning(o.dst_format, o.dst_opts, warn, sizeof(warn));
		if (warn[0])
			cli_err("convert", "warning: %s", warn);
	}
	return 0;
}
