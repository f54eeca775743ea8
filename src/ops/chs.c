/*
 * Legacy CHS geometry: cylinders of an image, partition offsets, and the
 * 3-byte CHS fields of MBR entries as sfdisk writes them.
 *
 * SPDX-License-Identifier: MIT
 */
#include "../core/ops.h"

#include <errno.h>

int vd_geometry_compute(uint64_t size, uint32_t heads, uint32_t sectors,
			struct vd_geometry *g, struct vd_error *err)
{
	if (!heads)
		heads = 255;
	if (!sectors)
		sectors = 63;
	if (heads > 255)
		return vd_set_error(err, EINVAL, "heads is %u, at most 255", heads);
	if (sectors > 63)
		return vd_set_error(err, EINVAL, "sectors per track is %u, at most 63", sectors);
	memset(g, 0, sizeof(*g));
	g->size = size;
	g->total_sectors = size / VD_SECTOR;
	g->heads = heads;
	g->sectors = sectors;
	g->cylinder_sectors = (uint64_t)heads * sectors;
	g->cylinder_bytes = g->cylinder_sectors * VD_SECTOR;
	g->cylinders = size / g->cylinder_bytes;
	g->usable_bytes = g->cylinders * g->cylinder_bytes;
	g->lost_bytes = size - g->usable_bytes;
	g->legacy_start = sectors;
	if (g->cylinders * g->cylinder_sectors > g->legacy_start)
		g->legacy_sectors = g->cylinders * g->cylinder_sectors - g->legacy_start;
	g->modern_start = 2048;
	if (g->total_sectors > g->modern_start)
		g->modern_sectors = g->total_sectors - g->modern_start;
	return 0;
}

void vd_lba_to_chs(uint64_t lba, uint32_t heads, uint32_t sectors, struct vd_chs *chs)
{
	if (!heads)
		heads = 255;
	if (!sectors)
		sectors = 63;
	chs->cylinder = (uint32_t)VD_MIN(lba / ((uint64_t)heads * sectors), UINT32_MAX);
	chs->head = (uint32_t)((lba / sectors) % heads);
	chs->sector = (uint32_t)(lba % sectors + 1);
}

void vd_chs_encode(uint64_t lba, uint32_t heads, uint32_t sectors, uint8_t out[3])
{
	struct vd_chs c;

	if (!heads)
		heads = 255;
	if (!sectors)
		sectors = 63;
	/* sfdisk: past cylinder 1023 use the last sector of cylinder 1023 */
	if (lba / ((uint64_t)heads * sectors) > 1023)
		lba = (uint64_t)heads * sectors * 1024 - 1;
	vd_lba_to_chs(lba, heads, sectors, &c);
	out[0] = (uint8_t)c.head;
	out[1] = (uint8_t)((c.sector & 0x3f) | ((c.cylinder >> 2) & 0xc0));
	out[2] = (uint8_t)c.cylinder;
}

void vd_chs_decode(const uint8_t in[3], struct vd_chs *chs)
{
	chs->head = in[0];
	chs->sector = in[1] & 0x3fu;
	chs->cylinder = in[2] | ((uint32_t)(in[1] & 0xc0) << 2);
}
