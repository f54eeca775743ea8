/*
 * A host on an NBD export (libnbd): NBD URIs (nbd://HOST[:PORT]/EXPORT,
 * nbd+unix:///EXPORT?socket=PATH, nbds://..., nbd+vsock://...) wherever a
 * file name is taken, so every format vdisk reads can be read from and
 * written into an export, and a raw export is a raw image.
 *
 *  - Reads and writes longer than one request are cut into requests of
 *    SUB bytes of which up to INFLIGHT are in flight at once (libnbd's
 *    asynchronous API), so a copy is not bound by the round trip.
 *  - Zeroing is an NBD WRITE_ZEROES request (with NO_HOLE when the caller
 *    wants the range allocated), never written zeros; a server that cannot
 *    zero makes the core fall back to writing them.
 *  - SEEK_DATA/SEEK_HOLE are answered from base:allocation block status:
 *    a range with NBD_STATE_ZERO reads as zeros, anything else is data (a
 *    HOLE without ZERO may read as anything).  The last reply is kept, as
 *    block status is asked for each extent twice.
 *  - The in-use guard does not apply: the export is not a local file (the
 *    server decides who else may write it).
 *
 * One mutex serialises the handle's use (FUSE may call from several
 * threads).
 *
 * SPDX-License-Identifier: MIT
 */
#include "vdisk-int.h"

#include <errno.h>
#include <libnbd.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define SUB (256u << 10)
#define INFLIGHT 16u
#define NEXT_MAX 256u              /* extents kept from one reply */
#define STATUS_SPAN (1ull << 30)   /* bytes asked per block status request */

struct nbd_ext {
	uint64_t off, len;
	bool zero;
};

struct nbdhost {
	struct vd_host h;
	struct nbd_handle *nbd;
	pthread_mutex_t lock;
	uint64_t size;
	bool can_status, can_zero, can_flush;
	struct nbd_ext ext[NEXT_MAX];
	unsigned next;
};

static struct nbdhost *N(struct vd_host *h)
{
	return (struct nbdhost *)h;
}

bool vd_is_nbd_uri(const char *path)
{
	static const char *const pre[] = { "nbd://", "nbds://", "nbd+unix://", "nbds+unix://",
					   "nbd+vsock://", "nbds+vsock://" };
	for (size_t i = 0; i < sizeof(pre) / sizeof(pre[0]); i++)
		if (!strncmp(path, pre[i], strlen(pre[i])))
			return true;
	return false;
}

static int nbd_err(void)
{
	int e = nbd_get_errno();
	return -(e ? e : EIO);
}

/* Wait for every request in flight; -errno of the first that failed. */
static int drain(struct nbdhost *n, const int64_t *cookie, unsigned k)
{
	int r = 0;

	while (nbd_aio_in_flight(n->nbd) > 0)
		if (nbd_poll(n->nbd, -1) < 0)
			return nbd_err();
	for (unsigned i = 0; i < k; i++) {
		int c = nbd_aio_command_completed(n->nbd, (uint64_t)cookie[i]);
		if (c < 0 && r == 0)
			r = nbd_err();
	}
	return r;
}

static ssize_t transfer(struct nbdhost *n, void *buf, size_t len, uint64_t off, bool write)
{
	uint8_t *p = buf;
	size_t done = 0;
	int r = 0;

	if (off >= n->size)
		return 0;
	len = (size_t)VD_MIN((uint64_t)len, n->size - off);
	pthread_mutex_lock(&n->lock);
	if (write)
		n->next = 0; /* what was allocated may change */
	if (len <= SUB) {
		r = write ? nbd_pwrite(n->nbd, p, len, off, 0) : nbd_pread(n->nbd, p, len, off, 0);
		r = r < 0 ? nbd_err() : 0;
		done = len;
	}
	while (done < len && r == 0) {
		int64_t cookie[INFLIGHT];
		unsigned k = 0;

		for (; k < INFLIGHT && done < len; k++) {
			size_t m = VD_MIN(len - done, (size_t)SUB);
			cookie[k] = write ? nbd_aio_pwrite(n->nbd, p + done, m, off + done, NBD_NULL_COMPLETION, 0)
					  : nbd_aio_pread(n->nbd, p + done, m, off + done, NBD_NULL_COMPLETION, 0);
			if (cookie[k] < 0) {
				r = nbd_err();
				break;
			}
			done += m;
		}
		int r2 = drain(n, cookie, k);
		if (r == 0)
			r = r2;
	}
	pthread_mutex_unlock(&n->lock);
	return r < 0 ? r : (ssize_t)len;
}

