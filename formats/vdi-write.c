/*
 * VDI: everything that changes an image in place (writes, discards, the
 * metadata commit, check and repair).
 *
 * Crash consistency.  qemu-img check (7.2) accepts a VDI when every
 * allocated map entry is below cBlocks, no two share a slot, and
 * cBlocksAllocated equals the number of allocated entries: not one more
 * (a count raised before the map entry is written), not one less (an
 * entry written before the count, a discard that leaves the count).
 * vdisk also needs cBlocksAllocated >= the highest used slot + 1, since
 * VirtualBox, QEMU and vdisk append a new block at slot cBlocksAllocated.
 * Both hold at every kill point only when the count and the map change in
 * one write, so:
 *
 *  - the map and the count change in memory (bmap, nalloc) and reach the
 *    file in one commit: a single write from cBlocksAllocated (offset 388)
 *    through the last changed map entry, carrying the bytes in between
 *    (the rest of the header, the padding up to offBlocks) from a copy of
 *    what the file holds (s->disk).  Killed before it, the image is in its
 *    previous state; after it, in the new one.  Zero padding is punched
 *    out again after the write; on a host too full to hold it for that
 *    moment the commit falls back to two writes ordered so that a kill
 *    between them leaves a leak (which qemu-img check reports).
 *  - a new block's data goes into a slot past the committed count before
 *    the commit that counts and maps it: killed in between, the file has
 *    bytes past its last slot, a leak qemu-img ignores and 'vdisk check -r'
 *    truncates.  Commits happen on flush (so on close) and every
 *    COMMIT_EVERY allocations, which keeps the metadata write (1 MiB with
 *    VirtualBox's layout) rare.
 *  - a discard only changes the map in memory (the block reads as zeros
 *    at once).  The next commit reclaims the slot: the highest used slots
 *    are copied into the free slots below the new count (slots of
 *    discarded blocks, or slots no entry references), flushed, then one
 *    commit points the moved blocks at their copies, marks the discarded
 *    ones as zero blocks and lowers the count, and the file is truncated.
 *    Only slots of discarded blocks (or of no block) are overwritten before
 *    the commit, so killed there every live block is as it was; a
 *    discarded block may then hold another block's bytes (its contents were
 *    being given up).  The reclaim happens completely or not at all.
 *  - repair (check -r) is the same commit, also filling slots no entry
 *    references (left by older versions, which lowered nothing).
 *
 * SPDX-License-Identifier: MIT
 */
#include "vdi.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <uuid/uuid.h>

/* Allocations between two commits (each commit writes up to offBlocks +
 * 4 * cBlocks bytes). */
#define COMMIT_EVERY 64u
/* Largest offBlocks the one-write commit carries (VirtualBox uses 1 MiB). */
#define VDI_GAP_MAX (16u << 20)

/* Block B's entry as the file holds it. */
static uint32_t disk_entry(const struct vdi *s, uint32_t b)
{
	return s->disk ? le32dec(s->disk + s->off_blocks + 4ull * b) : s->bmap[b];
}

/* Keep a copy of what the file holds from its start through the block map,
 * taken before the first change (or again after a failed commit). */
static int load_disk(struct vd_image *img, struct vd_error *err)
{
	struct vdi *s = img->priv;
	int r;

	if (s->disk)
		return 0;
	if (s->off_blocks > VDI_GAP_MAX)
		return vd_set_error(err, ENOTSUP,
				    "%s: offBlocks (offset 340) is %u, more than %u: vdisk changes cBlocksAllocated and the block map in one write and does not modify an image whose map is that far from the header",
				    img->host->path, s->off_blocks, VDI_GAP_MAX);
	s->disk_len = (size_t)s->off_blocks + 4 * (size_t)s->nblocks;
	s->disk = vd_malloc(s->disk_len, err);
	if (!s->disk)
		return -ENOMEM;
	r = vd_host_pread(img->host, s->disk, s->disk_len, 0, err);
	if (r < 0) {
		free(s->disk);
		s->disk = NULL;
	}
	return r;
}

