/*
 * VMDK: creating new images (every subformat, the compat presets, the
 * descriptor of split and flat images and their extent files), apart from
 * opening and reading existing ones in vmdk.c.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "vmdk.h"
#include "../src/core/deflate.h"

#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- create ---- */

/*
 * The presets.  The hardware version of a disk is the oldest virtual
 * hardware a VM needs to attach it, so the lowest version each product
 * accepts opens in the most places: 7 for ESXi (ESX/ESXi 4.0 and every
 * later release; pvscsi needs 7) and for Workstation (6.5 and later: what
 * vdiskmanager writes, strozfriedberg_vmdk-rs/monolithicSparse.vmdk;
 * Workstation 9's own 9, libyal_libvmdk/descriptor_file.1, would shut out
 * older products); 4 for VirtualBox (which ignores it; QEMU writes 4 too).
 * streamOptimized is an export: 4 under every preset, as VirtualBox's and
 * vmdktool's exports (glennmatthews_cot/ubuntu.2.0-disk1.vmdk, blank.vmdk)
 * carry, which ESXi's OVF import, Workstation, VirtualBox and QEMU all
 * open; 7 with pvscsi.
 */
struct preset {
	const char *name, *adapter, *hwversion;
	enum vmdk_dialect dialect;
};
static const struct preset presets[] = {
	{ "esxi", "lsilogic", "7", VMDK_ESXI },
	{ "workstation", "lsilogic", "7", VMDK_WORKSTATION },
	{ "virtualbox", "ide", "4", VMDK_VIRTUALBOX },
};

/* Physical geometry: IDE 16 heads x 63 sectors, cylinders capped at 16383
 * (libyal_libvmdk/descriptor_file.1 and the VirtualBox export
 * ubuntu.2.0-disk1.vmdk: 8 GiB = 16383/16/63).  SCSI: 255 x 63; VMware's
 * products give lsilogic and pvscsi disks below 1 GiB 64 heads x 32
 * sectors (strozfriedberg_vmdk-rs/vmfs_thick.vmdk: 2 MiB = 2/64/32; at
 * and above 1 GiB 255/63: qemu_iotests_sample_images/iotest-version3.vmdk,
 * 16 GiB = 2088/255/63). */
#define VMDK_SMALL_SCSI (1ull << 21) /* 1 GiB in sectors */
static void geometry(struct vmdk_desc *d, uint64_t sectors)
{
	bool ide = !strcmp(d->adapter, "ide");
	bool vmware = d->dialect == VMDK_ESXI || d->dialect == VMDK_WORKSTATION;
	bool small = vmware && sectors < VMDK_SMALL_SCSI &&
		     (!strcmp(d->adapter, "lsilogic") || !strcmp(d->adapter, "pvscsi"));
	uint64_t c;

	d->heads = ide ? 16 : small ? 64 : 255;
	d->sectors = small ? 32 : 63;
	c = sectors / (d->heads * d->sectors);
	if (ide && c > 16383)
		c = 16383;
	if (c > 65535)
		c = 65535;
	d->cylinders = (uint32_t)(c ? c : 1);
}

/* "dir/name.vmdk" -> "name.vmdk" */
static char *base_name(const char *path)
{
	char *dup = strdup(path), *s = NULL;

	if (dup)
		s = strdup(basename(dup));
	free(dup);
	return s;
}

/* "dir/name.vmdk" -> "name" (for extent names) */
static char *stem(const char *final)
{
	char *dup = strdup(final), *b, *s;
	size_t n;

	if (!dup)
		return NULL;
	b = basename(dup);
	n = strlen(b);
	if (n > 5 && !strcasecmp(b + n - 5, ".vmdk"))
		b[n - 5] = '\0';
	s = strdup(b);
	free(dup);
	return s;
}

static char *sibling(const char *final, const char *name)
{
	char *dup = strdup(final), *out = NULL;

	if (!dup)
		return NULL;
	if (asprintf(&out, "%s/%s", dirname(dup), name) < 0)
		out = NULL;
	free(dup);
	return out;
}

static bool hex32(const char *s)
{
	size_t n = strspn(s, "0123456789abcdefABCDEF");

	return n == 32 && !s[n];
}

