/*
 * VDI (VirtualBox), dynamic and fixed, header 1.1.
 *
 * Layout: 64-byte banner, signature 0xbeda107f at 64, version at 68, then
 * the 1.1 header (cbHeader bytes from 72), the block map at offBlocks (one
 * u32 per block: slot index, 0xFFFFFFFF never allocated, 0xFFFFFFFE zero
 * block) and the data area at offData, slot i at
 * offData + i * (cbBlockExtra + cbBlock) + cbBlockExtra.
 *
 * Writes, discards and repair live in vdi-write.c; the order of their
 * writes (every kill point leaves an image qemu-img check accepts) is
 * described at its top.
 *
 * Differencing images (type 4) are dynamic images whose never-allocated
 * blocks (0xFFFFFFFF) read from the parent (uuidLinkage names its
 * uuidCreate, uuidParentModify its uuidModify): the core finds and opens
 * it (src/core/chain.c); zero blocks (0xFFFFFFFE) read as zeros and hide
 * the parent.  Header version 0 and undo images (type 3) are refused.
 *
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "vdi.h"

#include <uuid/uuid.h>

/* VirtualBox stores UUIDs as little-endian GUIDs: the first three fields are
 * byte-swapped relative to RFC 4122. The same swap converts both ways. */
void vdi_uuid_swap(uint8_t out[16], const uint8_t in[16])
{
	static const uint8_t order[16] = { 3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15 };
	for (int i = 0; i < 16; i++)
		out[i] = in[order[i]];
}

static void uuid_text(const uint8_t *disk, char out[40])
{
	uint8_t u[16];
	vdi_uuid_swap(u, disk);
	vd_uuid_format(u, out);
}

static int vdi_probe(const uint8_t *buf, size_t len, uint64_t file_size)
{
	(void)file_size;
	if (len >= OFF_SIGNATURE + 4 && le32dec(buf + OFF_SIGNATURE) == VDI_SIGNATURE)
		return 100;
	return 0;
}

#define BAD(field, ...) \
	vd_set_error(err, EINVAL, "%s: invalid VDI header: " field, path, __VA_ARGS__)

static int parse_header(struct vdi *s, const char *path, uint64_t file_size,
			struct vd_error *err)
{
	const uint8_t *h = s->hdr;
	uint32_t sector_size;
	uint64_t need, bmap_end;

	if (file_size < OFF_CBHEADER + 4)
		return vd_set_error(err, EINVAL, "%s: file too short for a VDI header (%llu bytes)",
				    path, (unsigned long long)file_size);
	if (le32dec(h + OFF_SIGNATURE) != VDI_SIGNATURE)
		return BAD("signature at offset 64 is 0x%08x, expected 0x%08x",
			   le32dec(h + OFF_SIGNATURE), VDI_SIGNATURE);
	s->version = le32dec(h + OFF_VERSION);
	if ((s->version >> 16) == 0)
		return vd_set_error(err, ENOTSUP,
				    "%s: VDI header version 0.%u (offset 68) is not supported; "
				    "open and save it with VirtualBox to upgrade it to 1.1",
				    path, s->version & 0xffff);
	if (s->version != VDI_VERSION_1_1)
		return BAD("version (offset 68) is %u.%u, only 1.1 is supported",
			   s->version >> 16, s->version & 0xffff);
	s->cb_header = le32dec(h + OFF_CBHEADER);
	if (s->cb_header < 384 || s->cb_header > HDR_BUF - 72)
		return BAD("cbHeader (offset 72) is %u, expected 384..%u", s->cb_header,
			   HDR_BUF - 72);
	if (file_size < 72 + (uint64_t)s->cb_header)
		return BAD("cbHeader (offset 72) is %u but the file has only %llu bytes",
			   s->cb_header, (unsigned long long)file_size);
	s->type = le32dec(h + OFF_TYPE);
	if (s->type == VDI_TYPE_UNDO)
		return vd_set_error(err, ENOTSUP,
				    "%s: VDI image type 3 (undo, from VirtualBox 1.x) is not supported: "
				    "merge or clone it with VirtualBox first", path);
	if (s->type != VDI_TYPE_DYNAMIC && s->type != VDI_TYPE_FIXED && s->type != VDI_TYPE_DIFF)
		return BAD("imageType (offset 76) is %u, expected 1 (dynamic), 2 (fixed) or 4 (differencing)",
			   s->type);
	s->flags = le32dec(h + OFF_FLAGS);
	s->off_blocks = le32dec(h + OFF_OFFBLOCKS);
	s->off_data = le32dec(h + OFF_OFFDATA);
	sector_size = le32dec(h + OFF_SECTORSIZE);
	s->disk_size = le64dec(h + OFF_CBDISK);
	s->block_size = le32dec(h + OFF_CBBLOCK);
	s->block_extra = le32dec(h + OFF_CBBLOCKEXTRA);
	s->nblocks = le32dec(h + OFF_CBLOCKS);
	s->nalloc = le32dec(h + OFF_CBLOCKSALLOC);

