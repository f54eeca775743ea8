/*
 * Internal contract between the block-I/O layer, the host layer and the
 * format backends.  Not installed.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef VDISK_INT_H
#define VDISK_INT_H

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
/* A zero-filled read-only buffer of VD_ZERO_BUF_SIZE bytes. */
#define VD_ZERO_BUF_SIZE (1u << 20)
const void *vd_zero_buf(void);
/* Allocation that reports -ENOMEM through ERR. */
void *vd_malloc(size_t n, struct vd_error *err);
void *vd_calloc(size_t n, size_t m, struct vd_error *err);
/* Aligned bounce buffer, 4096-aligned. */
void *vd_aligned_alloc(size_t n, struct vd_error *err);

/* ---- reader/writer hand-over (src/core/pipe.c) ----
 * One reader thread fills buffers from a pool and pushes items in guest
 * order; the writing thread pops them, writes, and returns the buffers.
 * When the writer fails it calls vd_pipe_stop: from then on the reader's
 * get_buf returns NULL and push returns -ECANCELED (the item's buffer goes
 * back to the pool), except for the END item, which is always delivered
 * so the writer can drain the queue and join the reader. */
#define VD_PIPE_DEPTH 8
enum { VD_PIPE_END, VD_PIPE_DATA, VD_PIPE_ZERO, VD_PIPE_SECTOR };

struct vd_pipe_item {
	int kind;          /* VD_PIPE_* */
	uint64_t off, len; /* where it goes in the target */
	uint64_t aux;      /* the user's: source offset, progress bytes */
	unsigned tag;      /* the user's: partition index */
	uint8_t *buf;      /* from the pool, or NULL */
};

struct vd_pipe {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct vd_pipe_item q[VD_PIPE_DEPTH];
	unsigned head, count;
	uint8_t *free_bufs[VD_PIPE_DEPTH];
	unsigned nfree;
	bool stop;
	/* the reader thread (vd_pipe_run) */
	int (*produce)(void *ctx, struct vd_error *err);
	void *produce_ctx;
	int rerr;
	struct vd_error rerr_obj;
};

/* VD_PIPE_DEPTH buffers of BUF_SIZE bytes (4096-aligned). */
int vd_pipe_init(struct vd_pipe *p, size_t buf_size, struct vd_error *err);
/* Frees the pool: every buffer must be back (the writer returns each one
 * it pops, the reader the ones it did not push). */
void vd_pipe_destroy(struct vd_pipe *p);
uint8_t *vd_pipe_get_buf(struct vd_pipe *p);  /* NULL once stopped */
void vd_pipe_put_buf(struct vd_pipe *p, uint8_t *buf); /* NULL: no-op */
int vd_pipe_push(struct vd_pipe *p, struct vd_pipe_item it);
struct vd_pipe_item vd_pipe_pop(struct vd_pipe *p);
void vd_pipe_stop(struct vd_pipe *p);
/* Run PRODUCE (pushing items, END excluded) in a reader thread while this
 * thread pops the items and hands each to CONSUME, returning every buffer
 * to the pool.  From the first error (CONSUME's, or *CANCEL set:
 * -ECANCELED) on, the reader is stopped and the rest drained.  Returns the
 * writer's error first, else the reader's (copied into ERR), else 0. */
int vd_pipe_run(struct vd_pipe *p, int (*produce)(void *ctx, struct vd_error *err),
		void *produce_ctx,
		int (*consume)(void *ctx, const struct vd_pipe_item *it, struct vd_error *err),
		void *consume_ctx, const volatile int *cancel, struct vd_error *err);

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
};
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

/* ---- backend contract ---- */

struct vd_driver;

