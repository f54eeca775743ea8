/*
 * build: the parts of vdisk create --script around the writing (see
 * build.c): the script's file= fields, the digest of the inputs and the
 * identifiers derived from it (--deterministic), and the summary of the
 * finished files (their identifiers, sizes and SHA-256).
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "build.h"
#include "sha256.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- the script's file= fields ---- */

/* The value of a file= field: PATH up to the next comma, or "PATH". */
static int take_value(const char *v, const char **end, char **out)
{
	const char *e;

	while (*v == ' ' || *v == '\t')
		v++;
	if (*v == '"') {
		e = strchr(v + 1, '"');
		if (!e)
			return -EINVAL;
		*out = strndup(v + 1, (size_t)(e - v - 1));
		e++;
		while (*e == ' ' || *e == '\t')
			e++;
		if (*e && *e != ',')
			return -EINVAL;
	} else {
		e = v + strcspn(v, ",");
		size_t n = (size_t)(e - v);
		while (n && isspace((unsigned char)v[n - 1]))
			n--;
		*out = strndup(v, n);
	}
	*end = e;
	return *out ? 0 : -ENOMEM;
}

/* Copy TEXT without the file= fields (which vd_mbr_parse_script does not
 * know) and note them by line number. */
int build_strip_files(const char *text, const char *name, char **clean,
		      struct line_file **files, unsigned *nfiles,
		      struct vd_error *err)
{
	size_t len = strlen(text);
	char *out = vd_malloc(len + 1, err), *o;
	const char *p = text;
	unsigned ln = 0;

	if (!out)
		return -ENOMEM;
	o = out;
	*files = NULL;
	*nfiles = 0;
	while (*p) {
		const char *eol = p + strcspn(p, "\n"), *q = p;
		bool seen = false;

		ln++;
		while (q < eol) {
			/* a field starts the line, or follows ',' or "NAME :" */
			const char *k = q;
			bool start = k == p || k[-1] == ',' || k[-1] == ':';
			while (start && k < eol && (*k == ' ' || *k == '\t'))
				k++;
			if (start && !strncmp(k, "file", 4)) {
				const char *eq = k + 4, *vend;
				while (*eq == ' ' || *eq == '\t')
					eq++;
				if (*eq == '=' && eq < eol) {
					char *path, *l = strndup(eq + 1, (size_t)(eol - eq - 1));
					struct line_file *nf;
					int r;

					if (!l) {
						free(out);
						return vd_set_error(err, ENOMEM, "out of memory");
					}
					r = take_value(l, &vend, &path);
					vend = eq + 1 + (vend - l);
					free(l);
					if (r < 0 || !*path || seen) {
						if (r == 0)
							free(path);
						free(out);
						return vd_set_error(err, EINVAL, "%s: line %u: %s", name, ln,
								    seen ? "file= given twice" :
								    r == -ENOMEM ? "out of memory" :
								    "file= needs a path (quote it if it holds a comma)");
					}
					seen = true;
					nf = realloc(*files, (*nfiles + 1) * sizeof(**files));
					if (!nf) {
						free(path);
						free(out);
						return vd_set_error(err, ENOMEM, "out of memory");
					}
					*files = nf;
					nf[*nfiles].line = ln;
					nf[*nfiles].path = path;
					(*nfiles)++;
					/* drop the field and the comma after it (or
					 * before it, at the end of the line) */
					if (*vend == ',') {
						vend++;
					} else {
						while (o > out && (o[-1] == ' ' || o[-1] == '\t'))
							o--;
						if (o > out && o[-1] == ',')
							o--;
					}
					q = vend;
					continue;
				}
			}
			*o++ = *q++;
		}
		if (*eol)
			*o++ = '\n';
		p = *eol ? eol + 1 : eol;
	}
	*o = '\0';
	*clean = out;
	return 0;
}

/* ---- pass 1 (deterministic): the digest of the inputs ---- */

struct hasher {
	struct vd_sha256 sha;
	uint8_t *buf;
	uint64_t in_off;
	const uint8_t *cur;
	uint64_t piece_off;  /* guest offset of the input being hashed */
};

static uint8_t *hash_get(void *ctx)
{
	return ((struct hasher *)ctx)->buf;
}

static int hash_unit(void *ctx, size_t pos, size_t n)
{
	struct hasher *h = ctx;
	uint8_t hdr[16];

	/* unit by unit, so the digest does not depend on chunking */
	while (n) {
		size_t u = (size_t)VD_MIN((uint64_t)n, UNIT - (h->in_off + pos) % UNIT);
		le64enc(hdr, h->in_off + pos);
		le64enc(hdr + 8, u);
		vd_sha256_update(&h->sha, hdr, sizeof(hdr));
		vd_sha256_update(&h->sha, h->cur + pos, u);
		pos += u;
		n -= u;
	}
	return 0;
}