	if (s->off_blocks % VD_SECTOR)
		return BAD("offBlocks (offset 340) is %u, not a multiple of 512", s->off_blocks);
	if (s->off_blocks < 72 + s->cb_header)
		return BAD("offBlocks (offset 340) is %u, inside the header (which ends at %u)",
			   s->off_blocks, 72 + s->cb_header);
	if (s->off_data % VD_SECTOR)
		return BAD("offData (offset 344) is %u, not a multiple of 512", s->off_data);
	if (sector_size != VD_SECTOR)
		return BAD("sector size (offset 360) is %u, expected 512", sector_size);
	if (s->disk_size == 0)
		return BAD("cbDisk (offset 368) is %llu", 0ull);
	if (!vd_is_pow2(s->block_size) || s->block_size < VDI_MIN_BLOCK ||
	    s->block_size > VDI_MAX_BLOCK)
		return BAD("cbBlock (offset 376) is %u, expected a power of two from %u to %u",
			   s->block_size, VDI_MIN_BLOCK, VDI_MAX_BLOCK);
	if (s->block_extra % VD_SECTOR || s->block_extra > VDI_MAX_EXTRA)
		return BAD("cbBlockExtra (offset 380) is %u, expected a multiple of 512 up to %u",
			   s->block_extra, VDI_MAX_EXTRA);
	if (s->nblocks == 0 || s->nblocks >= VDI_ZERO)
		return BAD("cBlocks (offset 384) is %u", s->nblocks);
	if ((uint64_t)s->nblocks * s->block_size < s->disk_size)
		return BAD("cBlocks (offset 384) is %u: %u blocks of %u bytes cannot hold cbDisk %llu",
			   s->nblocks, s->nblocks, s->block_size,
			   (unsigned long long)s->disk_size);
	if (s->nalloc > s->nblocks)
		return BAD("cBlocksAllocated (offset 388) is %u, more than cBlocks %u",
			   s->nalloc, s->nblocks);
	bmap_end = (uint64_t)s->off_blocks + 4ull * s->nblocks;
	if (s->off_data < bmap_end)
		return BAD("offData (offset 344) is %u, inside the block map (offBlocks %u + 4 * cBlocks %u)",
			   s->off_data, s->off_blocks, s->nblocks);
	if (bmap_end > file_size)
		return BAD("block map (offBlocks %u, cBlocks %u) ends at %llu, past the end of the file (%llu bytes)",
			   s->off_blocks, s->nblocks, (unsigned long long)bmap_end,
			   (unsigned long long)file_size);
	need = VD_ALIGN_UP(s->disk_size, VD_SECTOR);
	if (need < s->disk_size)
		return BAD("cbDisk (offset 368) is %llu", (unsigned long long)s->disk_size);
	return 0;
}

/* What is wrong with block B's map entry E, given the slots already taken
 * (OWNER: slot -> block + 1); NULL when it is a valid slot reference. */
const char *vdi_entry_problem(const struct vdi *s, uint32_t b, uint32_t e,
				 const uint32_t *owner, char *msg, size_t len)
{
	if (e >= s->nblocks)
		snprintf(msg, len, "entry for block %u is %u, not below cBlocks %u", b, e, s->nblocks);
	else if (slot_offset(s, e) + slot_guest_bytes(s, b) > s->file_size)
		snprintf(msg, len, "entry for block %u points to slot %u at offset %llu, past the end of the file (%llu bytes)",
			 b, e, (unsigned long long)slot_offset(s, e), (unsigned long long)s->file_size);
	else if (owner[e])
		snprintf(msg, len, "entry for block %u points to slot %u, which block %u already uses",
			 b, e, owner[e] - 1);
	else
		return NULL;
	return msg;
}

