/*
 * Image creation and the temporary-file-then-rename discipline every new
 * output follows.
 *
 * Temporary files are named .NAME.vdisk-tmp-PID-XXXXXX beside NAME, and the
 * process that writes one holds an OFD write lock on it (one byte far past
 * any data, clear of the bytes QEMU and the in-use guard lock) until it is
 * renamed or removed.  A run killed by SIGKILL or a crash leaves its file
 * behind.  When the next output to NAME begins, each such file whose PID
 * no longer exists (kill(pid, 0) fails with ESRCH) and that nobody holds
 * locked (neither flock(2) nor a fcntl lock, which also covers a live
 * writer in another PID namespace or a reused PID's predecessor) is removed
 * and reported through the stale-file handler: it can only be the garbage
 * of a crashed run of vdisk itself, and keeping it only keeps its space.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "vdisk-int.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <dirent.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* mkstemp, but with mode 0666 so that the kernel applies the umask, as for
 * any new file (mkstemp creates 0600 and a later fchmod would have to guess
 * the umask).  TEMPLATE ends in XXXXXX. */
static int create_tmp(char *template)
{
	static const char chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	size_t n = strlen(template);

	for (int tries = 0; tries < 100; tries++) {
		uint8_t rnd[6];
		int fd;
		if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
			uint64_t x = (uint64_t)getpid() * 2654435761u + (uint64_t)tries * 40503u + (uint64_t)time(NULL);
			for (size_t i = 0; i < sizeof(rnd); i++, x >>= 8)
				rnd[i] = (uint8_t)x;
		}
		for (size_t i = 0; i < 6; i++)
			template[n - 6 + i] = chars[rnd[i] % (sizeof(chars) - 1)];
		fd = open(template, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
		if (fd >= 0 || errno != EEXIST)
			return fd;
	}
	errno = EEXIST;
	return -1;
}

#define TMP_TAG ".vdisk-tmp-"
/* the byte the writer of a temporary file locks */
#define TMP_LOCK_BYTE ((off_t)0x7ffffffffffffff0ll)

static vd_stale_tmp_fn stale_fn;
static void *stale_ctx;

void vd_set_stale_tmp_handler(vd_stale_tmp_fn fn, void *ctx)
{
	stale_fn = fn;
	stale_ctx = ctx;
}

/* Does NAME (a directory entry) look like "PREFIX<pid>-XXXXXX"?  Sets *PID. */
static bool stale_name(const char *name, const char *prefix, long *pid)
{
	size_t pl = strlen(prefix);
	const char *p = name + pl;
	char *end;

	if (strncmp(name, prefix, pl) || *p < '1' || *p > '9')
		return false;
	errno = 0;
	*pid = strtol(p, &end, 10);
	if (errno || *pid <= 0 || *pid > 0x7fffffffl || *end != '-' || strlen(end + 1) != 6)
		return false;
	for (const char *c = end + 1; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9')))
			return false;
	return true;
}

/* Is the file open as FD locked by anyone (flock or a fcntl lock)?  FD
 * keeps the flock it took, so two cleaners never race. */
static bool file_locked(int fd)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };

	if (flock(fd, LOCK_EX | LOCK_NB) < 0)
		return true;
	if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
		return true; /* cannot tell: leave it */
	return fl.l_type != F_UNLCK;
}

/* Remove the stale temporary files of destination BASE in DIR (see the
 * top); each one is reported to the stale-file handler. */
