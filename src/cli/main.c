/*
 * vdisk: virtual disk image toolkit.  main() dispatches to one function per
 * subcommand, each in its own file.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cli.h"

#include <string.h>

/* The library removes the temporary files crashed runs left behind (see
 * vd_set_stale_tmp_handler); say so, with their size. */
static void stale_notice(void *ctx, const struct vd_stale_tmp *st)
{
	char a[32], b[32];

	cli_human(st->size, a, sizeof(a));
	cli_human(st->allocated, b, sizeof(b));
	if (st->error)
		cli_err((const char *)ctx, "warning: cannot remove the stale temporary file %s (%s, %s on disk, left by process %ld): %s",
			st->path, a, b, st->pid, strerror(st->error));
	else
		cli_err((const char *)ctx, "removed the stale temporary file %s (%s, %s on disk) left by process %ld, which no longer runs",
			st->path, a, b, st->pid);
}

static const struct cli_cmd cmds[] = {
	{ "info", cmd_info, "show the format, sizes, UUIDs and geometry of an image" },
	{ "convert", cmd_convert, "copy an image into another format" },
	{ "create", cmd_create, "create an image, empty or partitioned and filled" },
	{ "map", cmd_map, "list allocated, zero and unallocated ranges" },
	{ "compare", cmd_compare, "compare the guest contents of two images" },
	{ "commit", cmd_commit, "merge a child image into its parent" },
	{ "rebase", cmd_rebase, "link a child image to another parent" },
	{ "check", cmd_check, "validate (and repair) image metadata" },
	{ "geometry", cmd_geometry, "CHS geometry, partition offsets, losetup/mkfs numbers" },
	{ "mbr", cmd_mbr, "write or show an MBR partition table" },
	{ "inspect", cmd_inspect, "fragmentation: guest -> image file -> host disk" },
	{ "rawvmdk", cmd_rawvmdk, "VirtualBox raw-disk VMDK descriptor for a block device" },
	{ "compact", cmd_compact, "drop zero blocks: rewrite smaller, replace atomically" },
	{ "defrag", cmd_defrag, "rewrite with blocks in guest order into a preallocated file" },
	{ "zerofree", cmd_zerofree, "make the free space of guest filesystems read as zeros" },
	{ "mount", cmd_mount, "the guest disk and its partitions as files (FUSE)" },
	{ "umount", cmd_umount, "unmount what vdisk mount mounted" },
	{ "serve", cmd_serve, "serve the guest disk over NBD (nbdkit with the vdisk plugin)" },
};

static void usage(FILE *f)
{
	fprintf(f, "Usage: vdisk COMMAND [OPTIONS] ...\n\nCommands:\n");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(f, "  %-10s %s\n", cmds[i].name, cmds[i].summary);
	fprintf(f, "\nFormats:");
	for (const char *const *n = vd_formats(); *n; n++)
		fprintf(f, " %s", *n);
	fprintf(f, "\n\nRun 'vdisk COMMAND --help' for the options of a command; see vdisk(1).\n");
}

int main(int argc, char **argv)
{
	const char *name;

	if (argc < 2) {
		usage(stderr);
		return 1;
	}
	name = argv[1];
	if (!strcmp(name, "--help") || !strcmp(name, "-h") || !strcmp(name, "help")) {
		if (argc > 2 && strcmp(name, "help") == 0) {
			char help[] = "--help";
			char *hargv[] = { argv[2], help, NULL };
			for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
				if (!strcmp(cmds[i].name, argv[2]))
					return cmds[i].run(2, hargv);
		}
		usage(stdout);
		return 0;
	}
	if (!strcmp(name, "--version") || !strcmp(name, "-V")) {
		printf("vdisk %s\n", VDISK_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (!strcmp(cmds[i].name, name)) {
			/* getopt prefixes its messages with argv[0] */
			char prog[64];
			snprintf(prog, sizeof(prog), "vdisk %s", name);
			argv[1] = prog;
			vd_set_stale_tmp_handler(stale_notice, (void *)cmds[i].name);
			return cmds[i].run(argc - 1, argv + 1);
		}
	}
	fprintf(stderr, "vdisk: unknown command '%s'\n", name);
	usage(stderr);
	return 1;
}
