/*
 * The in-use guard, taken by the host layer for every file it opens with
 * VD_HOST_GUARD (every file of an image opened for writing, or opened
 * VD_OPEN_EXCLUSIVE by an operation that replaces it), so that no command
 * that changes an image can forget it and every extent is covered, not
 * only the file named on the command line.
 *
 * Taking it, in this order, on a descriptor of its own (opened before the
 * file is opened for writing, so a read lease can still tell whether
 * anybody else writes to it):
 *   1. this process: the same inode already open by this command (two
 *      extent lines naming one file, convert -n A A) is refused;
 *   2. vdisk: flock(LOCK_EX) (readers take LOCK_SH), so two vdisk
 *      processes never change one image and none reads one being changed;
 *      /proc/locks names the holder's PID;
 *   3. QEMU: any OFD lock on bytes 100..299, where QEMU (file-posix
 *      "locking") records the permissions it holds and those it does not
 *      share, means a running QEMU or qemu-img uses the file; vdisk then
 *      takes the same bytes itself (read locks on "consistent read",
 *      "write", "write unchanged", "resize" and on all five "not shared"
 *      bytes), so QEMU sees vdisk in turn;
 *   4. the host: for a regular file, a loop device backed by it (at any
 *      offset), that device, its partitions or a device stacked on them
 *      mounted or used as swap, the file itself an active swap file, a
 *      mount source or mount point, or open for writing by another process
 *      (a read lease cannot be taken; /proc/NNN/fd names the PID); for a
 *      block device, the device or one of its partitions mounted, used as
 *      swap, held by another device (device-mapper, md), or open by another
 *      process (a running VM), which VD_GUARD_FORCE_BUSY turns into a
 *      warning.  Mounted and swap are never overridable.
 *
 * Written here rather than taken from a library: util-linux has no
 * library call for "who uses this file" (lsof and fuser are programs), and
 * QEMU's lock protocol is only in QEMU.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "vdisk-int.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

struct vd_guard {
	int fd;            /* holds the flock and the OFD locks */
	dev_t dev;
	ino_t ino;
	bool excl;
	char *path;
	struct vd_guard *next; /* the process's registry */
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vd_guard *reg_head;

/* QEMU's lock bytes (file-posix.c: RAW_LOCK_PERM_BASE, RAW_LOCK_SHARED_BASE). */
#define QEMU_PERM_BASE 100
#define QEMU_SHARED_BASE 200
#define QEMU_NPERMS 5

/* ---- small readers ---- */

static int read_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");
	size_t n;

	if (!f)
		return -errno;
	if (!fgets(buf, (int)len, f)) {
		fclose(f);
		return -EIO;
	}
	fclose(f);
	n = strlen(buf);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	return 0;
}

/* Undo the octal escapes of mountinfo and /proc/swaps (\040) in place. */
static void unescape(char *s)
{
	char *o = s;

	while (*s) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 4;
		} else {
			*o++ = *s++;
		}
	}
	*o = '\0';
}

/* ---- the devices that stand for the file ---- */

#define MAX_DEVS 64
struct devs {
	unsigned n;
	dev_t dev[MAX_DEVS];
	char name[MAX_DEVS][64];
	int loop[MAX_DEVS]; /* the loop device (index) it belongs to, -1: the target */
};

/* Add the device of /sys/.../DIR (its "dev" file); returns its index or -1. */
static int add_dev(struct devs *d, const char *sysdir, const char *name, int loop)
{
	char path[PATH_MAX], line[32];
	unsigned maj, min;

	if (d->n >= MAX_DEVS)
		return -1;
	snprintf(path, sizeof(path), "%s/dev", sysdir);
	if (read_line(path, line, sizeof(line)) < 0 || sscanf(line, "%u:%u", &maj, &min) != 2)
		return -1;
	for (unsigned i = 0; i < d->n; i++)
		if (d->dev[i] == makedev(maj, min))
			return (int)i;
	d->dev[d->n] = makedev(maj, min);
	snprintf(d->name[d->n], sizeof(d->name[0]), "/dev/%.58s", name);
	d->loop[d->n] = loop;
	return (int)d->n++;
}