static void remove_stale(const char *dir, const char *base)
{
	char *prefix = NULL;
	DIR *d;
	struct dirent *de;

	if (asprintf(&prefix, ".%s" TMP_TAG, base) < 0)
		return;
	d = opendir(dir);
	while (d && (de = readdir(d))) {
		struct vd_stale_tmp st = { 0 };
		struct stat sb;
		char *path = NULL;
		long pid;
		int fd;

		if (!stale_name(de->d_name, prefix, &pid) || pid == (long)getpid())
			continue;
		if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue; /* alive, or not ours to judge */
		if (asprintf(&path, "%s/%s", dir, de->d_name) < 0)
			break;
		fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (fd >= 0 && fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && !file_locked(fd)) {
			st.path = path;
			st.pid = pid;
			st.size = (uint64_t)sb.st_size;
			st.allocated = (uint64_t)sb.st_blocks * 512;
			st.error = unlink(path) < 0 ? errno : 0;
			if (st.error != ENOENT && stale_fn)
				stale_fn(stale_ctx, &st);
		}
		if (fd >= 0)
			close(fd);
		free(path);
	}
	if (d)
		closedir(d);
	free(prefix);
}

/* Create the temporary file PATTERN (ending in XXXXXX) and hold the writer's
 * lock on it; returns the descriptor or -errno. */
static int make_tmp(char *pattern)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = TMP_LOCK_BYTE, .l_len = 1 };
	int fd = create_tmp(pattern);

	if (fd < 0)
		return -errno;
	/* best effort: without OFD locks, the PID alone marks it as alive */
	(void)fcntl(fd, F_OFD_SETLK, &fl);
	return fd;
}

int vd_tmp_begin(struct vd_tmp *t, const char *final, bool force,
		 struct vd_error *err)
{
	char *dup = NULL, *dup2 = NULL;
	struct stat st;
	int fd, r;

	memset(t, 0, sizeof(*t));
	t->force = force;
	if (lstat(final, &st) == 0) {
		if (!force)
			return vd_set_error(err, EEXIST, "%s: already exists (use --force to replace it)", final);
		if (!S_ISREG(st.st_mode))
			return vd_set_error(err, EINVAL, "%s: exists and is not a regular file", final);
	} else if (errno != ENOENT) {
		return vd_set_error(err, errno, "%s: %s", final, strerror(errno));
	}
	dup = strdup(final);
	dup2 = strdup(final);
	t->final = strdup(final);
	if (!dup || !dup2 || !t->final) {
		r = vd_set_error(err, ENOMEM, "out of memory");
		goto fail;
	}
	{
		const char *dir = dirname(dup), *base = basename(dup2);

		remove_stale(dir, base);
		if (asprintf(&t->tmp, "%s/.%s" TMP_TAG "%ld-XXXXXX", dir, base, (long)getpid()) < 0) {
			t->tmp = NULL;
			r = vd_set_error(err, ENOMEM, "out of memory");
			goto fail;
		}
	}
	fd = make_tmp(t->tmp);
	if (fd < 0) {
		r = vd_set_error(err, -fd, "%s: cannot create temporary file: %s", t->tmp, strerror(-fd));
		free(t->tmp);
		t->tmp = NULL;
		goto fail;
	}
	t->lock_fd = fd + 1;
	free(dup);
	free(dup2);
	return 0;
fail:
	free(dup);
	free(dup2);
	free(t->final);
	t->final = NULL;
	return r;
}

static void fsync_path(const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

static int move_into_place(const char *tmp, const char *final, bool force,
			   bool no_sync, struct vd_error *err)
{
	int r;

	if (!no_sync)
		fsync_path(tmp, O_RDONLY);
	vd_crash_point();
	if (force)
		r = rename(tmp, final);
	else
		r = renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_NOREPLACE);
	if (r < 0)
		return vd_set_error(err, errno, "%s: cannot move the new image into place: %s",
				    final, strerror(errno));
	return 0;
}

int vd_tmp_add(struct vd_tmp *t, const char *final, struct vd_host **h,
	       struct vd_error *err)
{
	struct vd_tmp one;
	char **nf, **nt;
	int *nl;
	int r;

