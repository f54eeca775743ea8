/*
 * libvdisk: virtual disk images (raw, VDI, ...) behind one block-I/O layer.
 *
 * Conventions: every function that can fail returns 0 (or a non-negative
 * value where documented) on success and -errno on failure, and fills the
 * caller-owned struct vd_error passed last with a message that names the
 * file and the field.  The library never prints and never exits.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef VDISK_H
#define VDISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VDISK_VERSION "0.1.0"

/* ---- errors ------------------------------------------------------------ */

#define VD_ERROR_MSG_MAX 512

struct vd_error {
	int code;                    /* -errno of the failure, 0 if none */
	char msg[VD_ERROR_MSG_MAX];  /* human message, "" if none */
};

void vd_error_clear(struct vd_error *err);

/* ---- images ------------------------------------------------------------ */

struct vd_image; /* opaque */

enum {
	VD_OPEN_RDWR = 1u << 0,          /* open for writing */
	VD_OPEN_CHECK = 1u << 1,         /* lenient: open damaged metadata so check can report it */
	VD_OPEN_ALLOW_DEVICES = 1u << 2, /* allow block devices as image files */
	/* never flush to stable storage (qemu-img's cache=unsafe): faster,
	 * but a crash of the host may lose what was written */
	VD_OPEN_NO_SYNC = 1u << 3,
	/* take the in-use guard on every file of the image (implied by
	 * VD_OPEN_RDWR): an operation that replaces the image (compact,
	 * defrag) opens it read-only with this */
	VD_OPEN_EXCLUSIVE = 1u << 4,
	/* open this layer alone: a child's parent is not looked for, and
	 * what the layer does not hold reads as zeros (see vd_backing) */
	VD_OPEN_NO_BACKING = 1u << 5,
};

/* PATH is an NBD URI (nbd://, nbds://, nbd+unix://, nbds+unix://,
 * nbd+vsock://, nbds+vsock://): vd_open and every command that takes a file
 * name reach the export with libnbd; it is not created, only written into. */
bool vd_is_nbd_uri(const char *path);

/* Open PATH. FORMAT NULL probes the contents (raw scores lowest). */
int vd_open(struct vd_image **out, const char *path, const char *format,
	    unsigned flags, struct vd_error *err);
/* Flush (if writable) and free. IMG may be NULL. Returns the flush error. */
int vd_close(struct vd_image *img, struct vd_error *err);

uint64_t vd_size(const struct vd_image *img);
const char *vd_format(const struct vd_image *img);
const char *vd_path(const struct vd_image *img);

int vd_read(struct vd_image *img, uint64_t off, void *buf, size_t len,
	    struct vd_error *err);
int vd_write(struct vd_image *img, uint64_t off, const void *buf, size_t len,
	     struct vd_error *err);

enum {
	VD_ZERO_MAY_UNMAP = 1u << 0, /* zeroed range may be deallocated */
};
int vd_write_zeroes(struct vd_image *img, uint64_t off, uint64_t len,
		    unsigned flags, struct vd_error *err);
/* Advisory: the range's contents become undefined-but-stable (may read as
 * old data or zeros); space may be released.  Never fails for "unsupported". */
int vd_discard(struct vd_image *img, uint64_t off, uint64_t len,
	       struct vd_error *err);
int vd_flush(struct vd_image *img, struct vd_error *err);
/* Complete an image written once, front to back (a streamOptimized VMDK
 * being created): its tables and footer are written, no write is taken
 * afterwards.  vd_flush does not do this (a stream cannot be made durable
 * half-way); vd_close does it for an image not finished yet.  For other
 * images the same as vd_flush. */
int vd_finish(struct vd_image *img, struct vd_error *err);

/* ---- block status ------------------------------------------------------ */

enum {
	VD_BS_DATA = 1u << 0,         /* stored in the image file */
	VD_BS_ZERO = 1u << 1,         /* reads as zeros (also with DATA: allocated
				       * space that is a hole in the host file) */
	VD_BS_OFFSET_VALID = 1u << 2, /* .offset is where the data lives in the file */
	VD_BS_ALLOCATED = 1u << 3,    /* described by this image's metadata
				       * (zero blocks are allocated but not data) */
};

struct vd_extent {
	uint64_t start;  /* guest offset */
	uint64_t length; /* bytes, > 0 */
	unsigned flags;  /* VD_BS_* */
	uint64_t offset; /* host file offset, if VD_BS_OFFSET_VALID */
	const char *file; /* file holding .offset when not the image file itself
			   * (extents of split VMDKs, a parent layer); NULL otherwise */
	unsigned depth;   /* the layer that answers: 0 the image itself, 1 its
			   * parent, ...; for ranges no layer holds, the
			   * bottom layer's depth (as qemu-img map) */
};

/* Status of the range starting at OFF: fills one extent that starts at OFF
 * and is at most LEN bytes long (never 0 bytes when LEN > 0). */
int vd_block_status(struct vd_image *img, uint64_t off, uint64_t len,
		    struct vd_extent *ext, struct vd_error *err);

/* ---- snapshot chains --------------------------------------------------- */

/* A child layer (differencing VDI, VMDK delta) holds only the blocks
 * written since its snapshot; every other block reads from its parent.
 * vd_open opens the parent read-only with the child (and its parent, up
 * to VD_CHAIN_MAX layers), found in this order:
 *   1. the candidates of the chain policy (vdisk --backing FILE),
 *   2. the name the child stores (VMDK parentFileNameHint), resolved with
 *      the path policy of a descriptor's extents,
 *   3. by identity, for children that store only the parent's UUID (VDI):
 *      the images beside the child, the VM folder above a Snapshots/
 *      folder, the .vbox files there and VirtualBox.xml's media registry
 *      ($VBOX_USER_HOME, else ~/.config/VirtualBox).
 * A candidate is the parent when its identity matches the link the child
 * stores (UUID, then the modification UUID or VMDK CID); a mismatch of the
 * modification UUID or CID (the parent was changed after the snapshot) is
 * refused unless the policy's FORCE, which reports a warning.  Reads of
 * what a child does not hold, block status (VD_BS_* of the layer that
 * answers, with its depth) and copy-on-write of partial blocks written
 * into a child are the block-I/O layer's, not the backends'. */
#define VD_CHAIN_MAX 64

struct vd_chain_policy {
	const char *const *candidates; /* parent candidates tried first */
	unsigned ncandidates;
	bool force;                    /* open mismatched links with a warning */
	void (*warn)(void *ctx, const char *msg); /* warnings (may be NULL) */
	void *ctx;
};
/* Process-wide, like the stale temporary file handler; the pointers must
 * stay valid while images are opened.  NULL: the defaults. */
void vd_set_chain_policy(const struct vd_chain_policy *p);

/* The parent layer of IMG (NULL: none, or opened with VD_OPEN_NO_BACKING). */
struct vd_image *vd_backing(const struct vd_image *img);
/* True when IMG's layer stores a link to a parent (whether opened or not). */
bool vd_has_parent_link(const struct vd_image *img);
/* What the child stores about its parent, for messages and info: the name
 * (VMDK parentFileNameHint) or "" when it stores only an identity. */
const char *vd_parent_hint(const struct vd_image *img);
/* With VD_OPEN_CHECK a missing or mismatched parent does not fail the
 * open: why it was not opened ("" when it was, or when there is none). */
const char *vd_backing_problem(const struct vd_image *img);

/* ---- info -------------------------------------------------------------- */

#define VD_INFO_MAX_EXTRA 24

struct vd_info_kv {
	char key[32];
	char value[288];
	bool is_number; /* value is a decimal integer: print unquoted in JSON */
};