/* The holders of the device in SYSDIR (device-mapper, md on top of it). */
static void add_holders(struct devs *d, const char *sysdir, int loop, char *held, size_t hlen)
{
	char sub[PATH_MAX];
	struct dirent *de;
	DIR *dp;

	snprintf(sub, sizeof(sub), "%s/holders", sysdir);
	dp = opendir(sub);
	if (!dp)
		return;
	while ((de = readdir(dp)) != NULL) {
		char hdir[PATH_MAX];
		if (de->d_name[0] == '.')
			continue;
		if (held && !held[0])
			snprintf(held, hlen, "%s", de->d_name);
		snprintf(hdir, sizeof(hdir), "/sys/block/%s", de->d_name);
		add_dev(d, hdir, de->d_name, loop);
	}
	closedir(dp);
}

/* The whole device in SYSDIR (named NAME), its partitions and the holders
 * of both.  HELD (may be NULL) gets the first holder's name. */
static void add_disk(struct devs *d, const char *sysdir, const char *name, int loop,
		     char *held, size_t hlen)
{
	struct dirent *de;
	DIR *dp;

	add_holders(d, sysdir, loop, held, hlen);
	dp = opendir(sysdir);
	if (!dp)
		return;
	while ((de = readdir(dp)) != NULL) {
		char sub[PATH_MAX], p[PATH_MAX];
		struct stat st;

		if (de->d_name[0] == '.' || strncmp(de->d_name, name, strlen(name)))
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", sysdir, de->d_name);
		snprintf(p, sizeof(p), "%s/partition", sub);
		if (stat(p, &st) < 0)
			continue;
		add_dev(d, sub, de->d_name, loop);
		add_holders(d, sub, loop, held, hlen);
	}
	closedir(dp);
}

/* Loop devices whose backing file is ST (any offset). */
static void find_loops(struct devs *d, const struct stat *st)
{
	struct dirent *de;
	DIR *dp = opendir("/sys/block");

	if (!dp)
		return;
	while ((de = readdir(dp)) != NULL) {
		char path[PATH_MAX], backing[PATH_MAX], dir[PATH_MAX];
		struct stat bs;
		int idx;

		if (strncmp(de->d_name, "loop", 4))
			continue;
		snprintf(path, sizeof(path), "/sys/block/%s/loop/backing_file", de->d_name);
		if (read_line(path, backing, sizeof(backing)) < 0)
			continue;
		/* the kernel appends " (deleted)" to a removed file: that one
		 * no longer has this inode's path, so stat fails and it is
		 * not ours to worry about */
		if (stat(backing, &bs) < 0 || bs.st_dev != st->st_dev || bs.st_ino != st->st_ino)
			continue;
		snprintf(dir, sizeof(dir), "/sys/block/%s", de->d_name);
		idx = add_dev(d, dir, de->d_name, -1);
		if (idx < 0)
			continue;
		d->loop[idx] = idx;
		add_disk(d, dir, de->d_name, idx, NULL, 0);
	}
	closedir(dp);
}

static bool same_file(const char *p, const struct stat *st)
{
	struct stat s;

	return p[0] == '/' && stat(p, &s) == 0 && !S_ISDIR(s.st_mode) &&
	       s.st_dev == st->st_dev && s.st_ino == st->st_ino;
}

static int find_dev(const struct devs *d, dev_t dev)
{
	for (unsigned i = 0; i < d->n; i++)
		if (d->dev[i] == dev)
			return (int)i;
	return -1;
}

/* What a device of the set is to a regular file: a loop device on it. */
static const char *via(const struct stat *st)
{
	return S_ISBLK(st->st_mode) ? "" : " (a loop device backed by it)";
}

/* ---- mounted, swap ---- */

