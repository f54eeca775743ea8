/*
 * VMDK raw-disk descriptors, as VirtualBox's createrawvmdk writes them:
 * createType "fullDevice" (one FLAT extent on the device) or
 * "partitionedDevice" (the partition-table sectors copied into a "-pt"
 * file, selected partitions FLAT on the device, the rest ZERO).
 *
 * The text is VirtualBox's, line for line: the header keys in its order, a
 * FLAT extent always with its offset, a ZERO extent with the trailing blank
 * VirtualBox leaves, "# The disk Data Base " (lower-case "disk", trailing
 * blank), ddb.virtualHWVersion with blanks around "=" and every other DDB key
 * without, geometry 16 heads / 63 sectors with cylinders capped at 16383,
 * ddb.uuid.image set and the other three UUIDs zero.  vmdk_desc_format
 * writes the layout VMware and QEMU use instead (blanks around every "=",
 * "# The Disk Data Base"), which is what the other subformats want; the two
 * are kept apart rather than switching that writer's output.
 *
 * Pure computation: the operation (src/ops/rawvmdk.c) reads the device and
 * writes the files.
 *
 * SPDX-License-Identifier: MIT
 */
#include "vmdk.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#define ZERO_UUID "00000000-0000-0000-0000-000000000000"

enum { AREA_PT, AREA_PART };

struct item {
	int kind;
	uint64_t start, end; /* sectors */
	unsigned number;     /* AREA_PART */
	bool selected;
};