/* Validate the block map. With RDWR also make sure cBlocksAllocated covers
 * every used slot, since the next allocation goes to slot cBlocksAllocated. */
static int check_bmap(struct vdi *s, const char *path, bool rdwr, struct vd_error *err)
{
	uint32_t *owner, max_used = 0;
	char msg[256];
	int r = 0;

	owner = vd_calloc(s->nblocks, sizeof(*owner), err);
	if (!owner)
		return -ENOMEM;
	for (uint32_t b = 0; b < s->nblocks; b++) {
		uint32_t e = s->bmap[b];
		if (!entry_allocated(e))
			continue;
		if (vdi_entry_problem(s, b, e, owner, msg, sizeof(msg))) {
			r = vd_set_error(err, EINVAL, "%s: invalid VDI block map: %s", path, msg);
			goto out;
		}
		owner[e] = b + 1;
		if (e + 1 > max_used)
			max_used = e + 1;
	}
	if (rdwr && max_used > s->nalloc)
		r = vd_set_error(err, EINVAL,
				 "%s: cBlocksAllocated (offset 388) is %u but the block map uses %u slots; run 'vdisk check -r' first",
				 path, s->nalloc, max_used);
out:
	free(owner);
	return r;
}

static int vdi_open(struct vd_image *img, struct vd_error *err)
{
	const char *path = img->host->path;
	struct vdi *s;
	uint64_t file_size;
	size_t bmap_bytes;
	int r;

	r = vd_host_size(img->host, &file_size, err);
	if (r < 0)
		return r;
	s = vd_calloc(1, sizeof(*s), err);
	if (!s)
		return -ENOMEM;
	s->file_size = file_size;
	r = vd_host_pread(img->host, s->hdr, (size_t)VD_MIN(file_size, (uint64_t)HDR_BUF), 0, err);
	if (r < 0)
		goto fail;
	r = parse_header(s, path, file_size, err);
	if (r < 0)
		goto fail;
	/* bounded by the file size, checked in parse_header */
	bmap_bytes = (size_t)s->nblocks * 4;
	s->bmap = vd_malloc(bmap_bytes, err);
	if (!s->bmap) {
		r = -ENOMEM;
		goto fail;
	}
	r = vd_host_pread(img->host, s->bmap, bmap_bytes, s->off_blocks, err);
	if (r < 0)
		goto fail;
	for (uint32_t b = 0; b < s->nblocks; b++)
		s->bmap[b] = le32dec(&s->bmap[b]);
	if (!(img->flags & VD_OPEN_CHECK)) {
		r = check_bmap(s, path, img->writable, err);
		if (r < 0)
			goto fail;
	}
	img->priv = s;
	img->has_parent = s->type == VDI_TYPE_DIFF;
	img->size = VD_ALIGN_UP(s->disk_size, VD_SECTOR);
	img->align = VD_SECTOR;
	img->split = s->block_size;
	return 0;
fail:
	free(s->bmap);
	free(s);
	return r;
}

static void vdi_close(struct vd_image *img)
{
	struct vdi *s = img->priv;
	if (s) {
		free(s->bmap);
		free(s->disk);
		free(s);
	}
}

static int vdi_read(struct vd_image *img, uint64_t off, void *buf, size_t len,
		    struct vd_error *err)
{
	struct vdi *s = img->priv;
	uint32_t b = (uint32_t)(off / s->block_size);
	uint32_t e = s->bmap[b];

	if (e == VDI_UNALLOCATED)
		return vd_backing_read(img, off, buf, len, err);
	if (!entry_allocated(e)) {
		memset(buf, 0, len);
		return 0;
	}
	return vd_host_pread(img->host, buf, len, slot_offset(s, e) + off % s->block_size, err);
}

static int vdi_block_status(struct vd_image *img, uint64_t off, uint64_t len,
			    struct vd_extent *ext, struct vd_error *err)
{
	struct vdi *s = img->priv;
	uint32_t b = (uint32_t)(off / s->block_size);
	uint32_t e = s->bmap[b];
	uint64_t end = off + len, pos;

