/*
 * rawvmdk: write the VirtualBox raw-disk descriptor for a block device
 * (the text comes from formats/vmdk-raw.c), and for partitionedDevice the
 * "-pt" file holding copies of the partition-table sectors.  Both files are
 * built as temporary files and renamed into place together.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "../core/vdisk-int.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#define COPY_BUF (1u << 20)

/* OUT's "-pt" file: "dir/name.vmdk" -> "dir/name-pt.vmdk"; *BASE points to
 * its last component. */
static char *pt_path(const char *out, const char **base)
{
	size_t n = strlen(out);
	char *p;

	if (n > 5 && !strcmp(out + n - 5, ".vmdk"))
		n -= 5;
	if (asprintf(&p, "%.*s-pt.vmdk", (int)n, out) < 0)
		return NULL;
	*base = strrchr(p, '/') ? strrchr(p, '/') + 1 : p;
	return p;
}

static int copy_areas(struct vd_image *img, struct vd_host *ph,
		      const struct vd_rawvmdk_layout *l, struct vd_error *err)
{
	uint8_t *buf = vd_malloc(COPY_BUF, err);
	int r = 0;

	if (!buf)
		return -ENOMEM;
	for (unsigned i = 0; i < l->nareas && r == 0; i++) {
		uint64_t off = l->areas[i].dev_sector * VD_SECTOR;
		uint64_t to = l->areas[i].pt_sector * VD_SECTOR;
		uint64_t left = l->areas[i].sectors * VD_SECTOR;
		while (left > 0 && r == 0) {
			size_t n = (size_t)VD_MIN(left, (uint64_t)COPY_BUF);
			r = vd_read(img, off, buf, n, err);
			if (r == 0)
				r = vd_host_pwrite(ph, buf, n, to, err);
			off += n;
			to += n;
			left -= n;
		}
	}
	if (r == 0)
		r = vd_host_flush(ph, err);
	free(buf);
	return r;
}

int vd_rawvmdk(const char *dev, const char *out, const struct vd_rawvmdk_opts *o,
	       struct vd_error *err)
{
	struct vd_rawvmdk_params p = { 0 };
	struct vd_rawvmdk_layout l = { 0 };
	struct vd_image *img = NULL;
	struct vd_mbr *mbr = NULL;
	struct vd_host *h = NULL, *ph = NULL;
	struct vd_tmp t = { 0 };
	char *ptfinal = NULL, *devpath = NULL, uuid[37];
	const char *ptbase = NULL;
	uint8_t u[16];
	int r;

	if (dev[0] == '/') {
		devpath = strdup(dev);
	} else {
		/* the descriptor names it: make it absolute */
		devpath = realpath(dev, NULL);
		if (!devpath)
			return vd_set_error(err, errno, "%s: %s", dev, strerror(errno));
	}
	if (!devpath)
		return vd_set_error(err, ENOMEM, "out of memory");
	r = vd_open(&img, devpath, "raw", VD_OPEN_ALLOW_DEVICES, err);
	if (r < 0)
		goto out;
	if (o->npartitions) {
		mbr = vd_malloc(sizeof(*mbr), err);
		if (!mbr) {
			r = -ENOMEM;
			goto out;
		}
		r = vd_mbr_read(img, mbr, err);
		if (r == -ENOENT)
			r = vd_set_error(err, ENOENT, "%s: no MBR partition table (use the whole device without --partition)",
					 devpath);
		if (r < 0)
			goto out;
		for (unsigned i = 0; i < mbr->nparts; i++) {
			if (mbr->part[i].type == 0xee) {
				/* its partition 1 would be the protective entry
				 * spanning the disk, not a GPT partition */
				r = vd_set_error(err, ENOTSUP, "%s: a GPT disk (protective MBR entry %u, type 0xee): --partition names MBR partitions only; use the whole device",
						 devpath, mbr->part[i].number);
				goto out;
			}
		}
		ptfinal = pt_path(out, &ptbase);
		if (!ptfinal) {
			r = vd_set_error(err, ENOMEM, "out of memory");
			goto out;
		}
	}
	vd_uuid_new(u, o->deterministic, 7);
	vd_uuid_format(u, uuid);
	p.device = devpath;
	p.disk_sectors = vd_size(img) / VD_SECTOR;
	p.mbr = mbr;
	p.sel = o->partitions;
	p.nsel = o->npartitions;
	p.relative = o->relative;
	p.pt_name = ptbase;
	p.adapter = o->adapter;
	p.cid = o->deterministic ? 0x2d1b4c7au : le32dec(u + 12);
	p.uuid = uuid;
	r = vd_rawvmdk_layout(&p, &l, err);
	if (r < 0)
		goto out;

	r = vd_tmp_begin(&t, out, o->force, err);
	if (r < 0)
		goto out;
	r = vd_host_open_file(&h, t.tmp, VD_HOST_RDWR, err);
	if (r == 0)
		r = vd_host_pwrite(h, l.text, strlen(l.text), 0, err);
	if (r == 0)
		r = vd_host_flush(h, err);
	if (r == 0 && ptfinal) {
		r = vd_tmp_add(&t, ptfinal, &ph, err);
		if (r == 0)
			r = copy_areas(img, ph, &l, err);
	}
	vd_host_close(h);
	vd_host_close(ph);
	if (r == 0)
		r = vd_tmp_commit(&t, o->force, err);
	else
		vd_tmp_abort(&t);
out:
	vd_rawvmdk_layout_free(&l);
	vd_close(img, NULL);
	free(mbr);
	free(ptfinal);
	free(devpath);
	return r;
}
