/*
 * rawvmdk: write the VirtualBox raw-disk descriptor for a block device
 * (the text comes from formats/vmdk-raw.c), and for partitionedDevice the
 * "-pt" file holding copies of the partition-table sectors.  Both files are
 * built as temporary files and renamed into place together.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "../core/ops.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* "/dev/VG/LV" or "/dev/mapper/VG-LV" (a '-' in a name doubled): the
 * volume group and the logical volume it names, or false. */
static bool lvm_shape(const char *dev, char *vg, char *lv, size_t len)
{
	static const char *const not_vg[] = { "disk", "mapper", "block", "bus", "char", "cpu",
					      "fd", "input", "md", "net", "pts", "shm", "snd" };
	const char *n, *slash, *dash;

	if (strncmp(dev, "/dev/", 5))
		return false;
	n = dev + 5;
	if (!strncmp(n, "mapper/", 7)) {
		n += 7;
		if (!*n || strchr(n, '/'))
			return false;
		for (dash = n; (dash = strchr(dash, '-')); dash += 2)
			if (dash[1] != '-')
				break;
		if (!dash || dash == n || !dash[1])
			return false;
		/* undo the doubling */
		size_t o = 0;
		for (const char *q = n; q < dash && o + 1 < len; q++) {
			vg[o++] = *q;
			if (*q == '-')
				q++;
		}
		vg[o] = '\0';
		o = 0;
		for (const char *q = dash + 1; *q && o + 1 < len; q++) {
			lv[o++] = *q;
			if (*q == '-' && q[1] == '-')
				q++;
		}
		lv[o] = '\0';
		return true;
	}
	slash = strchr(n, '/');
	if (!slash || slash == n || !slash[1] || strchr(slash + 1, '/'))
		return false;
	for (size_t i = 0; i < sizeof(not_vg) / sizeof(not_vg[0]); i++)
		if (strlen(not_vg[i]) == (size_t)(slash - n) && !strncmp(n, not_vg[i], (size_t)(slash - n)))
			return false;
	snprintf(vg, len, "%.*s", (int)(slash - n), n);
	snprintf(lv, len, "%s", slash + 1);
	return true;
}

/* DEV must be a block device: a raw-disk descriptor names a device. */
static int check_device(const char *dev, struct vd_error *err)
{
	struct stat st;
	char vg[256], lv[256];

	if (stat(dev, &st) < 0) {
		int e = errno;
		if (e == ENOENT && lvm_shape(dev, vg, lv, sizeof(vg)))
			return vd_set_error(err, ENOENT, "%s: no such device; it looks like LVM logical volume %s/%s, which is not active (lvchange -ay %s/%s) or does not exist (lvs %s)",
					    dev, vg, lv, vg, lv, vg);
		if (e == ENOENT)
			return vd_set_error(err, ENOENT, "%s: no such device", dev);
		return vd_set_error(err, e, "%s: %s", dev, strerror(e));
	}
	if (S_ISREG(st.st_mode))
		return vd_set_error(err, EINVAL, "%s: a regular file, not a block device: a raw-disk VMDK points at a block device; for an image file use 'vdisk convert' (to a VDI or VMDK) or a monolithicFlat descriptor (vdisk create -O vmdk -o subformat=monolithicFlat)",
				    dev);
	if (!S_ISBLK(st.st_mode))
		return vd_set_error(err, EINVAL, "%s: not a block device: a raw-disk VMDK points at a block device", dev);
	return 0;
}

/* --relative: every listed partition must have its own device. */
static int check_partdevs(const char *dev, const struct vd_rawvmdk_opts *o,
			  struct vd_error *err)
{
	for (unsigned i = 0; i < o->npartitions; i++) {
		char pd[4096];
		struct stat st;

		vd_rawvmdk_partdev(dev, o->partitions[i], pd, sizeof(pd));
		if (stat(pd, &st) < 0)
			return vd_set_error(err, errno, "%s: --relative: partition %u has no device %s (%s): create the partition devices (losetup -P, partprobe) or leave out --relative",
					    dev, o->partitions[i], pd, strerror(errno));
		if (!S_ISBLK(st.st_mode))
			return vd_set_error(err, EINVAL, "%s: --relative: %s (partition %u) is not a block device",
					    dev, pd, o->partitions[i]);
	}
	return 0;
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
	} else if (access(dev, F_OK) < 0) {
		return check_device(dev, err);
	} else {
		/* the descriptor names it: make it absolute */
		devpath = realpath(dev, NULL);
		if (!devpath)
			return vd_set_error(err, errno, "%s: %s", dev, strerror(errno));
	}
	if (!devpath)
		return vd_set_error(err, ENOMEM, "out of memory");
	r = check_device(devpath, err);
	if (r < 0)
		goto out;
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
	if (r == 0 && o->relative)
		r = check_partdevs(devpath, o, err);
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
