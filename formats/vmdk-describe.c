/*
 * VMDK: the typed description of an open image (its files, their access
 * and guest ranges, how it allocates) and its identity (the descriptor's
 * CID, UUIDs and disk database), and what create keeps of an identity.
 *
 * SPDX-License-Identifier: MIT
 */
#include "vmdk.h"

#include <stdio.h>
#include <stdlib.h>

static const int access_of[] = {
	[VMDK_RW] = VD_FILE_RW,
	[VMDK_RDONLY] = VD_FILE_RDONLY,
	[VMDK_NOACCESS] = VD_FILE_NOACCESS,
};

/* A raw-device descriptor (VirtualBox createrawvmdk) names devices, not
 * image files, whatever its extents' files are at the moment. */
static bool device_descriptor(const struct vmdk *v)
{
	return v->has_desc && (!strcmp(v->desc.create_type, "fullDevice") ||
			       !strcmp(v->desc.create_type, "partitionedDevice"));
}

int vmdk_describe(struct vd_image *img, struct vd_describe *d, struct vd_error *err)
{
	struct vmdk *v = img->priv;
	bool sparse = false, dev = device_descriptor(v), stream = false;
	bool self = false, cowd = false, se = false;
	uint64_t grain = 0;
	int r = 0;

	for (unsigned i = 0; i < v->n; i++) {
		const struct vmdk_ext *e = &v->ext[i];
		if (e->h == img->host)
			self = true;
		if (e->type == VMDK_FLAT) {
			dev |= e->h->is_blockdev;
		} else if (e->type == VMDK_SPARSE) {
			sparse = true;
			stream |= e->sp->compressed;
			grain = VD_MAX(grain, e->sp->grain * VD_SECTOR);
		} else if (e->type == VMDK_COWD) {
			sparse = cowd = true;
			grain = VD_MAX(grain, vmdk_cowd_grain_bytes(e->cw));
		} else if (e->type == VMDK_SESPARSE) {
			sparse = cowd = se = true; /* no discard either */
			grain = VD_MAX(grain, vmdk_se_grain_bytes(e->se));
		}
	}
	d->alloc = dev ? VD_ALLOC_DEVICE : stream ? VD_ALLOC_STREAM :
		   sparse ? VD_ALLOC_BLOCKS : VD_ALLOC_FULL;
	d->block_size = sparse && grain <= UINT32_MAX ? (uint32_t)grain : 0;
	/* a discarded whole grain of a sparse extent becomes a hole */
	d->discard_releases = sparse && !stream && !dev && !cowd;
	d->discard_granularity = d->block_size;
	d->zero_granularity = VD_SECTOR;
	d->rewritable = !stream && !se; /* vdisk writes no seSparse */
	d->subformat = v->has_desc && v->desc.create_type[0] ? v->desc.create_type : NULL;
	if (!self)
		r = vd_describe_add(d, img->host->path, VD_FILE_DESCRIPTOR, VD_FILE_RW, 0, 0, 0,
				    img->host->is_blockdev, err);
	for (unsigned i = 0; i < v->n && r == 0; i++) {
		const struct vmdk_ext *e = &v->ext[i];
		if (e->type == VMDK_ZERO)
			r = vd_describe_add(d, NULL, VD_FILE_EXTENT, VD_FILE_ZERO, e->start, e->length,
					    0, false, err);
		else
			r = vd_describe_add(d, e->h->path, e->h == img->host ? VD_FILE_IMAGE : VD_FILE_EXTENT,
					    access_of[e->access], e->start, e->length,
					    e->type == VMDK_FLAT ? e->flat_off : 0, e->h->is_blockdev, err);
	}
	return r;
}

/* "" for the nil UUID, which VMDK writers put where there is none. */
static void uuid_copy(char out[37], const char *in)
{
	if (!strcmp(in, "00000000-0000-0000-0000-000000000000"))
		in = "";
	snprintf(out, 37, "%s", in);
}

int vmdk_identity(struct vd_image *img, struct vd_identity *id, struct vd_error *err)
{
	struct vmdk *v = img->priv;
	const struct vmdk_desc *d = &v->desc;
	char *end;
	unsigned long hw;

	(void)err;
	if (!v->has_desc)
		return 0; /* a bare sparse extent: no descriptor, no identity */
	uuid_copy(id->uuid, d->uuid_image[0] ? d->uuid_image : d->uuid_vmware);
	uuid_copy(id->modification_uuid, d->uuid_modify);
	uuid_copy(id->parent_uuid, d->uuid_parent);
	uuid_copy(id->parent_modification_uuid, d->uuid_parent_modify);
	id->has_cid = true;
	id->cid = d->cid;
	id->parent_cid = d->parent_cid;
	snprintf(id->parent_name, sizeof(id->parent_name), "%s", d->parent_name);
	snprintf(id->adapter_type, sizeof(id->adapter_type), "%s", d->adapter);
	hw = strtoul(d->hwversion, &end, 10);
	id->hw_version = d->hwversion[0] && !*end && hw <= 999 ? (unsigned)hw : 0;
	snprintf(id->tools_version, sizeof(id->tools_version), "%s", d->tools_version);
	snprintf(id->long_content_id, sizeof(id->long_content_id), "%s", d->long_content_id);
	id->cylinders = d->cylinders;
	id->heads = d->heads;
	id->sectors = d->sectors;
	id->bios_cylinders = d->bios_cylinders;
	id->bios_heads = d->bios_heads;
	id->bios_sectors = d->bios_sectors;
	/* The dialect, by the keys only VMware writes (vmdk-desc.c has where
	 * each comes from): ddb.uuid in VMware's byte form or thinProvisioned,
	 * with isNativeSnapshot for Workstation.  A longContentID alone is no
	 * sign (ovftool's exports, iotest-version3.vmdk, and other writers
	 * carry one); VirtualBox's lines are the plain form's. */
	if (d->uuid_vmware[0] && d->native_snapshot)
		snprintf(id->vmdk_dialect, sizeof(id->vmdk_dialect), "workstation");
	else if (d->uuid_vmware[0] || d->thin)
		snprintf(id->vmdk_dialect, sizeof(id->vmdk_dialect), "esxi");
	id->thin_provisioned = d->thin;
	return 0;
}

/* A value that can be written back between double quotes on one line. */
static bool plain(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == '"' || *s == '\\' || *s == 0x7f)
			return false;
	return true;
}

void vmdk_create_identity(struct vmdk_desc *d, const struct vd_identity *id)
{
	if (id->adapter_type[0] && plain(id->adapter_type))
		snprintf(d->adapter, sizeof(d->adapter), "%s", id->adapter_type);
	if (id->hw_version)
		snprintf(d->hwversion, sizeof(d->hwversion), "%u", id->hw_version);
	if (id->tools_version[0] && plain(id->tools_version))
		snprintf(d->tools_version, sizeof(d->tools_version), "%s", id->tools_version);
	if (id->long_content_id[0] && plain(id->long_content_id))
		snprintf(d->long_content_id, sizeof(d->long_content_id), "%s", id->long_content_id);
	if (!strcmp(id->vmdk_dialect, "esxi"))
		d->dialect = VMDK_ESXI;
	else if (!strcmp(id->vmdk_dialect, "workstation"))
		d->dialect = VMDK_WORKSTATION;
	d->thin = id->thin_provisioned;
	if (id->bios_heads && id->bios_sectors) {
		d->bios_cylinders = id->bios_cylinders;
		d->bios_heads = id->bios_heads;
		d->bios_sectors = id->bios_sectors;
	}
}