struct vd_info {
	const char *format;       /* "raw", "vdi" */
	char subformat[32];       /* "dynamic", "fixed", "": a value the
				   * format's create accepts as subformat=
				   * when it can create such images */
	uint64_t virtual_size;
	uint64_t file_size;       /* apparent size of the image file(s) */
	uint64_t allocated_bytes; /* guest bytes stored as data in the image */
	uint64_t host_bytes;      /* bytes the host filesystem has allocated */
	bool host_bytes_unknown;  /* the host cannot tell (an NBD export) */
	uint32_t block_size;      /* allocation unit, 0 if none */
	char header_version[16];
	char uuid[40];            /* image UUID, "" if none */
	char uuid_modify[40];
	char uuid_parent[40];
	char uuid_parent_modify[40];
	uint32_t cylinders, heads, sectors; /* geometry, 0 if unknown */
	unsigned nextra;                   /* format-specific extra keys */
	struct vd_info_kv extra[VD_INFO_MAX_EXTRA];
};

int vd_get_info(struct vd_image *img, struct vd_info *info,
		struct vd_error *err);

/* ---- describe: how one layer stores the guest disk -------------------- */

/* Typed answers for operations that must treat images differently
 * (compact, defrag, zerofree, convert) without knowing format names.  A
 * backend answers for its own layer only: what its files hold and how it
 * allocates; a parent layer (differencing VDI, VMDK delta) answers for
 * itself. */

enum vd_alloc_kind {
	VD_ALLOC_RAW,    /* guest offset = file offset; sparseness is the host file's */
	VD_ALLOC_BLOCKS, /* allocated on demand in block_size units (dynamic VDI,
			  * sparse VMDK; later qcow2 clusters, dynamic VHD/VHDX blocks) */
	VD_ALLOC_FULL,   /* every block reserved at creation (fixed VDI, flat VMDK) */
	VD_ALLOC_STREAM, /* write-once compressed stream (streamOptimized VMDK) */
	VD_ALLOC_DEVICE, /* extents on block devices or other images (raw-device
			  * descriptors, raw block devices) */
};

/* What the layer allows on a file, as its metadata says (not the open mode). */
enum vd_file_access {
	VD_FILE_RW,
	VD_FILE_RDONLY,
	VD_FILE_NOACCESS,
	VD_FILE_ZERO,     /* no file: the range reads as zeros and cannot be written */
};

enum vd_file_role {
	VD_FILE_IMAGE,      /* the file opened (holds guest data unless guest_len is 0) */
	VD_FILE_DESCRIPTOR, /* the file opened, metadata only (VMDK text descriptor) */
	VD_FILE_EXTENT,     /* another file holding guest data */
	VD_FILE_PARENT,     /* reserved: a backing layer */
};

struct vd_file_desc {
	char *path;          /* as opened (absolute or relative to the current
			      * directory); NULL for VD_FILE_ZERO ranges */
	int role;            /* enum vd_file_role */
	int access;          /* enum vd_file_access */
	uint64_t guest_off, guest_len; /* the guest range it serves (0/0: metadata only) */
	uint64_t file_off;   /* where that range starts in the file when it is
			      * stored in guest order (RAW, flat extents); 0 else */
	bool block_device;   /* the file is a block device */
};

struct vd_describe {
	int alloc;                /* enum vd_alloc_kind */
	uint32_t block_size;      /* allocation unit in bytes, 0: none */
	bool discard_releases;    /* discarding whole blocks frees space in the image */
	bool zero_init;           /* a new image of this kind reads as zeros */
	bool rewritable;          /* may be changed in place (false: a stream) */
	const char *subformat;    /* the format's own name of this layout (VMDK
				   * createType), NULL if none; valid while the
				   * image is open */
	uint32_t zero_granularity;    /* bytes, 0: any */
	uint32_t discard_granularity; /* smallest range a discard releases, 0: any */
	bool starts_zeroed;       /* what this layer does not hold reads as zeros
				   * (false once parents exist: "ask the parent") */
	bool zero_entries;        /* a whole block written as zeros is recorded
				   * as zeros, without data (VDI zero blocks) */
	unsigned nfiles;
	struct vd_file_desc *files; /* data ranges in guest order; free with vd_describe_free */
};

int vd_describe(struct vd_image *img, struct vd_describe *d, struct vd_error *err);
void vd_describe_free(struct vd_describe *d);

/* ---- identity: what convert, compact and defrag keep, and create accepts */

/* Fields of struct vd_identity, for vd_format_identity_fields. */
enum {
	VD_ID_UUIDS = 1u << 0,          /* uuid, modification_uuid */
	VD_ID_PARENT = 1u << 1,         /* parent_uuid, parent_modification_uuid, parent_cid, parent_name */
	VD_ID_CID = 1u << 2,            /* cid */
	VD_ID_ADAPTER = 1u << 3,        /* adapter_type */
	VD_ID_HW_VERSION = 1u << 4,
	VD_ID_TOOLS_VERSION = 1u << 5,
	VD_ID_LONG_CONTENT_ID = 1u << 6,
	VD_ID_GEOMETRY = 1u << 7,       /* cylinders, heads, sectors */
	VD_ID_BIOS_GEOMETRY = 1u << 8,  /* bios_* */
	VD_ID_COMMENT = 1u << 9,
	VD_ID_DIALECT = 1u << 10,       /* vmdk_dialect, thin_provisioned */
};
/* Identifiers of this very image (a copy gets new ones) ... */
#define VD_ID_IDENTIFIERS (VD_ID_UUIDS | VD_ID_PARENT | VD_ID_CID | VD_ID_LONG_CONTENT_ID)
/* ... and the description of the virtual hardware (a copy keeps it). */
#define VD_ID_HARDWARE (VD_ID_ADAPTER | VD_ID_HW_VERSION | VD_ID_TOOLS_VERSION | \
			VD_ID_GEOMETRY | VD_ID_BIOS_GEOMETRY | VD_ID_COMMENT | VD_ID_DIALECT)

/* Every text field is "" and every number 0 when the image has none; given
 * to create, such a field means "the format's default". */
struct vd_identity {
	char uuid[37], modification_uuid[37];      /* lower-case RFC 4122 text */
	char parent_uuid[37], parent_modification_uuid[37];
	bool has_cid;
	uint32_t cid, parent_cid;   /* VMDK content ids (parent_cid 0xffffffff: none) */
	char parent_name[256];      /* VMDK parentFileNameHint */
	char adapter_type[32];      /* VMDK ddb.adapterType */
	unsigned hw_version;        /* VMDK ddb.virtualHWVersion */
	char tools_version[32];     /* VMDK ddb.toolsVersion */
	char long_content_id[33];   /* VMDK ddb.longContentID */
	uint32_t cylinders, heads, sectors; /* physical geometry (VDI legacy
					     * geometry, VMDK ddb.geometry.*) */
	uint32_t bios_cylinders, bios_heads, bios_sectors; /* VDI LCHS, VMDK
							    * ddb.geometry.bios* */
	char comment[256];          /* VDI comment */
	/* VMDK descriptor dialect (VD_ID_DIALECT): the -o compat= preset whose
	 * lines the descriptor carries ("esxi", "workstation"; "" for vdisk's
	 * plain form), so a copy keeps them, and ddb.thinProvisioned = "1" */
	char vmdk_dialect[16];
	bool thin_provisioned;
};

int vd_get_identity(struct vd_image *img, struct vd_identity *id, struct vd_error *err);
/* Clear every field of ID that is not in KEEP (VD_ID_*). */
void vd_identity_keep(struct vd_identity *id, unsigned keep);
/* The VD_ID_* fields images of FORMAT store and its create honours (0 for
 * none or an unknown format). */
unsigned vd_format_identity_fields(const char *format);

/* ---- check ------------------------------------------------------------- */

enum { VD_CHECK_NOTE_ERROR, VD_CHECK_NOTE_LEAK, VD_CHECK_NOTE_FIXED, VD_CHECK_NOTE_INFO };

