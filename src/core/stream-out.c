/*
 * Compressed raw output (convert -O raw -o compression=zstd|xz): a raw
 * image file read front to back (holes read as zeros, which cost almost
 * nothing compressed) into a zstd or xz stream, with one worker thread per
 * core (zstd's nbWorkers, liblzma's multi-threaded encoder, whose blocks
 * also make the result decodable in parallel).  The xz index and the zstd
 * frame header record the size, so vdisk convert reads the result back
 * without --size.
 *
 * SPDX-License-Identifier: MIT
 */
#include "vdisk-int.h"

#include <errno.h>
#include <fcntl.h>
#include <lzma.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#define CHUNK (1u << 20)

static int write_all(int fd, const uint8_t *b, size_t n, const char *name, struct vd_error *err)
{
	while (n) {
		ssize_t w = write(fd, b, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return vd_set_error(err, errno, "%s: write: %s", name, strerror(errno));
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

static int read_some(int fd, uint8_t *b, size_t n, size_t *got, const char *name,
		     struct vd_error *err)
{
	ssize_t r;

	do
		r = read(fd, b, n);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return vd_set_error(err, errno, "%s: read: %s", name, strerror(errno));
	*got = (size_t)r;
	return 0;
}

static int do_zstd(int in, int out, uint64_t size, int level, unsigned threads, const char *name,
		   const volatile int *cancel, uint8_t *ib, uint8_t *ob, struct vd_error *err)
{
	ZSTD_CCtx *c = ZSTD_createCCtx();
	size_t got = 0, z = 0;
	bool eof = false;
	int r = 0;

	if (!c)
		return vd_set_error(err, ENOMEM, "cannot start the zstd encoder");
	ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level ? level : 3);
	ZSTD_CCtx_setParameter(c, ZSTD_c_nbWorkers, (int)threads);
	ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
	ZSTD_CCtx_setPledgedSrcSize(c, size); /* the frame records the size */
	while (r == 0) {
		ZSTD_inBuffer zi;
		if (vd_cancelled(cancel)) {
			r = vd_set_error(err, ECANCELED, "interrupted");
			break;
		}
		if (!eof) {
			r = read_some(in, ib, CHUNK, &got, "the raw image", err);
			if (r < 0)
				break;
			eof = got == 0;
		}
		zi = (ZSTD_inBuffer){ ib, eof ? 0 : got, 0 };
		do {
			ZSTD_outBuffer zo = { ob, CHUNK, 0 };
			z = ZSTD_compressStream2(c, &zo, &zi, eof ? ZSTD_e_end : ZSTD_e_continue);
			if (ZSTD_isError(z)) {
				r = vd_set_error(err, EIO, "%s: zstd: %s", name, ZSTD_getErrorName(z));
				break;
			}
			r = write_all(out, ob, zo.pos, name, err);
		} while (r == 0 && (eof ? z != 0 : zi.pos < zi.size));
		if (eof)
			break;
	}
	ZSTD_freeCCtx(c);
	return r;
}

static int do_xz(int in, int out, int level, unsigned threads, const char *name,
		 const volatile int *cancel, uint8_t *ib, uint8_t *ob, struct vd_error *err)
{
	lzma_stream s = LZMA_STREAM_INIT;
	lzma_mt mt = { 0 };
	lzma_action act = LZMA_RUN;
	int r = 0;

	mt.threads = threads;
	mt.preset = (uint32_t)(level ? level : 6);
	mt.check = LZMA_CHECK_CRC64;
	if (lzma_stream_encoder_mt(&s, &mt) != LZMA_OK)
		return vd_set_error(err, ENOMEM, "cannot start the xz encoder");
	s.next_out = ob;
	s.avail_out = CHUNK;
	for (;;) {
		lzma_ret x;
		if (vd_cancelled(cancel)) {
			r = vd_set_error(err, ECANCELED, "interrupted");
			break;
		}
		if (s.avail_in == 0 && act == LZMA_RUN) {
			size_t got = 0;
			r = read_some(in, ib, CHUNK, &got, "the raw image", err);
			if (r < 0)
				break;
			s.next_in = ib;
			s.avail_in = got;
			if (got == 0)
				act = LZMA_FINISH;
		}
		x = lzma_code(&s, act);
		if (s.avail_out == 0 || x == LZMA_STREAM_END) {
			r = write_all(out, ob, CHUNK - s.avail_out, name, err);
			s.next_out = ob;
			s.avail_out = CHUNK;
			if (r < 0)
				break;
		}
		if (x == LZMA_STREAM_END)
			break;
		if (x != LZMA_OK) {
			r = vd_set_error(err, EIO, "%s: xz encoder error %d", name, (int)x);
			break;
		}
	}
	lzma_end(&s);
	return r;
}

int vd_compress_raw(const char *in_path, int out_fd, const char *out_name, const char *kind,
		    int level, const volatile int *cancel, struct vd_error *err)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned threads = (unsigned)VD_MAX(1L, VD_MIN(ncpu, 16L));
	uint8_t *ib = NULL, *ob = NULL;
	struct stat st;
	int in, r;

	if (strcmp(kind, "zstd") && strcmp(kind, "xz"))
		return vd_set_error(err, EINVAL, "compression must be zstd or xz, not '%s'", kind);
	if (level < 0 || level > (strcmp(kind, "xz") ? 19 : 9))
		return vd_set_error(err, EINVAL, "%s: level %d is out of range (1 to %d)", kind, level,
				    strcmp(kind, "xz") ? 19 : 9);
	in = open(in_path, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return vd_set_error(err, errno, "%s: %s", in_path, strerror(errno));
	ib = vd_malloc(CHUNK, err);
	ob = ib ? vd_malloc(CHUNK, err) : NULL;
	if (!ob)
		r = -ENOMEM;
	else if (fstat(in, &st) < 0)
		r = vd_set_error(err, errno, "%s: %s", in_path, strerror(errno));
	else if (!strcmp(kind, "zstd"))
		r = do_zstd(in, out_fd, (uint64_t)st.st_size, level, threads, out_name, cancel, ib, ob, err);
	else
		r = do_xz(in, out_fd, level, threads, out_name, cancel, ib, ob, err);
	free(ib);
	free(ob);
	close(in);
	return r;
}