static void mark_dirty(struct vdi *s, uint32_t b)
{
	if (!s->dirty || s->dirty_lo > s->dirty_hi) {
		s->dirty_lo = s->dirty_hi = b;
	} else {
		s->dirty_lo = VD_MIN(s->dirty_lo, b);
		s->dirty_hi = VD_MAX(s->dirty_hi, b);
	}
	s->dirty = true;
}

/* Block B's entry becomes VALUE, in memory; the next commit writes it. */
static int set_entry(struct vd_image *img, uint32_t b, uint32_t value,
		     struct vd_error *err)
{
	struct vdi *s = img->priv;
	int r = load_disk(img, err);

	if (r < 0)
		return r;
	mark_dirty(s, b);
	s->bmap[b] = value;
	return 0;
}

/* The commit rewrote the padding between the header and the map (almost
 * 1 MiB in VirtualBox's layout), which allocates it on the host: when it
 * is all zeros, punch it out again.  Zeros either way, so a kill before
 * or after the punch changes nothing. */
static void give_back_gap(struct vd_image *img)
{
	struct vdi *s = img->priv;
	uint64_t lo = VD_ALIGN_UP((uint64_t)HDR_BUF, 4096), hi = VD_ALIGN_DOWN((uint64_t)s->off_blocks, 4096);

	if (hi <= lo || !img->host->ops->punch_hole || !vd_is_zero(s->disk + lo, (size_t)(hi - lo)))
		return;
	img->host->ops->punch_hole(img->host, lo, hi - lo);
}

/* The fallback of a commit on a full host: the count and the map entries
 * LO..HI (already in s->disk) in two writes, COUNT_FIRST or map first. */
static int split_commit(struct vd_image *img, bool count_first, uint32_t lo, uint32_t hi,
			struct vd_error *err)
{
	struct vdi *s = img->priv;
	int r = 0;

	for (int i = 0; i < 2 && r == 0; i++) {
		if ((i == 0) == count_first)
			r = vd_host_pwrite(img->host, s->disk + OFF_CBLOCKSALLOC, 4, OFF_CBLOCKSALLOC, err);
		else if (lo <= hi)
			r = vd_host_pwrite(img->host, s->disk + s->off_blocks + 4ull * lo,
					   4 * (size_t)(hi - lo + 1), s->off_blocks + 4ull * lo, err);
	}
	return r;
}

/* Write the map entries that changed and COUNT as cBlocksAllocated in one
 * write (see the top). */
static int commit(struct vd_image *img, uint32_t count, struct vd_error *err)
{
	struct vdi *s = img->priv;
	uint32_t lo = UINT32_MAX, hi = 0, old_count;
	uint64_t start = 0, end = 0;
	int r;

	r = load_disk(img, err);
	if (r < 0)
		return r;
	if (s->dirty && s->dirty_lo <= s->dirty_hi) {
		for (uint32_t b = s->dirty_lo; b <= s->dirty_hi && b < s->nblocks; b++) {
			if (disk_entry(s, b) == s->bmap[b])
				continue;
			le32enc(s->disk + s->off_blocks + 4ull * b, s->bmap[b]);
			lo = VD_MIN(lo, b);
			hi = b;
		}
	}
	old_count = le32dec(s->disk + OFF_CBLOCKSALLOC);
	if (old_count != count) {
		le32enc(s->disk + OFF_CBLOCKSALLOC, count);
		start = OFF_CBLOCKSALLOC;
		end = lo <= hi ? s->off_blocks + 4ull * (hi + 1) : OFF_CBLOCKSALLOC + 4;
	} else if (lo <= hi) {
		start = s->off_blocks + 4ull * lo;
		end = s->off_blocks + 4ull * (hi + 1);
	}
	if (end > start) {
		r = vd_host_pwrite(img->host, s->disk + start, (size_t)(end - start), start, err);
		if (r == -ENOSPC && start < HDR_BUF && end > s->off_blocks) {
			/* no room on the host for the padding the one write
			 * carries (it is punched out again right after): two
			 * writes then, the one that makes the count the higher
			 * first, so a kill in between leaves a leak, never a
			 * count below a used slot */
			vd_error_clear(err);
			r = split_commit(img, old_count < count, lo, hi, err);
		}
		if (r < 0) {
			/* what reached the file is unknown: read it again */
			free(s->disk);
			s->disk = NULL;
			return r;
		}
		if (start < HDR_BUF && end > s->off_blocks)
			give_back_gap(img);
	}
	s->nalloc = count;
	le32enc(s->hdr + OFF_CBLOCKSALLOC, count);
	s->dirty = false;
	s->dirty_lo = UINT32_MAX;
	s->dirty_hi = 0;
	s->released = 0;
	s->uncommitted = 0;
	return 0;
}