	nf = realloc(t->extra_final, (t->nextra + 1) * sizeof(*nf));
	if (nf)
		t->extra_final = nf;
	nt = realloc(t->extra_tmp, (t->nextra + 1) * sizeof(*nt));
	if (nt)
		t->extra_tmp = nt;
	nl = realloc(t->extra_lock, (t->nextra + 1) * sizeof(*nl));
	if (nl)
		t->extra_lock = nl;
	if (!nf || !nt || !nl)
		return vd_set_error(err, ENOMEM, "out of memory");
	r = vd_tmp_begin(&one, final, t->force, err);
	if (r < 0)
		return r;
	t->extra_final[t->nextra] = one.final;
	t->extra_tmp[t->nextra] = one.tmp;
	t->extra_lock[t->nextra] = one.lock_fd;
	t->nextra++;
	return vd_host_open_file(h, one.tmp, VD_HOST_RDWR | (t->no_sync ? VD_HOST_NO_SYNC : 0), err);
}

/* Close the writer's lock descriptor (stored + 1; 0 = none). */
static void release_lock(int *fd1)
{
	if (*fd1 > 0)
		close(*fd1 - 1);
	*fd1 = 0;
}

static void free_extras(struct vd_tmp *t, bool unlink_tmp)
{
	for (unsigned i = 0; i < t->nextra; i++) {
		if (unlink_tmp && t->extra_tmp[i])
			unlink(t->extra_tmp[i]);
		release_lock(&t->extra_lock[i]);
		free(t->extra_tmp[i]);
		free(t->extra_final[i]);
	}
	free(t->extra_tmp);
	free(t->extra_final);
	free(t->extra_lock);
	t->extra_tmp = t->extra_final = NULL;
	t->extra_lock = NULL;
	t->nextra = 0;
}

/* Replace the temporary file names in the descriptor T->tmp by the final
 * ones (the temporary names are unique, so plain substitution is exact). */
static int rewrite_names(struct vd_tmp *t, struct vd_error *err)
{
	struct vd_host *h;
	uint64_t size;
	char *text = NULL, *out = NULL;
	size_t olen = 0;
	FILE *f;
	int r;

	r = vd_host_open_file(&h, t->tmp, VD_HOST_RDWR | (t->no_sync ? VD_HOST_NO_SYNC : 0), err);
	if (r < 0)
		return r;
	r = vd_host_size(h, &size, err);
	if (r == 0 && size > (1u << 20))
		r = vd_set_error(err, EFBIG, "%s: descriptor too large", t->tmp);
	if (r == 0 && !(text = vd_malloc((size_t)size + 1, err)))
		r = -ENOMEM;
	if (r == 0)
		r = vd_host_pread(h, text, (size_t)size, 0, err);
	if (r < 0)
		goto out;
	text[size] = '\0';
	f = open_memstream(&out, &olen);
	if (!f) {
		r = vd_set_error(err, ENOMEM, "out of memory");
		goto out;
	}
	for (const char *p = text; *p;) {
		bool hit = false;
		for (unsigned i = 0; i < t->nextra && !hit; i++) {
			const char *tb = strrchr(t->extra_tmp[i], '/');
			const char *fb = strrchr(t->extra_final[i], '/');
			tb = tb ? tb + 1 : t->extra_tmp[i];
			fb = fb ? fb + 1 : t->extra_final[i];
			if (!strncmp(p, tb, strlen(tb))) {
				fputs(fb, f);
				p += strlen(tb);
				hit = true;
			}
		}
		if (!hit)
			fputc(*p++, f);
	}
	fclose(f);
	r = vd_host_truncate(h, 0, err);
	if (r == 0)
		r = vd_host_pwrite(h, out, olen, 0, err);
	if (r == 0)
		r = vd_host_flush(h, err);
out:
	free(text);
	free(out);
	vd_host_close(h);
	return r;
}