static int check_mounts(const char *path, const struct stat *st, const struct devs *d,
			struct vd_error *err)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t cap = 0;
	int r = 0;

	if (!f)
		return 0; /* no /proc: nothing we can tell */
	while (r == 0 && getline(&line, &cap, f) > 0) {
		/* 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw */
		char *fields[16], *save = NULL, *tok, *src = NULL, *fstype = NULL;
		unsigned n = 0, maj, min;
		int i;

		for (tok = strtok_r(line, " \n", &save); tok && n < VD_ARRAY_SIZE(fields);
		     tok = strtok_r(NULL, " \n", &save)) {
			if (strcmp(tok, "-") == 0) {
				fstype = strtok_r(NULL, " \n", &save);
				src = fstype ? strtok_r(NULL, " \n", &save) : NULL;
				break;
			}
			fields[n++] = tok;
		}
		if (n < 5 || sscanf(fields[2], "%u:%u", &maj, &min) != 2)
			continue;
		unescape(fields[4]);
		i = find_dev(d, makedev(maj, min));
		if (i >= 0) {
			r = vd_set_error(err, EBUSY, "%s: in use: %s%s is mounted on %s",
					 path, d->name[i], via(st), fields[4]);
			break;
		}
		if (src) {
			unescape(src);
			if (same_file(src, st)) {
				r = vd_set_error(err, EBUSY, "%s: in use: mounted on %s (%s)",
						 path, fields[4], fstype ? fstype : "?");
				break;
			}
		}
		if (same_file(fields[4], st))
			r = vd_set_error(err, EBUSY, "%s: in use: the file is a mount point (%s)",
					 path, fields[4]);
	}
	free(line);
	fclose(f);
	return r;
}

static int check_swaps(const char *path, const struct stat *st, const struct devs *d,
		       struct vd_error *err)
{
	FILE *f = fopen("/proc/swaps", "re");
	char *line = NULL;
	size_t cap = 0;
	int r = 0;

	if (!f)
		return 0;
	/* "Filename  Type  Size  Used  Priority"; the name has octal escapes */
	while (r == 0 && getline(&line, &cap, f) > 0) {
		char *sp = strpbrk(line, " \t");
		struct stat s;
		int i;

		if (line[0] != '/' || !sp)
			continue;
		*sp = '\0';
		unescape(line);
		if (stat(line, &s) < 0)
			continue;
		if (S_ISREG(s.st_mode) && s.st_dev == st->st_dev && s.st_ino == st->st_ino) {
			r = vd_set_error(err, EBUSY, "%s: in use: it is an active swap file (swapoff %s first)",
					 path, line);
		} else if (S_ISBLK(s.st_mode) && (i = find_dev(d, s.st_rdev)) >= 0) {
			r = vd_set_error(err, EBUSY, "%s: in use: %s%s is active swap (swapoff %s first)",
					 path, d->name[i], via(st), line);
		}
	}
	free(line);
	fclose(f);
	return r;
}

/* ---- other processes ---- */

/* Descriptor FD of FDDIR (/proc/PID/fd) is open for writing: its fdinfo
 * "flags:\t0100002" (octal). */
static bool fd_writes(const char *fddir, const char *fd)
{
	char fi[PATH_MAX], buf[256];
	unsigned long fl = 0;
	size_t n = strlen(fddir);
	FILE *f;

	/* /proc/PID/fd -> /proc/PID/fdinfo */
	snprintf(fi, sizeof(fi), "%.*sinfo/%s", (int)n, fddir, fd);
	f = fopen(fi, "re");
	if (!f)
		return false;
	while (fgets(buf, sizeof(buf), f))
		if (sscanf(buf, "flags: %lo", &fl) == 1)
			break;
	fclose(f);
	return (fl & O_ACCMODE) != O_RDONLY;
}

/* The first other process with the file (regular: ST's inode, WRITERS
 * only: open for writing) or one of D's devices open; 0 if none.  NAME
 * gets its command, WHAT the device it has open ("" for the file). */
