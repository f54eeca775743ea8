/*
 * VMDK descriptor text: parse (untrusted input: bounded, every value
 * checked) and write (the layout VirtualBox insists on: exact first line,
 * header keys, extents, then the disk database).
 *
 * SPDX-License-Identifier: MIT
 */
#include "vmdk.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <uuid/uuid.h>

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

/* Copy a value, dropping surrounding double quotes. */
static void unquote(char *dst, size_t n, const char *v)
{
	size_t len = strlen(v);

	if (len >= 2 && v[0] == '"' && v[len - 1] == '"') {
		v++;
		len -= 2;
	}
	snprintf(dst, n, "%.*s", (int)len, v);
}

static int parse_u32(const char *v, int base, uint32_t *out)
{
	char *end;
	unsigned long long x;

	errno = 0;
	x = strtoull(v, &end, base);
	if (errno || end == v || *end || x > UINT32_MAX)
		return -1;
	*out = (uint32_t)x;
	return 0;
}

static int parse_extent(struct vmdk_desc_extent *e, char *line, const char *path,
			unsigned lineno, struct vd_error *err)
{
	char access[16], type[16];
	unsigned long long sectors;
	int n = 0;
	char *p;

	memset(e, 0, sizeof(*e));
	if (sscanf(line, "%15s %llu %15s %n", access, &sectors, type, &n) < 3)
		return vd_set_error(err, EINVAL, "%s: descriptor line %u: malformed extent line",
				    path, lineno);
	if (!strcmp(access, "RW"))
		e->access = VMDK_RW;
	else if (!strcmp(access, "RDONLY"))
		e->access = VMDK_RDONLY;
	else if (!strcmp(access, "NOACCESS"))
		e->access = VMDK_NOACCESS;
	else
		return vd_set_error(err, EINVAL, "%s: descriptor line %u: extent access '%s' is not RW, RDONLY or NOACCESS",
				    path, lineno, access);
	if (sectors == 0 || sectors > VMDK_MAX_SECTORS)
		return vd_set_error(err, EINVAL, "%s: descriptor line %u: extent size %llu sectors is out of range",
				    path, lineno, sectors);
	e->sectors = sectors;
	snprintf(e->type_name, sizeof(e->type_name), "%s", type);
	if (!strcmp(type, "FLAT") || !strcmp(type, "VMFS") || !strcmp(type, "VMFSRAW") ||
	    !strcmp(type, "VMFSRDM"))
		e->type = VMDK_FLAT;
	else if (!strcmp(type, "SPARSE"))
		e->type = VMDK_SPARSE;
	else if (!strcmp(type, "ZERO"))
		e->type = VMDK_ZERO;
	else if (!strcmp(type, "VMFSSPARSE"))
		e->type = VMDK_COWD;
	else if (!strcmp(type, "SESPARSE"))
		e->type = VMDK_SESPARSE;
	else
		return vd_set_error(err, ENOTSUP, "%s: descriptor line %u: extent type '%s' is not supported",
				    path, lineno, type);
	p = trim(line + n);
	if (e->type == VMDK_ZERO)
		return 0;
	if (*p != '"')
		return vd_set_error(err, EINVAL, "%s: descriptor line %u: extent file name must be quoted",
				    path, lineno);
	{
		char *q = strchr(p + 1, '"');
		if (!q || q == p + 1)
			return vd_set_error(err, EINVAL, "%s: descriptor line %u: unterminated or empty extent file name",
					    path, lineno);
		e->file = strndup(p + 1, (size_t)(q - p - 1));
		if (!e->file)
			return vd_set_error(err, ENOMEM, "out of memory");
		p = trim(q + 1);
	}
	if (*p) {
		char *end;
		unsigned long long off;
		errno = 0;
		off = strtoull(p, &end, 10);
		if (errno || *trim(end) || e->type != VMDK_FLAT || off > (1ull << 47))
			return vd_set_error(err, EINVAL, "%s: descriptor line %u: invalid extent offset '%s'",
					    path, lineno, p);
		e->offset = off;
		e->has_offset = true;
	}
	return 0;
}

int vmdk_uuid_from_vmware(const char *v, char out[37])
{
	uint8_t u[16];
	const char *p = v;

	for (int i = 0; i < 16; i++) {
		unsigned x;
		int n = 0;
		if (i == 8) {
			if (*p != '-')
				return -1;
			p++;
		} else if (i > 0) {
			if (*p != ' ')
				return -1;
			p++;
		}
		if (!isxdigit((unsigned char)p[0]) || !isxdigit((unsigned char)p[1]) ||
		    sscanf(p, "%2x%n", &x, &n) != 1 || n != 2)
			return -1;
		u[i] = (uint8_t)x;
		p += 2;
	}
	if (*p)
		return -1;
	vd_uuid_format(u, out);
	return 0;
}