struct vd_check {
	unsigned corruptions;     /* found and not repaired */
	unsigned leaks;           /* leaked (unreferenced) space, not repaired */
	unsigned corruptions_fixed;
	unsigned leaks_fixed;
	uint64_t leaked_bytes;
	/* Called for each finding; may be NULL. */
	void (*note)(void *ctx, int kind, const char *msg);
	void *ctx;
};

/* Validate metadata; with REPAIR fix what can be fixed safely (IMG must be
 * writable).  Returns 0 when the check ran (look at the counters). */
int vd_check(struct vd_image *img, bool repair, struct vd_check *res,
	     struct vd_error *err);

/* ---- stale temporary files ------------------------------------------- */

/* Every new output is written to .NAME.vdisk-tmp-PID-XXXXXX beside NAME and
 * renamed into place; a run killed by SIGKILL (or a crash) leaves that file
 * behind.  When a new output to NAME begins, the temporary files of NAME
 * whose process no longer exists and that nobody holds locked are removed,
 * and each is reported here (the library never prints).  Process-wide;
 * without a handler they are removed silently. */
struct vd_stale_tmp {
	const char *path;
	long pid;           /* the process that wrote it (gone) */
	uint64_t size;      /* its length */
	uint64_t allocated; /* the bytes it held on disk */
	int error;          /* 0: removed; else the errno unlink failed with */
};
typedef void (*vd_stale_tmp_fn)(void *ctx, const struct vd_stale_tmp *st);
void vd_set_stale_tmp_handler(vd_stale_tmp_fn fn, void *ctx);

/* ---- create ------------------------------------------------------------ */

enum {
	VD_CREATE_DETERMINISTIC = 1u << 0, /* fixed UUIDs, for reproducible images */
	VD_CREATE_EXCL = 1u << 1,          /* fail if PATH exists */
};

/* Create an image of SIZE bytes.  OPTS is "key=value,key=value" (format
 * specific; NULL for defaults).  Unknown keys are rejected.  The image is
 * built in a temporary file and renamed into place; when *CANCEL becomes
 * non-zero (CANCEL may be NULL) it stops with -ECANCELED and leaves nothing. */
int vd_create(const char *path, const char *format, uint64_t size,
	      const char *opts, unsigned flags, const volatile int *cancel,
	      struct vd_error *err);

/* Create an empty child of PARENT (vdisk create -b): the guest sees
 * PARENT's contents until blocks are written into the child.  A relative
 * PARENT is relative to PATH's folder (and stored so, where the format
 * stores a name); it is opened read-only with its own chain to link the
 * child to its identity (VDI: uuidLinkage/uuidParentModify, VMDK:
 * parentCID/parentFileNameHint).  SIZE 0: the parent's. */
int vd_create_child(const char *path, const char *format, const char *parent,
		    const char *parent_format, uint64_t size, const char *opts,
		    unsigned flags, struct vd_error *err);

/* Names of the registered formats, NULL-terminated. */
const char *const *vd_formats(void);
bool vd_format_can_create(const char *format);
/* What other tools will not read in an image of FORMAT created with the
 * options OPTS (as given to vd_create or convert): a sentence in BUF, ""
 * when nothing (or when OPTS are invalid: vd_create reports that).  The
 * library never prints; create and convert show it as a warning. */
void vd_create_warning(const char *format, const char *opts, char *buf, size_t len);

/* ---- operations -------------------------------------------------------- */

/* Progress: DONE of TOTAL bytes of actual work. */
typedef void (*vd_progress_fn)(void *ctx, uint64_t done, uint64_t total);

struct vd_convert_opts {
	const char *src_format;    /* NULL: probe */
	const char *dst_format;    /* required */
	const char *dst_opts;      /* creation options, NULL: defaults */
	uint64_t min_sparse;       /* -S: zero runs >= this are not written (0: allocate all) */
	bool existing_target;      /* -n: write into an existing image */
	bool target_is_zero;       /* with -n: target already reads as zeros */
	bool force;                /* replace an existing destination */
	/* a new destination: do not flush it to disk before the rename (as
	 * qemu-img convert, whose default cache mode is unsafe); a crash of
	 * the host soon after may leave a damaged image under DST */
	bool no_sync;
	unsigned create_flags;     /* VD_CREATE_* */
	unsigned src_open_flags;   /* extra VD_OPEN_* for the source */
	vd_progress_fn progress;
	void *progress_ctx;
	const volatile int *cancel; /* non-zero: stop with -ECANCELED */
	/* -B: DST is a new child of this parent (relative to DST's folder)
	 * holding only what differs from it; NULL: a standalone copy */
	const char *backing;
	/* Sequential sources (issue 18/19): SRC "-" is standard input, and a
	 * SRC starting with xz, zstd, gzip or bzip2 magic is decompressed (a
	 * raw disk); stream_size: its size when the container does not say
	 * (0: from the container, else found at the end of the stream).
	 * source_offset/source_size (either non-zero): SRC is read as raw
	 * from source_offset for source_size bytes (0: to its end). */
	uint64_t stream_size;
	uint64_t source_offset, source_size;
	/* dst_is_fd: DST sent front to back into dst_fd (a pipe or standard
	 * output), DST naming it in messages; nothing is staged.  For raw and
	 * streamOptimized VMDK; a format that goes back to what it wrote
	 * (past the first 1 MiB) fails with ESPIPE */
	bool dst_is_fd;
	int dst_fd;
};

/* Compress the raw image file IN_PATH (read front to back) into OUT_FD as
 * KIND "zstd" or "xz" (LEVEL 0: the tool's default), one thread per core;
 * OUT_NAME names OUT_FD in messages (src/core/stream-out.c). */
int vd_compress_raw(const char *in_path, int out_fd, const char *out_name, const char *kind,
		    int level, const volatile int *cancel, struct vd_error *err);

/* Copy the guest contents of SRC into DST.  A new DST is built in a
 * temporary file beside it and renamed into place only on success. */
int vd_convert(const char *src, const char *dst,
	       const struct vd_convert_opts *opts, struct vd_error *err);

/* Open PATH for a command that reads it once, front to back (convert,
 * compare, create --part, devcopy): an image (FORMAT and FLAGS as for
 * vd_open), or a sequential source: standard input ("-") or a file that
 * starts with the magic of xz, zstd, gzip or bzip2, read as a raw disk.
 * Reads of a sequential source must go forward; one that goes back fails
 * with a message saying the command needs random access.  Its size is the
 * container's (xz index, zstd frame), else SIZE; else the stream is drained
 * into a sparse spool file in SPOOL_DIR, unlinked at once (NULL: no spool,
 * an error asking for a size).  WINDOW_OFFSET/WINDOW_SIZE (either non-zero):
 * PATH is read as raw from that offset for that many bytes (0: to its end). */
struct vd_source_opts {
	const char *format;          /* NULL: probe */
	unsigned flags;              /* VD_OPEN_* */
	uint64_t size;               /* a stream's size (0: from the container) */
	uint64_t window_offset, window_size;
	const char *spool_dir;       /* see above; vd_spool_dir_default() */
	bool spool;                  /* spool a stream of known size too (a
				      * consumer that reads it more than once) */
	const volatile int *cancel;  /* stops spooling with -ECANCELED */
};
int vd_open_source(struct vd_image **out, const char *path, const struct vd_source_opts *opts,
		   struct vd_error *err);
/* $TMPDIR, else /tmp */
const char *vd_spool_dir_default(void);

struct vd_compare_opts {
	bool strict;                /* images of different size differ */
	uint64_t length;            /* compare the first LENGTH bytes of each
				     * (0: all; both must be at least as large) */
	vd_progress_fn progress;
	void *progress_ctx;
	const volatile int *cancel;
};

/* Returns 0 equal, 1 different (*diff_off set), <0 error. */
int vd_compare(struct vd_image *a, struct vd_image *b,
	       const struct vd_compare_opts *opts, uint64_t *diff_off,
	       struct vd_error *err);

/* ---- snapshot chains: commit and rebase ---------------------------- */

