/*
 * Sequential sources, the decoding half: xz (liblzma, multi-threaded),
 * zstd, gzip (zlib), bzip2 and plain bytes, read from a file descriptor
 * into the caller's buffers, errors naming the compressed byte where the
 * data ends early or is corrupt.
 *
 * A compressed source is decoded by a thread of its own into a ring of
 * buffers, one step ahead of the reader: the decoder and what the caller
 * does with the data (find zeros, write the output) run at the same time,
 * as "xz -dc | consumer" would on two cores (22% faster onto a disk file).
 * The thread waits on a pipe as well as on the input, so closing the
 * source never hangs on a pipe that sends nothing.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "stream-dec.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#define SLOT (4u << 20)    /* bytes in each buffer of the ring */

const char *const sdec_kind_name[] = { "raw", "xz", "zstd", "gzip", "bzip2" };

static uint64_t consumed(const struct sdec *d)
{
	return d->in_total - (d->in_len - d->in_pos);
}

/* Read more input into D->in when it is used up (at the end: in_eof). */
static int sdec_fill(struct sdec *d, struct vd_error *err)
{
	ssize_t n;

	if (d->in_pos < d->in_len || d->in_eof)
		return 0;
	d->in_pos = d->in_len = 0;
	if (d->th_live) {
		/* a pipe may send nothing for ever: wait for it or for close */
		struct pollfd pf[2] = { { d->fd, POLLIN, 0 }, { d->stop_pipe[0], POLLIN, 0 } };
		while (poll(pf, 2, -1) < 0)
			if (errno != EINTR)
				return vd_set_error(err, errno, "%s: poll: %s", d->path, strerror(errno));
		if (pf[1].revents)
			return vd_set_error(err, ECANCELED, "%s: closed", d->path);
	}
	do
		n = read(d->fd, d->in, INBUF);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return vd_set_error(err, errno, "%s: read at compressed byte %llu: %s", d->path,
				    (unsigned long long)d->in_total, strerror(errno));
	if (n == 0)
		d->in_eof = true;
	d->in_len = (size_t)n;
	d->in_total += (uint64_t)n;
	return 0;
}

static int corrupt(struct sdec *d, const char *what, struct vd_error *err)
{
	return vd_set_error(err, EIO, "%s: %s data is corrupt (%s) at compressed byte %llu (decompressed %llu bytes)",
			    d->path, sdec_kind_name[d->kind], what, (unsigned long long)consumed(d),
			    (unsigned long long)d->out_off);
}

static int truncated(struct sdec *d, struct vd_error *err)
{
	return vd_set_error(err, EIO, "%s: %s data ends early at compressed byte %llu (decompressed %llu bytes; truncated?)",
			    d->path, sdec_kind_name[d->kind], (unsigned long long)d->in_total,
			    (unsigned long long)d->out_off);
}

int sdec_init(struct sdec *d, struct vd_error *err)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	switch (d->kind) {
	case K_XZ: {
		lzma_mt mt = { 0 };
		lzma_stream init = LZMA_STREAM_INIT;
		d->xz = init;
		mt.flags = LZMA_CONCATENATED;
		mt.threads = (uint32_t)VD_MAX(1L, VD_MIN(ncpu, 16L));
		mt.memlimit_threading = 1ull << 30;
		mt.memlimit_stop = UINT64_MAX;
		if (lzma_stream_decoder_mt(&d->xz, &mt) != LZMA_OK)
			return vd_set_error(err, ENOMEM, "%s: cannot start the xz decoder", d->path);
		break;
	}
	case K_ZSTD:
		d->zs = ZSTD_createDStream();
		if (!d->zs || ZSTD_isError(ZSTD_initDStream(d->zs)))
			return vd_set_error(err, ENOMEM, "%s: cannot start the zstd decoder", d->path);
		break;
	case K_GZIP:
		memset(&d->gz, 0, sizeof(d->gz));
		if (inflateInit2(&d->gz, 15 + 16) != Z_OK)
			return vd_set_error(err, ENOMEM, "%s: cannot start the gzip decoder", d->path);
		break;
	case K_BZIP2:
		memset(&d->bz, 0, sizeof(d->bz));
		if (BZ2_bzDecompressInit(&d->bz, 0, 0) != BZ_OK)
			return vd_set_error(err, ENOMEM, "%s: cannot start the bzip2 decoder", d->path);
		break;
	case K_RAW:
		break;
	}
	d->dec_live = true;
	return 0;
}

static void dec_free(struct sdec *d)
{
	if (!d->dec_live)
		return;
	switch (d->kind) {
	case K_XZ: lzma_end(&d->xz); break;
	case K_ZSTD: ZSTD_freeDStream(d->zs); d->zs = NULL; break;
	case K_GZIP: inflateEnd(&d->gz); break;
	case K_BZIP2: BZ2_bzDecompressEnd(&d->bz); break;
	case K_RAW: break;
	}
	d->dec_live = false;
}