	(void)err;
	pos = ((uint64_t)b + 1) * s->block_size;
	/* extend over following blocks of the same kind (and, for data, the
	 * next slot in the file) */
	while (pos < end) {
		uint32_t nb = (uint32_t)(pos / s->block_size);
		uint32_t ne = s->bmap[nb];
		if (entry_allocated(e) ? ne != e + (nb - b) : ne != e)
			break;
		pos += s->block_size;
	}
	ext->length = VD_MIN(pos, end) - off;
	if (entry_allocated(e)) {
		ext->flags = VD_BS_DATA | VD_BS_ALLOCATED | VD_BS_OFFSET_VALID;
		ext->offset = slot_offset(s, e) + off % s->block_size;
		/* allocated space can be a hole in a sparse host file (QEMU's
		 * static=on images, partly written blocks) */
		vd_host_refine_extent(img->host, ext);
	} else if (e == VDI_ZERO) {
		ext->flags = VD_BS_ZERO | VD_BS_ALLOCATED;
	} else {
		ext->flags = VD_BS_ZERO;
	}
	return 0;
}

/* ---- create ---- */

/* FORMATS.md: QEMU opens only 1 MiB blocks, VirtualBox 512 KiB to 8 MiB. */
static void vdi_create_warning(struct vd_opts *o, char *buf, size_t len)
{
	const char *bs_opt = vd_opts_get(o, "block_size");
	uint64_t bs;

	if (!bs_opt || vd_parse_size(bs_opt, &bs) < 0 || !vd_is_pow2(bs) || bs < 4096 ||
	    bs > VDI_MAX_BLOCK || bs == VDI_DEFAULT_BLOCK)
		return;
	if (bs >= (512u << 10) && bs <= (8u << 20))
		snprintf(buf, len, "vdi: block_size %s (%llu bytes) is not 1 MiB: qemu-img "
			 "(and qemu) open only VDI images with 1 MiB blocks; VirtualBox opens "
			 "512 KiB to 8 MiB", bs_opt, (unsigned long long)bs);
	else
		snprintf(buf, len, "vdi: block_size %s (%llu bytes) is not 1 MiB: neither "
			 "qemu-img (and qemu: 1 MiB blocks only) nor VirtualBox (512 KiB to "
			 "8 MiB) opens this image", bs_opt, (unsigned long long)bs);
}

static void vdi_create_identity(uint8_t *hdr, const struct vd_identity *id);

static int vdi_create(struct vd_host *h, const struct vd_create_params *p,
		      struct vd_error *err)
{
	const char *sub = vd_opts_get(p->opts, "subformat");
	const char *st = vd_opts_get(p->opts, "static");
	const char *bs_opt = vd_opts_get(p->opts, "block_size");
	uint8_t hdr[HDR_BUF] = { 0 };
	uint8_t u[16], g[16], plink[16], pmod[16];
	uint64_t size, bs = VDI_DEFAULT_BLOCK, nblocks, off_blocks, off_data, total;
	uint32_t type = VDI_TYPE_DYNAMIC;
	uint8_t *buf;
	int r;

