/*
 * Snapshot chains: finding, opening and verifying the parent of a child
 * layer (differencing VDI, VMDK delta), and the reads and block status of
 * what a child does not hold.  Backends only say that their layer links to
 * a parent (img->has_parent, img->parent_hint) and which of their blocks
 * they do not hold (block status without VD_BS_ALLOCATED, reads through
 * vd_backing_read); everything about the parent is decided here, once, for
 * every format (see "snapshot chains" in include/vdisk.h).
 *
 * The .vbox / VirtualBox.xml reader is a bounded scanner of <HardDisk>
 * start tags and their uuid= and location= attributes, not an XML parser:
 * that is all a media registry lookup needs, and it keeps libvdisk free of
 * an XML library for one lookup.  A location it yields is only a
 * candidate: the image is the parent only if its UUID matches the link.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "vdisk-int.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define SCAN_MAX_ENTRIES 4096u     /* directory entries looked at per folder */
#define REGISTRY_MAX (16u << 20)   /* largest .vbox / VirtualBox.xml read */

static struct vd_chain_policy policy;

void vd_set_chain_policy(const struct vd_chain_policy *p)
{
	if (p)
		policy = *p;
	else
		memset(&policy, 0, sizeof(policy));
}

struct vd_image *vd_backing(const struct vd_image *img)
{
	return img->backing;
}

bool vd_has_parent_link(const struct vd_image *img)
{
	return img->has_parent;
}

const char *vd_parent_hint(const struct vd_image *img)
{
	return img->parent_hint ? img->parent_hint : "";
}

const char *vd_backing_problem(const struct vd_image *img)
{
	return img->backing_problem;
}

int vd_backing_read(struct vd_image *img, uint64_t off, void *buf, size_t len,
		    struct vd_error *err)
{
	struct vd_image *b = img->backing;
	size_t n = 0;
	int r;

	if (b && off < b->size) {
		n = (size_t)VD_MIN((uint64_t)len, b->size - off);
		r = vd_read(b, off, buf, n, err);
		if (r < 0)
			return vd_prefix_error(err, "%s: reading its parent", img->host->path);
	}
	if (n < len)
		memset((uint8_t *)buf + n, 0, len - n);
	return 0;
}

int vd_chain_status(struct vd_image *img, struct vd_extent *ext, struct vd_error *err)
{
	struct vd_image *b = img->backing;
	struct vd_extent be;
	int r;

	if (ext->start >= b->size) {
		/* past the end of a smaller parent */
		ext->flags = VD_BS_ZERO;
		ext->depth = 1;
		return 0;
	}
	r = vd_block_status(b, ext->start, VD_MIN(ext->length, b->size - ext->start), &be, err);
	if (r < 0)
		return r;
	ext->length = be.length;
	ext->flags = be.flags;
	ext->offset = be.offset;
	ext->file = be.file ? be.file : (be.flags & VD_BS_OFFSET_VALID) ? b->host->path : NULL;
	ext->depth = be.depth + 1;
	return 0;
}

/* ---- finding the parent ---- */

struct member {
	dev_t dev;
	ino_t ino;
};

struct search {
	struct vd_image *child;
	struct vd_identity id;     /* the child's: its link */
	const struct member *members;
	unsigned nmembers;
	struct vd_image *found;
	bool mismatch_forced;
	char mismatch[400];        /* the first mismatch seen, "" if none */
	char tried[600];           /* where we looked, for the message */
	int level;
};

static bool uuid_set(const char *u)
{
	if (!u[0])
		return false;
	for (const char *p = u; *p; p++)
		if (*p != '0' && *p != '-')
			return true;
	return false;
}

static void note_tried(struct search *s, const char *what)
{
	size_t n = strlen(s->tried);

	if (strstr(s->tried, what))
		return;
	snprintf(s->tried + n, sizeof(s->tried) - n, "%s%s", n ? ", " : "", what);
}

/* 1: P is the parent; 2: it is, but changed after the snapshot (MSG);
 * 0: not the parent. */
