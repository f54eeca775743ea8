/*
 * sfdisk-style scripts for MBR tables (vd_mbr_parse_script): the header
 * lines and each partition line's start, size, type and bootable fields,
 * as sfdisk reads them.  The placing of the partitions and the table
 * itself are in mbr.c.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "../core/ops.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- sfdisk scripts ---- */

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* "2048", "512MiB", "2G", "1MB": *bytes true when a unit was given. */
static int parse_num(const char *s, uint64_t *v, bool *bytes)
{
	char *end;
	unsigned long long n;
	uint64_t mult = 1;
	unsigned shift = 0;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	n = strtoull(s, &end, 10);
	if (errno)
		return -ERANGE;
	*bytes = false;
	if (*end) {
		const char *u = "KMGTPE", *k = strchr(u, toupper((unsigned char)*end));
		if (!k)
			return -EINVAL;
		shift = (unsigned)(k - u) + 1;
		end++;
		if (!strcmp(end, "") || !strcmp(end, "iB")) {
			mult = 1ull << (10 * shift);
		} else if (!strcmp(end, "B")) {
			for (unsigned i = 0; i < shift; i++)
				mult *= 1000;
		} else {
			return -EINVAL;
		}
		*bytes = true;
	}
	if (n > UINT64_MAX / mult)
		return -ERANGE;
	*v = n * mult;
	return 0;
}

static int parse_type(const char *s, uint8_t *t)
{
	static const struct { char c; uint8_t t; } alias[] = {
		{ 'L', 0x83 }, { 'S', 0x82 }, { 'E', 0x05 }, { 'X', 0x85 },
		{ 'U', 0xef }, { 'R', 0xfd }, { 'V', 0x8e },
	};
	unsigned v = 0, n = 0;

	if (s[0] && !s[1])
		for (size_t i = 0; i < VD_ARRAY_SIZE(alias); i++)
			if (alias[i].c == s[0]) {
				*t = alias[i].t;
				return 0;
			}
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
		s += 2;
	for (; *s; s++, n++) {
		if (!isxdigit((unsigned char)*s) || n >= 2)
			return -EINVAL;
		v = v * 16 + (unsigned)(isdigit((unsigned char)*s) ? *s - '0' : (tolower((unsigned char)*s) - 'a' + 10));
	}
	if (!n)
		return -EINVAL;
	*t = (uint8_t)v;
	return 0;
}

#define SERR(...) vd_set_error(err, EINVAL, __VA_ARGS__)

static int field_id(const char *key)
{
	if (!strcmp(key, "start"))
		return 1;
	if (!strcmp(key, "size"))
		return 2;
	if (!strcmp(key, "type") || !strcasecmp(key, "Id"))
		return 3;
	if (!strcmp(key, "bootable"))
		return 4;
	return 0;
}

static int spec_value(struct vd_mbr_spec *p, int which, const char *val, unsigned ln,
		      struct vd_error *err)
{
	uint64_t v;
	bool bytes;

	switch (which) {
	case 1: /* start */
		if (!*val)
			return 0;
		if (parse_num(val, &v, &bytes) < 0)
			return SERR("line %u: start '%s' is not a number of sectors or a size like 1MiB", ln, val);
		if (bytes && v % VD_SECTOR)
			return SERR("line %u: start %s is not a multiple of 512 bytes", ln, val);
		p->start = bytes ? v / VD_SECTOR : v;
		p->start_set = true;
		return 0;
	case 2: /* size */
		if (*val == '+')
			val++;
		if (!*val)
			return 0;
		if (parse_num(val, &v, &bytes) < 0)
			return SERR("line %u: size '%s' is not a number of sectors or a size like 512MiB", ln, val);
		if (bytes && v % VD_SECTOR)
			return SERR("line %u: size %s is not a multiple of 512 bytes", ln, val);
		p->size = bytes ? v / VD_SECTOR : v;
		p->size_mode = bytes ? VD_SIZE_BYTES : VD_SIZE_SECTORS;
		if (!p->size)
			return SERR("line %u: size is 0", ln);
		return 0;
	case 3: /* type */
		if (!*val)
			return 0;
		if (parse_type(val, &p->type) < 0)
			return SERR("line %u: type '%s' is not a hex number 01..ff or one of L S E X U R V", ln, val);
		if (!p->type)
			return SERR("line %u: type 0 marks an empty entry", ln);
		return 0;
	case 4: /* bootable */
		if (!*val || !strcmp(val, "*"))
			p->bootable = true;
		else if (strcmp(val, "-"))
			return SERR("line %u: bootable flag '%s' is not '*' or '-'", ln, val);
		return 0;
	}
	return 0;
}

static int parse_part_line(char *line, unsigned ln, struct vd_mbr_script *s,
			   struct vd_error *err)
{
	struct vd_mbr_spec *p;
	char *colon = strchr(line, ':'), *body = line, *tok, *save = NULL;
	int r;