static int cmp_item(const void *a, const void *b)
{
	const struct item *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

static bool valid_adapter(const char *a)
{
	return !strcmp(a, "ide") || !strcmp(a, "buslogic") || !strcmp(a, "lsilogic") ||
	       !strcmp(a, "legacyESX");
}

void vd_rawvmdk_partdev(const char *dev, unsigned number, char *out, size_t len)
{
	size_t n = strlen(dev);
	bool digit = n > 0 && dev[n - 1] >= '0' && dev[n - 1] <= '9';

	/* /dev/sda -> /dev/sda1; /dev/loop0, /dev/nvme0n1 -> ...p1 */
	snprintf(out, len, "%s%s%u", dev, digit ? "p" : "", number);
}

static void extent(FILE *f, uint64_t sectors, const char *file, uint64_t offset)
{
	if (file)
		fprintf(f, "RW %" PRIu64 " FLAT \"%s\" %" PRIu64 "\n", sectors, file, offset);
	else
		fprintf(f, "RW %" PRIu64 " ZERO \n", sectors);
}

static int add_area(struct vd_rawvmdk_layout *l, uint64_t dev_sector, uint64_t sectors,
		    struct vd_error *err)
{
	struct vd_rawvmdk_area *a = realloc(l->areas, (l->nareas + 1) * sizeof(*a));

	if (!a)
		return vd_set_error(err, ENOMEM, "out of memory");
	l->areas = a;
	a[l->nareas].dev_sector = dev_sector;
	a[l->nareas].sectors = sectors;
	a[l->nareas].pt_sector = l->pt_sectors;
	l->nareas++;
	l->pt_sectors += sectors;
	return 0;
}

/* The extents of a partitioned device, in disk order. */
static int partitioned(FILE *f, const struct vd_rawvmdk_params *p,
		       struct vd_rawvmdk_layout *l, struct vd_error *err)
{
	const struct vd_mbr *m = p->mbr;
	struct item *it;
	unsigned n = 0;
	uint64_t pos, first = p->disk_sectors;
	int r = 0;

	for (unsigned i = 0; i < p->nsel; i++) {
		bool found = false;
		for (unsigned j = 0; j < m->nparts; j++) {
			if (m->part[j].number != p->sel[i])
				continue;
			if (vd_mbr_is_extended(m->part[j].type))
				return vd_set_error(err, EINVAL,
						    "%s: partition %u is an extended partition; select its logical partitions (5, 6, ...)",
						    p->device, p->sel[i]);
			found = true;
		}
		if (!found)
			return vd_set_error(err, ENOENT, "%s: there is no partition %u", p->device,
					    p->sel[i]);
	}
	it = vd_calloc(2 * (size_t)m->nparts + 1, sizeof(*it), err);
	if (!it)
		return -ENOMEM;
	for (unsigned j = 0; j < m->nparts; j++) {
		const struct vd_mbr_part *pt = &m->part[j];
		if (vd_mbr_is_extended(pt->type) || pt->size == 0)
			continue;
		if (pt->number > 4) /* a logical partition: its EBR up to its start */
			it[n++] = (struct item){ AREA_PT, pt->ebr, pt->start, pt->number, false };
		it[n] = (struct item){ AREA_PART, pt->start, pt->start + pt->size, pt->number, false };
		for (unsigned i = 0; i < p->nsel; i++)
			if (p->sel[i] == pt->number)
				it[n].selected = true;
		n++;
	}
	for (unsigned i = 0; i < n; i++)
		first = VD_MIN(first, it[i].start);
	if (first == 0) {
		r = vd_set_error(err, EINVAL, "%s: a partition starts at sector 0", p->device);
		goto out;
	}
	it[n++] = (struct item){ AREA_PT, 0, first, 0, false }; /* MBR + gap */
	qsort(it, n, sizeof(*it), cmp_item);
	pos = 0;
	for (unsigned i = 0; i < n; i++) {
		if (it[i].start < pos || it[i].end > p->disk_sectors || it[i].end <= it[i].start) {
			r = vd_set_error(err, EINVAL,
					 it[i].end > p->disk_sectors ?
					 "%s: partition %u (sectors %" PRIu64 "..%" PRIu64 ") ends past the disk" :
					 "%s: partition %u (sectors %" PRIu64 "..%" PRIu64 ") overlaps what comes before it",
					 p->device, it[i].number, it[i].start, it[i].end - 1);
			goto out;
		}
		if (it[i].start > pos)
			extent(f, it[i].start - pos, NULL, 0); /* gap */
		if (it[i].kind == AREA_PT) {
			uint64_t at = l->pt_sectors;
			r = add_area(l, it[i].start, it[i].end - it[i].start, err);
			if (r < 0)
				goto out;
			extent(f, it[i].end - it[i].start, p->pt_name, at);
		} else if (it[i].selected && p->relative) {
			char dev[4096];
			vd_rawvmdk_partdev(p->device, it[i].number, dev, sizeof(dev));
			extent(f, it[i].end - it[i].start, dev, 0);
		} else if (it[i].selected) {
			extent(f, it[i].end - it[i].start, p->device, it[i].start);
		} else {
			extent(f, it[i].end - it[i].start, NULL, 0);
		}
		pos = it[i].end;
	}
	if (pos < p->disk_sectors)
		extent(f, p->disk_sectors - pos, NULL, 0);
out:
	free(it);
	return r;
}

int vd_rawvmdk_layout(const struct vd_rawvmdk_params *p, struct vd_rawvmdk_layout *l,
		      struct vd_error *err)
{
	const char *adapter = p->adapter ? p->adapter : "ide";
	uint64_t cyl = VD_MIN(p->disk_sectors / (16 * 63), (uint64_t)16383);
	size_t size = 0;
	FILE *f;
	int r = 0;

	memset(l, 0, sizeof(*l));
	if (!valid_adapter(adapter))
		return vd_set_error(err, EINVAL,
				    "adapter type '%s' is not ide, buslogic, lsilogic or legacyESX", adapter);
	if (p->disk_sectors == 0)
		return vd_set_error(err, EINVAL, "%s: the device is smaller than one sector", p->device);
	if (strchr(p->device, '"') || (p->pt_name && strchr(p->pt_name, '"')))
		return vd_set_error(err, EINVAL, "%s: a file name with '\"' cannot be written into a descriptor",
				    p->device);
	f = open_memstream(&l->text, &size);
	if (!f)
		return vd_set_error(err, ENOMEM, "out of memory");
	fprintf(f, "# Disk DescriptorFile\nversion=1\nCID=%08" PRIx32 "\nparentCID=ffffffff\n"
		"createType=\"%s\"\n\n# Extent description\n", p->cid,
		p->mbr ? "partitionedDevice" : "fullDevice");
	if (p->mbr)
		r = partitioned(f, p, l, err);
	else
		extent(f, p->disk_sectors, p->device, 0);
	fprintf(f, "\n# The disk Data Base \n#DDB\n\n"
		"ddb.virtualHWVersion = \"4\"\n"
		"ddb.adapterType=\"%s\"\n"
		"ddb.geometry.cylinders=\"%" PRIu64 "\"\n"
		"ddb.geometry.heads=\"16\"\n"
		"ddb.geometry.sectors=\"63\"\n"
		"ddb.uuid.image=\"%s\"\n"
		"ddb.uuid.parent=\"" ZERO_UUID "\"\n"
		"ddb.uuid.modification=\"" ZERO_UUID "\"\n"
		"ddb.uuid.parentmodification=\"" ZERO_UUID "\"\n",
		adapter, cyl, p->uuid);
	if (fclose(f) != 0 && r == 0)
		r = vd_set_error(err, ENOMEM, "out of memory");
	if (r < 0)
		vd_rawvmdk_layout_free(l);
	return r;
}

void vd_rawvmdk_layout_free(struct vd_rawvmdk_layout *l)
{
	free(l->text);
	free(l->areas);
	memset(l, 0, sizeof(*l));
}
