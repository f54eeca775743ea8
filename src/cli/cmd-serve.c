/*
 * vdisk serve: run nbdkit with the vdisk plugin on an image.
 *
 * The plugin is $VDISK_NBDKIT_PLUGIN when set, else the one built beside
 * this vdisk binary (running from the build tree), else nbdkit's installed
 * "vdisk" plugin.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
	"Usage: vdisk serve [-f FMT] [--rw | --snapshot] [--socket PATH | --port N]\n"
	"                   [--pidfile PATH] [--foreground] [--backing FILE]... [--force] IMAGE\n"
	"\n"
	"Serve the guest disk of IMAGE over NBD: runs nbdkit with the vdisk plugin\n"
	"(nbdkit-vdisk-plugin(1)), read-only unless --rw.  nbdkit returns once it\n"
	"listens and serves in the background (unless --foreground); stop it with\n"
	"SIGTERM (its PID is in --pidfile).\n"
	"\n"
	"  -f, --format FMT     image format (default: probe)\n"
	"      --rw             let clients write (takes the in-use guard while connected)\n"
	"      --snapshot       let clients write into a temporary overlay, thrown away\n"
	"                       when nbdkit exits; IMAGE is only read\n"
	"      --socket PATH    listen on a Unix socket: nbd+unix:///?socket=PATH\n"
	"      --port N         listen on TCP port N (default: 10809): nbd://HOST:N/\n"
	"      --pidfile PATH   write nbdkit's PID into PATH\n"
	"      --foreground     do not run in the background\n"
	"      --backing FILE   a parent candidate of a child image (repeatable)\n"
	"      --force          open a parent changed since the snapshot\n"
	"  -h, --help           show this help\n";

/* The plugin built beside the running binary, when it is there. */
static const char *plugin_path(char *buf, size_t len)
{
	const char *env = getenv("VDISK_NBDKIT_PLUGIN");
	char exe[PATH_MAX];
	ssize_t n;
	char *slash;

	if (env && *env)
		return env;
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = 0;
		slash = strrchr(exe, '/');
		if (slash) {
			*slash = 0;
			snprintf(buf, len, "%s/nbdkit-vdisk-plugin.so", exe);
			if (access(buf, R_OK) == 0)
				return buf;
		}
	}
	return "vdisk";
}

int cmd_serve(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "rw", no_argument, NULL, 'w' },
		{ "socket", required_argument, NULL, 'U' },
		{ "port", required_argument, NULL, 'P' },
		{ "pidfile", required_argument, NULL, 'i' },
		{ "foreground", no_argument, NULL, 'F' },
		{ "snapshot", no_argument, NULL, 's' },
		{ "backing", required_argument, NULL, 'b' },
		{ "force", no_argument, NULL, 'x' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *fmt = NULL, *sock = NULL, *port = NULL, *pidfile = NULL, *plugin;
	bool rw = false, fg = false, snap = false, force = false;
	char pbuf[PATH_MAX + 32], filearg[PATH_MAX + 8], fmtarg[64];
	const char *args[24 + VD_CHAIN_MAX];
	char *bargs[VD_CHAIN_MAX];
	unsigned n = 0, nb = 0;
	int c;

	while ((c = getopt_long(argc, argv, "f:h", lopts, NULL)) != -1) {
		switch (c) {
		case 'f': fmt = optarg; break;
		case 'w': rw = true; break;
		case 'U': sock = optarg; break;
		case 'P': port = optarg; break;
		case 'i': pidfile = optarg; break;
		case 'F': fg = true; break;
		case 's': snap = true; break;
		case 'x': force = true; break;
		case 'b':
			if (nb >= VD_CHAIN_MAX) {
				cli_err("serve", "--backing: at most %u files", VD_CHAIN_MAX);
				return 1;
			}
			if (asprintf(&bargs[nb], "backing=%s", optarg) < 0) {
				cli_err("serve", "out of memory");
				return 1;
			}
			nb++;
			break;
		case 'h': cli_usage(stdout, usage); return 0;
		default: cli_usage(stderr, usage); return 1;
		}
	}
	if (argc - optind != 1) {
		cli_usage(stderr, usage);
		return 1;
	}
	if (sock && port) {
		cli_err("serve", "--socket and --port exclude each other");
		return 1;
	}
	if (rw && snap) {
		cli_err("serve", "--rw and --snapshot exclude each other");
		return 1;
	}
	if (port) {
		char *end;
		long v = strtol(port, &end, 10);
		if (*end || v < 1 || v > 65535) {
			cli_err("serve", "--port %s: not a port number (1 to 65535)", port);
			return 1;
		}
	}
	if (access(argv[optind], R_OK) != 0) {
		cli_err("serve", "%s: %s", argv[optind], strerror(errno));
		return 1;
	}
	plugin = plugin_path(pbuf, sizeof(pbuf));
	snprintf(filearg, sizeof(filearg), "file=%s", argv[optind]);
	args[n++] = "nbdkit";
	if (fg)
		args[n++] = "--foreground";
	if (!rw && !snap)
		args[n++] = "--readonly";
	if (sock) {
		args[n++] = "--unix";
		args[n++] = sock;
	}
	if (port) {
		args[n++] = "--port";
		args[n++] = port;
	}
	if (pidfile) {
		args[n++] = "--pidfile";
		args[n++] = pidfile;
	}
	args[n++] = plugin;
	args[n++] = filearg;
	if (fmt) {
		snprintf(fmtarg, sizeof(fmtarg), "format=%s", fmt);
		args[n++] = fmtarg;
	}
	if (snap)
		args[n++] = "snapshot=true";
	for (unsigned i = 0; i < nb; i++)
		args[n++] = bargs[i];
	if (force)
		args[n++] = "force=true";
	args[n] = NULL;
	fflush(NULL);
	execvp("nbdkit", (char *const *)args);
	if (errno == ENOENT)
		cli_err("serve", "nbdkit is not installed (it is in the Debian package nbdkit)");
	else
		cli_err("serve", "cannot run nbdkit: %s", strerror(errno));
	return 1;
}