/* What VMware's dialects add (vmdk-desc.c has the real images each line
 * comes from): a new random image UUID in VMware's range 60 00 C2 (every
 * ddb.uuid there), a longContentID whose last 8 hex digits are the CID
 * (vmfs_thick.vmdk, descriptor_file.1), Workstation's ddb.deletable and
 * toolsVersion "1" (vdiskmanager), thinProvisioned on ESXi hosted sparse
 * disks (not on streams: the ESXi/ovftool export iotest-version3.vmdk has
 * none).
 * UIMG is the image UUID's bytes. */
static void vmware_lines(struct vmdk_desc *d, uint8_t uimg[16], bool fresh_uuid,
			 bool sparse, bool vmfs)
{
	if (d->dialect != VMDK_ESXI && d->dialect != VMDK_WORKSTATION) {
		d->thin = false;
		return;
	}
	if (fresh_uuid) {
		uimg[0] = 0x60;
		uimg[1] = 0x00;
		uimg[2] = 0xc2;
	}
	if (!hex32(d->long_content_id)) {
		/* 24 digits unique to this disk: the UUID's random bytes */
		for (int i = 0; i < 12; i++)
			snprintf(d->long_content_id + 2 * i, 3, "%02x", uimg[4 + i]);
	}
	snprintf(d->long_content_id + 24, 9, "%08" PRIx32, d->cid);
	/* thin: sparse extents, or a vmfs disk kept from a thin one */
	d->thin = d->dialect == VMDK_ESXI && (sparse || (vmfs && d->thin));
	if (d->dialect == VMDK_WORKSTATION) {
		d->deletable = true;
		if (!d->tools_version[0])
			snprintf(d->tools_version, sizeof(d->tools_version), "1");
	}
}

int vmdk_create(struct vd_host *h, const struct vd_create_params *p,
		       struct vd_error *err)
{
	const char *sub = vd_opts_get(p->opts, "subformat");
	const char *adapter = vd_opts_get(p->opts, "adapter_type");
	const char *hw = vd_opts_get(p->opts, "hwversion");
	const char *compat = vd_opts_get(p->opts, "compat");
	const char *cid = vd_opts_get(p->opts, "cid");
	const char *gs_opt = vd_opts_get(p->opts, "grain_size");
	const char *prealloc = vd_opts_get(p->opts, "preallocation");
	const char *zlevel = vd_opts_get(p->opts, "compression_level");
	const struct vd_identity *id = p->identity;
	const struct preset *ps = NULL;
	bool falloc = false;
	uint8_t u[16], uimg[16];
	bool fresh_uuid; /* the image UUID is new and random */
	bool det = p->flags & VD_CREATE_DETERMINISTIC;
	const char *final = p->tmp ? p->tmp->final : h->path;
	uint64_t sectors = VD_ALIGN_UP(p->size, VD_SECTOR) / VD_SECTOR;
	struct vmdk_desc d = { 0 };
	bool split, flat, stream, vmfs;
	uint64_t grain = 0; /* sectors, 0: the default */
	char *base = NULL, *text = NULL;
	unsigned nfiles;
	int r;