	/* identity (compact, defrag and pipelines keep or set it) */
	vd_opts_get(p->opts, "uuid");
	vd_opts_get(p->opts, "uuid_modify");
	r = vd_opts_check_used(p->opts, "vdi", err);
	if (r < 0)
		return r;
	if (sub && !strcmp(sub, "fixed"))
		type = VDI_TYPE_FIXED;
	else if (sub && strcmp(sub, "dynamic") && strcmp(sub, "differencing"))
		return vd_set_error(err, EINVAL, "vdi: subformat must be 'dynamic' or 'fixed', not '%s'", sub);
	if (st && (!strcmp(st, "on") || !strcmp(st, "true")))
		type = VDI_TYPE_FIXED;
	if (sub && !strcmp(sub, "differencing") && !p->parent)
		return vd_set_error(err, EINVAL, "vdi: a differencing image needs a parent (create -b PARENT)");
	if (p->parent) {
		/* a differencing image: dynamic, linked to the parent's
		 * uuidCreate and uuidModify */
		struct vd_identity pid;
		if (type == VDI_TYPE_FIXED)
			return vd_set_error(err, EINVAL, "vdi: a differencing image cannot be fixed");
		r = vd_get_identity(p->parent, &pid, err);
		if (r < 0)
			return r;
		if (!pid.uuid[0])
			return vd_set_error(err, EINVAL, "%s: the parent has no image UUID a differencing VDI can link to (uuidLinkage)",
					    vd_path(p->parent));
		type = VDI_TYPE_DIFF;
		memset(pmod, 0, sizeof(pmod));
		if (uuid_parse(pid.uuid, plink) != 0 ||
		    (pid.modification_uuid[0] && uuid_parse(pid.modification_uuid, pmod) != 0))
			return vd_set_error(err, EINVAL, "%s: the parent's UUID '%s' is not a UUID",
					    vd_path(p->parent), pid.uuid);
		vdi_uuid_swap(hdr + OFF_UUID_LINKAGE, plink);
		vdi_uuid_swap(hdr + OFF_UUID_PARENTMOD, pmod);
	}
	if (bs_opt) {
		if (vd_parse_size(bs_opt, &bs) < 0 || !vd_is_pow2(bs) || bs < 4096 || bs > VDI_MAX_BLOCK)
			return vd_set_error(err, EINVAL,
					    "vdi: block_size '%s' must be a power of two from 4K to 256M", bs_opt);
	} else if (p->block_size) {
		/* kept from an image being rewritten: any size vdisk reads */
		bs = p->block_size;
		if (!vd_is_pow2(bs) || bs < VDI_MIN_BLOCK || bs > VDI_MAX_BLOCK)
			return vd_set_error(err, EINVAL, "vdi: block size %llu must be a power of two from %u to %u",
					    (unsigned long long)bs, VDI_MIN_BLOCK, VDI_MAX_BLOCK);
	}
	if (p->size > VDI_MAX_CREATE_SIZE)
		return vd_set_error(err, EFBIG, "vdi: size %llu is larger than the maximum %llu",
				    (unsigned long long)p->size, VDI_MAX_CREATE_SIZE);
	size = VD_ALIGN_UP(p->size, VD_SECTOR);
	if (size == 0)
		return vd_set_error(err, EINVAL, "vdi: size must be greater than 0");
	if (size > VDI_MAX_CREATE_SIZE)
		return vd_set_error(err, EFBIG, "vdi: size %llu is larger than the maximum %llu",
				    (unsigned long long)p->size, VDI_MAX_CREATE_SIZE);
	nblocks = (size + bs - 1) / bs;
	if (nblocks >= VDI_ZERO)
		return vd_set_error(err, EFBIG, "vdi: %llu blocks are too many; use a larger block_size",
				    (unsigned long long)nblocks);
	off_blocks = VDI_ALIGN;
	off_data = VD_ALIGN_UP(off_blocks + 4 * nblocks, VDI_ALIGN);
	total = type == VDI_TYPE_FIXED ? off_data + nblocks * bs : off_data;

	memcpy(hdr, "<<< Oracle VM VirtualBox Disk Image >>>\n", 40);
	le32enc(hdr + OFF_SIGNATURE, VDI_SIGNATURE);
	le32enc(hdr + OFF_VERSION, VDI_VERSION_1_1);
	le32enc(hdr + OFF_CBHEADER, 400);
	le32enc(hdr + OFF_TYPE, type);
	le32enc(hdr + OFF_OFFBLOCKS, (uint32_t)off_blocks);
	le32enc(hdr + OFF_OFFDATA, (uint32_t)off_data);
	le32enc(hdr + OFF_SECTORSIZE, VD_SECTOR);
	le64enc(hdr + OFF_CBDISK, size);
	le32enc(hdr + OFF_CBBLOCK, (uint32_t)bs);
	le32enc(hdr + OFF_CBLOCKS, (uint32_t)nblocks);
	le32enc(hdr + OFF_CBLOCKSALLOC, type == VDI_TYPE_FIXED ? (uint32_t)nblocks : 0);
	r = vd_uuid_choose(u, p->opts, "uuid", p->identity ? p->identity->uuid : NULL,
			   p->flags & VD_CREATE_DETERMINISTIC, 0, err);
	if (r < 0)
		return r;
	vdi_uuid_swap(g, u);
	memcpy(hdr + OFF_UUID_CREATE, g, 16);
	r = vd_uuid_choose(u, p->opts, "uuid_modify",
			   p->identity ? p->identity->modification_uuid : NULL,
			   p->flags & VD_CREATE_DETERMINISTIC, 1, err);
	if (r < 0)
		return r;
	vdi_uuid_swap(g, u);
	memcpy(hdr + OFF_UUID_MODIFY, g, 16);
	le32enc(hdr + OFF_LCHS + 12, VD_SECTOR);
	if (p->identity)
		vdi_create_identity(hdr, p->identity);

