/*
 * vdisk mount: the guest disk of an image and each of its partitions as
 * files in a FUSE directory (libfuse3, high-level API); vdisk umount.
 *
 * DIR holds "disk" (the whole guest disk) and "partN" for every partition
 * the MBR/GPT reader finds (extended MBR partitions, which only hold the
 * logical ones, are left out).  Everything goes through the public block-I/O
 * calls: reads and writes, lseek(SEEK_DATA/SEEK_HOLE) from block status,
 * fallocate(PUNCH_HOLE) and ZERO_RANGE as write-zeroes (MAY_UNMAP for a
 * punched hole: it must read as zeros, which discard does not promise),
 * fsync as a flush.  The files are opened in direct I/O mode: the kernel
 * passes each read and write on at the caller's size instead of splitting
 * it into readahead pages, which is four times faster for a sequential
 * read; the price is that the files cannot be mmap'ed.
 *
 * The loop is single-threaded (fuse_loop): a vd_image is not documented as
 * safe for concurrent use, and one thread needs no lock.  The image is
 * opened and the mount made before daemonising (fuse_daemonize), so errors
 * are printed and the mount exists when the command returns.  The locks of
 * the in-use guard (flock and OFD locks) belong to the open file and so
 * pass to the daemon.  The daemon answers getxattr("user.vdisk.pid") on DIR
 * so that vdisk umount can wait until it has flushed and closed the image.
 *
 * SPDX-License-Identifier: MIT
 */
#define FUSE_USE_VERSION 31
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define MOUNT_PID_XATTR "user.vdisk.pid"

static const char usage_mount[] =
	"Usage: vdisk mount [-f FMT] [--rw] [--foreground] [--allow-devices] IMAGE DIR\n"
	"\n"
	"Show the guest disk of IMAGE as DIR/disk and each partition as\n"
	"DIR/partN (FUSE), read-only unless --rw.  Holes are visible to\n"
	"lseek(SEEK_DATA/SEEK_HOLE); fallocate(PUNCH_HOLE) zeroes and may release\n"
	"space; fsync flushes the image.  Without --foreground the command returns\n"
	"once the mount is ready and a daemon serves it; unmount with\n"
	"'vdisk umount DIR' (or fusermount3 -u DIR, or SIGTERM to the daemon).\n"
	"\n"
	"  -f, --format FMT     image format (default: probe)\n"
	"      --rw             open IMAGE for writing (takes the in-use guard)\n"
	"      --foreground     stay in the foreground (SIGINT/SIGTERM unmount)\n"
	"      --allow-devices  allow a block device as IMAGE\n"
	"  -h, --help           show this help\n";

static const char usage_umount[] =
	"Usage: vdisk umount DIR\n"
	"\n"
	"Unmount a directory mounted by 'vdisk mount' (fusermount3 -u) and wait\n"
	"until its daemon has flushed and closed the image.\n"
	"\n"
	"  -h, --help           show this help\n";

struct mfile {
	char name[16];
	uint64_t off, len;
	uint64_t blocks;     /* st_blocks: data sectors, from block status */
	bool blocks_valid;
};

struct mount_state {
	struct vd_image *img;
	bool rw;
	unsigned nfiles;
	struct mfile files[VD_PTABLE_MAX_PARTS + 1];
	time_t mtime;
	uint64_t unit;       /* a discard releases whole units of this size (0: none) */
	int io_error;        /* first failed flush at the end */
};

static struct mount_state *state(void)
{
	return fuse_get_context()->private_data;
}

static struct mfile *lookup(const char *path)
{
	struct mount_state *st = state();

	if (path[0] != '/')
		return NULL;
	for (unsigned i = 0; i < st->nfiles; i++)
		if (!strcmp(path + 1, st->files[i].name))
			return &st->files[i];
	return NULL;
}

/* A data extent holds bytes other than zeros (allocated-but-zero and host
 * holes are holes here). */
