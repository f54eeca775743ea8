/*
 * Errors, zero detection, allocation, UUIDs, option strings, sizes.
 *
 * SPDX-License-Identifier: MIT
 */
#include "vdisk-int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <uuid/uuid.h>

void vd_error_clear(struct vd_error *err)
{
	if (err) {
		err->code = 0;
		err->msg[0] = '\0';
	}
}

int vd_set_error(struct vd_error *err, int errnum, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
		err->code = -errnum;
	}
	return -errnum;
}

int vd_prefix_error(struct vd_error *err, const char *fmt, ...)
{
	char prefix[VD_ERROR_MSG_MAX], old[VD_ERROR_MSG_MAX];
	va_list ap;

	if (!err)
		return -EIO;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	snprintf(old, sizeof(old), "%s", err->msg);
	snprintf(err->msg, sizeof(err->msg), "%s: %s", prefix, old);
	return err->code;
}

bool vd_is_zero(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	size_t i;

	/* Check a prefix byte-wise, then compare the buffer with itself shifted:
	 * if the first 16 bytes are zero and buf[0..n-16) == buf[16..n) all is zero. */
	if (len < 64) {
		for (i = 0; i < len; i++)
			if (p[i])
				return false;
		return true;
	}
	for (i = 0; i < 16; i++)
		if (p[i])
			return false;
	return memcmp(p, p + 16, len - 16) == 0;
}

bool vd_is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

static uint8_t zero_buf[VD_ZERO_BUF_SIZE] __attribute__((aligned(4096)));

const void *vd_zero_buf(void)
{
	return zero_buf;
}

void *vd_malloc(size_t n, struct vd_error *err)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		vd_set_error(err, ENOMEM, "out of memory allocating %zu bytes", n);
	return p;
}

void *vd_calloc(size_t n, size_t m, struct vd_error *err)
{
	void *p = calloc(n ? n : 1, m ? m : 1);
	if (!p)
		vd_set_error(err, ENOMEM, "out of memory allocating %zu x %zu bytes", n, m);
	return p;
}

void *vd_aligned_alloc(size_t n, struct vd_error *err)
{
	void *p = NULL;
	if (posix_memalign(&p, 4096, VD_ALIGN_UP(n ? n : 1, 4096)) != 0) {
		vd_set_error(err, ENOMEM, "out of memory allocating %zu bytes", n);
		return NULL;
	}
	return p;
}

void vd_uuid_format(const uint8_t u[16], char out[37])
{
	uuid_unparse_lower(u, out);
}

void vd_uuid_new(uint8_t u[16], bool deterministic, unsigned seed)
{
	if (!deterministic) {
		uuid_generate_random(u);
		return;
	}
	/* Fixed, valid version-4 UUIDs: 00000000-0000-4000-8000-0000000000SS */
	memset(u, 0, 16);
	u[6] = 0x40;
	u[8] = 0x80;
	u[15] = (uint8_t)(seed + 1);
}

int vd_uuid_option(uint8_t u[16], struct vd_opts *o, const char *key,
		   bool deterministic, unsigned seed, struct vd_error *err)
{
	const char *v = vd_opts_get(o, key);

	if (!v) {
		vd_uuid_new(u, deterministic, seed);
		return 0;
	}
	if (uuid_parse(v, u) != 0)
		return vd_set_error(err, EINVAL, "option %s: '%s' is not a UUID", key, v);
	return 0;
}

/* ---- options ---- */

int vd_opts_parse(struct vd_opts *o, const char *s, struct vd_error *err)
{
	memset(o, 0, sizeof(*o));
	while (s && *s) {
		const char *end = strchr(s, ',');
		size_t len = end ? (size_t)(end - s) : strlen(s);
		const char *eq = memchr(s, '=', len);
		size_t klen = eq ? (size_t)(eq - s) : len;
		size_t vlen = eq ? len - klen - 1 : 0;
		struct vd_opt *opt;

		if (len == 0) {
			s = end ? end + 1 : s + len;
			continue;
		}
		if (o->n >= VD_ARRAY_SIZE(o->v))
			return vd_set_error(err, EINVAL, "too many options (at most %zu)",
					    VD_ARRAY_SIZE(o->v));
		opt = &o->v[o->n];
		if (klen == 0 || klen >= sizeof(opt->key) || vlen >= sizeof(opt->value))
			return vd_set_error(err, EINVAL, "invalid option '%.*s'", (int)len, s);
		memcpy(opt->key, s, klen);
		opt->key[klen] = '\0';
		if (eq)
			memcpy(opt->value, eq + 1, vlen);
		opt->value[vlen] = '\0';
		if (!eq)
			snprintf(opt->value, sizeof(opt->value), "on");
		for (unsigned i = 0; i < o->n; i++)
			if (!strcmp(o->v[i].key, opt->key))
				return vd_set_error(err, EINVAL, "option '%s' given twice", opt->key);
		o->n++;
		s = end ? end + 1 : s + len;
	}
	return 0;
}

const char *vd_opts_get(struct vd_opts *o, const char *key)
{
	if (!o)
		return NULL;
	for (unsigned i = 0; i < o->n; i++) {
		if (!strcmp(o->v[i].key, key)) {
			o->v[i].used = true;
			return o->v[i].value;
		}
	}
	return NULL;
}

int vd_opts_check_used(const struct vd_opts *o, const char *format,
		       struct vd_error *err)
{
	if (!o)
		return 0;
	for (unsigned i = 0; i < o->n; i++)
		if (!o->v[i].used)
			return vd_set_error(err, EINVAL,
					    "format '%s' has no option '%s'", format,
					    o->v[i].key);
	return 0;
}

/* ---- sizes ---- */

int vd_parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long whole;
	uint64_t frac_num = 0, frac_den = 1, mult = 1;
	const char *p;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	whole = strtoull(s, &end, 10);
	if (errno)
		return -ERANGE;
	p = end;
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		while (isdigit((unsigned char)*p)) {
			if (frac_den >= 1000000000ull)
				return -EINVAL;
			frac_num = frac_num * 10 + (uint64_t)(*p - '0');
			frac_den *= 10;
			p++;
		}
	}
	switch (toupper((unsigned char)*p)) {
	case '\0': break;
	case 'B': mult = 1; p++; break;
	case 'K': mult = 1ull << 10; p++; break;
	case 'M': mult = 1ull << 20; p++; break;
	case 'G': mult = 1ull << 30; p++; break;
	case 'T': mult = 1ull << 40; p++; break;
	case 'P': mult = 1ull << 50; p++; break;
	case 'E': mult = 1ull << 60; p++; break;
	default: return -EINVAL;
	}
	if (mult > 1) {
		/* accept K, KB, KiB */
		if (p[0] == 'i' && (p[1] == 'B' || p[1] == 'b'))
			p += 2;
		else if (p[0] == 'B' || p[0] == 'b')
			p++;
	}
	if (*p)
		return -EINVAL;
	if (frac_num && mult == 1)
		return -EINVAL; /* fractional bytes */
	if (whole > UINT64_MAX / mult)
		return -ERANGE;
	*out = (uint64_t)whole * mult;
	if (frac_num) {
		uint64_t add = (uint64_t)((unsigned __int128)frac_num * mult / frac_den);
		if (*out > UINT64_MAX - add)
			return -ERANGE;
		*out += add;
	}
	return 0;
}