struct vd_image {
	const struct vd_driver *drv;
	struct vd_host *host;  /* the image file */
	void *priv;            /* backend state */
	uint64_t size;         /* guest size in bytes */
	uint32_t align;        /* request alignment (power of two, >= 1) */
	uint32_t split;        /* requests never cross multiples of this (0: none) */
	unsigned flags;        /* VD_OPEN_* */
	bool writable;
	/* Store zero buffers as data (convert -S 0): backends must not turn
	 * writes of zeros into unallocated or zero blocks. */
	bool allocate_zero_writes;
	bool finished;         /* vd_finish was called */
	/* Chains (src/core/chain.c).  Set by the backend's open: the layer
	 * links to a parent (has_parent), the name it stores for it
	 * (parent_hint, malloc'd, freed by the core; NULL: only an identity),
	 * and the unit a partial write into a block this layer does not hold
	 * is widened to, filled from the parent (cow_unit, 0: img->split). */
	bool has_parent;
	char *parent_hint;
	uint32_t cow_unit;
	/* Set by the core: the parent layer (NULL: none or not opened), and
	 * with VD_OPEN_CHECK why a linked parent was not opened. */
	struct vd_image *backing;
	char backing_problem[512];
};

struct vd_create_params {
	uint64_t size;
	struct vd_opts *opts;
	unsigned flags; /* VD_CREATE_* */
	const volatile int *cancel; /* may be NULL */
	struct vd_tmp *tmp;         /* NULL: single-file images only */
	/* Typed requests from operations; the options win over them. */
	const struct vd_identity *identity; /* NULL: new identifiers, default
					     * hardware description; else honour
					     * the fields it sets (see struct vd_identity) */
	uint32_t block_size;        /* allocation unit (0: the format's default) */
	/* A child (vd_create_child): its parent, open read-only, and the
	 * name to store for it (relative to the child's folder); the
	 * backend links to the parent's identity. */
	struct vd_image *parent;
	const char *parent_name;
};

static inline bool vd_cancelled(const volatile int *cancel)
{
	return cancel && *cancel;
}

struct vd_driver {
	const char *name;
	/* Required. Score 0..100 for the first bytes BUF (LEN may be short). */
	int (*probe)(const uint8_t *buf, size_t len, uint64_t file_size);
	/* Required. Set img->size, align, split, priv. */
	int (*open)(struct vd_image *img, struct vd_error *err);
	void (*close)(struct vd_image *img);
	/* Required. Requests are within bounds, aligned to img->align and do
	 * not cross img->split boundaries. */
	int (*read)(struct vd_image *img, uint64_t off, void *buf, size_t len,
		    struct vd_error *err);
	/* Optional from here on. */
	int (*write)(struct vd_image *img, uint64_t off, const void *buf,
		     size_t len, struct vd_error *err);
	/* May return -ENOTSUP: the layer then writes zero buffers. */
	int (*write_zeroes)(struct vd_image *img, uint64_t off, uint64_t len,
			    unsigned flags, struct vd_error *err);
	int (*discard)(struct vd_image *img, uint64_t off, uint64_t len,
		       struct vd_error *err);
	/* Fill EXT starting at OFF, length <= LEN. Missing: all data. */
	int (*block_status)(struct vd_image *img, uint64_t off, uint64_t len,
			    struct vd_extent *ext, struct vd_error *err);
	int (*flush)(struct vd_image *img, struct vd_error *err);
	/* Write-once formats: complete the image (vd_finish, vd_close); no
	 * writes reach the backend afterwards.  flush must not do it. */
	int (*finish)(struct vd_image *img, struct vd_error *err);
	/* Write a new, empty image of p->size into the empty host H. */
	int (*create)(struct vd_host *h, const struct vd_create_params *p,
		      struct vd_error *err);
	/* What other tools will not read in an image created with O: a
	 * sentence in BUF (LEN > 0, BUF[0] is 0 on entry), or nothing. */
	void (*create_warning)(struct vd_opts *o, char *buf, size_t len);
	int (*info)(struct vd_image *img, struct vd_info *info,
		    struct vd_error *err);
	int (*check)(struct vd_image *img, bool repair, struct vd_check *res,
		     struct vd_error *err);
	/* Typed description of this layer only (src/core/describe.c fills
	 * the defaults first: RAW, one IMAGE file, zero_init as below; the
	 * backend overwrites what differs).  Missing: those defaults. */
	int (*describe)(struct vd_image *img, struct vd_describe *d,
			struct vd_error *err);
	/* Fill ID (zeroed by the core).  Missing: no identity. */
	int (*identity)(struct vd_image *img, struct vd_identity *id,
			struct vd_error *err);
	/* VD_ID_* fields the images store and create honours. */
	unsigned identity_fields;
	/* True when a freshly created image of this format reads as zeros. */
	bool zero_init;
	/* Discards in a child layer leave blocks that read as zeros, never
	 * the parent's data (VDI zero blocks).  False: the core does not
	 * pass discards of a child to the backend. */
	bool discard_hides_parent;
	/* create honours vd_create_params.parent */
	bool creates_children;
	/* Store PARENT's identity (and NAME where the format stores one)
	 * as this child's link (commit --keep, rebase).  In place, one
	 * metadata write; IMG is opened RDWR (with or without its chain). */
	int (*set_parent)(struct vd_image *img, const struct vd_identity *parent,
			  const char *name, struct vd_error *err);
	/* A new modification identity (VDI uuidModify, VMDK CID), so that
	 * children made before this change see that their parent changed. */
	int (*new_modification)(struct vd_image *img, struct vd_error *err);
};