static bool is_data(unsigned flags)
{
	return (flags & VD_BS_DATA) && !(flags & VD_BS_ZERO);
}

/* Sectors of data in F (an estimate of the space used, for st_blocks, so
 * that cp and friends look for holes). */
static uint64_t data_sectors(struct mount_state *st, struct mfile *f)
{
	uint64_t pos = 0, n = 0;
	struct vd_extent e;
	struct vd_error err = { 0 };

	if (f->blocks_valid)
		return f->blocks;
	while (pos < f->len) {
		if (vd_block_status(st->img, f->off + pos, f->len - pos, &e, &err) < 0) {
			n = (f->len + 511) / 512;
			break;
		}
		if (is_data(e.flags))
			n += (e.length + 511) / 512;
		pos += e.length;
	}
	f->blocks = n;
	f->blocks_valid = true;
	return n;
}

static void dirty(struct mount_state *st)
{
	for (unsigned i = 0; i < st->nfiles; i++)
		st->files[i].blocks_valid = false;
	st->mtime = time(NULL);
}

static int m_getattr(const char *path, struct stat *sb, struct fuse_file_info *fi)
{
	struct mount_state *st = state();
	struct mfile *f;

	(void)fi;
	memset(sb, 0, sizeof(*sb));
	sb->st_uid = getuid();
	sb->st_gid = getgid();
	sb->st_mtime = sb->st_ctime = sb->st_atime = st->mtime;
	if (!strcmp(path, "/")) {
		sb->st_mode = S_IFDIR | 0555;
		sb->st_nlink = 2;
		return 0;
	}
	f = lookup(path);
	if (!f)
		return -ENOENT;
	sb->st_mode = S_IFREG | (st->rw ? 0644 : 0444);
	sb->st_nlink = 1;
	sb->st_size = (off_t)f->len;
	sb->st_blksize = 4096;
	sb->st_blocks = (blkcnt_t)data_sectors(st, f);
	return 0;
}

static int m_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
		     struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	struct mount_state *st = state();

	(void)off; (void)fi; (void)flags;
	if (strcmp(path, "/"))
		return -ENOTDIR;
	fill(buf, ".", NULL, 0, 0);
	fill(buf, "..", NULL, 0, 0);
	for (unsigned i = 0; i < st->nfiles; i++)
		fill(buf, st->files[i].name, NULL, 0, 0);
	return 0;
}

static int m_open(const char *path, struct fuse_file_info *fi)
{
	struct mfile *f = lookup(path);

	if (!f)
		return -ENOENT;
	if ((fi->flags & O_ACCMODE) != O_RDONLY && !state()->rw)
		return -EROFS;
	if (fi->flags & O_TRUNC)
		return -EPERM;
	fi->fh = (uint64_t)(f - state()->files);
	/* no page cache: reads and writes reach the image as the caller
	 * sized them (1 MiB and more, not readahead's 128 KiB pages), and
	 * nothing stale is cached when the image changes */
	fi->direct_io = 1;
	return 0;
}

static struct mfile *of(struct fuse_file_info *fi)
{
	return &state()->files[fi->fh];
}

static int m_read(const char *path, char *buf, size_t len, off_t off,
		  struct fuse_file_info *fi)
{
	struct mfile *f = of(fi);
	struct vd_error err = { 0 };
	int r;

	(void)path;
	if (off < 0)
		return -EINVAL;
	if ((uint64_t)off >= f->len)
		return 0;
	if (len > f->len - (uint64_t)off)
		len = (size_t)(f->len - (uint64_t)off);
	r = vd_read(state()->img, f->off + (uint64_t)off, buf, len, &err);
	return r < 0 ? r : (int)len;
}

static int m_write(const char *path, const char *buf, size_t len, off_t off,
		   struct fuse_file_info *fi)
{
	struct mount_state *st = state();
	struct mfile *f = of(fi);
	struct vd_error err = { 0 };
	int r;