/* Merge CHILD into its parent (the parent changes in place): every block
 * the child holds is written into the parent, the parent gets a new
 * modification identity (its other children then see it changed), and the
 * child is relinked to it (its guest view unchanged) or, with
 * REMOVE_CHILD, its files are removed.  Killed while copying, the child
 * is intact and still linked: run it again. */
struct vd_commit_opts {
	bool remove_child;
	/* keep CHILD as an empty child of the changed parent (qemu-img
	 * commit's default): rewritten into a new file, its blocks dropped */
	bool empty_child;
	vd_progress_fn progress;
	void *progress_ctx;
	const volatile int *cancel;
};
struct vd_commit_result {
	char parent[4096];         /* the image written */
	uint64_t data_bytes, zero_bytes;
	bool removed;
	bool emptied;
};
/* Link CHILD to the parent BACKING (relative to CHILD's folder).  Safe
 * (default): what the child does not hold and BACKING holds differently is
 * copied into the child first, so the guest view does not change; UNSAFE:
 * only the link is rewritten (the child's old parent may be gone). */
struct vd_rebase_opts {
	const char *backing;
	const char *backing_format; /* NULL: probe */
	bool unsafe;
	vd_progress_fn progress;
	void *progress_ctx;
	const volatile int *cancel;
};
struct vd_rebase_result {
	uint64_t copied_bytes;
};

int vd_commit(const char *child, const char *format, const struct vd_commit_opts *o,
	      struct vd_commit_result *res, struct vd_error *err);
int vd_rebase(const char *child, const char *format, const struct vd_rebase_opts *o,
	      struct vd_rebase_result *res, struct vd_error *err);

/* ---- compact and defrag: rewrite an image into a new file ------------- */

/* Both build a new image of the same format, subformat, block size and
 * identity (vd_get_identity: UUIDs, CID, the hardware description) in
 * a temporary file beside IMAGE, write the kept blocks in guest order into
 * space reserved up front (fallocate of the final size), and rename it over
 * IMAGE (file mode kept).  Killed at any moment, IMAGE is intact; on
 * *CANCEL or an error the temporary files are removed.  They refuse to
 * start when the filesystem holding IMAGE has less free space than the new
 * file needs, or when IMAGE is open for writing elsewhere.
 *
 * vd_compact drops blocks that read as zeros (and, with fs_aware, blocks
 * entirely free in the guest filesystem).  A raw image is compacted in
 * place instead: zero runs become holes, the contents never change.  A
 * fixed VDI or flat VMDK has nothing to drop: method says NOTHING.
 * vd_defrag keeps every allocated block and only reorders and reallocates. */

struct vd_rewrite_opts {
	const char *format;         /* NULL: probe */
	bool fs_aware;              /* compact: also drop blocks free in the guest fs */
	unsigned open_flags;        /* extra VD_OPEN_* */
	vd_progress_fn progress;
	void *progress_ctx;
	const volatile int *cancel; /* non-zero: stop with -ECANCELED */
};

enum vd_rewrite_method {
	VD_REWRITE_NEW_FILE = 0,  /* new file(s) renamed over the image */
	VD_REWRITE_IN_PLACE = 1,  /* raw compact: holes punched into zero runs */
	VD_REWRITE_NOTHING = 2,   /* fixed VDI / flat VMDK compact: nothing to drop */
};

struct vd_rewrite_result {
	int method;                 /* enum vd_rewrite_method */
	const char *format;         /* "vdi", "vmdk", "raw" */
	char subformat[32];
	uint32_t block_size;        /* unit of the rewrite (0: byte ranges) */
	uint64_t blocks_before;     /* allocated blocks (data ranges) before */
	uint64_t blocks_kept;       /* blocks written to the new file */
	uint64_t blocks_zero;       /* dropped: read as zeros */
	uint64_t blocks_free;       /* dropped: free in the guest filesystem */
	uint64_t bytes_kept;        /* guest bytes written (raw in place: still stored) */
	uint64_t bytes_punched;     /* raw in place: bytes turned into holes */
	uint64_t file_size_before, file_size_after;   /* apparent, all files */
	uint64_t host_bytes_before, host_bytes_after; /* allocated on the host */
	uint64_t space_needed;      /* what the new file(s) needed */
	uint64_t space_available;   /* free space seen before starting */
	unsigned files;             /* files rewritten (split VMDK: extents + 1) */
	char note[640];             /* why nothing was done, fs-aware notes, ... */
	/* --fs-aware: free space inside the kept blocks is written as zeros */
	uint64_t blocks_free_zeroed; /* kept blocks whose free parts were not zero */
	uint64_t bytes_free_zeroed;  /* free bytes in kept blocks, written as zeros */
};

int vd_compact(const char *path, const struct vd_rewrite_opts *opts,
	       struct vd_rewrite_result *res, struct vd_error *err);
int vd_defrag(const char *path, const struct vd_rewrite_opts *opts,
	      struct vd_rewrite_result *res, struct vd_error *err);

/* ---- small helpers the CLI shares ------------------------------------- */

/* "10G", "512M", "1.5G", "4141875200", "64k" (binary units). */
int vd_parse_size(const char *s, uint64_t *out);

/* ---- fragmentation map: guest -> image file -> host device ------------ */

/* The joined map walks the guest address space in order and, for every
 * range, says where it lives in the image file (block status) and on the
 * host device (FIEMAP of the image file; a block device is one extent).
 * Memory is bounded whatever the image size; the cost grows with the number
 * of block-status ranges and host extents, not with the virtual size. */

enum vd_frag_kind {
	VD_FRAG_UNALLOCATED = 0, /* not described by the image, reads as zeros */
	VD_FRAG_ZERO = 1,        /* described as zeros, no data (VDI zero block) */
	VD_FRAG_HOLE = 2,        /* allocated in the image but a hole in the host file */
	VD_FRAG_DATA = 3,        /* stored in the image file */
};

enum {
	VD_FRAG_FILE_OFF = 1u << 0,  /* .file_off is valid */
	VD_FRAG_PHYS = 1u << 1,      /* .host_physical is valid */
	VD_FRAG_DISCONT = 1u << 2,   /* data that does not follow its guest
				      * predecessor in the image file */
	VD_FRAG_SEEK = 1u << 3,      /* a sequential guest read starts a new
				      * contiguous host run here */
};

struct vd_frag_run {
	uint64_t guest_off;     /* guest offset */
	uint64_t len;           /* bytes, > 0 */
	int kind;               /* enum vd_frag_kind */
	unsigned flags;         /* VD_FRAG_* */
	uint64_t file_off;      /* offset in the image file (VD_FRAG_FILE_OFF) */
	uint64_t host_physical; /* byte offset on the host device (VD_FRAG_PHYS) */
	uint32_t host_flags;    /* FIEMAP_EXTENT_* of the host extent (<linux/fiemap.h>),
				 * LAST masked out; 0 for block devices */
	const char *file;       /* the file holding file_off when it is not the
				 * image file (split VMDK extents), else NULL;
				 * valid during the callback */
};

/* How the host side was mapped. */
enum vd_frag_host {
	VD_FRAG_HOST_NONE = 0,   /* unknown: see .host_note */
	VD_FRAG_HOST_FIEMAP = 1, /* FIEMAP with FIEMAP_FLAG_SYNC */
	VD_FRAG_HOST_DEVICE = 2, /* a block device: one extent, physical = file offset */
};

/* Power-of-two histogram of host run lengths: bucket i counts runs of
 * [2^i, 2^(i+1)) bytes. */
#define VD_FRAG_HIST 64