/* Decode up to LEN bytes into BUF; *GOT < LEN only at the end. */
static int dec_read(struct sdec *d, uint8_t *buf, size_t len, size_t *got, struct vd_error *err)
{
	size_t done = 0;
	int r = 0;

	while (done < len && !d->done) {
		size_t avail, before;
		const char *why = NULL;
		r = sdec_fill(d, err);
		if (r < 0)
			return r;
		r = 0;
		avail = d->in_len - d->in_pos;
		before = done;
		switch (d->kind) {
		case K_RAW: {
			size_t n = (size_t)VD_MIN((uint64_t)VD_MIN(avail, len - done), d->window_left);
			memcpy(buf + done, d->in + d->in_pos, n);
			d->in_pos += n;
			done += n;
			if (d->window_left != UINT64_MAX)
				d->window_left -= n;
			if (d->window_left == 0 || (d->in_eof && avail == 0))
				d->done = true;
			break;
		}
		case K_XZ: {
			lzma_ret x;
			d->xz.next_in = d->in + d->in_pos;
			d->xz.avail_in = avail;
			d->xz.next_out = buf + done;
			d->xz.avail_out = len - done;
			x = lzma_code(&d->xz, d->in_eof ? LZMA_FINISH : LZMA_RUN);
			d->in_pos = d->in_len - d->xz.avail_in;
			done = len - d->xz.avail_out;
			if (x == LZMA_STREAM_END)
				d->done = true;
			else if (x == LZMA_BUF_ERROR && d->in_eof)
				r = 1;
			else if (x == LZMA_MEM_ERROR || x == LZMA_MEMLIMIT_ERROR)
				return vd_set_error(err, ENOMEM, "%s: xz decoder out of memory", d->path);
			else if (x != LZMA_OK)
				r = 2;
			if (r == 2)
				why = x == LZMA_FORMAT_ERROR ? "not an xz stream" :
				      x == LZMA_OPTIONS_ERROR ? "unsupported options" : "bad block or check";
			break;
		}
		case K_ZSTD: {
			ZSTD_inBuffer zin = { d->in + d->in_pos, avail, 0 };
			ZSTD_outBuffer zout = { buf + done, len - done, 0 };
			if (avail == 0 && d->in_eof) {
				if (d->zret != 0)
					r = 1; /* a frame begun, not ended */
				else
					d->done = true;
				break;
			}
			d->zret = ZSTD_decompressStream(d->zs, &zout, &zin);
			d->in_pos += zin.pos;
			done += zout.pos;
			if (ZSTD_isError(d->zret)) {
				r = 2;
				why = ZSTD_getErrorName(d->zret);
			}
			break;
		}
		case K_GZIP: {
			int z;
			if (avail == 0 && d->in_eof) {
				if (d->gz.total_in || d->gz.total_out)
					r = 1; /* a member begun, not ended */
				else
					d->done = true;
				break;
			}
			d->gz.next_in = d->in + d->in_pos;
			d->gz.avail_in = (uInt)avail;
			d->gz.next_out = buf + done;
			d->gz.avail_out = (uInt)(len - done);
			z = inflate(&d->gz, Z_NO_FLUSH);
			d->in_pos = d->in_len - d->gz.avail_in;
			done = len - d->gz.avail_out;
			if (z == Z_STREAM_END)
				inflateReset(&d->gz); /* another member may follow */
			else if (z == Z_DATA_ERROR || z == Z_NEED_DICT) {
				r = 2;
				why = d->gz.msg ? d->gz.msg : "bad data";
			}
			else if (z == Z_MEM_ERROR)
				return vd_set_error(err, ENOMEM, "%s: gzip decoder out of memory", d->path);
			break;
		}
		case K_BZIP2: {
			int z;
			bool begun = d->bz.total_in_lo32 || d->bz.total_in_hi32;
			if (avail == 0 && d->in_eof) {
				if (begun)
					r = 1;
				else
					d->done = true;
				break;
			}
			d->bz.next_in = (char *)d->in + d->in_pos;
			d->bz.avail_in = (unsigned)avail;
			d->bz.next_out = (char *)buf + done;
			d->bz.avail_out = (unsigned)(len - done);
			z = BZ2_bzDecompress(&d->bz);
			d->in_pos = d->in_len - d->bz.avail_in;
			done = len - d->bz.avail_out;
			if (z == BZ_STREAM_END) {
				/* another stream may follow (pbzip2, cat a.bz2 b.bz2) */
				BZ2_bzDecompressEnd(&d->bz);
				memset(&d->bz, 0, sizeof(d->bz));
				if (BZ2_bzDecompressInit(&d->bz, 0, 0) != BZ_OK) {
					d->dec_live = false;
					return vd_set_error(err, ENOMEM, "%s: cannot restart the bzip2 decoder", d->path);
				}
			} else if (z == BZ_MEM_ERROR) {
				return vd_set_error(err, ENOMEM, "%s: bzip2 decoder out of memory", d->path);
			} else if (z != BZ_OK) {
				r = 2;
				why = z == BZ_DATA_ERROR_MAGIC ? "not a bzip2 stream" : "bad block or CRC";
			}
			break;
		}
		}
		d->out_off += done - before;
		if (r == 1)
			return truncated(d, err);
		if (r == 2)
			return corrupt(d, why, err);
	}
	*got = done;
	return 0;
}

