/*
 * The typed description of an image layer (vd_describe) and its identity
 * (vd_get_identity): what operations ask instead of comparing format names.
 *
 * The core fills the defaults first (a raw-like layer: guest offset = file
 * offset, one IMAGE file, read-write) and the backend's describe overwrites
 * what differs, so a backend without one is described conservatively:
 * nothing is promised about discards releasing space.
 *
 * SPDX-License-Identifier: MIT
 */
#include "vdisk-int.h"

#include <errno.h>
#include <stdlib.h>
#include <uuid/uuid.h>

int vd_describe_add(struct vd_describe *d, const char *path, int role, int access,
		    uint64_t guest_off, uint64_t guest_len, uint64_t file_off,
		    bool block_device, struct vd_error *err)
{
	struct vd_file_desc *n, *f;

	n = realloc(d->files, (d->nfiles + 1) * sizeof(*n));
	if (!n)
		return vd_set_error(err, ENOMEM, "out of memory");
	d->files = n;
	f = &n[d->nfiles];
	memset(f, 0, sizeof(*f));
	if (path && !(f->path = strdup(path)))
		return vd_set_error(err, ENOMEM, "out of memory");
	f->role = role;
	f->access = access;
	f->guest_off = guest_off;
	f->guest_len = guest_len;
	f->file_off = file_off;
	f->block_device = block_device;
	d->nfiles++;
	return 0;
}

void vd_describe_free(struct vd_describe *d)
{
	if (!d)
		return;
	for (unsigned i = 0; i < d->nfiles; i++)
		free(d->files[i].path);
	free(d->files);
	d->files = NULL;
	d->nfiles = 0;
}

int vd_describe(struct vd_image *img, struct vd_describe *d, struct vd_error *err)
{
	int r;

	memset(d, 0, sizeof(*d));
	d->alloc = img->host->is_blockdev ? VD_ALLOC_DEVICE : VD_ALLOC_RAW;
	d->zero_init = img->drv->zero_init;
	d->rewritable = img->drv->write != NULL;
	d->starts_zeroed = true;
	d->zero_granularity = img->align > 1 ? img->align : 0;
	if (img->drv->describe) {
		r = img->drv->describe(img, d, err);
	} else {
		r = vd_describe_add(d, img->host->path, VD_FILE_IMAGE, VD_FILE_RW, 0, img->size, 0,
				    img->host->is_blockdev, err);
	}
	/* a child: what it does not hold is the parent's, not zeros */
	if (img->has_parent) {
		d->starts_zeroed = false;
		if (r == 0 && img->backing)
			r = vd_describe_add(d, img->backing->host->path, VD_FILE_PARENT, VD_FILE_RDONLY,
					    0, 0, 0, img->backing->host->is_blockdev, err);
	}
	if (r == 0 && d->nfiles == 0)
		r = vd_set_error(err, EINVAL, "%s: the %s backend describes no file",
				 img->host->path, img->drv->name);
	if (r < 0)
		vd_describe_free(d);
	return r;
}

int vd_get_identity(struct vd_image *img, struct vd_identity *id, struct vd_error *err)
{
	memset(id, 0, sizeof(*id));
	id->parent_cid = 0xffffffffu;
	if (!img->drv->identity)
		return 0;
	return img->drv->identity(img, id, err);
}

void vd_identity_keep(struct vd_identity *id, unsigned keep)
{
	if (!(keep & VD_ID_UUIDS))
		id->uuid[0] = id->modification_uuid[0] = '\0';
	if (!(keep & VD_ID_PARENT)) {
		id->parent_uuid[0] = id->parent_modification_uuid[0] = '\0';
		id->parent_name[0] = '\0';
		id->parent_cid = 0xffffffffu;
	}
	if (!(keep & VD_ID_CID)) {
		id->has_cid = false;
		id->cid = 0;
	}
	if (!(keep & VD_ID_ADAPTER))
		id->adapter_type[0] = '\0';
	if (!(keep & VD_ID_HW_VERSION))
		id->hw_version = 0;
	if (!(keep & VD_ID_TOOLS_VERSION))
		id->tools_version[0] = '\0';
	if (!(keep & VD_ID_LONG_CONTENT_ID))
		id->long_content_id[0] = '\0';
	if (!(keep & VD_ID_GEOMETRY))
		id->cylinders = id->heads = id->sectors = 0;
	if (!(keep & VD_ID_BIOS_GEOMETRY))
		id->bios_cylinders = id->bios_heads = id->bios_sectors = 0;
	if (!(keep & VD_ID_COMMENT))
		id->comment[0] = '\0';
	if (!(keep & VD_ID_DIALECT)) {
		id->vmdk_dialect[0] = '\0';
		id->thin_provisioned = false;
	}
}

unsigned vd_format_identity_fields(const char *format)
{
	const struct vd_driver *drv = format ? vd_driver_find(format) : NULL;

	return drv ? drv->identity_fields : 0;
}

int vd_uuid_choose(uint8_t u[16], struct vd_opts *o, const char *key, const char *given,
		   bool deterministic, unsigned seed, struct vd_error *err)
{
	static const uint8_t nil[16];

	if (o && vd_opts_get(o, key))
		return vd_uuid_option(u, o, key, deterministic, seed, err);
	if (given && given[0]) {
		if (uuid_parse(given, u) != 0)
			return vd_set_error(err, EINVAL, "identity %s: '%s' is not a UUID", key, given);
		if (memcmp(u, nil, 16))
			return 0;
	}
	vd_uuid_new(u, deterministic, seed);
	return 0;
}