	(void)path;
	if (!st->rw)
		return -EROFS;
	if (off < 0)
		return -EINVAL;
	if ((uint64_t)off >= f->len)
		return len ? -ENOSPC : 0;
	if (len > f->len - (uint64_t)off)
		len = (size_t)(f->len - (uint64_t)off);
	r = vd_write(st->img, f->off + (uint64_t)off, buf, len, &err);
	dirty(st);
	return r < 0 ? r : (int)len;
}

static int m_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	struct mfile *f = fi ? of(fi) : lookup(path);

	if (!f)
		return -ENOENT;
	return size >= 0 && (uint64_t)size == f->len ? 0 : -EPERM;
}

static int m_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	struct mount_state *st = state();
	struct vd_error err = { 0 };

	(void)path; (void)datasync; (void)fi;
	return st->rw ? vd_flush(st->img, &err) : 0;
}

static int m_fallocate(const char *path, int mode, off_t off, off_t len,
		       struct fuse_file_info *fi)
{
	struct mount_state *st = state();
	struct mfile *f = of(fi);
	struct vd_error err = { 0 };
	uint64_t o, n;
	int r;

	(void)path;
	if (!st->rw)
		return -EROFS;
	if (off < 0 || len <= 0)
		return -EINVAL;
	o = (uint64_t)off;
	n = (uint64_t)len;
	if (mode == 0)  /* allocating: the file has its size and cannot grow */
		return o + n <= f->len ? 0 : -EFBIG;
	if (!(mode & FALLOC_FL_KEEP_SIZE) && !(mode & FALLOC_FL_PUNCH_HOLE) && o + n > f->len)
		return -EFBIG;
	if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))
		return -EOPNOTSUPP;
	if (o >= f->len)
		return 0;
	if (n > f->len - o)
		n = f->len - o;
	o += f->off;
	if ((mode & FALLOC_FL_PUNCH_HOLE) && st->unit) {
		/* whole allocation units: discard releases them (VDI blocks,
		 * VMDK grains); the zeroing below then keeps them so */
		uint64_t a = (o + st->unit - 1) / st->unit * st->unit;
		uint64_t b = (o + n) / st->unit * st->unit;
		if (a < b && (r = vd_discard(st->img, a, b - a, &err)) < 0)
			return r;
	}
	r = vd_write_zeroes(st->img, o, n, (mode & FALLOC_FL_PUNCH_HOLE) ? VD_ZERO_MAY_UNMAP : 0, &err);
	dirty(st);
	return r;
}

static off_t m_lseek(const char *path, off_t off, int whence, struct fuse_file_info *fi)
{
	struct mount_state *st = state();
	struct mfile *f = of(fi);
	struct vd_error err = { 0 };
	struct vd_extent e;
	uint64_t pos;

	(void)path;
	if (whence != SEEK_DATA && whence != SEEK_HOLE)
		return -EINVAL; /* the kernel handles the others */
	if (off < 0 || (uint64_t)off >= f->len)
		return -ENXIO;
	pos = (uint64_t)off;
	while (pos < f->len) {
		int r = vd_block_status(st->img, f->off + pos, f->len - pos, &e, &err);
		if (r < 0)
			return r;
		if (is_data(e.flags) == (whence == SEEK_DATA))
			return (off_t)pos;
		pos += e.length;
	}
	/* no data after OFF: ENXIO; the end of the file is a hole */
	return whence == SEEK_DATA ? -ENXIO : (off_t)f->len;
}

static int m_getxattr(const char *path, const char *name, char *value, size_t size)
{
	char pid[24];
	int n;

	if (strcmp(path, "/") || strcmp(name, MOUNT_PID_XATTR))
		return strcmp(path, "/") && !lookup(path) ? -ENOENT : -ENODATA;
	n = snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	if (size == 0)
		return n;
	if (size < (size_t)n)
		return -ERANGE;
	memcpy(value, pid, (size_t)n);
	return n;
}

