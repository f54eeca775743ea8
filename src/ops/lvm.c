/*
 * lvm: make sure a logical volume exists before an image is copied onto it.
 *
 * Runs the LVM tools (lvs, vgs, lvcreate) found on PATH, with their output
 * captured (bounded) so that a failure can be reported with what the tool
 * said.  Nothing is printed.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "../core/ops.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define OUT_MAX 2048

/* Run ARGV, collect stdout+stderr (at most OUT_MAX - 1 bytes, the rest is
 * read and dropped) into OUT.  Returns the exit status, or -errno when the
 * program could not be run. */
static int run(char *const argv[], char *out)
{
	int pfd[2], status;
	size_t n = 0;
	pid_t pid;

	out[0] = '\0';
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		int e = errno;
		close(pfd[0]);
		close(pfd[1]);
		return -e;
	}
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDONLY);
		if (devnull >= 0)
			dup2(devnull, 0);
		dup2(pfd[1], 1);
		dup2(pfd[1], 2);
		/* LVM warns about inherited descriptors */
		setenv("LVM_SUPPRESS_FD_WARNINGS", "1", 1);
		execvp(argv[0], argv);
		dprintf(2, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(pfd[1]);
	for (;;) {
		char buf[512];
		ssize_t k = read(pfd[0], buf, sizeof(buf));
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		for (ssize_t i = 0; i < k && n + 1 < OUT_MAX; i++)
			out[n++] = buf[i];
	}
	out[n] = '\0';
	close(pfd[0]);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t' || *s == '\n')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

/* The output of a failed command, on one line for the message. */
static const char *oneline(char *out)
{
	for (char *p = out; *p; p++)
		if (*p == '\n')
			*p = ' ';
	return trim(out);
}

static bool valid_name(const char *s, size_t n)
{
	if (n == 0 || s[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '+' || c == '_' || c == '.' || c == '-'))
			return false;
	}
	return true;
}

int vd_lv_ensure(const char *vg_name, uint64_t size, char *path, size_t path_len,
		 bool *created, struct vd_error *err)
{
	char out[OUT_MAX], vg[128], lv[128], sizearg[32];
	const char *slash = strchr(vg_name, '/');
	unsigned long long extent;
	char *end, *v;
	int r;

	if (created)
		*created = false;
	if (!slash || !valid_name(vg_name, (size_t)(slash - vg_name)) ||
	    !valid_name(slash + 1, strlen(slash + 1)) || (size_t)(slash - vg_name) >= sizeof(vg) ||
	    strlen(slash + 1) >= sizeof(lv))
		return vd_set_error(err, EINVAL, "--lv '%s': expected VG/NAME (letters, digits, + _ . -)",
				    vg_name);
	snprintf(vg, sizeof(vg), "%.*s", (int)(slash - vg_name), vg_name);
	snprintf(lv, sizeof(lv), "%s", slash + 1);

	{
		const char *argv[] = { "lvs", "--noheadings", "-o", "lv_path", vg_name, NULL };
		r = run((char *const *)argv, out);
	}
	if (r < 0)
		return vd_set_error(err, -r, "cannot run lvs: %s", strerror(-r));
	if (r == 0) {
		v = trim(out);
		if (!*v || strchr(v, '\n') || (size_t)snprintf(path, path_len, "%s", v) >= path_len)
			return vd_set_error(err, EINVAL, "lvs %s: unexpected output '%s'", vg_name, v);
		return 0;
	}

	/* not there: the extent size of the volume group */
	{
		const char *argv[] = { "vgs", "--noheadings", "--units", "b", "--nosuffix", "-o",
				 "vg_extent_size", vg, NULL };
		r = run((char *const *)argv, out);
	}
	if (r < 0)
		return vd_set_error(err, -r, "cannot run vgs: %s", strerror(-r));
	if (r != 0)
		return vd_set_error(err, ENOENT, "vgs %s failed (exit %d): %s", vg, r, oneline(out));
	v = trim(out);
	errno = 0;
	extent = strtoull(v, &end, 10);
	if (errno || end == v || *trim(end) || extent < 1024 || extent % 1024)
		return vd_set_error(err, EINVAL, "vgs %s: extent size '%s' is not a multiple of 1 KiB",
				    vg, v);
	if (size > UINT64_MAX - extent)
		return vd_set_error(err, EINVAL, "image size %" PRIu64 " is too large", size);
	size = VD_ALIGN_UP(size ? size : 1, (uint64_t)extent);
	snprintf(sizearg, sizeof(sizearg), "%" PRIu64 "k", size / 1024);
	{
		const char *argv[] = { "lvcreate", "-y", "-n", lv, "-L", sizearg, vg, NULL };
		r = run((char *const *)argv, out);
	}
	if (r < 0)
		return vd_set_error(err, -r, "cannot run lvcreate: %s", strerror(-r));
	if (r != 0)
		return vd_set_error(err, EIO, "lvcreate -n %s -L %s %s failed (exit %d): %s",
				    lv, sizearg, vg, r, oneline(out));
	if (created)
		*created = true;
	{
		const char *argv[] = { "lvs", "--noheadings", "-o", "lv_path", vg_name, NULL };
		r = run((char *const *)argv, out);
	}
	if (r != 0)
		return vd_set_error(err, EIO, "%s was created but lvs cannot find it: %s", vg_name,
				    r < 0 ? strerror(-r) : oneline(out));
	v = trim(out);
	if (!*v || strchr(v, '\n') || (size_t)snprintf(path, path_len, "%s", v) >= path_len)
		return vd_set_error(err, EINVAL, "lvs %s: unexpected output '%s'", vg_name, v);
	return 0;
}
