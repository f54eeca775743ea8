/*
 * The in-use guard: before an operation changes an image in place it takes
 * an exclusive flock on the image file (so two vdisk processes never work
 * on one image) and refuses when the guest disk is mounted on this host:
 * through a loop device backed by the file (or a partition of it, or a
 * device-mapper device stacked on it), or with the file itself as a mount
 * source or bind-mounted file.
 *
 * The lock is advisory: it keeps vdisk processes apart, not other
 * programs.  Loop devices are found in /sys/block/loop* /loop/backing_file
 * and compared by device and inode (the path there may be stale or
 * relative); mounts come from /proc/self/mountinfo.
 *
 * SPDX-License-Identifier: MIT
 */
#include "../core/vdisk-int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

struct vd_guard {
	int fd;
};

/* Devices to look for in the mount table. */
#define MAX_DEVS 64
struct devs {
	unsigned n;
	dev_t dev[MAX_DEVS];
	char name[MAX_DEVS][64];
};

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

/* "7:0" from /sys/block/NAME[/SUB]/dev */
static void add_dev(struct devs *d, const char *sysdir, const char *name)
{
	char path[PATH_MAX], line[32];
	unsigned maj, min;

	if (d->n >= MAX_DEVS)
		return;
	snprintf(path, sizeof(path), "%s/dev", sysdir);
	if (read_line(path, line, sizeof(line)) < 0 || sscanf(line, "%u:%u", &maj, &min) != 2)
		return;
	d->dev[d->n] = makedev(maj, min);
	snprintf(d->name[d->n], sizeof(d->name[0]), "/dev/%s", name);
	d->n++;
}

/* The loop device in /sys/block/LOOP, its partitions and its holders. */
static void add_loop(struct devs *d, const char *loop)
{
	char dir[PATH_MAX], sub[PATH_MAX];
	struct dirent *de;
	DIR *dp;

	snprintf(dir, sizeof(dir), "/sys/block/%s", loop);
	add_dev(d, dir, loop);
	dp = opendir(dir);
	if (dp) {
		while ((de = readdir(dp)) != NULL) {
			/* partitions: loop0p1 */
			if (strncmp(de->d_name, loop, strlen(loop)) || de->d_name[strlen(loop)] != 'p')
				continue;
			snprintf(sub, sizeof(sub), "%s/%s", dir, de->d_name);
			add_dev(d, sub, de->d_name);
		}
		closedir(dp);
	}
	snprintf(sub, sizeof(sub), "%s/holders", dir);
	dp = opendir(sub);
	if (dp) {
		while ((de = readdir(dp)) != NULL) {
			char hdir[PATH_MAX];
			if (de->d_name[0] == '.')
				continue;
			snprintf(hdir, sizeof(hdir), "/sys/block/%s", de->d_name);
			add_dev(d, hdir, de->d_name);
		}
		closedir(dp);
	}
}

/* Loop devices whose backing file is ST. */
static void find_loops(struct devs *d, const struct stat *st)
{
	struct dirent *de;
	DIR *dp = opendir("/sys/block");

	if (!dp)
		return;
	while ((de = readdir(dp)) != NULL) {
		char path[PATH_MAX], backing[PATH_MAX];
		struct stat bs;

		if (strncmp(de->d_name, "loop", 4))
			continue;
		snprintf(path, sizeof(path), "/sys/block/%s/loop/backing_file", de->d_name);
		if (read_line(path, backing, sizeof(backing)) < 0)
			continue;
		/* the kernel appends " (deleted)" to a removed file */
		if (stat(backing, &bs) == 0 && bs.st_dev == st->st_dev && bs.st_ino == st->st_ino)
			add_loop(d, de->d_name);
	}
	closedir(dp);
}

/* Undo mountinfo's octal escapes (\040 for a space) in place. */
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

static bool same_file(const char *p, const struct stat *st)
{
	struct stat s;

	return p[0] == '/' && stat(p, &s) == 0 && !S_ISDIR(s.st_mode) &&
	       s.st_dev == st->st_dev && s.st_ino == st->st_ino;
}

/* Look through the mount table; -EBUSY with a message when in use. */
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
		bool dash = false;

		for (tok = strtok_r(line, " \n", &save); tok && n < VD_ARRAY_SIZE(fields);
		     tok = strtok_r(NULL, " \n", &save)) {
			if (!dash && strcmp(tok, "-") == 0) {
				dash = true;
				fstype = strtok_r(NULL, " \n", &save);
				src = fstype ? strtok_r(NULL, " \n", &save) : NULL;
				break;
			}
			fields[n++] = tok;
		}
		if (n < 5 || sscanf(fields[2], "%u:%u", &maj, &min) != 2)
			continue;
		unescape(fields[4]);
		for (unsigned i = 0; i < d->n; i++)
			if (d->dev[i] == makedev(maj, min))
				r = vd_set_error(err, EBUSY, "%s: in use: %s%s is mounted on %s",
						 path, d->name[i],
						 S_ISBLK(st->st_mode) ? "" : " (a loop device backed by it)",
						 fields[4]);
		if (r)
			break;
		if (src) {
			unescape(src);
			if (same_file(src, st))
				r = vd_set_error(err, EBUSY, "%s: in use: mounted on %s (%s)",
						 path, fields[4], fstype ? fstype : "?");
		}
		if (!r && same_file(fields[4], st))
			r = vd_set_error(err, EBUSY, "%s: in use: the file is a mount point (%s)",
					 path, fields[4]);
	}
	free(line);
	fclose(f);
	return r;
}

int vd_guard_acquire(const char *path, struct vd_guard **out, struct vd_error *err)
{
	struct vd_guard *g;
	struct devs *d;
	struct stat st;
	int fd, r;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return vd_set_error(err, errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0) {
		r = vd_set_error(err, errno, "%s: %s", path, strerror(errno));
		close(fd);
		return r;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK)
			r = vd_set_error(err, EBUSY, "%s: in use by another vdisk process", path);
		else
			r = vd_set_error(err, errno, "%s: lock: %s", path, strerror(errno));
		close(fd);
		return r;
	}
	d = vd_calloc(1, sizeof(*d), err);
	if (!d) {
		close(fd);
		return -ENOMEM;
	}
	if (S_ISREG(st.st_mode))
		find_loops(d, &st);
	if (S_ISBLK(st.st_mode)) {
		d->dev[d->n] = st.st_rdev;
		snprintf(d->name[d->n], sizeof(d->name[0]), "%.63s", path);
		d->n++;
	}
	r = check_mounts(path, &st, d, err);
	free(d);
	if (r < 0) {
		close(fd);
		return r;
	}
	g = vd_malloc(sizeof(*g), err);
	if (!g) {
		close(fd);
		return -ENOMEM;
	}
	g->fd = fd;
	*out = g;
	return 0;
}

void vd_guard_release(struct vd_guard *g)
{
	if (!g)
		return;
	close(g->fd); /* drops the lock */
	free(g);
}