/* ---- chains (src/core/chain.c) ---- */
/* Fill BUF with what IMG's parent holds at [OFF, OFF+LEN) (zeros past the
 * parent's end, or when IMG has no parent): backends call it for ranges
 * their layer does not hold. */
int vd_backing_read(struct vd_image *img, uint64_t off, void *buf, size_t len,
		    struct vd_error *err);
/* The location of the medium with UUID in the media registry TEXT (a
 * .vbox file or VirtualBox.xml named FILE: relative locations are resolved
 * against its folder), bounded by TEXT's length. */
bool vd_registry_find(const char *text, const char *file, const char *uuid, char *out,
		      size_t len);
/* After the backend's open: find, open and verify IMG's parent chain. */
int vd_chain_attach(struct vd_image *img, struct vd_error *err);
/* Resolve an extent of IMG's layer that it does not hold (no
 * VD_BS_ALLOCATED) through the chain; EXT is clipped. */
int vd_chain_status(struct vd_image *img, struct vd_extent *ext, struct vd_error *err);

/* Describe helpers for backends (src/core/describe.c): append a file entry
 * (PATH copied, may be NULL). */
int vd_describe_add(struct vd_describe *d, const char *path, int role, int access,
		    uint64_t guest_off, uint64_t guest_len, uint64_t file_off,
		    bool block_device, struct vd_error *err);
/* The UUID for a new image: option KEY of O if given, else GIVEN (text from
 * an identity) if it is set and not the nil UUID, else vd_uuid_new. */
int vd_uuid_choose(uint8_t u[16], struct vd_opts *o, const char *key, const char *given,
		   bool deterministic, unsigned seed, struct vd_error *err);

/* The static registry (src/core/registry.c). */
extern const struct vd_driver *const vd_drivers[];
const struct vd_driver *vd_driver_find(const char *name);

/* Foreign formats (src/core/foreign.c): the name of the format vdisk has
 * no backend for whose magic is in HEAD (the first HLEN bytes) or TAIL (the
 * last TLEN bytes of the file), or NULL; *COMPRESSED (may be NULL) tells a
 * compressed container from an image format. */
const char *vd_foreign_probe(const uint8_t *head, size_t hlen, const uint8_t *tail,
			     size_t tlen, bool *compressed);
/* 0, or -EMEDIUMTYPE with a message naming PATH and the format. */
int vd_foreign_refuse(const char *path, const uint8_t *head, size_t hlen,
		      const uint8_t *tail, size_t tlen, struct vd_error *err);

/* Open an image on an already open host (takes ownership of H, also on
 * failure).  Used by vd_open and by the unit tests with memory hosts. */