/* Copy the bytes of slot FROM into slot TO. */
static int copy_slot(struct vd_image *img, uint32_t from, uint32_t to, struct vd_error *err)
{
	struct vdi *s = img->priv;
	uint64_t src = s->off_data + (uint64_t)from * slot_stride(s);
	uint64_t dst = s->off_data + (uint64_t)to * slot_stride(s);
	/* a partial last block may end the file before the slot does */
	uint64_t left = VD_MIN(slot_stride(s), s->file_size - src);
	size_t chunk = (size_t)VD_MIN(left, (uint64_t)(1u << 20));
	uint8_t *buf = vd_malloc(chunk ? chunk : 1, err);
	int r = 0;

	if (!buf)
		return -ENOMEM;
	for (uint64_t done = 0; done < left && r == 0; done += chunk) {
		size_t n = (size_t)VD_MIN((uint64_t)chunk, left - done);
		r = vd_host_pread(img->host, buf, n, src + done, err);
		if (r == 0)
			r = vd_host_pwrite(img->host, buf, n, dst + done, err);
	}
	free(buf);
	return r;
}

/* Bring the file up to date with memory.  A dynamic image with discarded
 * blocks (or any, with REPAIR) is compacted on the way: highest slots into
 * the holes, one commit, truncate.  Notes go to RES when it is given. */
static int settle(struct vd_image *img, bool repair, struct vd_check *res,
		  struct vd_error *err)
{
	struct vdi *s = img->priv;
	bool compact = vdi_sparse(s) && (repair || s->released);
	uint32_t *owner, used = 0, max_used = 0, count, old;
	bool moved = false;
	int r;

	if (!s->dirty && !repair)
		return 0;
	r = load_disk(img, err);
	if (r < 0)
		return r;
	old = le32dec(s->disk + OFF_CBLOCKSALLOC);
	owner = vd_calloc(s->nblocks, sizeof(*owner), err);
	if (!owner)
		return -ENOMEM;
	for (uint32_t b = 0; b < s->nblocks; b++) {
		uint32_t e = s->bmap[b];
		if (!entry_allocated(e))
			continue;
		owner[e] = b + 1;
		used++;
		max_used = VD_MAX(max_used, e + 1);
	}
	if (compact) {
		uint32_t lo = 0, hi = max_used;
		while (true) {
			while (lo < hi && owner[lo])
				lo++;
			while (hi > lo && !owner[hi - 1])
				hi--;
			if (lo >= hi)
				break;
			/* LO is free in memory: no entry, or a discarded
			 * block's on disk, never a live block's */
			r = copy_slot(img, hi - 1, lo, err);
			if (r == 0)
				r = set_entry(img, owner[hi - 1] - 1, lo, err);
			if (r < 0)
				goto out;
			owner[lo] = owner[hi - 1];
			owner[hi - 1] = 0;
			moved = true;
			if (res)
				vd_check_note(res, VD_CHECK_NOTE_FIXED, "moved slot %u into unused slot %u", hi - 1, lo);
		}
		max_used = used;
		/* the copies are on disk before the map points at them */
		if (moved && (r = vd_host_flush(img->host, err)) < 0)
			goto out;
	}
	count = compact ? used : VD_MAX(s->nalloc, max_used);
	r = commit(img, count, err);
	if (r < 0)
		goto out;
	if (res && old != count)
		vd_check_note(res, VD_CHECK_NOTE_FIXED, "cBlocksAllocated set from %u to %u", old, count);
	if (compact) {
		uint64_t data_end = s->off_data + (uint64_t)count * slot_stride(s);
		r = vd_host_flush(img->host, err);
		if (r == 0 && s->file_size > data_end) {
			r = vd_host_truncate(img->host, data_end, err);
			if (r == 0 && res)
				vd_check_note(res, VD_CHECK_NOTE_FIXED, "file truncated from %llu to %llu bytes",
					      (unsigned long long)s->file_size, (unsigned long long)data_end);
			if (r == 0)
				s->file_size = data_end;
		}
	}
out:
	free(owner);
	return r;
}

