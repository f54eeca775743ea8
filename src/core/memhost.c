/*
 * In-memory host with fault injection (fail the Nth read or write, short
 * transfers, ENOSPC past a capacity).  Any backend can run on it, which is
 * how the unit tests exercise error paths without a real disk.
 *
 * SPDX-License-Identifier: MIT
 */
#include "vdisk-int.h"

#include <errno.h>
#include <stdlib.h>

struct mem_host {
	struct vd_host h; /* first: the host layer sees only this */
	uint8_t *data;
	uint64_t size, cap;
	struct vd_mem_faults faults;
};

static struct mem_host *mh(struct vd_host *h)
{
	return (struct mem_host *)h;
}

static int mem_reserve(struct mem_host *m, uint64_t size)
{
	uint64_t ncap;
	uint8_t *p;

	if (size <= m->cap)
		return 0;
	if (size > (1ull << 32))
		return -EFBIG; /* tests only: keep memory bounded */
	ncap = VD_MAX(size, m->cap * 2);
	p = realloc(m->data, ncap);
	if (!p)
		return -ENOMEM;
	memset(p + m->cap, 0, ncap - m->cap);
	m->data = p;
	m->cap = ncap;
	return 0;
}

static size_t mem_clip(struct mem_host *m, size_t len)
{
	if (m->faults.short_io && len > m->faults.short_io)
		return m->faults.short_io;
	return len;
}

static ssize_t mem_pread(struct vd_host *h, void *buf, size_t len, uint64_t off)
{
	struct mem_host *m = mh(h);

	m->faults.nreads++;
	if (m->faults.fail_read_nth && m->faults.nreads == m->faults.fail_read_nth)
		return -(m->faults.fail_errno ? m->faults.fail_errno : EIO);
	if (off >= m->size)
		return 0;
	len = mem_clip(m, (size_t)VD_MIN((uint64_t)len, m->size - off));
	memcpy(buf, m->data + off, len);
	return (ssize_t)len;
}

static ssize_t mem_pwrite(struct vd_host *h, const void *buf, size_t len, uint64_t off)
{
	struct mem_host *m = mh(h);
	int r;

	m->faults.nwrites++;
	if (m->faults.fail_write_nth && m->faults.nwrites == m->faults.fail_write_nth)
		return -(m->faults.fail_errno ? m->faults.fail_errno : EIO);
	if (m->faults.capacity) {
		if (off >= m->faults.capacity)
			return -ENOSPC;
		len = (size_t)VD_MIN((uint64_t)len, m->faults.capacity - off);
	}
	len = mem_clip(m, len);
	r = mem_reserve(m, off + len);
	if (r < 0)
		return r;
	memcpy(m->data + off, buf, len);
	if (off + len > m->size)
		m->size = off + len;
	return (ssize_t)len;
}

static int mem_get_size(struct vd_host *h, uint64_t *size)
{
	*size = mh(h)->size;
	return 0;
}

static int mem_truncate(struct vd_host *h, uint64_t size)
{
	struct mem_host *m = mh(h);
	int r;

	if (m->faults.capacity && size > m->faults.capacity)
		return -ENOSPC;
	r = mem_reserve(m, size);
	if (r < 0)
		return r;
	if (size < m->size)
		memset(m->data + size, 0, m->size - size);
	m->size = size;
	return 0;
}

static int mem_zero_range(struct vd_host *h, uint64_t off, uint64_t len)
{
	struct mem_host *m = mh(h);

	if (off >= m->size)
		return 0;
	memset(m->data + off, 0, (size_t)VD_MIN(len, m->size - off));
	return 0;
}

static void mem_close(struct vd_host *h)
{
	struct mem_host *m = mh(h);
	free(m->data);
	free(h->path);
	free(m);
}

static const struct vd_host_ops mem_ops = {
	.pread = mem_pread,
	.pwrite = mem_pwrite,
	.get_size = mem_get_size,
	.truncate = mem_truncate,
	.punch_hole = mem_zero_range,
	.zero_range = mem_zero_range,
	.close = mem_close,
};

struct vd_host *vd_host_mem_new(const char *name, uint64_t size)
{
	struct mem_host *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->h.ops = &mem_ops;
	m->h.fd = -1;
	m->h.writable = true;
	m->h.path = strdup(name ? name : "memory");
	if (!m->h.path || mem_reserve(m, size) < 0) {
		free(m->h.path);
		free(m);
		return NULL;
	}
	m->size = size;
	return &m->h;
}

struct vd_mem_faults *vd_host_mem_faults(struct vd_host *h)
{
	return h->ops == &mem_ops ? &mh(h)->faults : NULL;
}

uint8_t *vd_host_mem_data(struct vd_host *h, uint64_t *size)
{
	if (h->ops != &mem_ops)
		return NULL;
	if (size)
		*size = mh(h)->size;
	return mh(h)->data;
}
