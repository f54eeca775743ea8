/*
 * What every layer of libvdisk shares: errors, on-disk endian helpers,
 * utilities, option strings, the host layer (files, devices, memory) and
 * the in-use guard.  Not installed.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef VDISK_BASE_H
#define VDISK_BASE_H

#include "vdisk.h"

#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <sys/types.h>

#define VD_SECTOR 512u
#define VD_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define VD_MIN(a, b) ((a) < (b) ? (a) : (b))
#define VD_MAX(a, b) ((a) > (b) ? (a) : (b))
#define VD_ALIGN_UP(x, a) ((((x) + (a) - 1) / (a)) * (a))
#define VD_ALIGN_DOWN(x, a) (((x) / (a)) * (a))

/* ---- errors ---- */

/* Set ERR (if non-NULL) and return -ERRNUM (ERRNUM is positive). */
int vd_set_error(struct vd_error *err, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Prefix an existing message: "PREFIX: old". Returns err->code. */
int vd_prefix_error(struct vd_error *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* ---- endian helpers: on-disk structures are decoded only through these ---- */

static inline uint16_t le16dec(const void *p)
{
	const uint8_t *b = p;
	return (uint16_t)(b[0] | (b[1] << 8));
}
static inline uint32_t le32dec(const void *p)
{
	const uint8_t *b = p;
	return (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) |
	       ((uint32_t)b[3] << 24);
}
static inline uint64_t le64dec(const void *p)
{
	const uint8_t *b = p;
	return (uint64_t)le32dec(b) | ((uint64_t)le32dec(b + 4) << 32);
}
static inline void le16enc(void *p, uint16_t v)
{
	uint8_t *b = p;
	b[0] = (uint8_t)v;
	b[1] = (uint8_t)(v >> 8);
}
static inline void le32enc(void *p, uint32_t v)
{
	uint8_t *b = p;
	b[0] = (uint8_t)v;
	b[1] = (uint8_t)(v >> 8);
	b[2] = (uint8_t)(v >> 16);
	b[3] = (uint8_t)(v >> 24);
}
static inline void le64enc(void *p, uint64_t v)
{
	le32enc(p, (uint32_t)v);
	le32enc((uint8_t *)p + 4, (uint32_t)(v >> 32));
}

/* ---- utilities ---- */

bool vd_is_zero(const void *buf, size_t len);
bool vd_is_pow2(uint64_t v);
/* VDISK_TEST_KILL_AFTER=N: SIGKILL just before the (N+1)th change to a
 * host file (src/core/host.c); unset, nothing. */
void vd_crash_point(void);
/* A zero-filled read-only buffer of VD_ZERO_BUF_SIZE bytes. */
#define VD_ZERO_BUF_SIZE (1u << 20)
const void *vd_zero_buf(void);
/* Allocation that reports -ENOMEM through ERR. */
void *vd_malloc(size_t n, struct vd_error *err);
void *vd_calloc(size_t n, size_t m, struct vd_error *err);
/* True once *CANCEL (may be NULL) is set: long loops stop with -ECANCELED. */
static inline bool vd_cancelled(const volatile int *cancel)
{
	return cancel && *cancel;
}
/* Aligned bounce buffer, 4096-aligned. */
void *vd_aligned_alloc(size_t n, struct vd_error *err);

/* Format a 16-byte RFC 4122 UUID as text (37 bytes incl. NUL). */
void vd_uuid_format(const uint8_t u[16], char out[37]);
/* New random (or, if DETERMINISTIC, fixed from SEED) RFC 4122 UUID. */
void vd_uuid_new(uint8_t u[16], bool deterministic, unsigned seed);


/* "key=value,key" option strings. */
struct vd_opt {
	char key[32];
	char value[128];
	bool used;
};
struct vd_opts {
	unsigned n;
	struct vd_opt v[16];
};
int vd_opts_parse(struct vd_opts *o, const char *s, struct vd_error *err);
const char *vd_opts_get(struct vd_opts *o, const char *key);
/* Error if any option was not consumed by the backend. */
int vd_opts_check_used(const struct vd_opts *o, const char *format,
		       struct vd_error *err);
/* The UUID for a new image: option KEY of O if given (validated), else
 * vd_uuid_new(DETERMINISTIC, SEED). */
int vd_uuid_option(uint8_t u[16], struct vd_opts *o, const char *key,
		   bool deterministic, unsigned seed, struct vd_error *err);

/* ---- host layer: regular files, block devices, memory ---- */

struct vd_host;

struct vd_host_ops {
	/* Transfer up to LEN bytes; return bytes done (>= 0) or -errno.
	 * May return fewer bytes than asked (short I/O); 0 means EOF. */
	ssize_t (*pread)(struct vd_host *h, void *buf, size_t len, uint64_t off);
	ssize_t (*pwrite)(struct vd_host *h, const void *buf, size_t len, uint64_t off);
	int (*get_size)(struct vd_host *h, uint64_t *size);
	int (*truncate)(struct vd_host *h, uint64_t size);
	int (*punch_hole)(struct vd_host *h, uint64_t off, uint64_t len);
	int (*zero_range)(struct vd_host *h, uint64_t off, uint64_t len);
	int (*allocate)(struct vd_host *h, uint64_t off, uint64_t len);
	/* Next data at or after OFF: *data_off; -ENXIO when none; -ENOTSUP
	 * when the host cannot tell (treat all as data). */
	int (*seek_data)(struct vd_host *h, uint64_t off, uint64_t *data_off);
	int (*seek_hole)(struct vd_host *h, uint64_t off, uint64_t *hole_off);
	int (*flush)(struct vd_host *h);
	int (*allocated_bytes)(struct vd_host *h, uint64_t *bytes);
	void (*close)(struct vd_host *h);
};

struct vd_host {
	const struct vd_host_ops *ops;
	char *path;
	int fd;
	bool is_blockdev;
	bool writable;
	/* Streaming output: start writeback every VD_WRITEBACK_STEP bytes so
	 * the final flush has little left to wait for. */
	bool stream_writeback;
	uint64_t unsynced;
	/* VD_OPEN_NO_SYNC: flushes are no-ops, no writeback is started */
	bool no_sync;
	/* Block devices: logical sector size (BLKSSZGET), O_DIRECT in use
	 * (transfers must be sector-aligned; misaligned buffers are bounced),
	 * and how vd_host_write_zeroes zeroed: without writing (discard that
	 * guarantees zeros, BLKZEROOUT) or by writing zero buffers. */
	uint32_t sector_size;
	bool direct;
	uint64_t zeroed_fast, zeroed_written;
	/* the in-use guard held while the file is open (NULL: none) */
	struct vd_guard *guard;
	char warning[256]; /* "" or what the guard let through (VD_HOST_FORCE_BUSY) */
	/* -o compression_level given when this host's image was created, for
	 * the writer that fills it (VMDK stream); 0: the default */
	int deflate_level;
	/* written front to back into a pipe (src/core/seqhost.c): a backend
	 * creates no more than its writer needs (a VMDK stream: no body) */
	bool sequential;
};
/* NBD URIs (src/core/nbdhost.c; vd_is_nbd_uri is in vdisk.h):
 * vd_host_open_file opens them with vd_host_open_nbd. */
int vd_host_open_nbd(struct vd_host **out, const char *uri, unsigned flags, struct vd_error *err);
#define VD_WRITEBACK_STEP (32ull << 20)

enum {
	VD_HOST_RDWR = 1u << 0,
	VD_HOST_CREATE = 1u << 1,  /* create; fail if exists */
	VD_HOST_ALLOW_DEV = 1u << 2,
	VD_HOST_EXCL = 1u << 3,    /* block devices: O_EXCL (EBUSY when mounted or in use) */
	VD_HOST_DIRECT = 1u << 4,  /* O_DIRECT */
	VD_HOST_NO_SYNC = 1u << 5, /* see vd_host.no_sync */
	VD_HOST_GUARD = 1u << 6,   /* take the in-use guard (src/core/guard.c) */
	VD_HOST_FORCE_BUSY = 1u << 7, /* guard: a device open by another process is a warning */
};

/* ---- the in-use guard (src/core/guard.c) ----
 * Taken by vd_host_open_file for an existing file: exclusive (VD_HOST_GUARD:
 * flock LOCK_EX, QEMU's OFD lock bytes, and the host checks: mounted, swap,
 * loop devices, holders, other processes) or shared (readers: flock
 * LOCK_SH only).  ST (may be NULL) is the file as the caller opened it: a
 * different file at PATH now gives -EAGAIN.  Non-regular, non-block files
 * (FIFOs, sockets) are refused without blocking.  WARN (may be NULL) gets a
 * warning when VD_GUARD_FORCE_BUSY let a busy device through. */
struct vd_guard;
enum {
	VD_GUARD_EXCL = 1u << 0,
	VD_GUARD_FORCE_BUSY = 1u << 1,
};
struct stat;
int vd_guard_take(const char *path, const struct stat *st, unsigned flags,
		  struct vd_guard **out, char *warn, size_t wlen, struct vd_error *err);
void vd_guard_drop(struct vd_guard *g);
/* True when ST is the guarded file. */
bool vd_guard_same(const struct vd_guard *g, const struct stat *st);

int vd_host_open_file(struct vd_host **out, const char *path, unsigned flags,
		      struct vd_error *err);
void vd_host_close(struct vd_host *h);

/* An image sent front to back into FD (a pipe): src/core/seqhost.c.
 * NAME names it in messages.  vd_host_seq_finish sends what is still held
 * and the zeros after the last write up to the size (0 for any other
 * host). */
int vd_host_open_seq(struct vd_host **out, int fd, const char *name, struct vd_error *err);
int vd_host_seq_finish(struct vd_host *h, struct vd_error *err);

/* Memory host with fault injection, for tests. */
struct vd_mem_faults {
	unsigned fail_read_nth;  /* 1-based: the Nth pread fails (0: never) */
	unsigned fail_write_nth; /* the Nth pwrite fails */
	int fail_errno;          /* errno for the failures (default EIO) */
	size_t short_io;         /* if > 0: each transfer does at most this many bytes */
	uint64_t capacity;       /* if > 0: writes past this fail with ENOSPC */
	/* counters, updated by the host */
	unsigned nreads, nwrites;
};
struct vd_host *vd_host_mem_new(const char *name, uint64_t size);
struct vd_mem_faults *vd_host_mem_faults(struct vd_host *h);
uint8_t *vd_host_mem_data(struct vd_host *h, uint64_t *size);

/* Full transfers with messages naming the file. Short reads past EOF give
 * -EIO "unexpected end of file". */
int vd_host_pread(struct vd_host *h, void *buf, size_t len, uint64_t off,
		  struct vd_error *err);
int vd_host_pwrite(struct vd_host *h, const void *buf, size_t len, uint64_t off,
		   struct vd_error *err);
int vd_host_size(struct vd_host *h, uint64_t *size, struct vd_error *err);
int vd_host_truncate(struct vd_host *h, uint64_t size, struct vd_error *err);
int vd_host_flush(struct vd_host *h, struct vd_error *err);
/* Make [off, off+len) read as zeros; MAY_UNMAP lets it punch holes.
 * Falls back to writing zeros. */
int vd_host_write_zeroes(struct vd_host *h, uint64_t off, uint64_t len,
			 bool may_unmap, struct vd_error *err);
/* EXT describes data at host offset ext->offset of H: if that is a hole in
 * a sparse host file, add VD_BS_ZERO and shorten EXT to the hole; else
 * shorten it to the data run.  Hosts that cannot tell leave EXT alone. */
void vd_host_refine_extent(struct vd_host *h, struct vd_extent *ext);
/* Reserve [off, off+len) (fallocate); -ENOTSUP if impossible. */
int vd_host_allocate(struct vd_host *h, uint64_t off, uint64_t len,
		     struct vd_error *err);


#endif