int vd_tmp_commit(struct vd_tmp *t, bool force, struct vd_error *err)
{
	char *dup;
	int r;

	if (t->rewrite_names && t->nextra) {
		r = rewrite_names(t, err);
		if (r < 0) {
			vd_tmp_abort(t);
			return r;
		}
	}

	/* extents first: the main file (descriptor) names them */
	for (unsigned i = 0; i < t->nextra; i++) {
		r = move_into_place(t->extra_tmp[i], t->extra_final[i], force, t->no_sync, err);
		if (r < 0) {
			vd_tmp_abort(t);
			return r;
		}
		free(t->extra_tmp[i]);
		t->extra_tmp[i] = NULL;
	}
	free_extras(t, false);
	r = move_into_place(t->tmp, t->final, force, t->no_sync, err);
	if (r < 0) {
		vd_tmp_abort(t);
		return r;
	}
	dup = t->no_sync ? NULL : strdup(t->final);
	if (dup) {
		fsync_path(dirname(dup), O_RDONLY | O_DIRECTORY);
		free(dup);
	}
	free(t->tmp);
	t->tmp = NULL;
	release_lock(&t->lock_fd);
	free(t->final);
	t->final = NULL;
	return 0;
}

void vd_tmp_abort(struct vd_tmp *t)
{
	free_extras(t, true);
	if (t->tmp) {
		unlink(t->tmp);
		free(t->tmp);
		t->tmp = NULL;
	}
	release_lock(&t->lock_fd);
	free(t->final);
	t->final = NULL;
}

int vd_create_on_host(struct vd_host *h, const char *format, uint64_t size,
		      const char *opts, unsigned flags, const volatile int *cancel,
		      struct vd_error *err)
{
	return vd_create_in_tmp(h, NULL, format, size, opts, flags, cancel, err);
}

int vd_create_in_tmp(struct vd_host *h, struct vd_tmp *t, const char *format,
		     uint64_t size, const char *opts, unsigned flags,
		     const volatile int *cancel, struct vd_error *err)
{
	return vd_create_in_tmp_like(h, t, format, size, opts, flags, NULL, cancel, err);
}

int vd_create_in_tmp_like(struct vd_host *h, struct vd_tmp *t, const char *format,
			  uint64_t size, const char *opts, unsigned flags,
			  const struct vd_create_like *like, const volatile int *cancel,
			  struct vd_error *err)
{
	const struct vd_driver *drv = vd_driver_find(format);
	struct vd_create_params p = { 0 };
	struct vd_opts o;
	int r;

	if (!drv)
		return vd_set_error(err, EINVAL, "unknown format '%s'", format);
	if (!drv->create)
		return vd_set_error(err, ENOTSUP, "format '%s' cannot be created", format);
	r = vd_opts_parse(&o, opts, err);
	if (r < 0)
		return r;
	p.size = size;
	p.opts = &o;
	p.flags = flags;
	p.cancel = cancel;
	p.tmp = t;
	if (like) {
		p.identity = like->identity;
		p.block_size = like->block_size;
	}
	return drv->create(h, &p, err);
}

int vd_create_child_in_tmp(struct vd_host *h, struct vd_tmp *t, const char *format,
			   struct vd_image *parent, const char *parent_name, const char *opts,
			   unsigned flags, struct vd_error *err)
{
	return vd_create_child_in_tmp_like(h, t, format, parent, parent_name, opts, flags, NULL, err);
}

int vd_create_child_in_tmp_like(struct vd_host *h, struct vd_tmp *t, const char *format,
				struct vd_image *parent, const char *parent_name, const char *opts,
				unsigned flags, const struct vd_create_like *like, struct vd_error *err)
{
	const struct vd_driver *drv = vd_driver_find(format);
	struct vd_create_params p = { 0 };
	struct vd_opts o;
	int r;

	if (!drv || !drv->create || !drv->creates_children)
		return vd_set_error(err, ENOTSUP, "format '%s' has no child images (differencing images, deltas); vdi and vmdk have",
				    format);
	r = vd_opts_parse(&o, opts, err);
	if (r < 0)
		return r;
	p.size = vd_size(parent);
	p.opts = &o;
	p.flags = flags;
	p.tmp = t;
	p.parent = parent;
	p.parent_name = parent_name;
	if (like) {
		p.identity = like->identity;
		p.block_size = like->block_size;
	}
	return drv->create(h, &p, err);
}