static int link_matches(const struct search *s, struct vd_image *p,
			const struct vd_identity *pid, char *msg, size_t len)
{
	const struct vd_identity *c = &s->id;

	if (uuid_set(c->parent_uuid) && pid->uuid[0] && strcasecmp(c->parent_uuid, pid->uuid))
		return 0;
	if (uuid_set(c->parent_uuid) && !pid->uuid[0] && !c->has_cid)
		return 0;
	if (uuid_set(c->parent_modification_uuid) && pid->modification_uuid[0] &&
	    strcasecmp(c->parent_modification_uuid, pid->modification_uuid)) {
		snprintf(msg, len, "%s was changed after the snapshot %s was taken: the child's parent modification UUID is %s, the parent's modification UUID is %s",
			 p->host->path, s->child->host->path, c->parent_modification_uuid,
			 pid->modification_uuid);
		return 2;
	}
	if (c->has_cid && c->parent_cid != 0xffffffffu && pid->has_cid && pid->cid != c->parent_cid) {
		snprintf(msg, len, "%s was changed after the snapshot %s was taken: the child's parentCID is %08x, the parent's CID is %08x",
			 p->host->path, s->child->host->path, c->parent_cid, pid->cid);
		return 2;
	}
	return 1;
}

static bool is_member(const struct search *s, const struct stat *st)
{
	for (unsigned i = 0; i < s->nmembers; i++)
		if (s->members[i].dev == st->st_dev && s->members[i].ino == st->st_ino)
			return true;
	return false;
}

static int attach(struct vd_image *img, const struct member *members, unsigned nmembers,
		  int level, struct vd_error *err);

/* Open P's own parent, then make P IMG's backing. */
static int adopt(struct search *s, struct vd_image *p, const struct stat *st, struct vd_error *err)
{
	struct member m[VD_CHAIN_MAX + 1];
	int r;

	memcpy(m, s->members, s->nmembers * sizeof(*m));
	m[s->nmembers].dev = st->st_dev;
	m[s->nmembers].ino = st->st_ino;
	p->flags &= ~VD_OPEN_NO_BACKING;
	r = attach(p, m, s->nmembers + 1, s->level + 1, err);
	if (r < 0 || p->backing_problem[0]) {
		if (r == 0)
			r = vd_set_error(err, ENOENT, "%s", p->backing_problem);
		vd_close(p, NULL);
		return r;
	}
	s->found = p;
	return 0;
}

/* Try the image at PATH (or the open host H): 1 taken, 0 not the parent,
 * <0 an error that ends the search (only for EXPLICIT candidates). */
static int try_candidate(struct search *s, const char *path, struct vd_host *h,
			 bool explicit, struct vd_error *err)
{
	unsigned flags = VD_OPEN_NO_BACKING |
			 (s->child->flags & (VD_OPEN_ALLOW_DEVICES | VD_OPEN_NO_SYNC));
	struct vd_identity pid;
	struct vd_image *p = NULL;
	struct vd_error e2 = { 0 };
	struct stat st;
	char msg[400];
	int r, m;

	if (h) {
		if (fstat(h->fd, &st) < 0 || is_member(s, &st)) {
			vd_host_close(h);
			return 0;
		}
		r = vd_open_host(&p, h, NULL, flags, &e2);
	} else {
		if (stat(path, &st) < 0 || is_member(s, &st))
			return 0;
		r = vd_open(&p, path, NULL, flags, &e2);
	}
	if (r < 0) {
		if (explicit)
			return vd_set_error(err, -r, "%s: its parent %s cannot be opened: %s",
					    s->child->host->path, path, e2.msg);
		return 0;
	}
	r = vd_get_identity(p, &pid, &e2);
	m = r < 0 ? 0 : link_matches(s, p, &pid, msg, sizeof(msg));
	if (m == 0) {
		vd_close(p, NULL);
		return 0;
	}
	if (m == 2) {
		if (!policy.force) {
			if (!s->mismatch[0])
				snprintf(s->mismatch, sizeof(s->mismatch), "%s", msg);
			vd_close(p, NULL);
			return 0;
		}
		if (policy.warn) {
			char w[480];
			snprintf(w, sizeof(w), "%s; reading it anyway (--force)", msg);
			policy.warn(policy.ctx, w);
		}
		s->mismatch_forced = true;
	}
	r = adopt(s, p, &st, err);
	return r < 0 ? r : 1;
}

static bool has_suffix(const char *name, const char *const *sfx)
{
	size_t n = strlen(name);

	for (; *sfx; sfx++) {
		size_t k = strlen(*sfx);
		if (n > k && !strcasecmp(name + n - k, *sfx))
			return true;
	}
	return false;
}

