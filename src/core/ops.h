/*
 * The operations' internals (src/ops/): the reader/writer hand-over,
 * creating outputs with typed requests, the convert pipeline, chain
 * operations' helpers.  Not for backends.  Not installed.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef VDISK_OPS_H
#define VDISK_OPS_H

#include "backend.h"

/* What an operation may ask of an open image (src/core/blockio.c). */
/* A freshly created image of IMG's format reads as zeros. */
bool vd_image_zero_init(const struct vd_image *img);
/* FORMAT (a name the user gave) is the plain guest disk, no container. */
bool vd_format_reads_as_raw(const char *format);
/* IMG's format has metadata vd_check can validate. */
bool vd_image_checkable(const struct vd_image *img);
/* IMG is of FORMAT (a name the user gave, aliases included). */
bool vd_image_is_format(const struct vd_image *img, const char *format);
/* The host of IMG's main file (its descriptor for a multi-file image):
 * for operations that map or lock the file itself (fragmap, devcopy). */
struct vd_host *vd_image_host(const struct vd_image *img);
/* A and B are the same file or block device (false when either is not a
 * local file, such as an NBD export). */
bool vd_image_same_file(const struct vd_image *a, const struct vd_image *b);
/* Writers' tuning of an open image: start writeback every few MiB (a
 * stream written front to back); store zero writes as data (no holes: -S 0,
 * preallocation); transfers aligned to ALIGN bytes (a device's sector). */
void vd_image_set_stream_writeback(struct vd_image *img, bool on);
void vd_image_set_allocate_zero_writes(struct vd_image *img, bool on);
void vd_image_set_align(struct vd_image *img, uint32_t align);

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
/* The same, keeping none of the child's blocks: after a commit, the child
 * as a new, empty child of its (changed) parent.  PROBE: only check that
 * it can be done (nothing changes). */
int vd_rewrite_child_empty(const char *path, const char *format, bool probe,
			   const volatile int *cancel, struct vd_error *err);
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
	/* non-NULL: every item is fed to it in guest order (src/ops/chash.h) */
	struct vd_chash *hash;
};
/* Copy SRC's guest contents into DST (at least as large) with the convert
 * pipeline: O->min_sparse, progress and cancel are used; zero ranges are
 * skipped when TARGET_ZERO, else zeroed with VD_ZERO_MAY_UNMAP. */
int vd_copy_image(struct vd_image *src, struct vd_image *dst, bool target_zero,
		  const struct vd_convert_opts *o, struct vd_copy_stats *st,
		  struct vd_error *err);


#endif