struct vd_frag_summary {
	uint64_t guest_start, guest_length; /* the range walked (whole disk by default) */
	uint64_t data_bytes;        /* stored as data in the image (allocated bytes) */
	uint64_t zero_bytes, hole_bytes, unallocated_bytes;
	uint64_t runs;              /* joined runs reported through the callback */
	uint32_t block_size;        /* image allocation unit, 0 if none */
	/* image-internal order */
	uint64_t data_blocks;       /* allocation blocks holding data (data ranges
				     * for formats without blocks) */
	uint64_t discontinuities;   /* data not at the file offset where the
				     * previous range with a file offset ended
				     * (so holes of a raw file do not count) */
	uint64_t out_of_order_blocks; /* blocks starting a discontinuity */
	/* host side */
	int host_map;               /* enum vd_frag_host */
	char host_fs[32];           /* host filesystem type, "" if unknown */
	char host_note[160];        /* why host_map is NONE, "" otherwise */
	uint64_t file_size;         /* size of the image file */
	uint64_t host_extents;      /* FIEMAP extents of the image file and of
				     * the extent files holding the range's
				     * data, as filefrag -v lists them (1 per
				     * block device) */
	uint64_t host_fragments;    /* the same with physically contiguous
				     * extents merged (filefrag's "extents
				     * found": across a hole, contiguous means
				     * the hole's length further on) */
	/* a full sequential guest read (zero, hole and unallocated ranges are
	 * not read; without host positions, file offsets stand in) */
	uint64_t host_runs;         /* contiguous host runs it visits (seeks + 1) */
	uint64_t host_run_bytes;    /* data bytes in those runs */
	uint64_t host_run_max;      /* longest run */
	uint64_t host_run_median;   /* median run length (count-based) */
	bool host_run_median_exact; /* false: lower bound of its histogram bucket
				     * (runs beyond VD_FRAG_SAMPLE) */
	uint64_t bytes_in_runs_1m;  /* data in runs of at least 1 MiB */
	uint64_t bytes_in_runs_64m; /* data in runs of at least 64 MiB */
	uint64_t run_hist[VD_FRAG_HIST];
};
/* Run lengths kept for an exact median; beyond it the histogram decides. */
#define VD_FRAG_SAMPLE 4096

/* Called for each joined run in guest order; non-zero return stops the walk
 * and is returned by vd_fragmap (use a -errno). */
typedef int (*vd_frag_fn)(void *ctx, const struct vd_frag_run *run);

struct vd_fragmap_opts {
	uint64_t start, length;     /* guest range; length 0: to the end */
	const volatile int *cancel; /* non-zero: stop with -ECANCELED */
};

/* Walk IMG (OPTS may be NULL; FN may be NULL) and fill SUM.  A host
 * filesystem without FIEMAP is not an error: SUM->host_map says NONE and
 * SUM->host_note why. */
int vd_fragmap(struct vd_image *img, const struct vd_fragmap_opts *opts,
	       vd_frag_fn fn, void *ctx, struct vd_frag_summary *sum,
	       struct vd_error *err);

struct vd_host_extent {
	uint64_t logical, physical, length; /* bytes */
	uint32_t flags;                     /* FIEMAP_EXTENT_* */
};
typedef int (*vd_host_extent_fn)(void *ctx, const struct vd_host_extent *e);

/* The host extents of IMG's file, in file order (FIEMAP_FLAG_SYNC); a block
 * device is one extent.  -EOPNOTSUPP (message names the file and the
 * filesystem) when the host cannot tell. */
int vd_host_extents(struct vd_image *img, vd_host_extent_fn fn, void *ctx,
		    struct vd_error *err);

/* ---- block devices: an image onto a device, raw-disk VMDK ------------- */

/* Copy the guest contents of SRC onto the block device DEV, in place (no
 * temporary file).  DEV is opened with O_EXCL: -EBUSY when it is mounted or
 * in use, and the in-use guard refuses it when it or a partition of it is
 * mounted or swap, held by another device, open by another process (FORCE:
 * a warning), or a loop device backed by a file of SRC (always).  A device
 * that holds a filesystem or partition-table signature (libblkid) is
 * refused with -EEXIST unless FORCE.  A device smaller than the image is refused (-ENOSPC) before
 * anything is written; the bytes of a larger one past the image (from the
 * sector after the image's last byte) are not touched.  The device is never
 * assumed to be zero: ranges that read as zeros in SRC are zeroed with a
 * discard that guarantees zeros or BLKZEROOUT, else by writing zeros (unless
 * TARGET_IS_ZERO).  Ends with fsync; VERIFY then reads the device back
 * (page cache dropped first) and compares it with SRC. */
struct vd_devcopy_opts {
	const char *src_format;     /* NULL: probe */
	unsigned src_open_flags;    /* extra VD_OPEN_* for the source */
	bool target_is_zero;        /* DEV already reads as zeros */
	bool direct;                /* O_DIRECT (sector-aligned transfers) */
	bool verify;                /* read back and compare after the copy */
	/* write over a device that holds a filesystem or partition-table
	 * signature, or that another process has open (a warning in
	 * RES->warning); never over a mounted or swap device */
	bool force;
	vd_progress_fn progress;    /* copy, then (VERIFY) the read-back */
	void *progress_ctx;
	const volatile int *cancel; /* non-zero: stop with -ECANCELED */	/* sequential sources, as in struct vd_convert_opts */
	uint64_t stream_size;
	uint64_t source_offset, source_size;
};

struct vd_devcopy_result {
	uint64_t image_size;      /* bytes of SRC */
	uint64_t device_size;     /* bytes of DEV (BLKGETSIZE64) */
	uint32_t sector_size;     /* logical sector size of DEV */
	uint64_t data_bytes;      /* written as data */
	uint64_t zero_bytes;      /* made to read as zeros */
	uint64_t zeroed_fast;     /* of those, without writing (discard/BLKZEROOUT) */
	uint64_t tail_kept;       /* bytes of DEV past the image left as they were */
	uint64_t reached;         /* DEV holds the image below this offset; on
				   * failure or interruption the rest is old data */
	bool started;             /* something was written to DEV */
	bool verified;            /* VERIFY ran and found the device equal */
	uint64_t verify_diff;     /* first differing offset when verification failed */
	double copy_seconds, flush_seconds, verify_seconds;
	char warning[512];        /* what FORCE let through, "" if nothing */
};

/* RES (required) is filled as far as the copy got, also on failure.  A
 * failed verification returns -EIO with RES->verify_diff set. */
int vd_devcopy(const char *src, const char *dev, const struct vd_devcopy_opts *opts,
	       struct vd_devcopy_result *res, struct vd_error *err);

/* Make sure the LVM logical volume VG/NAME exists: when it does not, create
 * it with lvcreate, sized to SIZE rounded up to the volume group's extent
 * size.  Its device path goes to PATH.  *CREATED (may be NULL) tells
 * whether it was created.  Runs lvs, vgs and lvcreate from PATH; a failing
 * command's output is in the error message. */
int vd_lv_ensure(const char *vg_name, uint64_t size, char *path, size_t path_len,
		 bool *created, struct vd_error *err);

/* The VirtualBox raw-disk VMDK descriptor for the block device
 * DEV (anything else is refused with a message saying what it is: a regular
 * file, a missing device, an inactive LVM volume; with RELATIVE, a missing
 * partition device), written to OUT through a temporary file and rename.  Without
 * PARTITIONS: createType "fullDevice", one FLAT extent on DEV.  With them:
 * "partitionedDevice"; the MBR, the gap before the first partition and each
 * EBR are copied into OUT's "-pt.vmdk" file, the listed partitions are FLAT
 * extents on DEV (RELATIVE: on the partition devices, at offset 0), every
 * other partition and gap is a ZERO extent. */
struct vd_rawvmdk_opts {
	const unsigned *partitions; /* partition numbers (1-4 primary, 5.. logical) */
	unsigned npartitions;       /* 0: the whole device */
	bool relative;
	const char *adapter;        /* ide (NULL), buslogic, lsilogic, legacyESX */
	bool force;                 /* replace existing OUT (and OUT-pt.vmdk) */
	bool deterministic;         /* fixed CID and UUID */
};
int vd_rawvmdk(const char *dev, const char *out, const struct vd_rawvmdk_opts *opts,
	       struct vd_error *err);

