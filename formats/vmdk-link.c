/*
 * VMDK chain links, changed in place: a delta's parentCID and
 * parentFileNameHint (commit --keep, rebase), and a new CID for an image
 * that changed (so its deltas can tell).  The descriptor text is edited
 * line by line, keeping every other line as it was (keys vdisk does not
 * know included), and written back in one write: into the descriptor area
 * of a monolithicSparse file (it must fit), or over a descriptor file,
 * padded with newlines to its old length so that a torn write never leaves
 * a shorter text followed by stale lines.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "vmdk.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>

/* The descriptor's text as stored now, and where it goes back. */
struct desc_place {
	struct vd_host *h;
	uint64_t off;      /* bytes */
	size_t room;       /* bytes it may take (embedded), 0: a file */
	size_t old_len;
};

static int load(struct vd_image *img, struct desc_place *pl, char **text, struct vd_error *err)
{
	struct vmdk *v = img->priv;
	uint64_t size;
	int r;

	*text = NULL;
	memset(pl, 0, sizeof(*pl));
	if (!v->has_desc)
		return vd_set_error(err, EINVAL, "%s: the VMDK has no descriptor to change", img->host->path);
	if (v->stream)
		return vd_set_error(err, EROFS, "%s: a stream being written cannot be relinked", img->host->path);
	if (v->n >= 1 && v->ext[0].sp && v->ext[0].h == img->host) {
		struct vmdk_sparse *sp = v->ext[0].sp;
		r = vmdk_sparse_descriptor(sp, text, err);
		if (r < 0)
			return r;
		if (!*text)
			return vd_set_error(err, EINVAL, "%s: the VMDK has no embedded descriptor to change",
					    img->host->path);
		pl->h = img->host;
		pl->off = sp->desc_off * VD_SECTOR;
		pl->room = (size_t)(sp->desc_size * VD_SECTOR);
		pl->old_len = strlen(*text);
		return 0;
	}
	r = vd_host_size(img->host, &size, err);
	if (r < 0)
		return r;
	if (size > VMDK_DESC_MAX)
		return vd_set_error(err, EINVAL, "%s: descriptor of %llu bytes", img->host->path,
				    (unsigned long long)size);
	*text = vd_malloc((size_t)size + 1, err);
	if (!*text)
		return -ENOMEM;
	r = vd_host_pread(img->host, *text, (size_t)size, 0, err);
	if (r < 0) {
		free(*text);
		*text = NULL;
		return r;
	}
	(*text)[size] = 0;
	pl->h = img->host;
	pl->old_len = (size_t)size;
	return 0;
}

/* The line of KEY in TEXT ("KEY = ..." or "KEY=..."), or NULL. */
static char *find_key(char *text, const char *key)
{
	size_t kl = strlen(key);

	for (char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		char *p = l;
		while (*p == ' ' || *p == '\t')
			p++;
		if (strncmp(p, key, kl))
			continue;
		p += kl;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '=')
			return l;
	}
	return NULL;
}

/* Replace the line of KEY by LINE, or insert LINE after the line of AFTER
 * (or at the start).  Returns the new text (malloc'ed) or NULL. */
static char *set_line(const char *text, const char *key, const char *line, const char *after)
{
	char *dup = strdup(text), *at, *out = NULL;
	size_t pre, skip = 0;

	if (!dup)
		return NULL;
	at = find_key(dup, key);
	if (at) {
		char *end = strchr(at, '\n');
		pre = (size_t)(at - dup);
		skip = end ? (size_t)(end + 1 - at) : strlen(at);
	} else {
		char *a = after ? find_key(dup, after) : NULL;
		char *end = a ? strchr(a, '\n') : NULL;
		pre = end ? (size_t)(end + 1 - dup) : 0;
	}
	if (asprintf(&out, "%.*s%s\n%s", (int)pre, dup, line, dup + pre + skip) < 0)
		out = NULL;
	free(dup);
	return out;
}

static int store(struct vd_image *img, const struct desc_place *pl, const char *text,
		 struct vd_error *err)
{
	size_t len = strlen(text), n = pl->room ? pl->room : VD_MAX(len, pl->old_len);
	char *buf;
	int r;

	if (pl->room && len >= pl->room)
		return vd_set_error(err, ENOSPC, "%s: the changed descriptor (%zu bytes) does not fit the descriptor area (%zu bytes)",
				    img->host->path, len, pl->room);
	buf = vd_calloc(1, n, err);
	if (!buf)
		return -ENOMEM;
	memcpy(buf, text, len);
	if (!pl->room)
		memset(buf + len, '\n', n - len); /* a file: blank lines, never stale ones */
	r = vd_host_pwrite(pl->h, buf, n, pl->off, err);
	free(buf);
	if (r == 0)
		r = vd_host_flush(pl->h, err);
	return r;
}

