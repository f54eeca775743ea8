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
};

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
			   * (extents of split VMDKs); NULL otherwise */
};

/* Status of the range starting at OFF: fills one extent that starts at OFF
 * and is at most LEN bytes long (never 0 bytes when LEN > 0). */
int vd_block_status(struct vd_image *img, uint64_t off, uint64_t len,
		    struct vd_extent *ext, struct vd_error *err);

/* ---- info -------------------------------------------------------------- */

#define VD_INFO_MAX_EXTRA 24

struct vd_info_kv {
	char key[32];
	char value[288];
	bool is_number; /* value is a decimal integer: print unquoted in JSON */
};

struct vd_info {
	const char *format;       /* "raw", "vdi" */
	char subformat[32];       /* "dynamic", "fixed", "" */
	uint64_t virtual_size;
	uint64_t file_size;       /* apparent size of the image file(s) */
	uint64_t allocated_bytes; /* guest bytes stored as data in the image */
	uint64_t host_bytes;      /* bytes the host filesystem has allocated */
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

/* Names of the registered formats, NULL-terminated. */
const char *const *vd_formats(void);
bool vd_format_can_create(const char *format);

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
	unsigned create_flags;     /* VD_CREATE_* */
	unsigned src_open_flags;   /* extra VD_OPEN_* for the source */
	vd_progress_fn progress;
	void *progress_ctx;
	const volatile int *cancel; /* non-zero: stop with -ECANCELED */
};

/* Copy the guest contents of SRC into DST.  A new DST is built in a
 * temporary file beside it and renamed into place only on success. */
int vd_convert(const char *src, const char *dst,
	       const struct vd_convert_opts *opts, struct vd_error *err);

struct vd_compare_opts {
	bool strict;                /* images of different size differ */
	vd_progress_fn progress;
	void *progress_ctx;
	const volatile int *cancel;
};

/* Returns 0 equal, 1 different (*diff_off set), <0 error. */
int vd_compare(struct vd_image *a, struct vd_image *b,
	       const struct vd_compare_opts *opts, uint64_t *diff_off,
	       struct vd_error *err);

/* ---- small helpers the CLI shares ------------------------------------- */

/* "10G", "512M", "1.5G", "4141875200", "64k" (binary units). */
int vd_parse_size(const char *s, uint64_t *out);

#ifdef __cplusplus
}
#endif
#endif