/* The keys that tell which product wrote the descriptor (its dialect). */
static void dialect_key(struct vmdk_desc *d, const char *key, const char *val)
{
	char v[64];

	unquote(v, sizeof(v), val);
	if (!strcmp(key, "encoding") || !strcmp(key, "ddb.encoding"))
		snprintf(d->encoding, sizeof(d->encoding), "%s", v);
	else if (!strcmp(key, "isNativeSnapshot"))
		d->native_snapshot = true;
	else if (!strcmp(key, "ddb.deletable"))
		d->deletable = true;
	else if (!strcmp(key, "ddb.thinProvisioned"))
		d->thin = !strcmp(v, "1");
	else if (!strcmp(key, "ddb.uuid") && vmdk_uuid_from_vmware(v, d->uuid_vmware) < 0)
		d->uuid_vmware[0] = '\0';
}

int vmdk_desc_parse(struct vmdk_desc *d, const char *text, size_t len,
		    const char *path, struct vd_error *err)
{
	char *buf, *line, *next;
	unsigned lineno = 0;
	uint64_t total = 0; /* sectors of the extents so far */
	int r = 0;

	memset(d, 0, sizeof(*d));
	d->parent_cid = 0xffffffffu;
	if (len > VMDK_DESC_MAX)
		return vd_set_error(err, EINVAL, "%s: VMDK descriptor larger than %u bytes", path, VMDK_DESC_MAX);
	buf = strndup(text, len);
	if (!buf)
		return vd_set_error(err, ENOMEM, "out of memory");
	for (line = buf; line; line = next) {
		char *l, *eq, *key, *val;
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		l = trim(line);
		lineno++; /* every line counts, blank ones too: messages name it */
		if (!*l || *l == '#')
			continue;
		if (!strncmp(l, "RW ", 3) || !strncmp(l, "RDONLY ", 7) || !strncmp(l, "NOACCESS ", 9)) {
			struct vmdk_desc_extent *ne;
			if (d->nextents >= VMDK_MAX_EXTENTS) {
				r = vd_set_error(err, EINVAL, "%s: more than %u extents", path, VMDK_MAX_EXTENTS);
				break;
			}
			ne = realloc(d->extents, (d->nextents + 1) * sizeof(*ne));
			if (!ne) {
				r = vd_set_error(err, ENOMEM, "out of memory");
				break;
			}
			d->extents = ne;
			r = parse_extent(&d->extents[d->nextents], l, path, lineno, err);
			if (r == 0 && d->extents[d->nextents].sectors > VMDK_MAX_SECTORS - total)
				r = vd_set_error(err, EINVAL,
						 "%s: descriptor line %u: extent %u (%llu sectors) brings the disk past %llu sectors (the extents' sizes add up to more than any VMDK can hold)",
						 path, lineno, d->nextents + 1,
						 (unsigned long long)d->extents[d->nextents].sectors,
						 (unsigned long long)VMDK_MAX_SECTORS);
			if (r < 0) {
				free(d->extents[d->nextents].file);
				break;
			}
			total += d->extents[d->nextents].sectors;
			d->extents[d->nextents].line = lineno;
			d->nextents++;
			continue;
		}
		eq = strchr(l, '=');
		if (!eq)
			continue; /* tolerate stray lines like other readers do */
		*eq = '\0';
		key = trim(l);
		val = trim(eq + 1);
		if (!strcmp(key, "CID")) {
			if (parse_u32(val, 16, &d->cid) < 0) {
				r = vd_set_error(err, EINVAL, "%s: descriptor line %u: CID '%s' is not 8 hex digits", path, lineno, val);
				break;
			}
		} else if (!strcmp(key, "parentCID")) {
			if (parse_u32(val, 16, &d->parent_cid) < 0) {
				r = vd_set_error(err, EINVAL, "%s: descriptor line %u: parentCID '%s' is not 8 hex digits", path, lineno, val);
				break;
			}
		} else if (!strcmp(key, "createType")) {
			unquote(d->create_type, sizeof(d->create_type), val);
		} else if (!strcmp(key, "parentFileNameHint")) {
			unquote(d->parent_name, sizeof(d->parent_name), val);
		} else if (!strcmp(key, "ddb.toolsVersion")) {
			unquote(d->tools_version, sizeof(d->tools_version), val);
		} else if (!strcmp(key, "ddb.longContentID")) {
			unquote(d->long_content_id, sizeof(d->long_content_id), val);
		} else if (!strcmp(key, "ddb.adapterType")) {
			unquote(d->adapter, sizeof(d->adapter), val);
		} else if (!strcmp(key, "ddb.virtualHWVersion")) {
			unquote(d->hwversion, sizeof(d->hwversion), val);
		} else if (!strcmp(key, "ddb.uuid.image")) {
			unquote(d->uuid_image, sizeof(d->uuid_image), val);
		} else if (!strcmp(key, "ddb.uuid.parent")) {
			unquote(d->uuid_parent, sizeof(d->uuid_parent), val);
		} else if (!strcmp(key, "ddb.uuid.modification")) {
			unquote(d->uuid_modify, sizeof(d->uuid_modify), val);
		} else if (!strcmp(key, "ddb.uuid.parentmodification")) {
			unquote(d->uuid_parent_modify, sizeof(d->uuid_parent_modify), val);
		} else if (!strncmp(key, "ddb.geometry.", 13)) {
			char v[16];
			uint32_t x;
			unquote(v, sizeof(v), val);
			if (parse_u32(v, 10, &x) == 0) {
				if (!strcmp(key + 13, "cylinders"))
					d->cylinders = x;
				else if (!strcmp(key + 13, "heads"))
					d->heads = x;
				else if (!strcmp(key + 13, "sectors"))
					d->sectors = x;
				else if (!strcmp(key + 13, "biosCylinders"))
					d->bios_cylinders = x;
				else if (!strcmp(key + 13, "biosHeads"))
					d->bios_heads = x;
				else if (!strcmp(key + 13, "biosSectors"))
					d->bios_sectors = x;
			}
		} else {
			dialect_key(d, key, val);
		}
	}
	free(buf);
	if (r == 0 && d->nextents == 0)
		r = vd_set_error(err, EINVAL, "%s: VMDK descriptor has no extents", path);
	if (r < 0)
		vmdk_desc_free(d);
	return r;
}

