/*
 * The backend contract: what a format backend (formats/) implements
 * (struct vd_driver over struct vd_image) and the core services it may
 * use (the chain's reads, describe and info helpers, new outputs' extra
 * files, the path policy for files an image names).  Backends include
 * this header and base.h only, never ops.h.  Not installed.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef VDISK_BACKEND_H
#define VDISK_BACKEND_H

#include "base.h"

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
/* For operations: store PARENT's identity (and NAME) as IMG's link, and
 * give IMG a new modification identity (-ENOTSUP when the format cannot). */
int vd_chain_relink(struct vd_image *img, const struct vd_identity *parent, const char *name,
		    struct vd_error *err);
int vd_chain_new_modification(struct vd_image *img, struct vd_error *err);
/* The unit a write into a child is widened to (0: none). */
uint32_t vd_chain_unit(const struct vd_image *img);
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