/* ---- guest filesystems: free space; the in-use guard ------------------- */

/* The free space of the filesystem in [PART_OFF, PART_OFF+PART_LEN) of the
 * guest disk, read from the filesystem's own allocation maps through
 * vd_read (never mounted): ext2/3/4 (block bitmaps; 32- and 64-bit group
 * descriptors, flex_bg, BLOCK_UNINIT, sparse_super), XFS v4/v5 (the
 * by-block-number free-space btree of every allocation group; AGFL blocks
 * count as used), NTFS (the $Bitmap, found through the $MFT's runlist),
 * FAT12/16/32 (the first FAT), Linux swap (everything after the header
 * page).  PART_LEN 0 means
 * to the end of the disk.
 *
 * CB gets the free ranges as absolute guest byte offsets, in increasing
 * order, merged (never adjacent or overlapping), inside the partition; a
 * non-zero return stops the walk and is returned (use a -errno).  INFO may
 * be NULL; its type, label, uuid, block_size and total_bytes are filled
 * before the first callback, free_bytes (the sum of the ranges reported)
 * when the walk ends.  Memory is bounded (one bitmap or FAT chunk at a
 * time); the cost grows with the size of the allocation maps.
 *
 * Returns 0, the callback's non-zero value, or -errno: -ENOTSUP (message
 * says what was found) for content no walker knows; -EUCLEAN for an ext
 * filesystem that needs journal recovery or is marked as having errors,
 * an XFS whose log is not provably clean (or marked NEEDSREPAIR), a FAT
 * or NTFS volume marked dirty, unless FLAGS has VD_FS_FORCE; -EINVAL for metadata that fails validation
 * (the message names the field). */
enum {
	VD_FS_FORCE = 1u << 0, /* walk a filesystem marked dirty or with errors */
};

struct vd_fs_info {
	char type[16];        /* "ext2", "ext3", "ext4", "xfs", "ntfs", "fat12", "fat16", "fat32", "swap" */
	char label[64];       /* "" if none */
	char uuid[40];        /* "" if none; FAT: the volume id "ABCD-1234"; NTFS: the 64-bit serial in hex */
	uint32_t block_size;  /* allocation unit: ext block, FAT or NTFS cluster, swap page */
	uint64_t total_bytes; /* size of the filesystem (<= the partition) */
	uint64_t free_bytes;  /* sum of the free ranges reported */
};

typedef int (*vd_fs_free_fn)(void *ctx, uint64_t off, uint64_t len);

int vd_fs_free_ranges(struct vd_image *img, uint64_t part_off, uint64_t part_len,
		      unsigned flags, vd_fs_free_fn cb, void *ctx,
		      struct vd_fs_info *info, struct vd_error *err);
/* vd_fs_free_ranges that stops with -ECANCELED ("interrupted") as soon as
 * *CANCEL is non-zero (NULL: never); every walker checks it in each of
 * its loops (each read, each range, each group or allocation group). */
int vd_fs_free_ranges_cancel(struct vd_image *img, uint64_t part_off, uint64_t part_len,
			     unsigned flags, const volatile int *cancel,
			     vd_fs_free_fn cb, void *ctx,
			     struct vd_fs_info *info, struct vd_error *err);

/* The in-use guard is not a call of its own: every file of an image
 * opened with VD_OPEN_RDWR or VD_OPEN_EXCLUSIVE (the descriptor and each
 * extent) is locked and checked before it is opened for writing, and held
 * until vd_close.  The open fails with -EBUSY, naming the file and what
 * uses it, when the file is: open in this command already (as another
 * path to the same inode); locked by another vdisk (flock LOCK_EX; readers
 * hold LOCK_SH, so an image being changed cannot be read and an image
 * being read cannot be changed); locked by QEMU (its OFD lock bytes
 * 100..299; vdisk takes them too, so QEMU sees vdisk); a mount source or
 * mount point; an active swap file; backing a loop device (any offset),
 * mounted or not, or one whose partition or stacked device is mounted or
 * swap; open for writing by another process (the PID is named).  A block
 * device is refused when it or one of its partitions is mounted, active
 * swap, held by another device, or open by another process (the last one
 * only a warning for device copies with VD_DEVCOPY force). */

/* Make the free space of the guest filesystems in PATH read as zeros,
 * with the cheapest correct action per range (block status decides; what
 * it says reads as zeros is never read):
 *   - whole blocks/grains of a dynamic VDI or sparse VMDK, whole 4 KiB
 *     units of a raw file: discarded (zero block, unallocated grain, hole),
 *     then checked with block status; what was not released is handled
 *     as below;
 *   - anything else stored (partly free blocks, fixed VDI, flat VMDK): read,
 *     and zeros written only where the data is not already zero (never
 *     unmapped, so preallocated images stay allocated).
 * PART 0 walks the whole disk if it holds a filesystem, else every
 * partition of the MBR or GPT (vd_ptable_read; content no walker knows is
 * reported with status -ENOTSUP and left alone).  Takes the in-use guard for the whole run.  A discarded VDI
 * block leaves its slot leaked (vdisk check exit 3) until compact or
 * check -r reclaims it. */
struct vd_zerofree_part;
struct vd_zerofree_opts {
	const char *format;          /* NULL: probe */
	unsigned part;               /* MBR or GPT partition number, 0: see above */
	bool dry_run;                /* count only: nothing is written */
	bool force;                  /* VD_FS_FORCE for the walkers */
	vd_progress_fn progress;     /* bytes of the walked partitions */
	void *progress_ctx;
	const volatile int *cancel;  /* non-zero: stop with -ECANCELED */
	/* called after each partition (or the whole disk); may be NULL */
	void (*report)(void *ctx, const struct vd_zerofree_part *p);
	void *report_ctx;
	/* called with each free range (absolute guest offsets) before it is
	 * handled; may be NULL */
	void (*range)(void *ctx, uint64_t off, uint64_t len);
	void *range_ctx;
};

struct vd_zerofree_part {
	unsigned number;             /* MBR or GPT partition number, 0: whole disk */
	uint64_t offset, length;     /* bytes */
	uint8_t mbr_type;            /* 0 for the whole disk and GPT partitions */
	char type_guid[37];          /* GPT partition type, "" otherwise */
	int status;                  /* 0, or -ENOTSUP: left alone (see note) */
	char note[256];              /* why it was left alone */
	struct vd_fs_info fs;
	uint64_t free_bytes;         /* free in the filesystem */
	uint64_t zero_bytes;         /* already zero: not stored, or read as zeros */
	uint64_t zeroed_bytes;       /* non-zero data overwritten with zeros */
	uint64_t released_bytes;     /* discarded or punched (not read) */
	uint64_t released_blocks;    /* of res->unit bytes */
	uint64_t read_bytes;         /* read to find what was not zero */
};

struct vd_zerofree_result {
	const char *format;
	char subformat[32];
	uint32_t unit;               /* release unit: VDI block, VMDK grain, 4096 */
	unsigned parts;              /* filesystems walked */
	unsigned skipped;            /* partitions left alone */
	struct vd_zerofree_part total; /* sums over the walked filesystems */
	/* After releasing blocks of a dynamic VDI, the slots they left are
	 * filled with the last blocks of the file and the file is shortened
	 * (as 'vdisk check -r' does), so the header's block count matches the
	 * map again and other tools (qemu-img check) accept the image. */
	uint64_t file_size_before, file_size_after;
	unsigned slots_moved;
	char table_note[320];        /* the partition table: why the backup GPT
				      * was used (vd_ptable.note), "" if not */
};

int vd_zerofree(const char *path, const struct vd_zerofree_opts *opts,
		struct vd_zerofree_result *res, struct vd_error *err);

/* ---- partitioning: CHS geometry, MBR tables, content probing ----------- */