int vd_create_child(const char *path, const char *format, const char *parent,
		    const char *parent_format, uint64_t size, const char *opts,
		    unsigned flags, struct vd_error *err)
{
	const struct vd_driver *drv = vd_driver_find(format);
	struct vd_image *pimg = NULL;
	struct vd_host *h = NULL;
	struct vd_tmp t;
	char *ppath = NULL, *dup;
	int r;

	if (!drv)
		return vd_set_error(err, EINVAL, "unknown format '%s'", format);
	if (!drv->create)
		return vd_set_error(err, ENOTSUP, "format '%s' cannot be created", format);
	if (!drv->creates_children)
		return vd_set_error(err, ENOTSUP, "format '%s' has no child images (differencing images, deltas); vdi and vmdk have",
				    format);
	if (!parent[0])
		return vd_set_error(err, EINVAL, "%s: the parent's name is empty", path);
	/* a relative parent is relative to the child's folder, as it is
	 * stored and found again */
	dup = strdup(path);
	if (!dup)
		return vd_set_error(err, ENOMEM, "out of memory");
	if (parent[0] == '/' || !strcmp(dirname(dup), "."))
		ppath = strdup(parent);
	else if (asprintf(&ppath, "%s/%s", dup, parent) < 0)
		ppath = NULL;
	free(dup);
	if (!ppath)
		return vd_set_error(err, ENOMEM, "out of memory");
	r = vd_open(&pimg, ppath, parent_format, 0, err);
	free(ppath);
	if (r < 0)
		return vd_prefix_error(err, "%s: its parent", path);
	if (size && size != vd_size(pimg)) {
		r = vd_set_error(err, EINVAL, "%s: a child has the size of its parent (%llu bytes), not %llu",
				 path, (unsigned long long)vd_size(pimg), (unsigned long long)size);
		goto out;
	}
	r = vd_tmp_begin(&t, path, !(flags & VD_CREATE_EXCL), err);
	if (r < 0)
		goto out;
	r = vd_host_open_file(&h, t.tmp, VD_HOST_RDWR, err);
	if (r == 0) {
		r = vd_create_child_in_tmp(h, &t, format, pimg, parent, opts, flags, err);
		if (r == 0)
			r = vd_host_flush(h, err);
		vd_host_close(h);
	}
	if (r == 0)
		r = vd_tmp_commit(&t, !(flags & VD_CREATE_EXCL), err);
	else
		vd_tmp_abort(&t);
out:
	vd_close(pimg, NULL);
	return r;
}

void vd_create_warning(const char *format, const char *opts, char *buf, size_t len)
{
	const struct vd_driver *d = format ? vd_driver_find(format) : NULL;
	struct vd_opts o;
	struct vd_error e = { 0 };

	if (!buf || !len)
		return;
	buf[0] = 0;
	if (!d || !d->create_warning || vd_opts_parse(&o, opts, &e) < 0)
		return;
	d->create_warning(&o, buf, len);
}

int vd_create(const char *path, const char *format, uint64_t size,
	      const char *opts, unsigned flags, const volatile int *cancel,
	      struct vd_error *err)
{
	struct vd_tmp t;
	struct vd_host *h;
	int r;

	if (!vd_driver_find(format))
		return vd_set_error(err, EINVAL, "unknown format '%s'", format);
	r = vd_tmp_begin(&t, path, !(flags & VD_CREATE_EXCL), err);
	if (r < 0)
		return r;
	r = vd_host_open_file(&h, t.tmp, VD_HOST_RDWR, err);
	if (r < 0)
		goto fail;
	r = vd_create_in_tmp(h, &t, format, size, opts, flags, cancel, err);
	if (r == 0)
		r = vd_host_flush(h, err);
	vd_host_close(h);
	if (r < 0)
		goto fail;
	return vd_tmp_commit(&t, !(flags & VD_CREATE_EXCL), err);
fail:
	vd_tmp_abort(&t);
	return r;
}