static int m_statfs(const char *path, struct statvfs *sv)
{
	struct mount_state *st = state();

	(void)path;
	memset(sv, 0, sizeof(*sv));
	sv->f_bsize = sv->f_frsize = 512;
	sv->f_blocks = vd_size(st->img) / 512;
	sv->f_files = st->nfiles;
	sv->f_namemax = 255;
	return 0;
}

static void *m_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	(void)conn;
	cfg->use_ino = 0;
	cfg->attr_timeout = 1;
	cfg->entry_timeout = 1;
	return fuse_get_context()->private_data;
}

static const struct fuse_operations ops = {
	.init = m_init,
	.getattr = m_getattr,
	.readdir = m_readdir,
	.open = m_open,
	.read = m_read,
	.write = m_write,
	.truncate = m_truncate,
	.fsync = m_fsync,
	.fallocate = m_fallocate,
	.lseek = m_lseek,
	.getxattr = m_getxattr,
	.statfs = m_statfs,
};

/* The files: disk, then every partition but extended ones. */
static int add_files(struct mount_state *st)
{
	struct vd_ptable *pt = calloc(1, sizeof(*pt));
	struct vd_error err = { 0 };
	uint64_t size = vd_size(st->img);
	int r;

	if (!pt)
		return -ENOMEM;
	snprintf(st->files[0].name, sizeof(st->files[0].name), "disk");
	st->files[0].len = size;
	st->nfiles = 1;
	r = vd_ptable_read(st->img, pt, &err);
	if (r == -ENOENT || r == 0) {
		for (unsigned i = 0; r == 0 && i < pt->nparts && i < VD_PTABLE_MAX_PARTS; i++) {
			const struct vd_ptable_part *p = &pt->part[i];
			struct mfile *f;

			if (p->extended || p->size == 0 || p->start > size / 512 ||
			    p->size > size / 512 - p->start)
				continue;
			f = &st->files[st->nfiles++];
			snprintf(f->name, sizeof(f->name), "part%u", p->number);
			f->off = p->start * 512;
			f->len = p->size * 512;
		}
		r = 0;
	} else {
		/* a damaged table: the disk alone, and say why */
		cli_err("mount", "warning: %s: no partition files: %s", vd_path(st->img), err.msg);
		r = 0;
	}
	free(pt);
	return r;
}

