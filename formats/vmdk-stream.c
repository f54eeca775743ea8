/*
 * streamOptimized writer, in the layout ESXi and VirtualBox exports use:
 * compressed grains in guest order, each grain table (with its marker)
 * after its grains, then the grain directory marker and directory, the
 * footer marker and footer (a copy of the header with the real gdOffset),
 * and the end-of-stream marker.  The header at sector 0 says GD_AT_END.
 *
 * Writes must come in increasing guest order (convert does that).  Grains
 * are compressed by worker threads, one per core, and written in order by
 * the calling thread; a ring of NJOBS grains bounds the memory.  Each
 * worker has its own compressor (src/core/deflate.c: libdeflate, else
 * zlib) at the level -o compression_level gave when the file was created.
 *
 * SPDX-License-Identifier: MIT
 */
#include "vmdk.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "../src/core/deflate.h"

#define NJOBS 16
#define MAX_WORKERS 8

enum { JOB_FREE, JOB_PENDING, JOB_WORKING, JOB_DONE };

struct job {
	int state;
	uint64_t grain;
	uint8_t *in;
	uint8_t *out; /* 12-byte grain header + deflate data, padded */
	size_t out_len;
	int zerr; /* 0 or -errno */
};

struct vmdk_stream {
	struct vd_host *h;
	uint64_t gb, grain_sectors, capacity;
	uint32_t gtes, gd_entries;
	uint32_t *gd, *gt, gt_index;
	uint64_t pos;          /* file offset of the next record */
	uint64_t next_grain;   /* writes below this grain are out of order */
	bool filling;
	uint64_t fill_grain;
	struct job jobs[NJOBS];
	unsigned head, tail;   /* submitted jobs: [head, tail) */
	size_t out_cap;
	pthread_t th[MAX_WORKERS];
	unsigned nworkers;
	int level;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool quit, finished;
	/* the first failure, returned again by every later write and finish
	 * (a stream cannot be resumed: a second flush must not say success) */
	struct vd_error failed;
};

/* Remember R (< 0) with the message in ERR; every later call returns it. */
static int fail(struct vmdk_stream *st, int r, struct vd_error *err)
{
	if (r < 0 && !st->failed.code) {
		st->failed.code = r;
		snprintf(st->failed.msg, sizeof(st->failed.msg), "%s",
			 err && err->msg[0] ? err->msg : "streamOptimized writer failed");
	}
	return r;
}

static int replay(const struct vmdk_stream *st, struct vd_error *err)
{
	return vd_set_error(err, -st->failed.code, "%s (an earlier write of the stream failed)",
			    st->failed.msg);
}

static void *worker(void *arg)
{
	struct vmdk_stream *st = arg;
	struct vd_deflater *z = vd_deflater_new(st->level);

	pthread_mutex_lock(&st->lock);
	for (;;) {
		struct job *j = NULL;
		for (unsigned i = st->head; i != st->tail; i++) {
			if (st->jobs[i % NJOBS].state == JOB_PENDING) {
				j = &st->jobs[i % NJOBS];
				break;
			}
		}
		if (!j) {
			if (st->quit)
				break;
			pthread_cond_wait(&st->cond, &st->lock);
			continue;
		}
		j->state = JOB_WORKING;
		pthread_mutex_unlock(&st->lock);
		{
			size_t clen = 0;
			j->zerr = z ? vd_deflate(z, j->in, (size_t)st->gb, j->out + 12, st->out_cap - 12,
						 &clen) : -ENOMEM;
			le64enc(j->out, j->grain * st->grain_sectors);
			le32enc(j->out + 8, (uint32_t)clen);
			j->out_len = VD_ALIGN_UP(12 + (size_t)clen, VD_SECTOR);
			memset(j->out + 12 + clen, 0, j->out_len - 12 - clen);
		}
		pthread_mutex_lock(&st->lock);
		j->state = JOB_DONE;
		pthread_cond_broadcast(&st->cond);
	}
	pthread_mutex_unlock(&st->lock);
	vd_deflater_free(z);
	return NULL;
}

static int write_marker(struct vmdk_stream *st, uint64_t sectors, uint32_t type,
			const void *data, size_t len, struct vd_error *err)
{
	uint8_t m[VD_SECTOR] = { 0 };
	int r;

	le64enc(m, sectors);
	le32enc(m + 12, type);
	r = vd_host_pwrite(st->h, m, VD_SECTOR, st->pos, err);
	if (r < 0)
		return r;
	st->pos += VD_SECTOR;
	if (len) {
		size_t padded = VD_ALIGN_UP(len, VD_SECTOR);
		r = vd_host_pwrite(st->h, data, len, st->pos, err);
		if (r == 0 && padded > len)
			r = vd_host_pwrite(st->h, vd_zero_buf(), padded - len, st->pos + len, err);
		if (r < 0)
			return r;
		st->pos += padded;
	}
	return 0;
}