/* ---- the decoding thread ---- */

static void *producer(void *arg)
{
	struct sdec *d = arg;

	for (;;) {
		size_t got = 0;
		unsigned w;
		int r;

		pthread_mutex_lock(&d->mu);
		while (d->nfull == NSLOT && !d->stop)
			pthread_cond_wait(&d->cv_space, &d->mu);
		w = d->wi;
		if (d->stop) {
			pthread_mutex_unlock(&d->mu);
			break;
		}
		pthread_mutex_unlock(&d->mu);
		r = dec_read(d, d->slot[w], SLOT, &got, &d->terr);
		pthread_mutex_lock(&d->mu);
		d->slot_len[w] = r < 0 ? 0 : got;
		d->wi = (w + 1) % NSLOT;
		d->nfull++;
		if (r < 0)
			d->trc = r;
		if (r < 0 || got < SLOT)
			d->tend = true;
		pthread_cond_signal(&d->cv_data);
		r = d->tend;
		pthread_mutex_unlock(&d->mu);
		if (r)
			break;
	}
	return NULL;
}

static int th_start(struct sdec *d, struct vd_error *err)
{
	int e;

	for (unsigned i = 0; i < NSLOT; i++) {
		d->slot[i] = vd_malloc(SLOT, err);
		if (!d->slot[i])
			return -ENOMEM;
	}
	if (!d->pipe_live && pipe2(d->stop_pipe, O_CLOEXEC) < 0)
		return vd_set_error(err, errno, "%s: pipe: %s", d->path, strerror(errno));
	d->pipe_live = true;
	pthread_mutex_init(&d->mu, NULL);
	pthread_cond_init(&d->cv_data, NULL);
	pthread_cond_init(&d->cv_space, NULL);
	d->th_live = true;
	e = pthread_create(&d->th, NULL, producer, d);
	if (e) {
		d->th_live = false;
		pthread_mutex_destroy(&d->mu);
		pthread_cond_destroy(&d->cv_data);
		pthread_cond_destroy(&d->cv_space);
		return vd_set_error(err, e, "%s: cannot start the decoding thread: %s", d->path, strerror(e));
	}
	return 0;
}

static void th_stop(struct sdec *d)
{
	if (d->th_live) {
		pthread_mutex_lock(&d->mu);
		d->stop = true;
		pthread_cond_broadcast(&d->cv_space);
		pthread_mutex_unlock(&d->mu);
		if (write(d->stop_pipe[1], "x", 1) < 0) {
			/* the pipe is empty and open: this cannot fail */
		}
		pthread_join(d->th, NULL);
		pthread_mutex_destroy(&d->mu);
		pthread_cond_destroy(&d->cv_data);
		pthread_cond_destroy(&d->cv_space);
		d->th_live = false;
	}
	if (d->pipe_live) {
		close(d->stop_pipe[0]);
		close(d->stop_pipe[1]);
		d->pipe_live = false;
	}
	for (unsigned i = 0; i < NSLOT; i++) {
		free(d->slot[i]);
		d->slot[i] = NULL;
	}
}

/* What the reader gets: up to LEN decoded bytes, *GOT < LEN only at the
 * end; from the ring for a compressed source, else decoded here. */
int sdec_pull(struct sdec *d, uint8_t *buf, size_t len, size_t *got, struct vd_error *err)
{
	size_t done = 0;
	int r;

	if (d->kind == K_RAW) {
		r = dec_read(d, buf, len, got, err);
		if (r == 0)
			d->cpos += *got;
		return r;
	}
	if (!d->th_live && !d->tend) {
		r = th_start(d, err);
		if (r < 0)
			return r;
	}
	while (done < len) {
		if (d->have_cur && d->cur_pos < d->slot_len[d->ri]) {
			size_t n = VD_MIN(len - done, d->slot_len[d->ri] - d->cur_pos);
			memcpy(buf + done, d->slot[d->ri] + d->cur_pos, n);
			d->cur_pos += n;
			done += n;
			continue;
		}
		pthread_mutex_lock(&d->mu);
		if (d->have_cur) {
			d->ri = (d->ri + 1) % NSLOT;
			d->nfull--;
			d->have_cur = false;
			pthread_cond_signal(&d->cv_space);
		}
		while (d->nfull == 0 && !d->tend)
			pthread_cond_wait(&d->cv_data, &d->mu);
		if (d->nfull == 0 || d->slot_len[d->ri] == 0) {
			/* the end, or the thread's error once the data before it is read */
			r = d->trc;
			pthread_mutex_unlock(&d->mu);
			if (r < 0) {
				*err = d->terr;
				return r;
			}
			break;
		}
		d->have_cur = true;
		d->cur_pos = 0;
		pthread_mutex_unlock(&d->mu);
	}
	d->cpos += done;
	*got = done;
	return 0;
}

void sdec_end(struct sdec *d)
{
	th_stop(d);
	dec_free(d);
}
