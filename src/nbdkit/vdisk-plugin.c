/*
 * nbdkit-vdisk-plugin: serve the guest disk of any image vdisk reads over
 * NBD (nbdkit plugin API v2), through the public libvdisk calls only.
 *
 *   nbdkit vdisk [file=]IMAGE [format=FMT] [readonly=true] [snapshot=true]
 *                [backing=PARENT]... [force=true]
 *
 * snapshot=true: the image is opened read-only and writes go to a
 * temporary overlay thrown away at exit (overlay.c); image and overlay
 * stay open from the first connection until nbdkit exits, so that one
 * client's writes are there for the next.  backing= names a
 * parent candidate of a child image (repeatable), force=true opens a
 * parent changed since the snapshot (vd_set_chain_policy, as the
 * commands' --backing and --force).
 *
 * One image for the whole server, shared by every connection: it is opened
 * when the first connection arrives (read-only when that connection is,
 * i.e. under nbdkit -r, or with readonly=true, or when the file cannot be
 * opened for writing) and closed, flushed, when the last one leaves, so the
 * in-use guard is held exactly while clients are connected.  get_ready
 * opens and closes it once so that a missing or broken image fails at
 * start-up, not on the first connection.
 *
 * Thread model: SERIALIZE_ALL_REQUESTS.  A vd_image is not documented as
 * safe for concurrent use, and all connections share one, so every
 * request must be serialized anyway; nbdkit doing it is the same as a lock
 * here, without the chance of forgetting it.  Because the connections share
 * one image and a flush flushes all of it, multi-conn is advertised.
 *
 * SPDX-License-Identifier: MIT
 */
#define NBDKIT_API_VERSION 2
/* the thread model (see above); .thread_model says the same */
#define THREAD_MODEL NBDKIT_THREAD_MODEL_SERIALIZE_ALL_REQUESTS
#include <nbdkit-plugin.h>

#include "vdisk.h"
#include "overlay.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static char *image_path;
static const char *image_format;
static bool force_readonly;
static bool snapshot;
static const char *backing[VD_CHAIN_MAX];
static unsigned nbacking;
static struct vd_chain_policy chain;
static struct overlay *ov; /* snapshot=true: while the image is open */

static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vd_image *img;
static bool img_rw;
static unsigned users;
static struct vd_describe desc;
static uint64_t unit; /* discard releases whole units of this size (0: none) */

struct handle {
	bool rw;
};

static int fail(int r, const struct vd_error *err)
{
	nbdkit_error("%s", err->msg[0] ? err->msg : strerror(-r));
	nbdkit_set_error(-r);
	return -1;
}

static void vdisk_unload(void)
{
	if (ov) {
		ov_close(ov); /* the snapshot's writes are gone */
		ov = NULL;
		vd_close(img, NULL);
		img = NULL;
		vd_describe_free(&desc);
	}
	free(image_path);
	for (unsigned i = 0; i < nbacking; i++)
		free((char *)backing[i]);
}

static void chain_warn(void *ctx, const char *msg)
{
	(void)ctx;
	nbdkit_debug("warning: %s", msg);
}

static int vdisk_config(const char *key, const char *value)
{
	if (!strcmp(key, "file")) {
		free(image_path);
		image_path = nbdkit_realpath(value);
		return image_path ? 0 : -1;
	}
	if (!strcmp(key, "format")) {
		image_format = nbdkit_strdup_intern(value);
		return image_format ? 0 : -1;
	}
	if (!strcmp(key, "readonly") || !strcmp(key, "snapshot") || !strcmp(key, "force")) {
		int b = nbdkit_parse_bool(value);
		if (b < 0)
			return -1;
		if (key[0] == 'r')
			force_readonly = b;
		else if (key[0] == 's')
			snapshot = b;
		else
			chain.force = b;
		return 0;
	}
	if (!strcmp(key, "backing")) {
		if (nbacking >= VD_CHAIN_MAX) {
			nbdkit_error("backing=: at most %u parents", VD_CHAIN_MAX);
			return -1;
		}
		if (!(backing[nbacking] = nbdkit_realpath(value)))
			return -1;
		nbacking++;
		return 0;
	}
	nbdkit_error("unknown parameter '%s' (file=, format=, readonly=, snapshot=, backing=, force=)", key);
	return -1;
}

static int vdisk_config_complete(void)
{
	if (!image_path) {
		nbdkit_error("no image: give file=IMAGE (or the path as the first argument)");
		return -1;
	}
	chain.candidates = backing;
	chain.ncandidates = nbacking;
	chain.warn = chain_warn;
	vd_set_chain_policy(&chain);
	return 0;
}

static int vdisk_get_ready(void)
{
	struct vd_image *probe = NULL;
	struct vd_error err = { 0 };
	int r = vd_open(&probe, image_path, image_format, 0, &err);

	if (r < 0)
		return fail(r, &err);
	vd_close(probe, &err);
	return 0;
}