static ssize_t n_pread(struct vd_host *h, void *buf, size_t len, uint64_t off)
{
	return transfer(N(h), buf, len, off, false);
}

static ssize_t n_pwrite(struct vd_host *h, const void *buf, size_t len, uint64_t off)
{
	if (off + len > N(h)->size)
		return -ENOSPC; /* an export does not grow */
	return transfer(N(h), (void *)buf, len, off, true);
}

static int n_get_size(struct vd_host *h, uint64_t *size)
{
	*size = N(h)->size;
	return 0;
}

static int n_zero(struct vd_host *h, uint64_t off, uint64_t len, uint32_t flags)
{
	struct nbdhost *n = N(h);
	int r = 0;

	if (!n->can_zero)
		return -ENOTSUP;
	if (off + len > n->size)
		return -EINVAL;
	pthread_mutex_lock(&n->lock);
	n->next = 0;
	/* one request per 1 GiB: the protocol's length is 32 bits */
	for (uint64_t o = 0; o < len && r == 0;) {
		uint64_t m = VD_MIN(len - o, 1ull << 30);
		if (nbd_zero(n->nbd, m, off + o, flags) < 0)
			r = nbd_err();
		o += m;
	}
	pthread_mutex_unlock(&n->lock);
	return r;
}

static int n_punch_hole(struct vd_host *h, uint64_t off, uint64_t len)
{
	return n_zero(h, off, len, 0);
}

static int n_zero_range(struct vd_host *h, uint64_t off, uint64_t len)
{
	return n_zero(h, off, len, LIBNBD_CMD_FLAG_NO_HOLE);
}

struct status_ctx {
	struct nbdhost *n;
	uint64_t off;
};

static int status_cb(void *opaque, const char *ctx, uint64_t off, uint32_t *entries,
		     size_t nr, int *error)
{
	struct status_ctx *s = opaque;
	struct nbdhost *n = s->n;

	(void)error;
	if (strcmp(ctx, LIBNBD_CONTEXT_BASE_ALLOCATION))
		return 0;
	s->off = off;
	for (size_t i = 0; i + 1 < nr && n->next < NEXT_MAX; i += 2) {
		if (!entries[i])
			break; /* a zero-length extent: a broken server; stop */
		n->ext[n->next++] = (struct nbd_ext){ s->off, entries[i], (entries[i + 1] & LIBNBD_STATE_ZERO) != 0 };
		s->off += entries[i];
	}
	return 0;
}

/* The extent holding OFF (< size), from the kept reply or a new one. */
static int extent_at(struct nbdhost *n, uint64_t off, struct nbd_ext *out)
{
	struct status_ctx s = { n, off };

	for (unsigned i = 0; i < n->next; i++)
		if (off >= n->ext[i].off && off - n->ext[i].off < n->ext[i].len) {
			*out = n->ext[i];
			return 0;
		}
	n->next = 0;
	if (nbd_block_status(n->nbd, VD_MIN(n->size - off, STATUS_SPAN), off,
			     (nbd_extent_callback){ .callback = status_cb, .user_data = &s }, 0) < 0)
		return nbd_err();
	if (!n->next || n->ext[0].off != off)
		return -EIO; /* no answer for OFF: treat as data */
	*out = n->ext[0];
	if (out->off + out->len > n->size)
		out->len = n->size - out->off;
	return 0;
}

/* The first offset at or after OFF whose extent is (WANT_ZERO) or is not
 * zero; SIZE when none. */
