/*
 * Shared CLI helpers: messages, signals, progress, JSON.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *cli_prog = "vdisk";
volatile int cli_cancel;

void cli_err(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s %s: ", cli_prog, cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int cli_fail(const char *cmd, const struct vd_error *err, int fallback)
{
	if (err->code == -ECANCELED && cli_cancel) {
		cli_err(cmd, "interrupted by signal %d", cli_cancel);
		return 128 + cli_cancel;
	}
	cli_err(cmd, "%s", err->msg[0] ? err->msg : strerror(-err->code));
	return fallback;
}

static void on_signal(int sig)
{
	cli_cancel = sig;
}

void cli_catch_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

const char *cli_human(uint64_t bytes, char *buf, size_t len)
{
	static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	double v = (double)bytes;
	unsigned u = 0;

	while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)bytes);
	else if (v >= 999.5) /* 1000..1023: %.3g would print 1.02e+03 */
		snprintf(buf, len, "%.0f %s", v, units[u]);
	else
		snprintf(buf, len, "%.3g %s", v, units[u]);
	return buf;
}

void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"': fputs("\\\"", f); break;
		case '\\': fputs("\\\\", f); break;
		case '\n': fputs("\\n", f); break;
		case '\t': fputs("\\t", f); break;
		default:
			if (*p < 0x20)
				fprintf(f, "\\u%04x", *p);
			else
				fputc(*p, f);
		}
	}
	fputc('"', f);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void cli_progress_init(struct cli_progress *p, int mode)
{
	memset(p, 0, sizeof(*p));
	p->enabled = mode == CLI_PROGRESS_ON || (mode == CLI_PROGRESS_AUTO && isatty(STDERR_FILENO));
	p->start = now();
	p->last = 0;
}

void cli_progress_cb(void *ctx, uint64_t done, uint64_t total)
{
	struct cli_progress *p = ctx;
	double t = now(), el = t - p->start, rate, pct;
	char a[32], b[32], c[32];

	if (!p->enabled || (t - p->last < 0.2 && done < total))
		return;
	p->last = t;
	p->last_done = done;
	pct = total ? 100.0 * (double)done / (double)total : 100.0;
	rate = el > 0 ? (double)done / el : 0;
	fprintf(stderr, "\r    (%5.1f%%) %s of %s, %s/s", pct, cli_human(done, a, sizeof(a)),
		cli_human(total, b, sizeof(b)), cli_human((uint64_t)rate, c, sizeof(c)));
	if (rate > 0 && done < total) {
		unsigned long left = (unsigned long)((double)(total - done) / rate);
		fprintf(stderr, ", %lu:%02lu left   ", left / 60, left % 60);
	} else {
		fputs("              ", stderr);
	}
	p->pending = 1;
	fflush(stderr);
}

void cli_progress_break(struct cli_progress *p)
{
	if (p && p->enabled && p->pending) {
		fputc('\n', stderr);
		fflush(stderr);
		p->pending = 0;
	}
}

void cli_progress_end(struct cli_progress *p)
{
	cli_progress_break(p);
}

static const char *chain_files[VD_CHAIN_MAX];
static unsigned chain_n;
static struct vd_chain_policy chain_policy;

int cli_chain_backing(const char *cmd, const char *file)
{
	if (chain_n >= VD_CHAIN_MAX) {
		cli_err(cmd, "--backing: at most %u files", VD_CHAIN_MAX);
		return 1;
	}
	chain_files[chain_n++] = file;
	return 0;
}

static void chain_warn(void *ctx, const char *msg)
{
	cli_err((const char *)ctx, "warning: %s", msg);
}

void cli_chain_apply(const char *cmd, bool force)
{
	chain_policy.candidates = chain_files;
	chain_policy.ncandidates = chain_n;
	chain_policy.force = force;
	chain_policy.warn = chain_warn;
	chain_policy.ctx = (void *)cmd;
	vd_set_chain_policy(&chain_policy);
}

int cli_output_mode(const char *cmd, const char *arg)
{
	if (!strcmp(arg, "human"))
		return 0;
	if (!strcmp(arg, "json"))
		return 1;
	cli_err(cmd, "--output must be 'human' or 'json', not '%s'", arg);
	return -1;
}

void cli_usage(FILE *f, const char *usage)
{
	fputs(usage, f);
}

char *cli_read_script(const char *cmd, const char *path)
{
	bool in = !path || !strcmp(path, "-");
	const char *name = in ? "standard input" : path;
	FILE *f = in ? stdin : fopen(path, "r");
	size_t cap = 4096, n = 0;
	const char *why = NULL;
	char *buf;

	if (!f) {
		cli_err(cmd, "%s: %s", path, strerror(errno));
		return NULL;
	}
	buf = malloc(cap);
	while (buf) {
		size_t r = fread(buf + n, 1, cap - n - 1, f);
		n += r;
		if (r == 0)
			break;
		if (n + 1 == cap) {
			char *nb = cap > (16u << 20) ? NULL : realloc(buf, cap * 2);
			if (!nb) {
				why = "the script is too large (16 MiB at most)";
				break;
			}
			buf = nb;
			cap *= 2;
		}
	}
	if (!buf)
		why = "out of memory";
	else if (!why && ferror(f))
		why = "read error";
	else if (!why && memchr(buf, '\0', n))
		why = "the script contains NUL bytes";
	if (why) {
		cli_err(cmd, "%s: %s", name, why);
		free(buf);
		buf = NULL;
	} else {
		buf[n] = '\0';
	}
	if (!in)
		fclose(f);
	return buf;
}

unsigned cli_overlaps_listed(const struct vd_ptable *pt)
{
	return pt->noverlaps < VD_PTABLE_MAX_OVERLAPS ? pt->noverlaps : VD_PTABLE_MAX_OVERLAPS;
}

void cli_overlaps_json(const struct vd_ptable *pt)
{
	unsigned n = cli_overlaps_listed(pt);

	printf(",\n    \"overlap-count\": %u,\n    \"overlaps\": [", pt->noverlaps);
	for (unsigned i = 0; i < n; i++) {
		const struct vd_ptable_overlap *o = &pt->overlap[i];
		printf("%s\n        {\"partition\": %u, \"start\": %" PRIu64 ", \"end\": %" PRIu64
		       ", \"with\": \"%s\", \"other\": %u, \"other-start\": %" PRIu64 ", \"other-end\": %" PRIu64 "}",
		       i ? "," : "", o->a, o->a_start, o->a_end, o->b == 0 ? "mbr" : o->b_ebr ? "ebr" : "partition",
		       o->b, o->b_start, o->b_end);
	}
	printf("%s]", n ? "\n    " : "");
}