/* Open the shared image: read-write unless READONLY (or that fails as not
 * permitted). */
static int image_open(bool readonly)
{
	struct vd_error err = { 0 };
	int r = -EROFS;

	if (!readonly && !force_readonly && !snapshot) {
		r = vd_open(&img, image_path, image_format, VD_OPEN_RDWR, &err);
		img_rw = r == 0;
	}
	if (r == -EROFS || r == -EACCES || r == -EPERM || r == -ENOTSUP) {
		vd_error_clear(&err);
		r = vd_open(&img, image_path, image_format, 0, &err);
	}
	if (r < 0)
		return fail(r, &err);
	if (snapshot && !readonly && !force_readonly) {
		const char *t = getenv("TMPDIR");
		r = ov_open(&ov, img, t && *t ? t : "/var/tmp", &err);
		if (r < 0) {
			vd_close(img, NULL);
			img = NULL;
			return fail(r, &err);
		}
		img_rw = true;
	}
	unit = 0;
	memset(&desc, 0, sizeof(desc));
	if (vd_describe(img, &desc, &err) == 0) {
		if (desc.discard_releases && desc.starts_zeroed)
			unit = desc.discard_granularity ? desc.discard_granularity : desc.block_size;
	} else {
		vd_error_clear(&err);
	}
	return 0;
}

static void *vdisk_open(int readonly)
{
	struct handle *h = calloc(1, sizeof(*h));

	if (!h) {
		nbdkit_error("out of memory");
		return NULL;
	}
	pthread_mutex_lock(&open_lock);
	if (!img && image_open(readonly) < 0) {
		pthread_mutex_unlock(&open_lock);
		free(h);
		return NULL;
	}
	users++;
	h->rw = img_rw && !readonly && !force_readonly;
	pthread_mutex_unlock(&open_lock);
	return h;
}

static void vdisk_close(void *handle)
{
	struct vd_error err = { 0 };

	pthread_mutex_lock(&open_lock);
	/* a snapshot stays until nbdkit exits: the next client sees it */
	if (--users == 0 && !ov) {
		if (vd_close(img, &err) < 0)
			nbdkit_error("closing %s: %s", image_path, err.msg);
		img = NULL;
		vd_describe_free(&desc);
	}
	pthread_mutex_unlock(&open_lock);
	free(handle);
}

static int64_t vdisk_get_size(void *handle)
{
	(void)handle;
	return (int64_t)vd_size(img);
}

static int vdisk_can_write(void *handle)
{
	return ((struct handle *)handle)->rw;
}

static int vdisk_can_rw(void *handle)
{
	return ((struct handle *)handle)->rw && (ov || desc.rewritable);
}

static int vdisk_can_flush(void *handle)
{
	(void)handle;
	return 1;
}

static int vdisk_can_fua(void *handle)
{
	(void)handle;
	return NBDKIT_FUA_EMULATE;
}

static int vdisk_can_one(void *handle)
{
	(void)handle;
	return 1;
}

static int vdisk_pread(void *handle, void *buf, uint32_t count, uint64_t offset,
		       uint32_t flags)
{
	struct vd_error err = { 0 };
	int r = ov ? ov_read(ov, offset, buf, count, &err) : vd_read(img, offset, buf, count, &err);

	(void)handle; (void)flags;
	return r < 0 ? fail(r, &err) : 0;
}

static int vdisk_flush(void *handle, uint32_t flags)
{
	struct vd_error err = { 0 };
	int r = ov ? 0 : vd_flush(img, &err); /* a snapshot keeps nothing */

	(void)handle; (void)flags;
	return r < 0 ? fail(r, &err) : 0;
}

static int fua(void *handle, uint32_t flags)
{
	return (flags & NBDKIT_FLAG_FUA) ? vdisk_flush(handle, 0) : 0;
}

static int vdisk_pwrite(void *handle, const void *buf, uint32_t count, uint64_t offset,
			uint32_t flags)
{
	struct vd_error err = { 0 };
	int r = ov ? ov_write(ov, offset, buf, count, &err) : vd_write(img, offset, buf, count, &err);

	return r < 0 ? fail(r, &err) : fua(handle, flags);
}

static int vdisk_trim(void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
	struct vd_error err = { 0 };
	/* a trimmed range's contents are unspecified: the snapshot keeps it */
	int r = ov ? 0 : vd_discard(img, offset, count, &err);

	return r < 0 ? fail(r, &err) : fua(handle, flags);
}

/* The range reads as zeros already (block status). */
static int reads_zero(uint64_t off, uint64_t len)
{
	struct vd_error err = { 0 };
	struct vd_extent e;

	while (len > 0) {
		bool w = false;
		int r = ov ? ov_status(ov, off, len, &w, &e, &err) : vd_block_status(img, off, len, &e, &err);
		if (r < 0)
			return fail(r, &err);
		if (w || ((e.flags & VD_BS_DATA) && !(e.flags & VD_BS_ZERO)))
			return 0;
		if (e.length > len)
			e.length = len;
		off += e.length;
		len -= e.length;
	}
	return 1;
}