void vmdk_desc_free(struct vmdk_desc *d)
{
	for (unsigned i = 0; i < d->nextents; i++)
		free(d->extents[i].file);
	free(d->extents);
	d->extents = NULL;
	d->nextents = 0;
}

/*
 * The writer.  Each dialect writes the lines its product writes, taken
 * from the real descriptors in /work/shared/testimages (MANIFEST.txt):
 *
 * ESXi (strozfriedberg_vmdk-rs/vmfs_thick.vmdk, ESXi, hardware 14):
 *   encoding="UTF-8" right after version=1; no isNativeSnapshot; the DDB
 *   keys sorted by name: adapterType, geometry.*, longContentID (its last
 *   8 hex digits are the CID: also vmfs_thick-000001.vmdk), ddb.uuid in
 *   VMware's byte form, virtualHWVersion; no toolsVersion; a thick (flat)
 *   disk has no thinProvisioned.  No image there is a thin ESXi disk:
 *   ddb.thinProvisioned = "1" on sparse disks is the key ESXi writes for
 *   thin provisioning (FORMATS.md lists it), written only for
 *   compat=esxi monolithicSparse and twoGbMaxExtentSparse.
 * Workstation (libyal_libvmdk/descriptor_file.1, hardware 9, and the
 *   vdiskmanager images strozfriedberg_vmdk-rs/monolithicSparse.vmdk,
 *   twoGbMaxExtent*.vmdk, monolithicFlat.vmdk, hardware 7):
 *   isNativeSnapshot="no" between parentCID and createType, ddb.uuid,
 *   longContentID ending in the CID (descriptor_file.1: CID=fffffffe,
 *   ...fffffffe), ddb.deletable = "true" and ddb.toolsVersion = "1"
 *   (vdiskmanager).  The encoding there is the host's (windows-1252 in
 *   descriptor_file.1, ddb.encoding = "UTF-8" from vdiskmanager): vdisk
 *   writes UTF-8 and says so in the header line, where ESXi and
 *   descriptor_file.1 put it.
 * VirtualBox (glennmatthews_cot/ubuntu.2.0-disk1.vmdk, an OVF export):
 *   no encoding line, the four ddb.uuid.* keys; the plain form is the
 *   same.  Stream extents are RDONLY (set by vmdk_create).
 */
static void vmware_uuid(FILE *f, const char *rfc)
{
	uint8_t u[16];

	if (uuid_parse(rfc, u) != 0)
		return;
	fputs("ddb.uuid = \"", f);
	for (int i = 0; i < 16; i++) {
		/* VMware's prefix, exactly as its products print it */
		if (i == 0 && u[0] == 0x60 && u[1] == 0x00 && u[2] == 0xc2) {
			fputs("60 00 C2", f);
			i = 2;
			continue;
		}
		fprintf(f, "%s%02x", i == 0 ? "" : i == 8 ? "-" : " ", u[i]);
	}
	fputs("\"\n", f);
}