static int hash_put(void *ctx, uint64_t off, uint64_t in_off, uint8_t *buf,
		    size_t len, bool sector, unsigned part)
{
	struct hasher *h = ctx;
	uint8_t hdr[16];

	if (!len)
		return 0;
	le64enc(hdr, off);
	le32enc(hdr + 8, sector);
	le32enc(hdr + 12, part);
	if (sector) {
		vd_sha256_update(&h->sha, hdr, sizeof(hdr));
		vd_sha256_update(&h->sha, buf, len);
		return 0;
	}
	if (off - in_off != h->piece_off) { /* a new input: where it goes */
		h->piece_off = off - in_off;
		le64enc(hdr, h->piece_off);
		vd_sha256_update(&h->sha, hdr, sizeof(hdr));
	}
	h->in_off = in_off;
	h->cur = buf;
	return build_data_runs(in_off, buf, len, hash_unit, h);
}

static void hash_str(struct vd_sha256 *s, const char *str)
{
	str = str ? str : "";
	vd_sha256_update(s, str, strlen(str) + 1);
}

/* C = SHA-256 over the size, the table (with the disk identifier 0 unless
 * given) and every unit of data of the inputs: what the guest sees, the same
 * for every output format, so the disk identifier derived from it is too.
 * D = SHA-256(C || format || its options || --uuid) gives the identifiers
 * of the image file (UUIDs, CID), which may differ per format. */
int build_digest(struct build *b, uint64_t size, uint8_t c[32], uint8_t d[32],
		 struct vd_error *err)
{
	struct hasher h;
	struct sink s = { hash_get, hash_put, &h };
	uint8_t n[8];
	int r;

	h.buf = vd_aligned_alloc(CHUNK, err);
	if (!h.buf)
		return -ENOMEM;
	h.piece_off = UINT64_MAX;
	vd_sha256_init(&h.sha);
	hash_str(&h.sha, "vdisk build 2");
	le64enc(n, size);
	vd_sha256_update(&h.sha, n, sizeof(n));
	r = build_walk(b, &s, err);
	free(h.buf);
	if (r < 0)
		return r;
	vd_sha256_final(&h.sha, c);
	vd_sha256_init(&h.sha);
	vd_sha256_update(&h.sha, c, 32);
	hash_str(&h.sha, b->o->format);
	hash_str(&h.sha, b->o->format_opts);
	hash_str(&h.sha, b->o->uuid);
	vd_sha256_final(&h.sha, d);
	return 0;
}

/* An identifier from D: SHA-256(D || label). */
void build_derive(const uint8_t d[32], const char *label, uint8_t out[32])
{
	struct vd_sha256 s;

	vd_sha256_init(&s);
	vd_sha256_update(&s, d, 32);
	hash_str(&s, label);
	vd_sha256_final(&s, out);
}

/* A name-based UUID: version 8 (RFC 9562, custom), variant 10. */
static void derive_uuid(const uint8_t d[32], const char *label, char out[37])
{
	uint8_t x[32];

	build_derive(d, label, x);
	x[6] = (uint8_t)((x[6] & 0x0f) | 0x80);
	x[8] = (uint8_t)((x[8] & 0x3f) | 0x80);
	vd_uuid_format(x, out);
}

/* ---- identity options ---- */

int build_identity(struct build *b, const uint8_t *d, char **opts,
		   struct vd_build_summary *sum, struct vd_error *err)
{
	const struct vd_build_opts *o = b->o;
	unsigned fields = vd_format_identity_fields(o->format);
	bool want_uuid = fields & VD_ID_UUIDS, want_cid = fields & VD_ID_CID;
	struct vd_opts user;
	char *s = NULL;
	size_t len = 0;
	FILE *f;
	int r;

