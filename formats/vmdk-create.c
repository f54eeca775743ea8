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

struct preset {
	const char *name, *adapter, *hwversion;
};
static const struct preset presets[] = {
	{ "esxi", "lsilogic", "7" },
	{ "workstation", "lsilogic", "9" },
	{ "virtualbox", "ide", "4" },
};

static void geometry(struct vmdk_desc *d, uint64_t sectors)
{
	bool ide = !strcmp(d->adapter, "ide");
	uint64_t c;

	d->heads = ide ? 16 : 255;
	d->sectors = 63;
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

int vmdk_create(struct vd_host *h, const struct vd_create_params *p,
		       struct vd_error *err)
{
	const char *sub = vd_opts_get(p->opts, "subformat");
	const char *adapter = vd_opts_get(p->opts, "adapter_type");
	const char *hw = vd_opts_get(p->opts, "hwversion");
	const char *compat = vd_opts_get(p->opts, "compat");
	const char *cid = vd_opts_get(p->opts, "cid");
	const char *prealloc = vd_opts_get(p->opts, "preallocation");
	const char *zlevel = vd_opts_get(p->opts, "compression_level");
	const struct vd_identity *id = p->identity;
	bool falloc = false;
	uint8_t u[16];
	bool det = p->flags & VD_CREATE_DETERMINISTIC;
	const char *final = p->tmp ? p->tmp->final : h->path;
	uint64_t sectors = VD_ALIGN_UP(p->size, VD_SECTOR) / VD_SECTOR;
	struct vmdk_desc d = { 0 };
	bool split, flat, stream;
	char *base = NULL, *text = NULL;
	unsigned nfiles;
	int r;

	/* identity (compact, defrag and pipelines keep or set it) */
	r = vd_uuid_choose(u, p->opts, "uuid", id ? id->uuid : NULL, det, 0, err);
	if (r == 0)
		vd_uuid_format(u, d.uuid_image);
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
	    strcmp(sub, "streamOptimized"))
		return vd_set_error(err, EINVAL,
				    "vmdk: subformat must be monolithicSparse, monolithicFlat, twoGbMaxExtentSparse, twoGbMaxExtentFlat or streamOptimized, not '%s'",
				    sub);
	snprintf(d.create_type, sizeof(d.create_type), "%s", sub);
	snprintf(d.adapter, sizeof(d.adapter), "ide");
	snprintf(d.hwversion, sizeof(d.hwversion), "4");
	if (id)
		vmdk_create_identity(&d, id);
	if (prealloc && !strcmp(prealloc, "falloc"))
		falloc = true;
	else if (prealloc && strcmp(prealloc, "off"))
		return vd_set_error(err, EINVAL, "vmdk: preallocation must be 'off' or 'falloc', not '%s'",
				    prealloc);
	if (falloc && !strstr(sub, "Flat"))
		return vd_set_error(err, EINVAL, "vmdk: preallocation=falloc needs a flat subformat (monolithicFlat, twoGbMaxExtentFlat)");
	if (compat) {
		const struct preset *ps = NULL;
		for (size_t i = 0; i < VD_ARRAY_SIZE(presets); i++)
			if (!strcmp(presets[i].name, compat))
				ps = &presets[i];
		if (!ps)
			return vd_set_error(err, EINVAL, "vmdk: compat must be esxi, workstation or virtualbox, not '%s'", compat);
		snprintf(d.adapter, sizeof(d.adapter), "%s", ps->adapter);
		snprintf(d.hwversion, sizeof(d.hwversion), "%s", ps->hwversion);
	}
	if (adapter) {
		if (strcmp(adapter, "ide") && strcmp(adapter, "buslogic") &&
		    strcmp(adapter, "lsilogic") && strcmp(adapter, "legacyESX"))
			return vd_set_error(err, EINVAL, "vmdk: adapter_type must be ide, buslogic, lsilogic or legacyESX, not '%s'", adapter);
		snprintf(d.adapter, sizeof(d.adapter), "%s", adapter);
	}
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

	split = !strncmp(sub, "twoGb", 5);
	flat = strstr(sub, "Flat") != NULL;
	stream = !strcmp(sub, "streamOptimized");
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
		e->access = VMDK_RW;
		e->type = flat ? VMDK_FLAT : VMDK_SPARSE;
		snprintf(e->type_name, sizeof(e->type_name), "%s", flat ? "FLAT" : "SPARSE");
		e->sectors = split ? VD_MIN(VMDK_SPLIT_SECTORS, sectors - (uint64_t)i * VMDK_SPLIT_SECTORS) : sectors;
		e->has_offset = flat;
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
		r = vmdk_sparse_create(h, sectors, text, err);
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
					r = vmdk_sparse_create(eh, d.extents[i].sectors, NULL, err);
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