/* Write grain tables up to (not including) table LIMIT. */
static int emit_tables(struct vmdk_stream *st, uint32_t limit, struct vd_error *err)
{
	size_t bytes = (size_t)st->gtes * 4;
	uint8_t *buf;
	int r = 0;

	if (st->gt_index >= limit)
		return 0;
	buf = vd_malloc(bytes, err);
	if (!buf)
		return -ENOMEM;
	while (st->gt_index < limit && r == 0) {
		for (uint32_t i = 0; i < st->gtes; i++)
			le32enc(buf + 4 * i, st->gt[i]);
		/* the directory points at the table, after its marker */
		st->gd[st->gt_index] = (uint32_t)(st->pos / VD_SECTOR + 1);
		r = write_marker(st, bytes / VD_SECTOR, VMDK_MARKER_GT, buf, bytes, err);
		memset(st->gt, 0, bytes);
		st->gt_index++;
	}
	free(buf);
	return r;
}

/* Wait for the oldest submitted grain and write it. */
static int write_head(struct vmdk_stream *st, struct vd_error *err)
{
	struct job *j = &st->jobs[st->head % NJOBS];
	uint32_t gdi;
	int r;

	pthread_mutex_lock(&st->lock);
	while (j->state != JOB_DONE)
		pthread_cond_wait(&st->cond, &st->lock);
	pthread_mutex_unlock(&st->lock);
	if (j->zerr < 0)
		return vd_set_error(err, -j->zerr, "%s: deflate of grain %llu failed (%s)", st->h->path,
				    (unsigned long long)j->grain, vd_deflate_impl());
	gdi = (uint32_t)(j->grain / st->gtes);
	r = emit_tables(st, gdi, err);
	if (r < 0)
		return r;
	if (st->pos / VD_SECTOR > UINT32_MAX)
		return vd_set_error(err, EFBIG, "%s: stream too large for 32-bit grain offsets", st->h->path);
	st->gt[j->grain % st->gtes] = (uint32_t)(st->pos / VD_SECTOR);
	r = vd_host_pwrite(st->h, j->out, j->out_len, st->pos, err);
	if (r < 0)
		return r;
	st->pos += j->out_len;
	pthread_mutex_lock(&st->lock);
	j->state = JOB_FREE;
	st->head++;
	pthread_mutex_unlock(&st->lock);
	return 0;
}

/* Finish the grain being filled: submit it, or drop it if all zeros. */
static void end_grain(struct vmdk_stream *st)
{
	struct job *j = &st->jobs[st->tail % NJOBS];

	st->filling = false;
	st->next_grain = st->fill_grain + 1;
	if (vd_is_zero(j->in, (size_t)st->gb))
		return;
	pthread_mutex_lock(&st->lock);
	j->grain = st->fill_grain;
	j->state = JOB_PENDING;
	st->tail++;
	pthread_cond_broadcast(&st->cond);
	pthread_mutex_unlock(&st->lock);
}

static int start_grain(struct vmdk_stream *st, uint64_t g, struct vd_error *err)
{
	if (st->tail - st->head == NJOBS) {
		int r = write_head(st, err);
		if (r < 0)
			return r;
	}
	memset(st->jobs[st->tail % NJOBS].in, 0, (size_t)st->gb);
	st->filling = true;
	st->fill_grain = g;
	return 0;
}

int vmdk_stream_write(struct vmdk_stream *st, uint64_t off, const void *buf,
		      size_t len, struct vd_error *err)
{
	uint64_t g = off / st->gb;
	int r;

	if (st->failed.code)
		return replay(st, err);
	if (st->finished)
		return vd_set_error(err, EROFS, "%s: the stream is already complete", st->h->path);
	if (st->filling && g != st->fill_grain) {
		if (g < st->fill_grain)
			goto out_of_order;
		end_grain(st);
	}
	if (!st->filling) {
		if (g < st->next_grain)
			goto out_of_order;
		if (vd_is_zero(buf, len))
			return 0; /* zero grains are left out */
		r = start_grain(st, g, err);
		if (r < 0)
			return fail(st, r, err);
	}
	memcpy(st->jobs[st->tail % NJOBS].in + off % st->gb, buf, len);
	return 0;
out_of_order:
	return vd_set_error(err, ENOTSUP,
			    "%s: streamOptimized images are written front to back; write at offset %llu comes after a later one",
			    st->h->path, (unsigned long long)off);
}

static int finish(struct vmdk_stream *st, struct vd_error *err);

int vmdk_stream_finish(struct vmdk_stream *st, struct vd_error *err)
{
	if (st->failed.code)
		return replay(st, err);
	if (st->finished)
		return 0;
	st->finished = true;
	return fail(st, finish(st, err), err);
}

