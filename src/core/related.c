/*
 * The one path policy for files an image names (VMDK extents today; parents
 * of differencing images, data files and locators next): resolved relative
 * to the image's directory; absolute paths, ".." components, symlinks
 * leaving the directory and anything but regular files refused unless the
 * image is opened with VD_OPEN_ALLOW_DEVICES; resolved once, race-free, and
 * opened through the host layer with the image's in-use guard.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "vdisk-int.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>


static bool inside(const char *real, const char *rdir)
{
	size_t n = strlen(rdir);

	if (!strcmp(rdir, "/"))
		return real[0] == '/';
	return !strncmp(real, rdir, n) && real[n] == '/';
}

/* Resolve the file NAME named inside IMG (a VMDK extent) into R.
 *
 * Race-free against symlinks swapped while we look: the name is resolved
 * once, into an O_PATH descriptor (no I/O, no device open, no lock); the
 * policy is checked on that descriptor (its real path from /proc/self/fd,
 * its type from fstat), and vd_related_open later opens the name for I/O and
 * refuses it unless it is the same inode. */
int vd_related_resolve(struct vd_image *img, const struct vd_related_words *w, const char *name,
		       struct vd_related *r, struct vd_error *err)
{
	const char *dpath = img->host->path;
	bool allow = (img->flags & VD_OPEN_ALLOW_DEVICES) != 0;
	char *dup = strdup(dpath), *dir, rdir[PATH_MAX], real[PATH_MAX], link[64];
	struct stat st;
	int fd = -1, ret;

	memset(r, 0, sizeof(*r));
	if (!dup)
		return vd_set_error(err, ENOMEM, "out of memory");
	dir = dirname(dup);
	if (!allow) {
		const char *p = name;
		if (name[0] == '/') {
			ret = vd_set_error(err, EPERM, "%s: %s \"%s\" is an absolute path (pass --allow-devices to use it)",
					   dpath, w->file, name);
			goto out;
		}
		while (p) {
			if (!strncmp(p, "..", 2) && (p[2] == '/' || p[2] == '\0')) {
				ret = vd_set_error(err, EPERM, "%s: %s \"%s\" leaves the %s's directory (pass --allow-devices to use it)",
						   dpath, w->file, name, w->owner);
				goto out;
			}
			p = strchr(p, '/');
			if (p)
				p++;
		}
	}
	if (name[0] == '/' || !strcmp(dir, "."))
		r->full = strdup(name); /* as named: "base.vmdk", not "./base.vmdk" */
	else if (asprintf(&r->full, "%s/%s", dir, name) < 0)
		r->full = NULL;
	if (!r->full) {
		ret = vd_set_error(err, ENOMEM, "out of memory");
		goto out;
	}
	fd = open(r->full, O_PATH | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		ret = vd_set_error(err, errno, "%s: %s: %s: %s", dpath, w->short_name, r->full, strerror(errno));
		goto out;
	}
	if (!allow) {
		ssize_t n;
		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		n = readlink(link, real, sizeof(real) - 1);
		if (n >= 0) {
			real[n] = '\0';
		} else {
			/* no /proc: the real path by name, which must still be
			 * the inode the descriptor holds */
			struct stat st2;
			if (!realpath(r->full, real) || stat(real, &st2) < 0 ||
			    st2.st_dev != st.st_dev || st2.st_ino != st.st_ino) {
				ret = vd_set_error(err, EPERM, "%s: %s \"%s\" changed while it was resolved",
						   dpath, w->file, name);
				goto out;
			}
		}
		if (!realpath(dir, rdir)) {
			ret = vd_set_error(err, errno, "%s: %s", dir, strerror(errno));
			goto out;
		}
		if (!inside(real, rdir)) {
			ret = vd_set_error(err, EPERM, "%s: %s \"%s\" resolves to %s, outside the %s's directory (pass --allow-devices to use it)",
					   dpath, w->file, name, real, w->owner);
			goto out;
		}
		if (!S_ISREG(st.st_mode)) {
			ret = vd_set_error(err, EPERM, "%s: %s \"%s\" is not a regular file (pass --allow-devices to use a device)",
					   dpath, w->file, name);
			goto out;
		}
	}
	r->dev = st.st_dev;
	r->ino = st.st_ino;
	ret = 0;
out:
	if (fd >= 0)
		close(fd);
	if (ret < 0) {
		free(r->full);
		r->full = NULL;
	}
	free(dup);
	return ret;
}

/* Open the file vd_related_resolve checked; it must still be that inode. */
int vd_related_open(struct vd_image *img, const struct vd_related_words *w, const char *name,
		    const struct vd_related *res, bool rdwr, struct vd_host **h,
		    struct vd_error *err)
{
	const char *dpath = img->host->path;
	bool allow = (img->flags & VD_OPEN_ALLOW_DEVICES) != 0;
	unsigned hflags = (rdwr ? VD_HOST_RDWR : 0) | (allow ? VD_HOST_ALLOW_DEV : 0) |
			  (img->flags & VD_OPEN_NO_SYNC ? VD_HOST_NO_SYNC : 0) |
			  (!w->shared && (rdwr || (img->flags & (VD_OPEN_RDWR | VD_OPEN_EXCLUSIVE))) ?
			   VD_HOST_GUARD : 0);
	struct stat st;
	int r;

	r = vd_host_open_file(h, res->full, hflags, err);
	if (r < 0)
		return vd_prefix_error(err, "%s: %s", dpath, w->short_name);
	if ((*h)->fd >= 0 && (fstat((*h)->fd, &st) < 0 || st.st_dev != res->dev ||
			       st.st_ino != res->ino)) {
		vd_host_close(*h);
		*h = NULL;
		return vd_set_error(err, EPERM, "%s: %s \"%s\" was replaced while it was opened (a symlink swapped in?); refused",
				    dpath, w->file, name);
	}
	return 0;
}


void vd_related_free(struct vd_related *r)
{
	free(r->full);
	r->full = NULL;
}
