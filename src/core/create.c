/*
 * Image creation and the temporary-file-then-rename discipline every new
 * output follows.
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
	if (asprintf(&t->tmp, "%s/.%s.vdisk-tmp-XXXXXX", dirname(dup), basename(dup2)) < 0) {
		t->tmp = NULL;
		r = vd_set_error(err, ENOMEM, "out of memory");
		goto fail;
	}
	fd = create_tmp(t->tmp);
	if (fd < 0) {
		r = vd_set_error(err, errno, "%s: cannot create temporary file: %s", t->tmp, strerror(errno));
		free(t->tmp);
		t->tmp = NULL;
		goto fail;
	}
	close(fd);
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
	int r;

	nf = realloc(t->extra_final, (t->nextra + 1) * sizeof(*nf));
	if (nf)
		t->extra_final = nf;
	nt = realloc(t->extra_tmp, (t->nextra + 1) * sizeof(*nt));
	if (nt)
		t->extra_tmp = nt;
	if (!nf || !nt)
		return vd_set_error(err, ENOMEM, "out of memory");
	r = vd_tmp_begin(&one, final, t->force, err);
	if (r < 0)
		return r;
	t->extra_final[t->nextra] = one.final;
	t->extra_tmp[t->nextra] = one.tmp;
	t->nextra++;
	return vd_host_open_file(h, one.tmp, VD_HOST_RDWR | (t->no_sync ? VD_HOST_NO_SYNC : 0), err);
}

static void free_extras(struct vd_tmp *t, bool unlink_tmp)
{
	for (unsigned i = 0; i < t->nextra; i++) {
		if (unlink_tmp && t->extra_tmp[i])
			unlink(t->extra_tmp[i]);
		free(t->extra_tmp[i]);
		free(t->extra_final[i]);
	}
	free(t->extra_tmp);
	free(t->extra_final);
	t->extra_tmp = t->extra_final = NULL;
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