static void vmware_ddb(FILE *f, const struct vmdk_desc *d)
{
	fprintf(f, "ddb.adapterType = \"%s\"\n", d->adapter);
	if (d->deletable)
		fputs("ddb.deletable = \"true\"\n", f);
	if (d->bios_heads && d->bios_sectors)
		fprintf(f, "ddb.geometry.biosCylinders = \"%" PRIu32 "\"\n"
			"ddb.geometry.biosHeads = \"%" PRIu32 "\"\n"
			"ddb.geometry.biosSectors = \"%" PRIu32 "\"\n",
			d->bios_cylinders, d->bios_heads, d->bios_sectors);
	fprintf(f, "ddb.geometry.cylinders = \"%" PRIu32 "\"\n"
		"ddb.geometry.heads = \"%" PRIu32 "\"\n"
		"ddb.geometry.sectors = \"%" PRIu32 "\"\n",
		d->cylinders, d->heads, d->sectors);
	if (d->long_content_id[0])
		fprintf(f, "ddb.longContentID = \"%s\"\n", d->long_content_id);
	if (d->thin)
		fputs("ddb.thinProvisioned = \"1\"\n", f);
	if (d->tools_version[0])
		fprintf(f, "ddb.toolsVersion = \"%s\"\n", d->tools_version);
	vmware_uuid(f, d->uuid_image);
	fprintf(f, "ddb.virtualHWVersion = \"%s\"\n", d->hwversion);
}

char *vmdk_desc_format(const struct vmdk_desc *d)
{
	static const char *acc[] = { "RW", "RDONLY", "NOACCESS" };
	bool vmware = d->dialect == VMDK_ESXI || d->dialect == VMDK_WORKSTATION;
	char *out = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&out, &size);

	if (!f)
		return NULL;
	fprintf(f, "# Disk DescriptorFile\nversion=1\n%sCID=%08" PRIx32 "\nparentCID=%08" PRIx32 "\n"
		"%screateType=\"%s\"\n",
		vmware ? "encoding=\"UTF-8\"\n" : "", d->cid,
		d->parent_name[0] ? d->parent_cid : 0xffffffffu,
		d->dialect == VMDK_WORKSTATION ? "isNativeSnapshot=\"no\"\n" : "", d->create_type);
	/* a delta: the parent's name, relative to this descriptor's folder */
	if (d->parent_name[0])
		fprintf(f, "parentFileNameHint=\"%s\"\n", d->parent_name);
	fprintf(f, "\n# Extent description\n");
	for (unsigned i = 0; i < d->nextents; i++) {
		const struct vmdk_desc_extent *e = &d->extents[i];
		fprintf(f, "%s %" PRIu64 " %s", acc[e->access], e->sectors, e->type_name);
		if (e->file)
			fprintf(f, " \"%s\"", e->file);
		if (e->has_offset)
			fprintf(f, " %" PRIu64, e->offset);
		fputc('\n', f);
	}
	fputs("\n# The Disk Data Base\n#DDB\n\n", f);
	if (vmware) {
		vmware_ddb(f, d);
		goto done;
	}
	fprintf(f, "ddb.virtualHWVersion = \"%s\"\n"
		"ddb.adapterType = \"%s\"\n"
		"ddb.geometry.cylinders = \"%" PRIu32 "\"\n"
		"ddb.geometry.heads = \"%" PRIu32 "\"\n"
		"ddb.geometry.sectors = \"%" PRIu32 "\"\n"
		"ddb.uuid.image = \"%s\"\n"
		"ddb.uuid.parent = \"%s\"\n"
		"ddb.uuid.modification = \"%s\"\n"
		"ddb.uuid.parentmodification = \"%s\"\n",
		d->hwversion, d->adapter, d->cylinders, d->heads, d->sectors,
		d->uuid_image, d->uuid_parent, d->uuid_modify, d->uuid_parent_modify);
	/* kept from an image being rewritten or converted; absent otherwise */
	if (d->bios_heads && d->bios_sectors)
		fprintf(f, "ddb.geometry.biosCylinders = \"%" PRIu32 "\"\n"
			"ddb.geometry.biosHeads = \"%" PRIu32 "\"\n"
			"ddb.geometry.biosSectors = \"%" PRIu32 "\"\n",
			d->bios_cylinders, d->bios_heads, d->bios_sectors);
	if (d->tools_version[0])
		fprintf(f, "ddb.toolsVersion = \"%s\"\n", d->tools_version);
	if (d->long_content_id[0])
		fprintf(f, "ddb.longContentID = \"%s\"\n", d->long_content_id);
done:
	if (fclose(f) != 0) {
		free(out);
		return NULL;
	}
	return out;
}