int vdi_flush(struct vd_image *img, struct vd_error *err)
{
	return settle(img, false, NULL, err);
}

/* First slot no map entry references (nblocks when there is none). */
static int find_free_slot(const struct vdi *s, uint32_t *slot, struct vd_error *err)
{
	uint8_t *used = vd_calloc((s->nblocks + 7) / 8, 1, err);

	if (!used)
		return -ENOMEM;
	for (uint32_t b = 0; b < s->nblocks; b++)
		if (entry_allocated(s->bmap[b]))
			used[s->bmap[b] / 8] |= (uint8_t)(1u << (s->bmap[b] % 8));
	for (*slot = 0; *slot < s->nblocks; (*slot)++)
		if (!(used[*slot / 8] & (1u << (*slot % 8))))
			break;
	free(used);
	return 0;
}

/* Give block B a new slot at the end of the data area and store BUF at
 * IN_BLOCK within it; the rest of the block reads as zeros. */
static int allocate_block(struct vd_image *img, uint32_t b, uint64_t in_block,
			  const void *buf, size_t len, struct vd_error *err)
{
	struct vdi *s = img->priv;
	uint32_t slot = s->nalloc;
	bool append = true;
	uint64_t start, end, old_size;
	int r;

	r = load_disk(img, err);
	if (r < 0)
		return r;
	if (slot >= s->nblocks) {
		/* every slot was handed out (a fixed image): reuse one no block
		 * references any more */
		r = find_free_slot(s, &slot, err);
		if (r < 0)
			return r;
		if (slot >= s->nblocks)
			return vd_set_error(err, ENOSPC, "%s: VDI data area is full (cBlocksAllocated %u = cBlocks)",
					    img->host->path, s->nalloc);
		append = false;
	}
	start = s->off_data + (uint64_t)slot * slot_stride(s);
	end = start + slot_stride(s);
	if (s->file_size > start) {
		/* leaked data beyond the last slot: clear what we do not overwrite */
		r = vd_host_write_zeroes(img->host, start, end - start, false, err);
		if (r < 0)
			return r;
	}
	/* From here on the slot may hold bytes of this write even if it fails:
	 * remember that, so a retry clears it first. */
	s->file_size = VD_MAX(s->file_size, end);
	if (in_block != 0 || len != s->block_size) {
		/* The rest of the slot must exist in the file.  Ask the host, not
		 * file_size: after a failed extension or a short write file_size
		 * is past the real end (fuzz finding vdi-write-readback-eof). */
		r = vd_host_size(img->host, &old_size, err);
		if (r == 0 && old_size < end)
			r = vd_host_truncate(img->host, end, err);
		if (r < 0)
			return r;
	}
	r = vd_host_pwrite(img->host, buf, len, start + s->block_extra + in_block, err);
	if (r < 0)
		return r;
	/* Counted and mapped in memory; the commit writes both at once. */
	r = set_entry(img, b, slot, err);
	if (r < 0)
		return r;
	if (append)
		s->nalloc++;
	if (++s->uncommitted >= COMMIT_EVERY)
		r = settle(img, false, NULL, err);
	return r;
}