int vd_open_host(struct vd_image **out, struct vd_host *h, const char *format,
		 unsigned flags, struct vd_error *err);

/* Report a check finding through RES->note. */
void vd_check_note(struct vd_check *res, int kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Info helpers for backends. */
void vd_info_add(struct vd_info *info, const char *key, bool is_number,
		 const char *fmt, ...) __attribute__((format(printf, 4, 5)));


/* ---- new outputs: temporary file beside the destination, atomic rename ---- */

struct vd_tmp {
	char *final; /* destination path */
	char *tmp;   /* temporary path, NULL once committed or aborted */
	bool force;
	/* further files of a multi-file image (VMDK extents), renamed into
	 * place before the main file */
	unsigned nextra;
	char **extra_final, **extra_tmp;
	/* the main file is a text descriptor naming the extra files by their
	 * temporary names: at commit, rename the references too */
	bool rewrite_names;
	/* commit without fsync of the files and the directory */
	bool no_sync;
	/* descriptor + 1 (0: none) holding the writer's lock on tmp, and on
	 * each extra file (see create.c) */
	int lock_fd;
	int *extra_lock;
};

/* Refuse an existing FINAL unless FORCE; remove the stale temporary files
 * of FINAL (reported to the vd_set_stale_tmp_handler handler); create an
 * empty temp file beside it, .NAME.vdisk-tmp-PID-XXXXXX, locked. */
int vd_tmp_begin(struct vd_tmp *t, const char *final, bool force,
		 struct vd_error *err);
/* fsync the temp file by path, rename it over FINAL (no-replace unless FORCE),
 * fsync the directory. */
int vd_tmp_commit(struct vd_tmp *t, bool force, struct vd_error *err);
/* Remove the temporary file(s) (safe to call twice). */
void vd_tmp_abort(struct vd_tmp *t);
/* Another file of the same image: refuse an existing FINAL unless the
 * destination was begun with FORCE, open a temporary file beside it. */
int vd_tmp_add(struct vd_tmp *t, const char *final, struct vd_host **h,
	       struct vd_error *err);

/* Write a new image of FORMAT into the empty host H. */
int vd_create_on_host(struct vd_host *h, const char *format, uint64_t size,
		      const char *opts, unsigned flags, const volatile int *cancel,
		      struct vd_error *err);
/* The same, for a destination begun with vd_tmp_begin: formats made of
 * several files (VMDK flat and split) add them through T. */
int vd_create_in_tmp(struct vd_host *h, struct vd_tmp *t, const char *format,
		     uint64_t size, const char *opts, unsigned flags,
		     const volatile int *cancel, struct vd_error *err);
/* The same with typed requests (IDENTITY may be NULL, BLOCK_SIZE 0): what
 * compact and defrag keep of the image they rewrite, convert of its source. */
struct vd_create_like {
	const struct vd_identity *identity;
	uint32_t block_size;
};
int vd_create_in_tmp_like(struct vd_host *h, struct vd_tmp *t, const char *format,
			  uint64_t size, const char *opts, unsigned flags,
			  const struct vd_create_like *like, const volatile int *cancel,
			  struct vd_error *err);

/* A new, empty child of PARENT (open; the child links to its identity and
 * stores PARENT_NAME) in H, for a destination begun with vd_tmp_begin. */
int vd_create_child_in_tmp(struct vd_host *h, struct vd_tmp *t, const char *format,
			   struct vd_image *parent, const char *parent_name, const char *opts,
			   unsigned flags, struct vd_error *err);
/* The same, keeping LIKE's identity and block size (compact of a child). */
int vd_create_child_in_tmp_like(struct vd_host *h, struct vd_tmp *t, const char *format,
				struct vd_image *parent, const char *parent_name, const char *opts,
				unsigned flags, const struct vd_create_like *like, struct vd_error *err);
/* compact and defrag of a child (src/ops/rewrite-child.c): 1 when PATH is
 * not a child (the caller goes on), else done (0) or an error. */
struct vd_rewrite_opts;
struct vd_rewrite_result;
int vd_rewrite_child(const char *path, bool compact, const struct vd_rewrite_opts *o,
		     struct vd_rewrite_result *res, struct vd_error *err);
/* Make PARENT (open, read-only; owned by IMG from now on, also on failure)
 * IMG's parent layer, after checking that IMG links to it. */
int vd_chain_set_backing(struct vd_image *img, struct vd_image *parent, struct vd_error *err);

/* ---- the convert pipeline, for other operations (device copy) ---- */

/* convert -B (src/ops/convert-child.c) */
int vd_convert_child(const char *src_path, const char *dst_path, const struct vd_convert_opts *o,
		     struct vd_error *err);

struct vd_copy_stats {
	uint64_t data_bytes; /* written as data */
	uint64_t zero_bytes; /* zero ranges passed to vd_write_zeroes */
	uint64_t reached;    /* everything below this guest offset is written */
};
/* Copy SRC's guest contents into DST (at least as large) with the convert
 * pipeline: O->min_sparse, progress and cancel are used; zero ranges are
 * skipped when TARGET_ZERO, else zeroed with VD_ZERO_MAY_UNMAP. */
int vd_copy_image(struct vd_image *src, struct vd_image *dst, bool target_zero,
		  const struct vd_convert_opts *o, struct vd_copy_stats *st,
		  struct vd_error *err);

/* ---- raw-disk VMDK descriptors (formats/vmdk-raw.c) ---- */

struct vd_rawvmdk_params {
	const char *device;        /* as written in the FLAT extents */
	uint64_t disk_sectors;     /* the device's size in sectors */
	const struct vd_mbr *mbr;  /* NULL: fullDevice */
	const unsigned *sel;       /* selected partitions (partitionedDevice) */
	unsigned nsel;
	bool relative;             /* selected partitions on their own devices */
	const char *pt_name;       /* the -pt file as the descriptor names it */
	const char *adapter;       /* NULL: ide */
	uint32_t cid;
	const char *uuid;          /* ddb.uuid.image */
};
struct vd_rawvmdk_area {           /* device sectors copied into the -pt file */
	uint64_t dev_sector, sectors, pt_sector;
};
struct vd_rawvmdk_layout {
	char *text;                /* the descriptor */
	unsigned nareas;
	struct vd_rawvmdk_area *areas;
	uint64_t pt_sectors;       /* size of the -pt file */
};
int vd_rawvmdk_layout(const struct vd_rawvmdk_params *p, struct vd_rawvmdk_layout *l,
		      struct vd_error *err);
void vd_rawvmdk_layout_free(struct vd_rawvmdk_layout *l);
/* The device of partition NUMBER of DEV: /dev/sda1, /dev/loop0p1. */
void vd_rawvmdk_partdev(const char *dev, unsigned number, char *out, size_t len);

/* ---- files an image names (src/core/related.c): the one path policy ---- */
struct vd_related_words {
	const char *file;       /* "extent file" */
	const char *owner;      /* "descriptor": whose directory */
	const char *short_name; /* "extent": message prefix */
	bool shared;            /* readers' guard only, whatever IMG's mode
				 * (a parent layer: others may read it too) */
};
struct vd_related {
	char *full;   /* the path to open */
	dev_t dev;    /* what it resolved to */
	ino_t ino;
};
/* Resolve NAME (named inside IMG) relative to IMG's directory, checking the
 * policy on what it resolves to (O_PATH, no I/O, no lock). */
int vd_related_resolve(struct vd_image *img, const struct vd_related_words *w, const char *name,
		       struct vd_related *r, struct vd_error *err);
/* Open what vd_related_resolve checked (RDWR, or with the guard when IMG
 * is opened RDWR or EXCLUSIVE); refused unless it is still that inode. */
int vd_related_open(struct vd_image *img, const struct vd_related_words *w, const char *name,
		    const struct vd_related *res, bool rdwr, struct vd_host **h,
		    struct vd_error *err);
void vd_related_free(struct vd_related *r);

#endif