/* Images in DIR whose name ends in one of SFX. */
static int scan_dir(struct search *s, const char *dir, const char *const *sfx,
		    struct vd_error *err)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	unsigned seen = 0;
	int r = 0;

	if (!d)
		return 0;
	note_tried(s, dir);
	while (!s->found && r == 0 && (de = readdir(d)) && seen++ < SCAN_MAX_ENTRIES) {
		char path[PATH_MAX];

		if (de->d_name[0] == '.' || !has_suffix(de->d_name, sfx))
			continue;
		if (de->d_type != DT_REG && de->d_type != DT_UNKNOWN)
			continue;
		if (!strcmp(dir, "."))
			snprintf(path, sizeof(path), "%s", de->d_name);
		else
			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		r = try_candidate(s, path, NULL, false, err);
		if (r > 0)
			r = 0;
	}
	closedir(d);
	return r;
}

/* Decode the XML attribute value [V, V+N) into OUT (the five predefined
 * entities; anything else is kept as written). */
static void xml_unescape(const char *v, size_t n, char *out, size_t len)
{
	static const struct { const char *ent; char c; } ents[] = {
		{ "&amp;", '&' }, { "&quot;", '"' }, { "&apos;", '\'' }, { "&lt;", '<' }, { "&gt;", '>' },
	};
	size_t o = 0;

	for (size_t i = 0; i < n && o + 1 < len; i++) {
		char c = v[i];
		if (c == '&') {
			for (unsigned k = 0; k < VD_ARRAY_SIZE(ents); k++) {
				size_t el = strlen(ents[k].ent);
				if (n - i >= el && !memcmp(v + i, ents[k].ent, el)) {
					c = ents[k].c;
					i += el - 1;
					break;
				}
			}
		}
		out[o++] = c;
	}
	out[o] = 0;
}

/* The value of attribute NAME in the start tag [TAG, END). */
static bool xml_attr(const char *tag, const char *end, const char *name, char *out, size_t len)
{
	if (tag >= end)
		return false;
	size_t nl = strlen(name);

	for (const char *p = tag; p + nl + 2 < end; p++) {
		const char *q, *v;
		char quote;

		if (memcmp(p, name, nl) || !isspace((unsigned char)p[-1]))
			continue;
		q = p + nl;
		while (q < end && isspace((unsigned char)*q))
			q++;
		if (q >= end || *q != '=')
			continue;
		q++;
		while (q < end && isspace((unsigned char)*q))
			q++;
		if (q >= end || (*q != '"' && *q != '\''))
			continue;
		quote = *q++;
		v = q;
		while (q < end && *q != quote)
			q++;
		if (q >= end)
			return false;
		xml_unescape(v, (size_t)(q - v), out, len);
		return true;
	}
	return false;
}

bool vd_registry_find(const char *text, const char *file, const char *uuid, char *out,
		      size_t len)
{
	char *dup, *dir;
	bool found = false;

	{
		for (const char *p = text; !found && (p = strstr(p, "<HardDisk")); p++) {
			const char *end = strchr(p, '>');
			char u[64], loc[PATH_MAX];
			if (!end)
				break;
			if (!isspace((unsigned char)p[9]))
				continue;
			if (xml_attr(p, end, "uuid", u, sizeof(u)) &&
			    xml_attr(p, end, "location", loc, sizeof(loc))) {
				char *ub = u[0] == '{' ? u + 1 : u;
				size_t ul = strlen(ub);
				if (ul && ub[ul - 1] == '}')
					ub[--ul] = 0;
				if (!strcasecmp(ub, uuid)) {
					dup = strdup(file);
					if (loc[0] == '/' || !dup) {
						snprintf(out, len, "%s", loc);
					} else {
						dir = dirname(dup);
						snprintf(out, len, "%s/%s", dir, loc);
					}
					free(dup);
					found = true;
				}
			}
		}
	}
	return found;
}

/* The location of the medium whose uuid is UUID in the registry FILE
 * (a .vbox file or VirtualBox.xml): resolved against FILE's folder. */
static bool registry_lookup(const char *file, const char *uuid, char *out, size_t len)
{
	char *text = NULL;
	struct stat st;
	bool found = false;
	int fd;

	fd = open(file, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return false;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
	    st.st_size <= REGISTRY_MAX && (text = malloc((size_t)st.st_size + 1))) {
		ssize_t got = pread(fd, text, (size_t)st.st_size, 0);
		if (got < 0)
			got = 0;
		text[got] = 0;
		found = vd_registry_find(text, file, uuid, out, len);
	}
	free(text);
	close(fd);
	return found;
}