int vdi_write(struct vd_image *img, uint64_t off, const void *buf,
		     size_t len, struct vd_error *err)
{
	struct vdi *s = img->priv;
	uint32_t b = (uint32_t)(off / s->block_size);
	uint32_t e = s->bmap[b];

	if (entry_allocated(e))
		return vd_host_pwrite(img->host, buf, len, slot_offset(s, e) + off % s->block_size, err);
	if (!img->allocate_zero_writes && vd_is_zero(buf, len)) {
		/* Zeros into a block that reads as zeros: do not allocate.  A
		 * whole block is marked as a zero block.  In a child a
		 * never-allocated block reads from the parent: zeros written
		 * over it must hide it (the core widens partial writes of such
		 * blocks to the whole block, the last one may be short). */
		bool whole = len == s->block_size ||
			     (img->has_parent && off % s->block_size == 0 &&
			      len >= slot_guest_bytes(s, b));
		if (whole && e == VDI_UNALLOCATED)
			return set_entry(img, b, VDI_ZERO, err);
		if (e == VDI_ZERO || !img->has_parent)
			return 0;
	}
	if (s->released && entry_allocated(disk_entry(s, b))) {
		/* discarded since the last commit: reclaim its old slot first,
		 * so the file never counts the block in two slots */
		int r = settle(img, false, NULL, err);
		if (r < 0)
			return r;
	}
	return allocate_block(img, b, off % s->block_size, buf, len, err);
}

int vdi_write_zeroes(struct vd_image *img, uint64_t off, uint64_t len,
			    unsigned flags, struct vd_error *err)
{
	struct vdi *s = img->priv;
	uint32_t b = (uint32_t)(off / s->block_size);
	uint32_t e = s->bmap[b];
	/* A fixed image stays fully allocated: never punch holes in it. */
	bool unmap = (flags & VD_ZERO_MAY_UNMAP) && vdi_sparse(s);

	if (!entry_allocated(e))
		return 0; /* reads as zeros already; nothing to allocate */
	return vd_host_write_zeroes(img->host, slot_offset(s, e) + off % s->block_size,
				    len, unmap, err);
}

/* Whole blocks of a dynamic image become zero blocks (0xFFFFFFFE) at once
 * in memory; the next commit (flush, close) gives their slots back and
 * shortens the file (see the top).  Anything else is left to
 * write_zeroes. */
int vdi_discard(struct vd_image *img, uint64_t off, uint64_t len,
		       struct vd_error *err)
{
	struct vdi *s = img->priv;
	uint32_t b = (uint32_t)(off / s->block_size);
	uint32_t e = s->bmap[b];
	int r;

	if (!vdi_sparse(s) || off % s->block_size ||
	    len < VD_ALIGN_UP(block_guest_bytes(s, b), VD_SECTOR))
		return -ENOTSUP;
	if (e == VDI_ZERO)
		return 0;
	r = set_entry(img, b, VDI_ZERO, err);
	if (r == 0 && entry_allocated(e))
		s->released++;
	return r;
}

/* ---- check and repair ---- */