static int seek_kind(struct vd_host *h, uint64_t off, bool want_zero, uint64_t *at)
{
	struct nbdhost *n = N(h);
	int r = 0;

	if (!n->can_status)
		return -ENOTSUP;
	pthread_mutex_lock(&n->lock);
	while (off < n->size) {
		struct nbd_ext e = { 0 };
		r = extent_at(n, off, &e);
		if (r < 0)
			break;
		if (e.zero == want_zero)
			break;
		off = e.off + e.len;
	}
	pthread_mutex_unlock(&n->lock);
	if (r < 0)
		return -ENOTSUP; /* cannot tell: all data */
	*at = VD_MIN(off, n->size);
	return 0;
}

static int n_seek_data(struct vd_host *h, uint64_t off, uint64_t *data_off)
{
	int r = seek_kind(h, off, false, data_off);
	if (r == 0 && *data_off >= N(h)->size)
		return -ENXIO;
	return r;
}

static int n_seek_hole(struct vd_host *h, uint64_t off, uint64_t *hole_off)
{
	return seek_kind(h, off, true, hole_off);
}

static int n_flush(struct vd_host *h)
{
	struct nbdhost *n = N(h);
	int r = 0;

	if (!n->can_flush)
		return 0;
	pthread_mutex_lock(&n->lock);
	if (nbd_flush(n->nbd, 0) < 0)
		r = nbd_err();
	pthread_mutex_unlock(&n->lock);
	return r;
}

static void n_close(struct vd_host *h)
{
	struct nbdhost *n = N(h);

	if (n->nbd) {
		nbd_shutdown(n->nbd, 0);
		nbd_close(n->nbd);
	}
	pthread_mutex_destroy(&n->lock);
	free(h->path);
	free(n);
}

static const struct vd_host_ops nbd_ops = {
	.pread = n_pread,
	.pwrite = n_pwrite,
	.get_size = n_get_size,
	.punch_hole = n_punch_hole,
	.zero_range = n_zero_range,
	.seek_data = n_seek_data,
	.seek_hole = n_seek_hole,
	.flush = n_flush,
	.close = n_close,
};

int vd_host_open_nbd(struct vd_host **out, const char *uri, unsigned flags, struct vd_error *err)
{
	struct nbdhost *n;
	int64_t size;
	int r;

	*out = NULL;
	if (flags & VD_HOST_CREATE)
		return vd_set_error(err, EINVAL, "%s: an NBD export is not created here: write into it with convert -n",
				    uri);
	n = vd_calloc(1, sizeof(*n), err);
	if (!n)
		return -ENOMEM;
	pthread_mutex_init(&n->lock, NULL);
	n->h.ops = &nbd_ops;
	n->h.fd = -1;
	n->h.sector_size = 512;
	n->h.path = strdup(uri);
	n->nbd = nbd_create();
	if (!n->h.path || !n->nbd) {
		r = vd_set_error(err, ENOMEM, "%s: cannot create an NBD handle", uri);
		goto fail;
	}
	if (nbd_add_meta_context(n->nbd, LIBNBD_CONTEXT_BASE_ALLOCATION) < 0 ||
	    nbd_connect_uri(n->nbd, uri) < 0) {
		r = vd_set_error(err, nbd_get_errno() ? nbd_get_errno() : EIO, "%s: %s", uri,
				 nbd_get_error() ? nbd_get_error() : "cannot connect");
		goto fail;
	}
	size = nbd_get_size(n->nbd);
	if (size < 0) {
		r = vd_set_error(err, EIO, "%s: the export's size: %s", uri, nbd_get_error());
		goto fail;
	}
	n->size = (uint64_t)size;
	n->h.writable = (flags & VD_HOST_RDWR) != 0;
	if (n->h.writable && nbd_is_read_only(n->nbd) == 1) {
		r = vd_set_error(err, EROFS, "%s: the export is read-only", uri);
		goto fail;
	}
	n->h.no_sync = (flags & VD_HOST_NO_SYNC) != 0;
	n->can_status = nbd_can_meta_context(n->nbd, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
	n->can_zero = nbd_can_zero(n->nbd) == 1;
	n->can_flush = nbd_can_flush(n->nbd) == 1;
	*out = &n->h;
	return 0;
fail:
	n_close(&n->h);
	return r;
}
