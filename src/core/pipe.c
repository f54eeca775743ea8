/*
 * The reader/writer hand-over used by convert and create --script: a
 * bounded queue of items and a pool of equal buffers, shared by one reader
 * thread and the writing thread, and vd_pipe_run, which drives both.  See
 * vd_pipe in vdisk-int.h.
 *
 * SPDX-License-Identifier: MIT
 */
#include "vdisk-int.h"

#include <errno.h>
#include <stdlib.h>

int vd_pipe_init(struct vd_pipe *p, size_t buf_size, struct vd_error *err)
{
	memset(p, 0, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	for (unsigned i = 0; i < VD_PIPE_DEPTH; i++) {
		p->free_bufs[i] = vd_aligned_alloc(buf_size, err);
		if (!p->free_bufs[i]) {
			vd_pipe_destroy(p);
			return -ENOMEM;
		}
		p->nfree++;
	}
	return 0;
}

void vd_pipe_destroy(struct vd_pipe *p)
{
	/* buffers still in flight were returned before the END item */
	for (unsigned i = 0; i < p->nfree; i++)
		free(p->free_bufs[i]);
	p->nfree = 0;
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
}

uint8_t *vd_pipe_get_buf(struct vd_pipe *p)
{
	uint8_t *b = NULL;

	pthread_mutex_lock(&p->lock);
	while (p->nfree == 0 && !p->stop)
		pthread_cond_wait(&p->cond, &p->lock);
	if (!p->stop)
		b = p->free_bufs[--p->nfree];
	pthread_mutex_unlock(&p->lock);
	return b;
}

void vd_pipe_put_buf(struct vd_pipe *p, uint8_t *b)
{
	if (!b)
		return;
	pthread_mutex_lock(&p->lock);
	p->free_bufs[p->nfree++] = b;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

int vd_pipe_push(struct vd_pipe *p, struct vd_pipe_item it)
{
	bool always = it.kind == VD_PIPE_END; /* the writer waits for END */

	pthread_mutex_lock(&p->lock);
	while (p->count == VD_PIPE_DEPTH && (always || !p->stop))
		pthread_cond_wait(&p->cond, &p->lock);
	if (p->stop && !always) {
		if (it.buf) /* the item is dropped: its buffer goes back */
			p->free_bufs[p->nfree++] = it.buf;
		pthread_cond_broadcast(&p->cond);
		pthread_mutex_unlock(&p->lock);
		return -ECANCELED;
	}
	p->q[(p->head + p->count) % VD_PIPE_DEPTH] = it;
	p->count++;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

struct vd_pipe_item vd_pipe_pop(struct vd_pipe *p)
{
	struct vd_pipe_item it;

	pthread_mutex_lock(&p->lock);
	while (p->count == 0)
		pthread_cond_wait(&p->cond, &p->lock);
	it = p->q[p->head];
	p->head = (p->head + 1) % VD_PIPE_DEPTH;
	p->count--;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return it;
}

void vd_pipe_stop(struct vd_pipe *p)
{
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

static void *reader_main(void *arg)
{
	struct vd_pipe *p = arg;

	p->rerr = p->produce(p->produce_ctx, &p->rerr_obj);
	vd_pipe_push(p, (struct vd_pipe_item){ .kind = VD_PIPE_END });
	return NULL;
}

int vd_pipe_run(struct vd_pipe *p, int (*produce)(void *ctx, struct vd_error *err),
		void *produce_ctx,
		int (*consume)(void *ctx, const struct vd_pipe_item *it, struct vd_error *err),
		void *consume_ctx, const volatile int *cancel, struct vd_error *err)
{
	pthread_t th;
	int r, wr = 0;

	p->produce = produce;
	p->produce_ctx = produce_ctx;
	r = pthread_create(&th, NULL, reader_main, p);
	if (r)
		return vd_set_error(err, r, "cannot start the reader thread");
	for (;;) {
		struct vd_pipe_item it = vd_pipe_pop(p);

		if (it.kind == VD_PIPE_END)
			break;
		if (wr == 0 && vd_cancelled(cancel))
			wr = vd_set_error(err, ECANCELED, "interrupted");
		if (wr == 0)
			wr = consume(consume_ctx, &it, err);
		vd_pipe_put_buf(p, it.buf);
		if (wr < 0)
			vd_pipe_stop(p); /* and drain, so the reader can post END */
	}
	pthread_join(th, NULL);
	if (wr < 0)
		return wr;
	if (p->rerr < 0 && err)
		*err = p->rerr_obj;
	return p->rerr < 0 ? p->rerr : 0;
}