static int scan_registries(struct search *s, const char *dir, struct vd_error *err)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	unsigned seen = 0;
	int r = 0;
	static const char *const vbox[] = { ".vbox", NULL };

	if (!d)
		return 0;
	while (!s->found && r == 0 && (de = readdir(d)) && seen++ < SCAN_MAX_ENTRIES) {
		char path[PATH_MAX], loc[PATH_MAX];
		if (de->d_name[0] == '.' || !has_suffix(de->d_name, vbox))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		note_tried(s, path);
		if (registry_lookup(path, s->id.parent_uuid, loc, sizeof(loc))) {
			r = try_candidate(s, loc, NULL, false, err);
			if (r > 0)
				r = 0;
		}
	}
	closedir(d);
	return r;
}

static int search_by_identity(struct search *s, struct vd_error *err)
{
	static const char *const images[] = { ".vdi", ".vhd", ".vhdx", ".vmdk", NULL };
	char *dup = strdup(s->child->host->path), *dir, up[PATH_MAX], xml[PATH_MAX], loc[PATH_MAX];
	const char *home = getenv("VBOX_USER_HOME"), *h = getenv("HOME");
	bool snapshots;
	int r;

	if (!dup)
		return vd_set_error(err, ENOMEM, "out of memory");
	dir = dirname(dup);
	snapshots = !strcmp(basename(dir), "Snapshots") ||
		    (strlen(dir) >= 10 && !strcmp(dir + strlen(dir) - 10, "/Snapshots"));
	{
		/* the VM folder: the parent of Snapshots/, without "/.." */
		char *d2 = strdup(dir);
		if (!d2) {
			free(dup);
			return vd_set_error(err, ENOMEM, "out of memory");
		}
		if (!strcmp(basename(d2), "Snapshots") && strcmp(dir, "Snapshots")) {
			free(d2);
			d2 = strdup(dir);
			snprintf(up, sizeof(up), "%s", d2 ? dirname(d2) : "..");
		} else {
			snprintf(up, sizeof(up), "%s/..", dir);
		}
		free(d2);
	}
	r = scan_dir(s, dir, images, err);
	if (r == 0 && !s->found && snapshots)
		r = scan_dir(s, up, images, err);
	if (r == 0 && !s->found)
		r = scan_registries(s, dir, err);
	if (r == 0 && !s->found && snapshots)
		r = scan_registries(s, up, err);
	if (r == 0 && !s->found) {
		if (home)
			snprintf(xml, sizeof(xml), "%s/VirtualBox.xml", home);
		else if (h)
			snprintf(xml, sizeof(xml), "%s/.config/VirtualBox/VirtualBox.xml", h);
		else
			xml[0] = 0;
		if (xml[0]) {
			note_tried(s, xml);
			if (registry_lookup(xml, s->id.parent_uuid, loc, sizeof(loc))) {
				r = try_candidate(s, loc, NULL, false, err);
				if (r > 0)
					r = 0;
			}
		}
	}
	free(dup);
	return r;
}

static int try_hint(struct search *s, struct vd_error *err)
{
	static const struct vd_related_words words = { "parent file", "child", "parent", true };
	const char *hint = s->child->parent_hint, *base;
	struct vd_related rel;
	struct vd_error e2 = { 0 };
	struct vd_host *h;
	int r;

	note_tried(s, hint);
	r = vd_related_resolve(s->child, &words, hint, &rel, &e2);
	if (r == 0) {
		r = vd_related_open(s->child, &words, hint, &rel, false, &h, &e2);
		if (r == 0)
			r = try_candidate(s, rel.full, h, false, err);
		vd_related_free(&rel);
		if (r != 0 || s->found)
			return r < 0 ? r : 0;
	}
	/* a name written on another machine (C:\VMs\base.vmdk, /vmfs/...):
	 * the same file name beside the child */
	base = hint;
	for (const char *p = hint; *p; p++)
		if (*p == '/' || *p == '\\')
			base = p + 1;
	if (base != hint && *base) {
		r = vd_related_resolve(s->child, &words, base, &rel, &e2);
		if (r == 0) {
			r = vd_related_open(s->child, &words, base, &rel, false, &h, &e2);
			if (r == 0)
				r = try_candidate(s, rel.full, h, false, err);
			vd_related_free(&rel);
		}
	}
	/* a hint that does not resolve is not an error: the search goes on */
	return 0;
}