int cmd_mount(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "rw", no_argument, NULL, 'w' },
		{ "foreground", no_argument, NULL, 'F' },
		{ "allow-devices", no_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *fmt = NULL, *image, *dir;
	bool fg = false;
	unsigned flags = 0;
	struct mount_state *st;
	struct vd_error err = { 0 };
	struct fuse *fuse;
	char *fargv[4];
	char fsname[64];
	struct fuse_args args;
	int c, r, rc = 0;

	while ((c = getopt_long(argc, argv, "f:h", lopts, NULL)) != -1) {
		switch (c) {
		case 'f': fmt = optarg; break;
		case 'w': flags |= VD_OPEN_RDWR; break;
		case 'F': fg = true; break;
		case 'D': flags |= VD_OPEN_ALLOW_DEVICES; break;
		case 'h': cli_usage(stdout, usage_mount); return 0;
		default: cli_usage(stderr, usage_mount); return 1;
		}
	}
	if (argc - optind != 2) {
		cli_usage(stderr, usage_mount);
		return 1;
	}
	image = argv[optind];
	dir = argv[optind + 1];
	st = calloc(1, sizeof(*st));
	if (!st) {
		cli_err("mount", "out of memory");
		return 1;
	}
	st->rw = flags & VD_OPEN_RDWR;
	st->mtime = time(NULL);
	/* RDWR takes the in-use guard on every file of the image for as long
	 * as it is open, i.e. mounted */
	r = vd_open(&st->img, image, fmt, flags, &err);
	if (r < 0) {
		rc = cli_fail("mount", &err, 1);
		free(st);
		return rc;
	}
	if (st->rw) {
		struct vd_describe d;

		if (vd_describe(st->img, &d, &err) == 0) {
			if (d.discard_releases && d.starts_zeroed)
				st->unit = d.discard_granularity ? d.discard_granularity : d.block_size;
			vd_describe_free(&d);
		}
		vd_error_clear(&err);
	}
	r = add_files(st);
	if (r < 0) {
		cli_err("mount", "%s: %s", image, strerror(-r));
		goto out_close;
	}

	snprintf(fsname, sizeof(fsname), "-ofsname=vdisk,subtype=vdisk%s", st->rw ? "" : ",ro");
	fargv[0] = (char *)"vdisk";
	fargv[1] = fsname;
	fargv[2] = NULL;
	args = (struct fuse_args)FUSE_ARGS_INIT(2, fargv);
	fuse = fuse_new(&args, &ops, sizeof(ops), st);
	if (!fuse) {
		cli_err("mount", "cannot set up FUSE");
		rc = 1;
		goto out_close;
	}
	if (fuse_mount(fuse, dir) != 0) {
		cli_err("mount", "cannot mount %s on %s (is /dev/fuse there, and fusermount3?)", image, dir);
		rc = 1;
		goto out_destroy;
	}
	if (fuse_set_signal_handlers(fuse_get_session(fuse)) != 0) {
		cli_err("mount", "cannot install the signal handlers");
		rc = 1;
		goto out_unmount;
	}
	/* after the mount: the parent returns when the daemon runs */
	if (fuse_daemonize(fg) != 0) {
		cli_err("mount", "cannot run in the background");
		rc = 1;
		goto out_signals;
	}
	if (fuse_loop(fuse) < 0)
		rc = 1;
out_signals:
	fuse_remove_signal_handlers(fuse_get_session(fuse));
out_unmount:
	fuse_unmount(fuse);
out_destroy:
	fuse_destroy(fuse);
out_close:
	if (vd_close(st->img, &err) < 0)
		rc = cli_fail("mount", &err, 1);
	free(st);
	fuse_opt_free_args(&args);
	return rc;
}

/* PID runs (a zombie nobody reaps yet has closed everything). */
static bool running(pid_t pid)
{
	char path[64], buf[256], *p;
	FILE *f;
	bool r = true;

	if (kill(pid, 0) != 0)
		return false;
	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	f = fopen(path, "r");
	if (!f)
		return true;
	if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')) && p[1] == ' ' && p[2] == 'Z')
		r = false;
	fclose(f);
	return r;
}

/* Ask the daemon of DIR for its PID; 0 when it does not answer. */
static pid_t daemon_pid(const char *dir)
{
	char buf[24];
	ssize_t n = getxattr(dir, MOUNT_PID_XATTR, buf, sizeof(buf) - 1);
	long v;
	char *end;

	if (n <= 0)
		return 0;
	buf[n] = 0;
	v = strtol(buf, &end, 10);
	return *end || v <= 0 ? 0 : (pid_t)v;
}

int cmd_umount(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir;
	pid_t pid, child;
	int c, status;

	while ((c = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
		switch (c) {
		case 'h': cli_usage(stdout, usage_umount); return 0;
		default: cli_usage(stderr, usage_umount); return 1;
		}
	}
	if (argc - optind != 1) {
		cli_usage(stderr, usage_umount);
		return 1;
	}
	dir = argv[optind];
	pid = daemon_pid(dir);
	child = fork();
	if (child < 0) {
		cli_err("umount", "fork: %s", strerror(errno));
		return 1;
	}
	if (child == 0) {
		execlp("fusermount3", "fusermount3", "-u", "--", dir, (char *)NULL);
		if (errno == ENOENT && umount2(dir, 0) == 0)
			_exit(0);
		fprintf(stderr, "vdisk umount: fusermount3: %s\n", strerror(errno));
		_exit(127);
	}
	if (waitpid(child, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return 1; /* fusermount3 said why */
	/* wait (up to 10 minutes: a large flush) until the daemon has closed the image */
	for (unsigned i = 0; pid > 0 && i < 60000 && running(pid); i++) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	return 0;
}