static pid_t find_opener(const struct stat *st, const struct devs *d, bool writers,
			 char *name, size_t nlen, char *what, size_t wlen)
{
	DIR *proc = opendir("/proc");
	struct dirent *pe;
	pid_t self = getpid(), found = 0;

	if (!proc)
		return 0;
	while (!found && (pe = readdir(proc)) != NULL) {
		char dir[64], p[PATH_MAX];
		struct dirent *fe;
		DIR *fds;
		pid_t pid;

		if (!isdigit((unsigned char)pe->d_name[0]))
			continue;
		pid = (pid_t)atol(pe->d_name);
		if (pid == self)
			continue;
		snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
		fds = opendir(dir);
		if (!fds)
			continue;
		while ((fe = readdir(fds)) != NULL) {
			struct stat s;
			int i = -1;

			if (fe->d_name[0] == '.')
				continue;
			snprintf(p, sizeof(p), "%s/%s", dir, fe->d_name);
			if (stat(p, &s) < 0)
				continue;
			if (S_ISBLK(s.st_mode))
				i = find_dev(d, s.st_rdev);
			if (i < 0 && !(S_ISREG(s.st_mode) && S_ISREG(st->st_mode) &&
				       s.st_dev == st->st_dev && s.st_ino == st->st_ino))
				continue;
			if (writers && i < 0 && !fd_writes(dir, fe->d_name))
				continue;
			found = pid;
			snprintf(what, wlen, "%s", i >= 0 ? d->name[i] : "");
			break;
		}
		closedir(fds);
	}
	closedir(proc);
	if (found) {
		char p[64];
		snprintf(p, sizeof(p), "/proc/%d/comm", (int)found);
		if (read_line(p, name, nlen) < 0)
			snprintf(name, nlen, "?");
	}
	return found;
}

/* This process has the file open for writing itself (a new image it
 * created and now opens as an image: convert, create); that descriptor,
 * not another writer, is what refused the lease. */
static bool self_writes(const struct stat *st)
{
	DIR *fds = opendir("/proc/self/fd");
	struct dirent *fe;
	bool found = false;

	if (!fds)
		return false;
	while (!found && (fe = readdir(fds)) != NULL) {
		char p[PATH_MAX];
		struct stat s;

		if (fe->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "/proc/self/fd/%s", fe->d_name);
		if (stat(p, &s) < 0 || !S_ISREG(s.st_mode) || s.st_dev != st->st_dev ||
		    s.st_ino != st->st_ino)
			continue;
		found = fd_writes("/proc/self/fd", fe->d_name);
	}
	closedir(fds);
	return found;
}

/* The PID holding an flock on ST's inode, from /proc/locks (0: unknown). */
static pid_t flock_holder(const struct stat *st)
{
	FILE *f = fopen("/proc/locks", "re");
	char line[256];
	pid_t found = 0;

	if (!f)
		return 0;
	/* "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF" */
	while (!found && fgets(line, sizeof(line), f)) {
		char kind[16], mode[16], rw[16];
		unsigned maj, min;
		unsigned long long ino;
		int pid;

		if (sscanf(line, "%*s %15s %15s %15s %d %x:%x:%llu", kind, mode, rw, &pid, &maj,
			   &min, &ino) != 7)
			continue;
		if (strcmp(kind, "FLOCK") || pid <= 0 || pid == getpid())
			continue;
		if (makedev(maj, min) == st->st_dev && ino == (unsigned long long)st->st_ino)
			found = pid;
	}
	fclose(f);
	return found;
}

/* ---- QEMU's OFD locks ---- */

static int check_qemu(const char *path, int fd, struct vd_error *err)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET,
			    .l_start = QEMU_PERM_BASE, .l_len = QEMU_SHARED_BASE + 100 - QEMU_PERM_BASE };

	if (fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK)
		return vd_set_error(err, EBUSY,
				    "%s: in use by QEMU (a running VM, qemu-img or qemu-nbd holds its image lock on it at byte %lld); stop it first",
				    path, (long long)fl.l_start);
	return 0;
}

/* Read locks on QEMU's bytes: the permissions vdisk holds (consistent
 * read, write, write unchanged, resize) and none shared. */
static void take_qemu(int fd)
{
	struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET };

	fl.l_start = QEMU_PERM_BASE;
	fl.l_len = 4;
	(void)fcntl(fd, F_OFD_SETLK, &fl);
	fl.l_start = QEMU_SHARED_BASE;
	fl.l_len = QEMU_NPERMS;
	(void)fcntl(fd, F_OFD_SETLK, &fl);
}

/* ---- the host checks ---- */

static struct vd_guard *reg_find(const struct stat *st);

/* A loop device (SYSDIR) backed by a file this command has open: writing
 * it would overwrite its own source. */