static int finish(struct vmdk_stream *st, struct vd_error *err)
{
	uint8_t hd[VD_SECTOR];
	size_t gd_bytes = (size_t)st->gd_entries * 4;
	uint8_t *gd;
	uint64_t gd_sector;
	int r;

	if (st->filling)
		end_grain(st);
	while (st->head != st->tail) {
		r = write_head(st, err);
		if (r < 0)
			return r;
	}
	r = emit_tables(st, st->gd_entries, err);
	if (r < 0)
		return r;
	gd = vd_malloc(gd_bytes ? gd_bytes : 1, err);
	if (!gd)
		return -ENOMEM;
	for (uint32_t i = 0; i < st->gd_entries; i++)
		le32enc(gd + 4 * i, st->gd[i]);
	gd_sector = st->pos / VD_SECTOR + 1;
	r = write_marker(st, VD_ALIGN_UP(gd_bytes, VD_SECTOR) / VD_SECTOR, VMDK_MARKER_GD, gd, gd_bytes, err);
	free(gd);
	if (r < 0)
		return r;
	/* footer: the header with the real directory offset */
	r = vd_host_pread(st->h, hd, VD_SECTOR, 0, err);
	if (r < 0)
		return r;
	le64enc(hd + VH_GD, gd_sector);
	r = write_marker(st, 1, VMDK_MARKER_FOOTER, hd, VD_SECTOR, err);
	if (r == 0)
		r = write_marker(st, 0, VMDK_MARKER_EOS, NULL, 0, err);
	if (r == 0)
		r = vd_host_truncate(st->h, st->pos, err);
	return r;
}

int vmdk_stream_begin(struct vmdk_stream **out, struct vd_host *h,
		      struct vmdk_sparse *sp, struct vd_error *err)
{
	struct vmdk_stream *st;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int r = 0;

	*out = NULL;
	if ((uint64_t)sp->gd_entries > (1u << 22))
		return vd_set_error(err, EFBIG, "%s: stream too large (%u grain tables)", h->path,
				    sp->gd_entries);
	st = vd_calloc(1, sizeof(*st), err);
	if (!st)
		return -ENOMEM;
	st->h = h;
	st->grain_sectors = sp->grain;
	st->gb = sp->grain * VD_SECTOR;
	st->capacity = sp->capacity;
	st->gtes = sp->gtes;
	st->gd_entries = sp->gd_entries;
	st->pos = sp->overhead * VD_SECTOR; /* grains start after the header area */
	st->out_cap = VD_ALIGN_UP(vd_deflate_bound((size_t)st->gb) + 12, VD_SECTOR);
	st->level = h->deflate_level;
	st->gd = vd_calloc(st->gd_entries ? st->gd_entries : 1, 4, err);
	st->gt = vd_calloc(st->gtes, 4, err);
	if (!st->gd || !st->gt)
		goto nomem;
	for (unsigned i = 0; i < NJOBS; i++) {
		st->jobs[i].in = vd_malloc((size_t)st->gb, err);
		st->jobs[i].out = vd_malloc(st->out_cap, err);
		if (!st->jobs[i].in || !st->jobs[i].out)
			goto nomem;
	}
	pthread_mutex_init(&st->lock, NULL);
	pthread_cond_init(&st->cond, NULL);
	st->nworkers = (unsigned)VD_MAX(1L, VD_MIN(ncpu, (long)MAX_WORKERS));
	for (unsigned i = 0; i < st->nworkers; i++) {
		r = pthread_create(&st->th[i], NULL, worker, st);
		if (r) {
			st->nworkers = i;
			vmdk_stream_free(st);
			return vd_set_error(err, r, "cannot start compression threads");
		}
	}
	*out = st;
	return 0;
nomem:
	for (unsigned i = 0; i < NJOBS; i++) {
		free(st->jobs[i].in);
		free(st->jobs[i].out);
	}
	free(st->gd);
	free(st->gt);
	free(st);
	return -ENOMEM;
}

void vmdk_stream_free(struct vmdk_stream *st)
{
	if (!st)
		return;
	pthread_mutex_lock(&st->lock);
	st->quit = true;
	/* jobs nobody will write any more: let the workers skip them */
	for (unsigned i = st->head; i != st->tail; i++)
		if (st->jobs[i % NJOBS].state == JOB_PENDING)
			st->jobs[i % NJOBS].state = JOB_DONE;
	pthread_cond_broadcast(&st->cond);
	pthread_mutex_unlock(&st->lock);
	for (unsigned i = 0; i < st->nworkers; i++)
		pthread_join(st->th[i], NULL);
	pthread_mutex_destroy(&st->lock);
	pthread_cond_destroy(&st->cond);
	for (unsigned i = 0; i < NJOBS; i++) {
		free(st->jobs[i].in);
		free(st->jobs[i].out);
	}
	free(st->gd);
	free(st->gt);
	free(st);
}
