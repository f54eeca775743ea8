/*
 * Sequential sources: the decoders (stream-dec.c) and the image around
 * them (stream-src.c) share this.  Not installed.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef VDISK_STREAM_DEC_H
#define VDISK_STREAM_DEC_H

#include "vdisk-int.h"

#include <bzlib.h>
#include <lzma.h>
#include <pthread.h>
#include <zlib.h>
#include <zstd.h>

#define INBUF (1u << 20)
#define NSLOT 4            /* decoded buffers in the ring */

enum kind { K_RAW, K_XZ, K_ZSTD, K_GZIP, K_BZIP2 };
extern const char *const sdec_kind_name[];

struct sdec {
	int fd;
	bool own_fd;
	char *path;
	enum kind kind;
	uint8_t *in;
	size_t in_len, in_pos;   /* buffered input: [in_pos, in_len) unused */
	uint64_t in_total;       /* compressed bytes read from fd */
	bool in_eof, done;
	uint64_t out_off;        /* decompressed bytes produced */
	uint64_t window_left;    /* K_RAW: bytes still to read (UINT64_MAX: all) */
	bool size_known;
	const char *size_from;
	lzma_stream xz;
	ZSTD_DStream *zs;
	size_t zret;             /* last ZSTD_decompressStream result (0: frame end) */
	z_stream gz;
	bz_stream bz;
	bool dec_live;
	uint64_t cpos;           /* bytes handed to the reader */
	/* the decoding thread (compressed kinds) */
	bool th_live;
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv_data, cv_space;
	uint8_t *slot[NSLOT];
	size_t slot_len[NSLOT];
	unsigned ri, wi, nfull;  /* ring: read and write index, slots full */
	bool have_cur;           /* the reader holds slot ri */
	size_t cur_pos;
	bool stop, tend;         /* asked to stop; the thread has ended */
	int trc;                 /* its error, with terr */
	struct vd_error terr;
	int stop_pipe[2];
	bool pipe_live;
};

int sdec_init(struct sdec *d, struct vd_error *err);
/* Stop the decoding thread (if any) and free the decoder. */
void sdec_end(struct sdec *d);
/* Up to LEN decoded bytes into BUF, *GOT < LEN only at the end; D->cpos
 * advances by *GOT.  A compressed kind is decoded by a thread, started
 * on the first call. */
int sdec_pull(struct sdec *d, uint8_t *buf, size_t len, size_t *got, struct vd_error *err);

#endif