	/* identity (compact, defrag and pipelines keep or set it) */
	r = vd_uuid_choose(u, p->opts, "uuid", id ? id->uuid : NULL, det, 0, err);
	if (r == 0)
		memcpy(uimg, u, sizeof(uimg));
	fresh_uuid = !det && !vd_opts_get(p->opts, "uuid") && !(id && id->uuid[0]);
	if (r == 0)
		r = vd_uuid_choose(u, p->opts, "uuid_modify", id ? id->modification_uuid : NULL,
				   det, 1, err);
	if (r == 0)
		vd_uuid_format(u, d.uuid_modify);
	if (r == 0)
		r = vd_opts_check_used(p->opts, "vmdk", err);
	if (r < 0)
		return r;
	if (!sub)
		sub = "monolithicSparse";
	if (strcmp(sub, "monolithicSparse") && strcmp(sub, "monolithicFlat") &&
	    strcmp(sub, "twoGbMaxExtentSparse") && strcmp(sub, "twoGbMaxExtentFlat") &&
	    strcmp(sub, "streamOptimized") && strcmp(sub, "vmfs"))
		return vd_set_error(err, EINVAL,
				    "vmdk: subformat must be monolithicSparse, monolithicFlat, twoGbMaxExtentSparse, twoGbMaxExtentFlat, streamOptimized or vmfs, not '%s'",
				    sub);
	snprintf(d.create_type, sizeof(d.create_type), "%s", sub);
	split = !strncmp(sub, "twoGb", 5);
	vmfs = !strcmp(sub, "vmfs"); /* ESXi's datastore pair: a flat extent of type VMFS */
	flat = vmfs || strstr(sub, "Flat") != NULL;
	stream = !strcmp(sub, "streamOptimized");
	snprintf(d.adapter, sizeof(d.adapter), "ide");
	snprintf(d.hwversion, sizeof(d.hwversion), "4");
	if (id)
		vmdk_create_identity(&d, id);
	if (prealloc && !strcmp(prealloc, "falloc"))
		falloc = true;
	else if (prealloc && strcmp(prealloc, "off"))
		return vd_set_error(err, EINVAL, "vmdk: preallocation must be 'off' or 'falloc', not '%s'",
				    prealloc);
	if (falloc && !flat)
		return vd_set_error(err, EINVAL, "vmdk: preallocation=falloc needs a flat subformat (monolithicFlat, twoGbMaxExtentFlat, vmfs)");
	if (vmfs && !compat && d.dialect == VMDK_PLAIN)
		d.dialect = VMDK_ESXI; /* only ESXi writes vmfs descriptors */
	if (compat) {
		for (size_t i = 0; i < VD_ARRAY_SIZE(presets); i++)
			if (!strcmp(presets[i].name, compat))
				ps = &presets[i];
		if (!ps)
			return vd_set_error(err, EINVAL, "vmdk: compat must be esxi, workstation or virtualbox, not '%s'", compat);
		snprintf(d.adapter, sizeof(d.adapter), "%s", ps->adapter);
		d.dialect = ps->dialect;
		if (vmfs && ps->dialect != VMDK_ESXI)
			return vd_set_error(err, EINVAL, "vmdk: subformat=vmfs is the ESXi datastore layout: it goes with compat=esxi (or no compat), not compat=%s",
					    compat);
	}
	if (adapter) {
		if (strcmp(adapter, "ide") && strcmp(adapter, "buslogic") &&
		    strcmp(adapter, "lsilogic") && strcmp(adapter, "legacyESX") &&
		    strcmp(adapter, "pvscsi"))
			return vd_set_error(err, EINVAL, "vmdk: adapter_type must be ide, buslogic, lsilogic, legacyESX or pvscsi, not '%s'", adapter);
		snprintf(d.adapter, sizeof(d.adapter), "%s", adapter);
	}
	if (ps)
		snprintf(d.hwversion, sizeof(d.hwversion), "%s", stream ? "4" : ps->hwversion);
	if (!strcmp(d.adapter, "pvscsi") && strtoul(d.hwversion, NULL, 10) < 7)
		snprintf(d.hwversion, sizeof(d.hwversion), "7"); /* pvscsi came with 7 */
	if (hw) {
		char *end;
		unsigned long x = strtoul(hw, &end, 10);
		if (*end || x < 1 || x > 99)
			return vd_set_error(err, EINVAL, "vmdk: hwversion must be a number from 1 to 99, not '%s'", hw);
		snprintf(d.hwversion, sizeof(d.hwversion), "%lu", x);
	}
	if (sectors == 0)
		return vd_set_error(err, EINVAL, "vmdk: size must be greater than 0");
	if (id && id->heads && id->sectors && !compat && !adapter) {
		/* the source's physical geometry, unless the adapter changes */
		d.cylinders = id->cylinders;
		d.heads = id->heads;
		d.sectors = id->sectors;
	} else {
		geometry(&d, sectors);
	}
	if (compat && !strcmp(compat, "virtualbox") && d.heads > 16) {
		/* VirtualBox discards physical geometry with more than 16 heads */
		d.heads = 16;
		d.cylinders = (uint32_t)VD_MIN(VD_MAX(sectors / (16 * 63), 1ull), 16383ull);
	}
	if (cid) {
		char *end;
		unsigned long x = strtoul(cid, &end, 16);
		if (!*cid || *end || x > 0xfffffffful || x == 0xfffffffful)
			return vd_set_error(err, EINVAL, "vmdk: cid must be 1 to 8 hex digits (not ffffffff), not '%s'", cid);
		d.cid = (uint32_t)x;
	} else if (id && id->has_cid && id->cid != 0xffffffffu) {
		d.cid = id->cid;
	} else if (det) {
		d.cid = 0x12345678u;
	} else if (getrandom(&d.cid, sizeof(d.cid), 0) != sizeof(d.cid)) {
		d.cid = 0x9e3779b9u;
	}
	snprintf(d.uuid_parent, sizeof(d.uuid_parent), "00000000-0000-0000-0000-000000000000");
	snprintf(d.uuid_parent_modify, sizeof(d.uuid_parent_modify), "00000000-0000-0000-0000-000000000000");
	vmware_lines(&d, uimg, fresh_uuid, !flat && !stream, vmfs);
	vd_uuid_format(uimg, d.uuid_image);
	/* the grain: -o grain_size, else kept from an image being rewritten
	 * (compact, defrag), else 64 KiB (what VMware writes) */
	if (gs_opt) {
		uint64_t g;
		if (vd_parse_size(gs_opt, &g) < 0 || !vd_is_pow2(g) || g < 4096 || g > (1u << 20))
			return vd_set_error(err, EINVAL, "vmdk: grain_size '%s' must be a power of two from 4K to 1M",
					    gs_opt);
		grain = g / VD_SECTOR;
	} else if (p->block_size && !flat && !stream) {
		if (!vd_is_pow2(p->block_size) || p->block_size < VD_SECTOR || p->block_size > (1u << 20))
			return vd_set_error(err, EINVAL, "vmdk: grain of %u bytes cannot be created", p->block_size);
		grain = p->block_size / VD_SECTOR;
	}
	if (grain && grain != 128 && (flat || stream))
		return vd_set_error(err, EINVAL, "vmdk: grain_size applies to sparse subformats (%s has %s)", sub,
				    stream ? "64 KiB grains" : "no grains");
	if (p->parent) {
		/* a delta: sparse, linked by the parent's CID and a name
		 * relative to the child's folder (as qemu-img create -b) */
		struct vd_identity pid;
		if (flat || stream)
			return vd_set_error(err, EINVAL, "vmdk: a child (delta) image must be sparse, not %s", sub);
		r = vd_get_identity(p->parent, &pid, err);
		if (r < 0)
			return r;
		d.parent_cid = pid.has_cid ? pid.cid : 0xffffffffu;
		if (d.parent_cid == 0xffffffffu)
			d.parent_cid = 0xfffffffeu; /* a parent without a CID (not a VMDK) */
		if (strlen(p->parent_name) >= sizeof(d.parent_name) || strchr(p->parent_name, '"'))
			return vd_set_error(err, EINVAL, "vmdk: the parent's name '%s' cannot be stored (at most %zu bytes, no '\"')",
					    p->parent_name, sizeof(d.parent_name) - 1);
		snprintf(d.parent_name, sizeof(d.parent_name), "%s", p->parent_name);
		if (pid.uuid[0]) {
			snprintf(d.uuid_parent, sizeof(d.uuid_parent), "%s", pid.uuid);
			if (pid.modification_uuid[0])
				snprintf(d.uuid_parent_modify, sizeof(d.uuid_parent_modify), "%s",
					 pid.modification_uuid);
		}
	}
	if (zlevel) {
		char *end;
		long x = strtol(zlevel, &end, 10);
		if (!stream)
			return vd_set_error(err, EINVAL, "vmdk: compression_level applies to subformat=streamOptimized only, not %s", sub);
		if (!*zlevel || *end || x < VD_DEFLATE_LEVEL_MIN || x > VD_DEFLATE_LEVEL_MAX)
			return vd_set_error(err, EINVAL, "vmdk: compression_level must be a number from %d to %d, not '%s'",
					    VD_DEFLATE_LEVEL_MIN, VD_DEFLATE_LEVEL_MAX, zlevel);
		h->deflate_level = (int)x; /* for the stream writer that fills it */
	}
	if ((split || flat) && !p->tmp)
		return vd_set_error(err, EINVAL, "vmdk: %s images need a destination path", sub);
	base = stem(final);
	if (!base)
		return vd_set_error(err, ENOMEM, "out of memory");
	nfiles = split ? (unsigned)((sectors + VMDK_SPLIT_SECTORS - 1) / VMDK_SPLIT_SECTORS) : 1;
	if (nfiles > VMDK_MAX_EXTENTS) {
		r = vd_set_error(err, EFBIG, "vmdk: %u extents are too many", nfiles);
		goto out;
	}
	d.extents = vd_calloc(nfiles, sizeof(*d.extents), err);
	if (!d.extents) {
		r = -ENOMEM;
		goto out;
	}
	d.nextents = nfiles;
	for (unsigned i = 0; i < nfiles; i++) {
		struct vmdk_desc_extent *e = &d.extents[i];
		char *name = NULL;
		/* exports are read-only: VMware's, ovftool's and VirtualBox's
		 * stream extents are RDONLY (iotest-version3.vmdk,
		 * ubuntu.2.0-disk1.vmdk); the stream writer fills it all the same */
		e->access = stream && d.dialect != VMDK_PLAIN ? VMDK_RDONLY : VMDK_RW;
		e->type = flat ? VMDK_FLAT : VMDK_SPARSE;
		snprintf(e->type_name, sizeof(e->type_name), "%s", vmfs ? "VMFS" : flat ? "FLAT" : "SPARSE");
		e->sectors = split ? VD_MIN(VMDK_SPLIT_SECTORS, sectors - (uint64_t)i * VMDK_SPLIT_SECTORS) : sectors;
		/* ESXi writes VMFS extents without an offset (vmfs_thick.vmdk) */
		e->has_offset = flat && !vmfs;
		if (split) {
			if (asprintf(&name, "%s-%c%03u.vmdk", base, flat ? 'f' : 's', i + 1) < 0)
				name = NULL;
		} else if (flat) {
			if (asprintf(&name, "%s-flat.vmdk", base) < 0)
				name = NULL;
		} else {
			name = base_name(final); /* the sparse file names itself */
		}
		if (!name) {
			r = vd_set_error(err, ENOMEM, "out of memory");
			goto out;
		}
		e->file = name;
	}
	text = vmdk_desc_format(&d);
	if (!text) {
		r = vd_set_error(err, ENOMEM, "out of memory");
		goto out;
	}
	if (stream) {
		r = vmdk_stream_create(h, sectors, text, err);
	} else if (!split && !flat) {
		r = vmdk_sparse_create(h, sectors, text, grain, err);
	} else {
		/* extent files first, under temporary names which the
		 * descriptor uses until vd_tmp_commit renames everything */
		for (unsigned i = 0; i < nfiles && r == 0; i++) {
			char *path = sibling(final, d.extents[i].file);
			struct vd_host *eh = NULL;
			if (vd_cancelled(p->cancel)) {
				r = vd_set_error(err, ECANCELED, "interrupted");
			} else if (!path) {
				r = vd_set_error(err, ENOMEM, "out of memory");
			} else {
				r = vd_tmp_add(p->tmp, path, &eh, err);
				if (r == 0 && flat)
					r = vd_host_truncate(eh, d.extents[i].sectors * VD_SECTOR, err);
				else if (r == 0)
					r = vmdk_sparse_create(eh, d.extents[i].sectors, NULL, grain, err);
				if (r == 0 && falloc) {
					/* one fallocate per flat extent file, before any data */
					r = vd_host_allocate(eh, 0, d.extents[i].sectors * VD_SECTOR, err);
					if (r == -ENOTSUP)
						r = vd_set_error(err, ENOTSUP, "%s: the host filesystem cannot preallocate",
								 eh->path);
				}
				if (r == 0)
					r = vd_host_flush(eh, err);
				if (r == 0) {
					free(d.extents[i].file);
					d.extents[i].file = base_name(eh->path);
					if (!d.extents[i].file)
						r = vd_set_error(err, ENOMEM, "out of memory");
				}
			}
			vd_host_close(eh);
			free(path);
		}
		p->tmp->rewrite_names = true;
		if (r == 0) {
			free(text);
			text = vmdk_desc_format(&d);
			r = text ? vd_host_pwrite(h, text, strlen(text), 0, err)
				 : vd_set_error(err, ENOMEM, "out of memory");
		}
	}
out:
	free(text);
	free(base);
	vmdk_desc_free(&d);
	return r;
}