	r = vd_opts_parse(&user, o->format_opts, err);
	if (r < 0)
		return r;
	if (o->uuid && !want_uuid)
		return vd_set_error(err, EINVAL, "format '%s' has no image UUID", o->format);
	if (o->uuid && vd_opts_get(&user, "uuid"))
		return vd_set_error(err, EINVAL, "the UUID is given twice (--uuid and -o uuid=)");
	if (o->uuid) {
		uint8_t u[16];
		struct vd_opts one = { .n = 1 };
		snprintf(one.v[0].key, sizeof(one.v[0].key), "uuid");
		snprintf(one.v[0].value, sizeof(one.v[0].value), "%s", o->uuid);
		r = vd_uuid_option(u, &one, "uuid", false, 0, err);
		if (r < 0)
			return r;
		vd_uuid_format(u, sum->uuid);
	}
	if (d) {
		if (want_uuid && !o->uuid && !vd_opts_get(&user, "uuid"))
			derive_uuid(d, "uuid", sum->uuid);
		if (want_uuid && !vd_opts_get(&user, "uuid_modify"))
			derive_uuid(d, "uuid_modify", sum->uuid_modify);
		if (want_cid && !vd_opts_get(&user, "cid")) {
			uint8_t x[32];
			uint32_t cid;
			build_derive(d, "cid", x);
			cid = le32dec(x);
			if (cid >= 0xfffffffeu)
				cid = 1;
			snprintf(sum->cid, sizeof(sum->cid), "%08" PRIx32, cid);
		}
	}
	f = open_memstream(&s, &len);
	if (!f)
		return vd_set_error(err, ENOMEM, "out of memory");
	fputs(o->format_opts ? o->format_opts : "", f);
	if (sum->uuid[0])
		fprintf(f, "%suuid=%s", ftell(f) ? "," : "", sum->uuid);
	if (sum->uuid_modify[0])
		fprintf(f, "%suuid_modify=%s", ftell(f) ? "," : "", sum->uuid_modify);
	if (sum->cid[0])
		fprintf(f, "%scid=%s", ftell(f) ? "," : "", sum->cid);
	if (fclose(f) != 0 || !s)
		return vd_set_error(err, ENOMEM, "out of memory");
	*opts = s;
	return 0;
}

/* ---- checksums of the output files ---- */

int build_file_sha256(const char *path, struct vd_build_file *out,
		      struct vd_error *err)
{
	struct vd_host *h;
	struct vd_sha256 s;
	uint8_t d[32], *buf;
	uint64_t size;
	int r;

	r = vd_host_open_file(&h, path, 0, err);
	if (r < 0)
		return r;
	r = vd_host_size(h, &size, err);
	buf = r == 0 ? vd_aligned_alloc(CHUNK, err) : NULL;
	if (r == 0 && !buf)
		r = -ENOMEM;
	vd_sha256_init(&s);
	for (uint64_t off = 0; r == 0 && off < size;) {
		size_t n = (size_t)VD_MIN((uint64_t)CHUNK, size - off);
		r = vd_host_pread(h, buf, n, off, err);
		vd_sha256_update(&s, buf, n);
		off += n;
	}
	free(buf);
	vd_host_close(h);
	if (r < 0)
		return r;
	vd_sha256_final(&s, d);
	vd_sha256_hex(d, out->sha256);
	out->size = size;
	return 0;
}

/* The identifiers the finished image carries (vd_get_identity). */
int build_read_identity(const char *path, struct vd_build_summary *sum,
			struct vd_error *err)
{
	struct vd_image *img;
	struct vd_identity id;
	int r;

	r = vd_open(&img, path, NULL, 0, err);
	if (r == 0) {
		r = vd_get_identity(img, &id, err);
		vd_close(img, NULL);
	}
	if (r == 0) {
		snprintf(sum->uuid, sizeof(sum->uuid), "%s", id.uuid);
		snprintf(sum->uuid_modify, sizeof(sum->uuid_modify), "%s", id.modification_uuid);
		sum->cid[0] = '\0';
		if (id.has_cid)
			snprintf(sum->cid, sizeof(sum->cid), "%08" PRIx32, id.cid);
	}
	return r;
}

/* ---- the whole build ---- */

void vd_build_summary_free(struct vd_build_summary *sum)
{
	if (!sum)
		return;
	for (unsigned i = 0; i < VD_MBR_MAX_PARTS; i++) {
		free(sum->part_file[i]);
		sum->part_file[i] = NULL;
	}
	for (unsigned i = 0; i < sum->nfiles; i++)
		free(sum->files[i].path);
	free(sum->files);
	sum->files = NULL;
	sum->nfiles = 0;
}

int build_record_files(const struct vd_tmp *t, struct vd_build_summary *sum,
		       struct vd_error *err)
{
	sum->files = vd_calloc(t->nextra + 1, sizeof(*sum->files), err);
	if (!sum->files)
		return -ENOMEM;
	sum->files[sum->nfiles].path = strdup(t->final);
	if (!sum->files[sum->nfiles++].path)
		return vd_set_error(err, ENOMEM, "out of memory");
	for (unsigned i = 0; i < t->nextra; i++) {
		sum->files[sum->nfiles].path = strdup(t->extra_final[i]);
		if (!sum->files[sum->nfiles++].path)
			return vd_set_error(err, ENOMEM, "out of memory");
	}
	return 0;
}