/* Legacy geometry of a disk of SIZE bytes (what fdisk shows for an image:
 * 255 heads, 63 sectors per track by default). */
struct vd_geometry {
	uint64_t size;            /* bytes */
	uint64_t total_sectors;   /* size / 512 */
	uint32_t heads, sectors;  /* per cylinder, per track */
	uint64_t cylinder_sectors;
	uint64_t cylinder_bytes;
	uint64_t cylinders;       /* whole cylinders */
	uint64_t usable_bytes;    /* cylinders * cylinder_bytes */
	uint64_t lost_bytes;      /* size - usable_bytes */
	/* a whole-disk partition laid out by cylinders: sector SECTORS (63)
	 * to the end of the last whole cylinder (0 sectors if none fits) */
	uint64_t legacy_start, legacy_sectors;
	/* the same aligned to 1 MiB: sector 2048 to the end of the disk */
	uint64_t modern_start, modern_sectors;
};

/* HEADS 1..255, SECTORS 1..63 (0 for either: 255/63). */
int vd_geometry_compute(uint64_t size, uint32_t heads, uint32_t sectors,
			struct vd_geometry *g, struct vd_error *err);

struct vd_chs {
	uint32_t cylinder, head, sector;
};
/* LBA as cylinder/head/sector, not clamped. */
void vd_lba_to_chs(uint64_t lba, uint32_t heads, uint32_t sectors,
		   struct vd_chs *chs);
/* The 3 bytes of an MBR entry for LBA, as sfdisk writes them: past
 * cylinder 1023 the cylinder-1023/last-head/last-sector value. */
void vd_chs_encode(uint64_t lba, uint32_t heads, uint32_t sectors,
		   uint8_t out[3]);
void vd_chs_decode(const uint8_t in[3], struct vd_chs *chs);

#define VD_MBR_MAX_PARTS 128 /* 4 primary + up to 124 logical */

struct vd_mbr_part {
	unsigned number;          /* 1..4 primary, 5.. logical */
	uint64_t start, size;     /* sectors, absolute */
	uint8_t type;
	bool bootable;
	uint64_t ebr;             /* logical: sector of its EBR */
	/* as stored (filled by vd_mbr_read and vd_mbr_encode) */
	uint8_t status;
	uint8_t chs_start[3], chs_end[3];
};

struct vd_mbr {
	uint32_t disk_id;
	uint64_t disk_sectors;    /* size of the disk in sectors */
	unsigned nparts;          /* primaries by number, then logicals in chain order */
	struct vd_mbr_part part[VD_MBR_MAX_PARTS];
};

static inline bool vd_mbr_is_extended(uint8_t type)
{
	return type == 0x05 || type == 0x0f || type == 0x85;
}

/* Read the MBR and the EBR chain of IMG.  -ENOENT when sector 0 holds no
 * partition table (no 55 AA signature, or status bytes other than 0x00 and
 * 0x80, as in a FAT boot sector); -EINVAL for a broken EBR chain. */
int vd_mbr_read(struct vd_image *img, struct vd_mbr *mbr, struct vd_error *err);

/* ---- partition tables for reading: MBR (dos) or GPT ------------------- */

/* Linux addresses at most 256 partitions per disk; a GPT with more entries
 * in use is refused. */
#define VD_PTABLE_MAX_PARTS 256

struct vd_ptable_part {
	unsigned number;          /* dos: 1..4 primary, 5.. logical; gpt: entry index + 1 */
	uint64_t start, size;     /* sectors, absolute */
	/* dos */
	uint8_t mbr_type;
	bool extended;            /* an extended partition (holds the logicals) */
	bool bootable;
	/* gpt: GUIDs lower case (as libblkid prints them; sfdisk prints them
	 * upper case) */
	char type_guid[37];
	char uuid[37];            /* unique partition GUID */
	char name[112];           /* UTF-16LE name as UTF-8, "" if none */
	uint64_t attrs;
};

#define VD_PTABLE_MAX_OVERLAPS 16
struct vd_ptable_overlap {
	unsigned a, b;            /* partition numbers; B 0: the table itself (B_EBR: the EBR of partition B) */
	bool b_ebr;
	uint64_t a_start, a_end;  /* sectors, inclusive */
	uint64_t b_start, b_end;
};

struct vd_ptable {
	char label[4];            /* "dos" or "gpt" */
	uint32_t disk_id;         /* dos */
	char disk_guid[37];       /* gpt */
	uint64_t disk_sectors;
	uint64_t first_lba, last_lba; /* gpt: usable range */
	uint64_t header_lba;      /* gpt: the header used (1, or the backup's) */
	unsigned nentries;        /* gpt: entries in the array */
	bool backup_used;         /* gpt: the primary header or entries are damaged */
	char note[320];           /* why the backup is used, "" otherwise */
	unsigned nparts;          /* dos: as vd_mbr_read; gpt: in entry order */
	struct vd_ptable_part part[VD_PTABLE_MAX_PARTS];
	/* vd_ptable_read_overlaps: partitions sharing sectors (dos: two
	 * primaries, a primary and the extended partition, two logicals, a
	 * primary and a logical; a partition over sector 0 or over an EBR;
	 * gpt: two entries).  NOVERLAPS counts them all, OVERLAP holds the
	 * first VD_PTABLE_MAX_OVERLAPS in table order. */
	unsigned noverlaps;
	struct vd_ptable_overlap overlap[VD_PTABLE_MAX_OVERLAPS];
};

/* Read the partition table of IMG (512-byte sectors).  When sector 0 is a
 * protective or hybrid MBR (an entry of type 0xee), the GPT: the primary
 * header at LBA 1 and its entries, or, when they fail validation, the
 * backup header (the primary's alternate LBA, else the last sector) and
 * its entries, with PT->note saying why.  Every field is checked before
 * use (signature, revision, header size and CRC, LBAs, entry size and
 * count, entries array inside the disk and off the usable range, at most
 * 1 MiB, its CRC; each partition first <= last inside the usable range,
 * no overlaps).  Otherwise the MBR, as vd_mbr_read.  -ENOENT when there
 * is no partition table; -EINVAL (the message names the field and value)
 * when both GPT copies fail validation, or for a broken EBR chain. */
int vd_ptable_read(struct vd_image *img, struct vd_ptable *pt, struct vd_error *err);
/* The same, but overlapping partitions (in an MBR or a GPT) are listed in
 * PT->overlap instead of failing: for commands that show a table (info,
 * geometry, check) or touch one partition the user named.  vd_ptable_read
 * itself refuses them with -EINVAL naming both partitions and their
 * sectors, so that a writer walking every partition never touches one
 * partition's data because another, stale entry covers it. */
int vd_ptable_read_overlaps(struct vd_image *img, struct vd_ptable *pt, struct vd_error *err);
/* "partition 2 (sectors 6144..20479) overlaps partition 1 (sectors
 * 2048..10239)" (GPT: LBAs), or "... overlaps the EBR of partition 6
 * (sector N)", "... overlaps the MBR (sector 0)". */
void vd_ptable_overlap_text(const struct vd_ptable *pt, const struct vd_ptable_overlap *o,
			    char *buf, size_t len);
/* Is partition NUMBER one of PT's overlaps? */
bool vd_ptable_part_overlaps(const struct vd_ptable *pt, unsigned number);

/* The partition numbered NUMBER, NULL if none. */
const struct vd_ptable_part *vd_ptable_find(const struct vd_ptable *pt, unsigned number);

/* GPT header signatures ("EFI PART") on IMG: bit 0 set for sector 1, bit 1
 * for the last sector (the usual backup place); <0 on read errors.  An MBR
 * written over a GPT disk must not leave them behind (tools would find two
 * tables). */
int vd_gpt_signatures(struct vd_image *img, struct vd_error *err);
/* Erase the signatures vd_gpt_signatures finds (the 8 bytes, as wipefs
 * does); the rest of the old GPT is left as unused data. */