	/* Fixed: reserve the whole file in one call first, so the host can
	 * give it few, large extents. */
	if (type == VDI_TYPE_FIXED) {
		r = vd_host_allocate(h, 0, total, err);
		if (r < 0 && r != -ENOTSUP)
			return r;
	}
	r = vd_host_truncate(h, total, err);
	if (r < 0)
		return r;
	r = vd_host_pwrite(h, hdr, HDR_BUF, 0, err);
	if (r < 0)
		return r;
	buf = vd_malloc(VDI_ALIGN, err);
	if (!buf)
		return -ENOMEM;
	for (uint64_t b = 0; b < nblocks && r == 0;) {
		uint64_t n = VD_MIN(nblocks - b, (uint64_t)VDI_ALIGN / 4);
		if (vd_cancelled(p->cancel)) {
			r = vd_set_error(err, ECANCELED, "interrupted");
			break;
		}
		for (uint64_t i = 0; i < n; i++)
			le32enc(buf + 4 * i, type == VDI_TYPE_FIXED ? (uint32_t)(b + i) : VDI_UNALLOCATED);
		r = vd_host_pwrite(h, buf, (size_t)n * 4, off_blocks + 4 * b, err);
		b += n;
	}
	free(buf);
	return r;
}

/* ---- info ---- */

static int vdi_info(struct vd_image *img, struct vd_info *info, struct vd_error *err)
{
	struct vdi *s = img->priv;
	const uint8_t *h = s->hdr;
	uint32_t zero = 0, used = 0;
	char comment[VDI_COMMENT_LEN + 1];
	char banner[65];

	(void)err;
	for (uint32_t b = 0; b < s->nblocks; b++) {
		if (entry_allocated(s->bmap[b])) {
			used++;
			info->allocated_bytes += block_guest_bytes(s, b);
		} else if (s->bmap[b] == VDI_ZERO) {
			zero++;
		}
	}
	snprintf(info->subformat, sizeof(info->subformat), "%s",
		 s->type == VDI_TYPE_FIXED ? "fixed" : s->type == VDI_TYPE_DIFF ? "differencing" : "dynamic");
	info->block_size = s->block_size;
	snprintf(info->header_version, sizeof(info->header_version), "%u.%u",
		 s->version >> 16, s->version & 0xffff);
	uuid_text(h + OFF_UUID_CREATE, info->uuid);
	uuid_text(h + OFF_UUID_MODIFY, info->uuid_modify);
	uuid_text(h + OFF_UUID_LINKAGE, info->uuid_parent);
	uuid_text(h + OFF_UUID_PARENTMOD, info->uuid_parent_modify);
	if (s->cb_header >= 400 && le32dec(h + OFF_LCHS + 4)) {
		info->cylinders = le32dec(h + OFF_LCHS);
		info->heads = le32dec(h + OFF_LCHS + 4);
		info->sectors = le32dec(h + OFF_LCHS + 8);
	} else {
		info->cylinders = le32dec(h + OFF_CYLINDERS);
		info->heads = le32dec(h + OFF_HEADS);
		info->sectors = le32dec(h + OFF_SECTORS);
	}
	memcpy(banner, h, 64);
	banner[64] = '\0';
	banner[strcspn(banner, "\n")] = '\0';
	memcpy(comment, h + OFF_COMMENT, VDI_COMMENT_LEN);
	comment[VDI_COMMENT_LEN] = '\0';
	for (char *c = comment; *c; c++)
		if ((unsigned char)*c < 0x20)
			*c = '?';
	vd_info_add(info, "banner", false, "%s", banner);
	vd_info_add(info, "header_size", true, "%u", s->cb_header);
	vd_info_add(info, "image_flags", true, "%u", s->flags);
	vd_info_add(info, "offset_blocks", true, "%u", s->off_blocks);
	vd_info_add(info, "offset_data", true, "%u", s->off_data);
	vd_info_add(info, "disk_size", true, "%llu", (unsigned long long)s->disk_size);
	vd_info_add(info, "block_extra", true, "%u", s->block_extra);
	vd_info_add(info, "blocks", true, "%u", s->nblocks);
	vd_info_add(info, "blocks_allocated", true, "%u", s->nalloc);
	vd_info_add(info, "blocks_zero", true, "%u", zero);
	if (comment[0])
		vd_info_add(info, "comment", false, "%s", comment);
	(void)used;
	return 0;
}