static int check_own_loop(const char *path, const char *sysdir, struct vd_error *err)
{
	char p[PATH_MAX], backing[PATH_MAX], other[PATH_MAX] = "";
	struct stat bs;

	snprintf(p, sizeof(p), "%s/loop/backing_file", sysdir);
	if (read_line(p, backing, sizeof(backing)) < 0 || stat(backing, &bs) < 0)
		return 0;
	pthread_mutex_lock(&reg_lock);
	{
		struct vd_guard *g = reg_find(&bs);
		if (g)
			snprintf(other, sizeof(other), "%s", g->path);
	}
	pthread_mutex_unlock(&reg_lock);
	if (other[0])
		return vd_set_error(err, EBUSY,
				    "%s: a loop device backed by %s, which this command has open: it would overwrite its own source",
				    path, other);
	return 0;
}

static int check_host(const char *path, int fd, const struct stat *st, unsigned flags,
		      char *warn, size_t wlen, struct vd_error *err)
{
	struct devs *d = vd_calloc(1, sizeof(*d), err);
	char held[64] = "", name[64], what[80];
	pid_t pid;
	int r;

	if (!d)
		return -ENOMEM;
	if (S_ISREG(st->st_mode)) {
		find_loops(d, st);
	} else {
		char sysdir[PATH_MAX], link[PATH_MAX], *base;
		ssize_t n;

		d->dev[0] = st->st_rdev;
		snprintf(d->name[0], sizeof(d->name[0]), "%.63s", path);
		d->loop[0] = -1;
		d->n = 1;
		snprintf(sysdir, sizeof(sysdir), "/sys/dev/block/%u:%u", major(st->st_rdev),
			 minor(st->st_rdev));
		r = check_own_loop(path, sysdir, err);
		if (r < 0) {
			free(d);
			return r;
		}
		n = readlink(sysdir, link, sizeof(link) - 1);
		if (n > 0) {
			link[n] = '\0';
			base = strrchr(link, '/');
			add_disk(d, sysdir, base ? base + 1 : link, -1, held, sizeof(held));
		}
	}
	r = check_mounts(path, st, d, err);
	if (r == 0)
		r = check_swaps(path, st, d, err);
	if (r == 0 && held[0])
		r = vd_set_error(err, EBUSY,
				 "%s: in use: held by /dev/%s (device-mapper, RAID or LVM stacked on it)",
				 path, held);
	if (r == 0 && S_ISREG(st->st_mode)) {
		bool writer = false, no_writer = false;

		/* a read lease is refused while anybody has the file open for
		 * writing, the kernel's loop driver included */
		if (fcntl(fd, F_SETLEASE, F_RDLCK) == 0) {
			fcntl(fd, F_SETLEASE, F_UNLCK);
			no_writer = true;
		} else if (errno == EAGAIN) {
			writer = true;
		}
		/* EPERM (not the owner), EINVAL (no leases here): look anyway;
		 * the /proc scan costs a stat per descriptor of every process,
		 * so it is skipped when the lease already says nobody writes
		 * and no loop device is on the file */
		pid = no_writer && d->n == 0 ? 0 : find_opener(st, d, true, name, sizeof(name), what, sizeof(what));
		if (pid)
			r = vd_set_error(err, EBUSY, "%s: in use: process %d (%s) has it open%s%s%s",
					 path, (int)pid, name, what[0] ? " through " : " for writing",
					 what, what[0] ? ", a loop device backed by it" : "");
		else if (d->n > 0)
			r = vd_set_error(err, EBUSY,
					 "%s: in use: it backs loop device %s (detach it first: losetup -d %s)",
					 path, d->name[0], d->name[0]);
		else if (writer && !self_writes(st))
			r = vd_set_error(err, EBUSY, "%s: in use: open for writing by another process",
					 path);
	} else if (r == 0) {
		pid = find_opener(st, d, false, name, sizeof(name), what, sizeof(what));
		if (pid && !(flags & VD_GUARD_FORCE_BUSY))
			r = vd_set_error(err, EBUSY,
					 "%s: in use: process %d (%s) has %s open (a running VM?); --force writes anyway",
					 path, (int)pid, name, what);
		else if (pid && warn)
			snprintf(warn, wlen, "%s: process %d (%s) has %s open; writing anyway (--force)",
				 path, (int)pid, name, what);
	}
	free(d);
	return r;
}