int vd_gpt_wipe(struct vd_image *img, struct vd_error *err);

/* Name of a GPT partition type GUID ("Linux filesystem", "EFI System"),
 * "unknown" if none. */
const char *vd_gpt_type_name(const char *type_guid);

/* Decode a GPT partition name: NUNITS UTF-16LE code units up to the first
 * NUL, as UTF-8 (unpaired surrogates become U+FFFD) into OUT (OUTLEN bytes,
 * NUL-terminated, truncated at a character boundary). */
void vd_gpt_name_decode(const uint8_t *utf16le, unsigned nunits, char *out, size_t outlen);

/* Everything vd_mbr_write checks: numbering, types, bounds (inside the disk
 * and 32-bit LBA fields), overlaps, logicals and their EBRs inside the one
 * extended partition, in disk order. */
int vd_mbr_validate(const struct vd_mbr *mbr, struct vd_error *err);

/* Validate MBR, then write the EBRs (first) and sector 0 of IMG.  Bytes
 * 0..439 of sector 0 are kept, or replaced by BOOTCODE (440 bytes) when it
 * is not NULL.  CHS fields use HEADS/SECTORS (0: 255/63). */
int vd_mbr_write(struct vd_image *img, const struct vd_mbr *mbr,
		 const uint8_t *bootcode, uint32_t heads, uint32_t sectors,
		 struct vd_error *err);

/* An sfdisk-style script: header lines, then one line per partition. */
enum { VD_SIZE_REST = 0, VD_SIZE_SECTORS = 1, VD_SIZE_BYTES = 2 };
struct vd_mbr_spec {
	unsigned number;          /* from "NAME3 :", 0 if no name */
	bool start_set;
	uint64_t start;           /* sectors */
	int size_mode;            /* VD_SIZE_*: BYTES sizes get their end aligned */
	uint64_t size;            /* sectors */
	uint8_t type;
	bool bootable;
	unsigned line;            /* line number in the script */
};
struct vd_mbr_script {
	bool label_id_set;
	uint32_t label_id;
	unsigned n;
	struct vd_mbr_spec spec[VD_MBR_MAX_PARTS];
};
int vd_mbr_parse_script(const char *text, struct vd_mbr_script *s,
			struct vd_error *err);

enum { VD_ALIGN_MIB = 0, VD_ALIGN_CYLINDER = 1 };
/* Place the script's partitions on a disk of DISK_SECTORS the way sfdisk
 * does (default start: next aligned free sector; default size: the rest of
 * the free space) and fill MBR (disk_id: the script's, else DISK_ID). */
int vd_mbr_layout(const struct vd_mbr_script *s, uint64_t disk_sectors,
		  int align, uint32_t heads, uint32_t sectors, uint32_t disk_id,
		  struct vd_mbr *mbr, struct vd_error *err);

/* Name of a partition type ("Linux", "W95 FAT32 (LBA)"), "unknown" if none. */
const char *vd_mbr_type_name(uint8_t type);

/* What libblkid finds in a range of the guest disk. */
struct vd_content {
	char type[32];    /* "ext4", "vfat", "swap", "xfs", "dos" ...; "" if nothing */
	char usage[24];   /* "filesystem", "other", "partition table", ... */
	char version[32];
	char label[128];
	char uuid[64];
	uint64_t block_size; /* BLOCK_SIZE if the prober reports one, else 0 */
};
/* Probe [OFF, OFF+LEN) of IMG through the block-I/O layer: the first 4 MiB
 * and the last 1 MiB of the range are copied into a sparse memory file of
 * LEN bytes that libblkid reads.  0 with C->type "" when nothing is found. */
int vd_probe_content(struct vd_image *img, uint64_t off, uint64_t len,
		     struct vd_content *c, struct vd_error *err);

/* ---- building partitioned images in one pass (vdisk create --script) --- */

/* One sector of a table as vd_mbr_encode lays it out. */
struct vd_mbr_sector {
	uint64_t lba;
	uint8_t data[512];
};
#define VD_MBR_MAX_SECTORS (VD_MBR_MAX_PARTS + 1)

/* The sectors vd_mbr_write would write, without an image: sector 0 (boot
 * code BOOTCODE or zeros, disk identifier, entries, signature), then the
 * EBRs in chain order, i.e. in increasing LBA.  OUT has room for
 * VD_MBR_MAX_SECTORS; *N is set to the number filled. */
int vd_mbr_encode(const struct vd_mbr *mbr, const uint8_t *bootcode,
		  uint32_t heads, uint32_t sectors, struct vd_mbr_sector *out,
		  unsigned *n, struct vd_error *err);

/* The content of one partition: an image file of any format vdisk reads
 * (raw included), copied from guest offset 0. */
struct vd_build_part {
	unsigned number;            /* partition number, 1..4 primary, 5.. logical */
	const char *path;
	const char *format;         /* NULL: probe */
};

struct vd_build_opts {
	const char *format;         /* required: output format */
	const char *format_opts;    /* creation options, NULL: defaults */
	uint64_t size;              /* bytes; 0: just large enough for the
				     * script (every partition needs a size
				     * or a file; the disk ends at the next
				     * 1 MiB boundary) */
	const char *script;         /* sfdisk-style script (partition lines may
				     * carry file=PATH); NULL: no table */
	const char *script_name;    /* for messages ("script" if NULL) */
	int align;                  /* VD_ALIGN_MIB or VD_ALIGN_CYLINDER */
	uint32_t heads, sectors;    /* CHS fields (0: 255/63) */
	const struct vd_build_part *parts; /* more contents, by number */
	unsigned nparts;
	const uint8_t *bootcode;    /* 440 bytes or NULL (zeros) */
	bool deterministic;         /* identifiers derived from the inputs */
	const char *uuid;           /* image UUID, NULL: derived or random */
	bool label_id_set;          /* disk identifier given (wins over the script) */
	uint32_t label_id;
	bool force;                 /* replace an existing destination */
	bool checksums;             /* SHA-256 of every output file afterwards */
	vd_progress_fn progress;
	void *progress_ctx;
	const volatile int *cancel; /* non-zero: stop with -ECANCELED */
};

struct vd_build_file {
	char *path;
	uint64_t size;              /* bytes */
	char sha256[65];            /* "" unless opts->checksums */
};

struct vd_build_summary {
	uint64_t size;              /* guest size in bytes */
	bool has_table;
	struct vd_mbr mbr;          /* the table written */
	/* per mbr.part[i]: */
	char *part_file[VD_MBR_MAX_PARTS];       /* input, NULL if none */
	uint64_t part_file_size[VD_MBR_MAX_PARTS]; /* its guest size */
	uint64_t part_data[VD_MBR_MAX_PARTS];      /* bytes of it written */
	uint64_t data_bytes;        /* all bytes written (tables included) */
	char uuid[37], uuid_modify[37]; /* the new image's identifiers, as
					 * vd_get_info reports them ("" if none) */
	char cid[9];
	unsigned nfiles;            /* the output's files, main file first */
	struct vd_build_file *files;
};

/* Build DST in one pass, in increasing guest order (so streamOptimized VMDK
 * works): the MBR, each partition's content and the EBRs.  Every input is
 * opened and every size checked before anything is created.  Contents are
 * copied by block status; 4 KiB units of zeros are not written, so the
 * output is sparse and depends only on the inputs' contents.  With
 * DETERMINISTIC, UUIDs, CID and the disk identifier come from a SHA-256
 * over the options, the table and the inputs' contents (a first read
 * pass).  The image is built in a temporary file and renamed into place
 * only when complete.  SUM is filled on success; free it with
 * vd_build_summary_free. */
int vd_build(const char *dst, const struct vd_build_opts *opts,
	     struct vd_build_summary *sum, struct vd_error *err);
void vd_build_summary_free(struct vd_build_summary *sum);

#ifdef __cplusplus
}
#endif
#endif