int vmdk_set_parent(struct vd_image *img, const struct vd_identity *parent,
			   const char *name, struct vd_error *err)
{
	struct vmdk *v = img->priv;
	struct desc_place pl;
	char *text, *t2 = NULL, line[400];
	uint32_t cid = parent->has_cid && parent->cid != 0xffffffffu ? parent->cid : 0xfffffffeu;
	int r;

	if (v->desc.parent_cid == 0xffffffffu)
		return vd_set_error(err, EINVAL, "%s: not a VMDK delta (parentCID is ffffffff): it has no parent link",
				    img->host->path);
	if (name && (strlen(name) >= sizeof(v->desc.parent_name) || strchr(name, '"') || strchr(name, '\n')))
		return vd_set_error(err, EINVAL, "%s: the parent's name '%s' cannot be stored", img->host->path, name);
	r = load(img, &pl, &text, err);
	if (r < 0)
		return r;
	snprintf(line, sizeof(line), "parentCID=%08" PRIx32, cid);
	t2 = set_line(text, "parentCID", line, "CID");
	free(text);
	text = t2;
	if (text && name) {
		snprintf(line, sizeof(line), "parentFileNameHint=\"%s\"", name);
		t2 = set_line(text, "parentFileNameHint", line, "createType");
		free(text);
		text = t2;
	}
	/* VirtualBox's UUID link, where the delta has one */
	if (text && parent->uuid[0] && find_key(text, "ddb.uuid.parent")) {
		snprintf(line, sizeof(line), "ddb.uuid.parent = \"%s\"", parent->uuid);
		t2 = set_line(text, "ddb.uuid.parent", line, NULL);
		free(text);
		text = t2;
		if (text && parent->modification_uuid[0] && find_key(text, "ddb.uuid.parentmodification")) {
			snprintf(line, sizeof(line), "ddb.uuid.parentmodification = \"%s\"",
				 parent->modification_uuid);
			t2 = set_line(text, "ddb.uuid.parentmodification", line, NULL);
			free(text);
			text = t2;
		}
	}
	if (!text)
		return vd_set_error(err, ENOMEM, "out of memory");
	r = store(img, &pl, text, err);
	free(text);
	if (r < 0)
		return r;
	v->desc.parent_cid = cid;
	if (name)
		snprintf(v->desc.parent_name, sizeof(v->desc.parent_name), "%s", name);
	if (parent->uuid[0] && v->desc.uuid_parent[0])
		snprintf(v->desc.uuid_parent, sizeof(v->desc.uuid_parent), "%s", parent->uuid);
	return 0;
}

int vmdk_new_modification(struct vd_image *img, struct vd_error *err)
{
	struct vmdk *v = img->priv;
	struct desc_place pl;
	char *text, *t2, line[64];
	uint32_t cid;
	int r;

	if (getrandom(&cid, sizeof(cid), 0) != sizeof(cid))
		cid = v->desc.cid * 2654435761u + 1;
	if (cid == v->desc.cid || cid == 0xffffffffu || cid == 0xfffffffeu)
		cid ^= 0x5a5a5a5au;
	r = load(img, &pl, &text, err);
	if (r < 0)
		return r;
	snprintf(line, sizeof(line), "CID=%08" PRIx32, cid);
	t2 = set_line(text, "CID", line, "version");
	free(text);
	text = t2;
	if (text && find_key(text, "ddb.longContentID")) {
		/* VMware's long content id ends in the CID */
		const char *l = find_key(text, "ddb.longContentID");
		const char *q = strchr(l, '"');
		char lcid[33] = "";
		if (q && strlen(q + 1) >= 32)
			snprintf(lcid, sizeof(lcid), "%.24s", q + 1);
		if (strlen(lcid) == 24) {
			snprintf(line, sizeof(line), "ddb.longContentID = \"%s%08" PRIx32 "\"", lcid, cid);
			t2 = set_line(text, "ddb.longContentID", line, NULL);
			free(text);
			text = t2;
		}
	}
	if (!text)
		return vd_set_error(err, ENOMEM, "out of memory");
	r = store(img, &pl, text, err);
	free(text);
	if (r == 0)
		v->desc.cid = cid;
	return r;
}