int vdi_check(struct vd_image *img, bool repair, struct vd_check *res,
		     struct vd_error *err)
{
	struct vdi *s = img->priv;
	uint32_t *owner; /* slot -> block + 1, 0 = free */
	uint32_t used = 0, max_used = 0;
	uint64_t data_end;
	bool count_low, count_off;
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
			res->corruptions++;
			vd_check_note(res, VD_CHECK_NOTE_ERROR, "block map %s", msg);
			continue;
		}
		owner[e] = b + 1;
		used++;
		if (e + 1 > max_used)
			max_used = e + 1;
	}
	if (res->corruptions) {
		if (repair)
			vd_check_note(res, VD_CHECK_NOTE_INFO,
				      "block map errors cannot be repaired without losing data; nothing was changed");
		goto out;
	}

	/* Leaks (dynamic images): unused slots below the highest used one, and
	 * bytes past it.  A fixed image keeps its slots whatever the map says. */
	for (uint32_t i = 0; vdi_sparse(s) && i < max_used; i++) {
		if (!owner[i]) {
			res->leaks++;
			res->leaked_bytes += slot_stride(s);
			vd_check_note(res, VD_CHECK_NOTE_LEAK, "slot %u is not used by any block", i);
		}
	}
	data_end = s->off_data + (uint64_t)max_used * slot_stride(s);
	if (vdi_sparse(s) && s->file_size > data_end &&
	    s->file_size - data_end >= VD_SECTOR) {
		res->leaks++;
		res->leaked_bytes += s->file_size - data_end;
		vd_check_note(res, VD_CHECK_NOTE_LEAK, "%llu bytes past the last used slot",
			      (unsigned long long)(s->file_size - data_end));
	}
	/* The next allocation goes to slot cBlocksAllocated: below the highest
	 * used slot it would overwrite a block (corruption).  In a dynamic image
	 * a count above the used blocks only wastes slots, as a discard leaves
	 * it (a leak); a fixed image keeps all its slots. */
	count_low = s->nalloc < max_used;
	count_off = count_low || (vdi_sparse(s) && s->nalloc != used);
	if (count_low) {
		res->corruptions++;
		vd_check_note(res, VD_CHECK_NOTE_ERROR,
			      "cBlocksAllocated is %u but the block map uses %u blocks (highest slot %u)",
			      s->nalloc, used, max_used ? max_used - 1 : 0);
	} else if (count_off) {
		res->leaks++;
		vd_check_note(res, VD_CHECK_NOTE_LEAK,
			      "cBlocksAllocated is %u but the block map uses %u blocks", s->nalloc, used);
	}
	if (!repair || (!res->leaks && !res->corruptions))
		goto out;

	/* Repair: the commit fills holes with the highest slots, fixes the
	 * count and truncates (see the top: all or nothing). */
	r = settle(img, true, res, err);
	if (r < 0)
		goto out;
	if (count_low) {
		res->corruptions--;
		res->corruptions_fixed++;
	}
	if (vdi_sparse(s)) {
		res->leaks_fixed += res->leaks;
		res->leaks = 0;
		res->leaked_bytes = 0;
	}
out:
	free(owner);
	return r;
}

/* ---- chain links: one header write each ---- */

/* Write LEN bytes of header at OFF (from BYTES), in the file and in both
 * in-memory copies. */
static int header_write(struct vd_image *img, unsigned off, const uint8_t *bytes, size_t len,
			struct vd_error *err)
{
	struct vdi *s = img->priv;
	int r = vd_host_pwrite(img->host, bytes, len, off, err);

	if (r < 0)
		return r;
	memcpy(s->hdr + off, bytes, len);
	if (s->disk && off + len <= s->disk_len)
		memcpy(s->disk + off, bytes, len);
	return 0;
}

int vdi_set_parent(struct vd_image *img, const struct vd_identity *parent, const char *name,
		   struct vd_error *err)
{
	struct vdi *s = img->priv;
	uint8_t u[32] = { 0 }, g[32];

	(void)name; /* a VDI stores no name for its parent */
	if (s->type != VDI_TYPE_DIFF)
		return vd_set_error(err, EINVAL, "%s: not a differencing VDI (image type %u): it has no parent link",
				    img->host->path, s->type);
	if (!parent->uuid[0] || uuid_parse(parent->uuid, u) != 0 ||
	    (parent->modification_uuid[0] && uuid_parse(parent->modification_uuid, u + 16) != 0))
		return vd_set_error(err, EINVAL, "%s: the new parent has no image UUID a differencing VDI can link to",
				    img->host->path);
	vdi_uuid_swap(g, u);
	vdi_uuid_swap(g + 16, u + 16);
	/* uuidLinkage and uuidParentModify are adjacent: one write */
	return header_write(img, OFF_UUID_LINKAGE, g, 32, err);
}

int vdi_new_modification(struct vd_image *img, struct vd_error *err)
{
	uint8_t u[16], g[16];

	uuid_generate_random(u);
	vdi_uuid_swap(g, u);
	return header_write(img, OFF_UUID_MODIFY, g, 16, err);
}