static int attach(struct vd_image *img, const struct member *members, unsigned nmembers,
		  int level, struct vd_error *err)
{
	struct search s;
	int r;

	if (!img->has_parent)
		return 0;
	memset(&s, 0, sizeof(s));
	s.child = img;
	s.members = members;
	s.nmembers = nmembers;
	s.level = level;
	if (level >= VD_CHAIN_MAX)
		return vd_set_error(err, ELOOP, "%s: the snapshot chain is deeper than %u images",
				    img->host->path, VD_CHAIN_MAX);
	r = vd_get_identity(img, &s.id, err);
	if (r < 0)
		return r;
	for (unsigned i = 0; r == 0 && !s.found && i < policy.ncandidates; i++) {
		r = try_candidate(&s, policy.candidates[i], NULL, true, err);
		if (r > 0)
			r = 0;
	}
	/* an image not in a file (a memory host) has no folder to look in */
	if (r == 0 && !s.found && img->host->fd >= 0 && img->parent_hint && img->parent_hint[0])
		r = try_hint(&s, err);
	if (r == 0 && !s.found && img->host->fd >= 0 && uuid_set(s.id.parent_uuid))
		r = search_by_identity(&s, err);
	if (r < 0)
		return r;
	if (s.found) {
		img->backing = s.found;
		return 0;
	}
	if (s.mismatch[0])
		snprintf(img->backing_problem, sizeof(img->backing_problem),
			 "%s; pass --force to read it anyway", s.mismatch);
	else if (uuid_set(s.id.parent_uuid))
		snprintf(img->backing_problem, sizeof(img->backing_problem),
			 "%s: its parent (UUID %s%s%s) was not found (looked in: %s); name it with --backing FILE",
			 img->host->path, s.id.parent_uuid, img->parent_hint ? ", named " : "",
			 img->parent_hint ? img->parent_hint : "", s.tried[0] ? s.tried : "nothing");
	else if (!img->parent_hint || !img->parent_hint[0])
		snprintf(img->backing_problem, sizeof(img->backing_problem),
			 "%s: a child image that stores neither its parent's UUID nor its name; name the parent with --backing FILE",
			 img->host->path);
	else
		snprintf(img->backing_problem, sizeof(img->backing_problem),
			 "%s: its parent \"%s\" was not found or is not its parent (looked for: %s); name it with --backing FILE",
			 img->host->path, img->parent_hint ? img->parent_hint : "",
			 s.tried[0] ? s.tried : "nothing");
	if (img->flags & VD_OPEN_CHECK)
		return 0;
	return vd_set_error(err, s.mismatch[0] ? EINVAL : ENOENT, "%s", img->backing_problem);
}

int vd_chain_attach(struct vd_image *img, struct vd_error *err)
{
	struct member m;
	struct stat st;

	if (!img->has_parent || (img->flags & VD_OPEN_NO_BACKING))
		return 0;
	if (img->host->fd < 0 || fstat(img->host->fd, &st) < 0)
		return attach(img, NULL, 0, 1, err);
	m.dev = st.st_dev;
	m.ino = st.st_ino;
	return attach(img, &m, 1, 1, err);
}

int vd_chain_set_backing(struct vd_image *img, struct vd_image *parent, struct vd_error *err)
{
	struct search s;
	struct vd_identity pid;
	char msg[400];
	int r;

	memset(&s, 0, sizeof(s));
	s.child = img;
	r = vd_get_identity(img, &s.id, err);
	if (r == 0)
		r = vd_get_identity(parent, &pid, err);
	if (r == 0 && (!img->has_parent || link_matches(&s, parent, &pid, msg, sizeof(msg)) != 1))
		r = vd_set_error(err, EINVAL, "%s: does not link to %s", img->host->path,
				 parent->host->path);
	if (r < 0) {
		vd_close(parent, NULL);
		return r;
	}
	vd_close(img->backing, NULL);
	img->backing = parent;
	img->flags &= ~VD_OPEN_NO_BACKING;
	img->backing_problem[0] = 0;
	return 0;
}

int vd_chain_relink(struct vd_image *img, const struct vd_identity *parent, const char *name,
		    struct vd_error *err)
{
	if (!img->has_parent || !img->drv->set_parent)
		return vd_set_error(err, ENOTSUP, "%s: not a child image of a format that stores a parent link",
				    img->host->path);
	if (!img->writable)
		return vd_set_error(err, EROFS, "%s: image is open read-only", img->host->path);
	return img->drv->set_parent(img, parent, name, err);
}

int vd_chain_new_modification(struct vd_image *img, struct vd_error *err)
{
	if (!img->drv->new_modification)
		return vd_set_error(err, ENOTSUP, "%s: format %s cannot change its modification identity",
				    img->host->path, img->drv->name);
	if (!img->writable)
		return vd_set_error(err, EROFS, "%s: image is open read-only", img->host->path);
	return img->drv->new_modification(img, err);
}

uint32_t vd_chain_unit(const struct vd_image *img)
{
	return img->cow_unit ? img->cow_unit : img->split;
}