/* Zeroing is fast when nothing needs writing: the range is zero already,
 * the host file zeroes it (raw: fallocate), or it is made of whole units a
 * discard releases (VDI blocks, VMDK grains: a map update). */
static int vdisk_zero(void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
	struct vd_error err = { 0 };
	bool may_trim = flags & NBDKIT_FLAG_MAY_TRIM;
	int r, z;

	z = reads_zero(offset, count);
	if (z < 0)
		return -1;
	if (z)
		return fua(handle, flags);
	if (ov) {
		/* whole granules of the overlay become holes; parts are written */
		if ((flags & NBDKIT_FLAG_FAST_ZERO) && (offset % OV_GRAN || count % OV_GRAN)) {
			nbdkit_set_error(ENOTSUP);
			return -1;
		}
		r = ov_write(ov, offset, NULL, count, &err);
		return r < 0 ? fail(r, &err) : fua(handle, flags);
	}
	if (flags & NBDKIT_FLAG_FAST_ZERO) {
		bool fast = desc.alloc == VD_ALLOC_RAW ||
			    (may_trim && unit && offset % unit == 0 && count % unit == 0);
		if (!fast) {
			nbdkit_set_error(ENOTSUP);
			return -1;
		}
	}
	if (may_trim && unit) {
		uint64_t a = (offset + unit - 1) / unit * unit;
		uint64_t b = (offset + count) / unit * unit;
		if (a < b && (r = vd_discard(img, a, b - a, &err)) < 0)
			return fail(r, &err);
	}
	r = vd_write_zeroes(img, offset, count, may_trim ? VD_ZERO_MAY_UNMAP : 0, &err);
	return r < 0 ? fail(r, &err) : fua(handle, flags);
}

/* base:allocation: data 0; allocated but reading zeros ZERO; not held or
 * a zero block HOLE|ZERO. */
static int vdisk_extents(void *handle, uint32_t count, uint64_t offset, uint32_t flags,
			 struct nbdkit_extents *extents)
{
	struct vd_error err = { 0 };
	struct vd_extent e;
	uint64_t end = offset + count;

	(void)handle;
	/* at most 1024 extents per reply: the client asks again for the rest */
	for (unsigned n = 0; offset < end && n < 1024; n++) {
		uint32_t type;
		bool w = false;
		int r = ov ? ov_status(ov, offset, end - offset, &w, &e, &err) :
			     vd_block_status(img, offset, end - offset, &e, &err);

		if (r < 0)
			return fail(r, &err);
		if (w)
			type = 0; /* written into the snapshot */
		else if (!(e.flags & VD_BS_DATA))
			type = NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO;
		else if (e.flags & VD_BS_ZERO)
			type = NBDKIT_EXTENT_ZERO;
		else
			type = 0;
		if (nbdkit_add_extent(extents, offset, e.length, type) < 0)
			return -1;
		offset += e.length;
		if (flags & NBDKIT_FLAG_REQ_ONE)
			break;
	}
	return 0;
}

static int vdisk_thread_model(void)
{
	return THREAD_MODEL;
}

static struct nbdkit_plugin plugin = {
	.name = "vdisk",
	.longname = "vdisk: raw, VDI and VMDK images (libvdisk)",
	.version = VDISK_VERSION,
	.description = "Serve the guest disk of a virtual disk image.",
	.unload = vdisk_unload,
	.config = vdisk_config,
	.config_complete = vdisk_config_complete,
	.config_help = "file=IMAGE     (required) the image\n"
		       "format=FMT     its format (default: probe)\n"
		       "readonly=BOOL  never open it for writing\n"
		       "snapshot=BOOL  writes go to a temporary overlay, the image is only read\n"
		       "backing=FILE   a parent candidate of a child image (repeatable)\n"
		       "force=BOOL     open a parent changed since the snapshot",
	.magic_config_key = "file",
	.get_ready = vdisk_get_ready,
	.thread_model = vdisk_thread_model,
	.open = vdisk_open,
	.close = vdisk_close,
	.get_size = vdisk_get_size,
	.can_write = vdisk_can_write,
	.can_flush = vdisk_can_flush,
	.can_trim = vdisk_can_rw,
	.can_zero = vdisk_can_rw,
	.can_fast_zero = vdisk_can_rw,
	.can_fua = vdisk_can_fua,
	.can_extents = vdisk_can_one,
	.can_multi_conn = vdisk_can_one,
	.pread = vdisk_pread,
	.pwrite = vdisk_pwrite,
	.flush = vdisk_flush,
	.trim = vdisk_trim,
	.zero = vdisk_zero,
	.extents = vdisk_extents,
};

NBDKIT_REGISTER_PLUGIN(plugin)