/* ---- describe and identity ---- */

/* Dynamic: blocks allocated on demand, whole discarded blocks become zero
 * blocks and their slot a host hole.  Fixed: every slot reserved. */
static int vdi_describe(struct vd_image *img, struct vd_describe *d, struct vd_error *err)
{
	struct vdi *s = img->priv;
	bool fixed = s->type == VDI_TYPE_FIXED;

	d->alloc = fixed ? VD_ALLOC_FULL : VD_ALLOC_BLOCKS;
	d->block_size = s->block_size;
	d->discard_releases = !fixed;
	d->zero_entries = !fixed;
	d->discard_granularity = s->block_size;
	d->zero_granularity = VD_SECTOR;
	return vd_describe_add(d, img->host->path, VD_FILE_IMAGE, VD_FILE_RW, 0, img->size, 0,
			       img->host->is_blockdev, err);
}

static void uuid_identity(const uint8_t *disk, char out[37])
{
	static const uint8_t nil[16];
	uint8_t u[16];

	out[0] = '\0';
	if (!memcmp(disk, nil, 16))
		return;
	vdi_uuid_swap(u, disk);
	vd_uuid_format(u, out);
}

static int vdi_identity(struct vd_image *img, struct vd_identity *id, struct vd_error *err)
{
	struct vdi *s = img->priv;
	const uint8_t *h = s->hdr;

	(void)err;
	uuid_identity(h + OFF_UUID_CREATE, id->uuid);
	uuid_identity(h + OFF_UUID_MODIFY, id->modification_uuid);
	uuid_identity(h + OFF_UUID_LINKAGE, id->parent_uuid);
	uuid_identity(h + OFF_UUID_PARENTMOD, id->parent_modification_uuid);
	id->cylinders = le32dec(h + OFF_CYLINDERS);
	id->heads = le32dec(h + OFF_HEADS);
	id->sectors = le32dec(h + OFF_SECTORS);
	if (s->cb_header >= 400) {
		id->bios_cylinders = le32dec(h + OFF_LCHS);
		id->bios_heads = le32dec(h + OFF_LCHS + 4);
		id->bios_sectors = le32dec(h + OFF_LCHS + 8);
	}
	/* the comment as stored, up to its NUL (255 bytes at most, so it
	 * fits again with its terminator) */
	memcpy(id->comment, h + OFF_COMMENT, sizeof(id->comment) - 1);
	id->comment[sizeof(id->comment) - 1] = '\0';
	return 0;
}

/* What a new header keeps of ID besides the UUIDs (vdi_create): the
 * legacy and LCHS geometry when set, and the comment. */
static void vdi_create_identity(uint8_t *hdr, const struct vd_identity *id)
{
	if (id->heads && id->sectors) {
		le32enc(hdr + OFF_CYLINDERS, id->cylinders);
		le32enc(hdr + OFF_HEADS, id->heads);
		le32enc(hdr + OFF_SECTORS, id->sectors);
	}
	if (id->bios_heads && id->bios_sectors) {
		le32enc(hdr + OFF_LCHS, id->bios_cylinders);
		le32enc(hdr + OFF_LCHS + 4, id->bios_heads);
		le32enc(hdr + OFF_LCHS + 8, id->bios_sectors);
	}
	memcpy(hdr + OFF_COMMENT, id->comment, strnlen(id->comment, VDI_COMMENT_LEN - 1));
}

const struct vd_driver vd_driver_vdi = {
	.name = "vdi",
	.probe = vdi_probe,
	.open = vdi_open,
	.close = vdi_close,
	.read = vdi_read,
	.write = vdi_write,
	.write_zeroes = vdi_write_zeroes,
	.discard = vdi_discard,
	.block_status = vdi_block_status,
	.flush = vdi_flush,
	.create = vdi_create,
	.create_warning = vdi_create_warning,
	.info = vdi_info,
	.check = vdi_check,
	.describe = vdi_describe,
	.identity = vdi_identity,
	.identity_fields = VD_ID_UUIDS | VD_ID_GEOMETRY | VD_ID_BIOS_GEOMETRY | VD_ID_COMMENT,
	.zero_init = true,
	.discard_hides_parent = true, /* discarded blocks become zero blocks */
	.creates_children = true,
	.set_parent = vdi_set_parent,
	.new_modification = vdi_new_modification,
};