/* ---- the registry ---- */

static struct vd_guard *reg_find(const struct stat *st)
{
	for (struct vd_guard *g = reg_head; g; g = g->next)
		if (g->dev == st->st_dev && g->ino == st->st_ino)
			return g;
	return NULL;
}

static void reg_remove(struct vd_guard *g)
{
	pthread_mutex_lock(&reg_lock);
	for (struct vd_guard **pp = &reg_head; *pp; pp = &(*pp)->next)
		if (*pp == g) {
			*pp = g->next;
			break;
		}
	pthread_mutex_unlock(&reg_lock);
}

int vd_guard_take(const char *path, const struct stat *st, unsigned flags,
		  struct vd_guard **out, char *warn, size_t wlen, struct vd_error *err)
{
	bool excl = (flags & VD_GUARD_EXCL) != 0;
	struct vd_guard *g, *other;
	struct stat gs;
	int fd, r;

	*out = NULL;
	if (warn && wlen)
		warn[0] = '\0';
	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return vd_set_error(err, errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, &gs) < 0) {
		r = vd_set_error(err, errno, "%s: %s", path, strerror(errno));
		close(fd);
		return r;
	}
	if (!S_ISREG(gs.st_mode) && !S_ISBLK(gs.st_mode)) {
		close(fd);
		return vd_set_error(err, EINVAL, "%s: not a regular file or block device", path);
	}
	if (st && (gs.st_dev != st->st_dev || gs.st_ino != st->st_ino)) {
		close(fd);
		return vd_set_error(err, EAGAIN, "%s: the file changed while it was being opened",
				    path);
	}
	st = &gs;
	g = calloc(1, sizeof(*g));
	if (!g || !(g->path = strdup(path))) {
		free(g);
		close(fd);
		return vd_set_error(err, ENOMEM, "out of memory");
	}
	g->fd = fd;
	g->dev = st->st_dev;
	g->ino = st->st_ino;
	g->excl = excl;

	pthread_mutex_lock(&reg_lock);
	other = reg_find(st);
	if (other && (excl || other->excl)) {
		r = vd_set_error(err, EBUSY, "%s: the same file is already open in this command (as %s)",
				 path, other->path);
		pthread_mutex_unlock(&reg_lock);
		goto fail;
	}
	g->next = reg_head;
	reg_head = g;
	pthread_mutex_unlock(&reg_lock);

	if (flock(fd, (excl ? LOCK_EX : LOCK_SH) | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK) {
			pid_t pid = flock_holder(st);
			char pids[32] = "";
			if (pid)
				snprintf(pids, sizeof(pids), " (PID %d)", (int)pid);
			r = excl ? vd_set_error(err, EBUSY, "%s: in use by another vdisk process%s", path, pids)
				 : vd_set_error(err, EBUSY, "%s: being changed by another vdisk process%s",
						path, pids);
			goto fail_reg;
		}
		/* a filesystem without flock (some FUSE, NFS without lockd):
		 * readers go on; a writer cannot keep other vdisks out */
		if (excl) {
			r = vd_set_error(err, errno, "%s: cannot lock the file: %s", path, strerror(errno));
			goto fail_reg;
		}
	}
	if (excl) {
		r = check_qemu(path, fd, err);
		if (r == 0)
			r = check_host(path, fd, st, flags, warn, wlen, err);
		if (r < 0)
			goto fail_reg;
		take_qemu(fd);
	}
	*out = g;
	return 0;
fail_reg:
	reg_remove(g);
fail:
	close(fd);
	free(g->path);
	free(g);
	return r;
}

bool vd_guard_same(const struct vd_guard *g, const struct stat *st)
{
	return g->dev == st->st_dev && g->ino == st->st_ino;
}

void vd_guard_drop(struct vd_guard *g)
{
	if (!g)
		return;
	reg_remove(g);
	close(g->fd); /* drops the flock and the OFD locks */
	free(g->path);
	free(g);
}