	if (s->n >= VD_MBR_MAX_PARTS)
		return SERR("line %u: more than %u partitions", ln, VD_MBR_MAX_PARTS);
	p = &s->spec[s->n];
	memset(p, 0, sizeof(*p));
	p->type = 0x83;
	p->line = ln;
	if (colon && !memchr(line, '=', (size_t)(colon - line))) {
		/* "NAME : fields": the number is NAME's trailing digits */
		char *e = colon;
		*colon = '\0';
		char *name = trim(line);
		e = name + strlen(name);
		while (e > name && isdigit((unsigned char)e[-1]))
			e--;
		if (!*e || strlen(e) > 3)
			return SERR("line %u: cannot tell the partition number from the name '%s'", ln, name);
		p->number = (unsigned)atoi(e);
		if (p->number < 1)
			return SERR("line %u: partition number %u in '%s' is invalid", ln, p->number, name);
		body = colon + 1;
	}
	if (strchr(body, '=')) {
		for (tok = strtok_r(body, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
			char *kv = trim(tok), *eq = strchr(kv, '=');
			const char *val = "";
			if (!*kv)
				continue;
			if (eq) {
				*eq = '\0';
				val = trim(eq + 1);
			}
			kv = trim(kv);
			int which = field_id(kv);
			if (!which) {
				if (!strcmp(kv, "uuid") || !strcmp(kv, "name") || !strcmp(kv, "attrs"))
					return SERR("line %u: '%s' is a GPT field; MBR partitions have none", ln, kv);
				return SERR("line %u: unknown field '%s' (expected start, size, type or bootable)", ln, kv);
			}
			if (which == 4 && eq)
				return SERR("line %u: bootable takes no value", ln);
			if ((r = spec_value(p, which, val, ln, err)) < 0)
				return r;
		}
	} else {
		/* positional: start size type bootable, by commas or blanks */
		bool commas = strchr(body, ',') != NULL;
		int which = 1;
		char *q = body;
		while (q) {
			char *next = NULL;
			if (commas) {
				next = strchr(q, ',');
			} else {
				q += strspn(q, " \t");
				if (!*q)
					break;
				next = q + strcspn(q, " \t");
				if (!*next)
					next = NULL;
			}
			if (next)
				*next++ = '\0';
			if (which > 4)
				return SERR("line %u: too many fields (expected start, size, type, bootable)", ln);
			if ((r = spec_value(p, which, trim(q), ln, err)) < 0)
				return r;
			which++;
			q = next;
		}
	}
	s->n++;
	return 0;
}

int vd_mbr_parse_script(const char *text, struct vd_mbr_script *s, struct vd_error *err)
{
	static const char *const unsupported[] = { "first-lba", "last-lba", "table-length", "grain", NULL };
	char *copy = strdup(text), *line, *save = NULL;
	unsigned ln = 0;
	int r = 0;

	if (!copy)
		return vd_set_error(err, ENOMEM, "out of memory");
	memset(s, 0, sizeof(*s));
	/* strtok_r would merge empty lines and lose line numbers: split by hand */
	for (line = copy; line && r == 0; line = save) {
		char *nl = strchr(line, '\n'), *t;
		save = nl ? nl + 1 : NULL;
		if (nl)
			*nl = '\0';
		ln++;
		t = trim(line);
		if (!*t || *t == '#')
			continue;
		/* header lines: "key: value" with a known key */
		size_t klen = strspn(t, "abcdefghijklmnopqrstuvwxyz-");
		if (klen && t[klen] == ':' && !strchr(t, '=')) {
			char *val;
			t[klen] = '\0';
			val = trim(t + klen + 1);
			if (!strcmp(t, "label")) {
				if (strcmp(val, "dos"))
					r = SERR("line %u: label '%s' is not supported: vdisk writes dos (MBR) tables", ln, val);
			} else if (!strcmp(t, "label-id")) {
				char *e;
				unsigned long long v;
				errno = 0;
				v = strtoull(val, &e, 16);
				if (!*val || *e || errno || v > UINT32_MAX || !strncmp(val, "-", 1))
					r = SERR("line %u: label-id '%s' is not a 32-bit hex number", ln, val);
				s->label_id = (uint32_t)v;
				s->label_id_set = true;
			} else if (!strcmp(t, "unit")) {
				if (strcmp(val, "sectors"))
					r = SERR("line %u: unit '%s' is not supported (only sectors)", ln, val);
			} else if (!strcmp(t, "sector-size")) {
				if (strcmp(val, "512"))
					r = SERR("line %u: sector-size %s is not supported (only 512)", ln, val);
			} else if (!strcmp(t, "device")) {
				/* informational */
			} else {
				bool known = false;
				for (unsigned i = 0; unsupported[i]; i++)
					known |= !strcmp(t, unsupported[i]);
				r = SERR("line %u: header '%s' is %s", ln, t,
					 known ? "not used by dos (MBR) tables" : "unknown");
			}
			continue;
		}
		r = parse_part_line(t, ln, s, err);
	}
	free(copy);
	return r;
}
