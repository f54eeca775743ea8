/*
 * vdisk defrag: rewrite an image with its blocks in guest order, into a
 * file allocated up front.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cli.h"


static const char usage[] =
	"Usage: vdisk defrag [-f FMT] [-p|-q] [--output=human|json] IMAGE\n"
	"\n"
	"Rewrite IMAGE so that its blocks lie in the file in guest order and the\n"
	"file gets few host extents: the image is copied into a new file beside\n"
	"it, allocated up front with one fallocate of its final size, which then\n"
	"replaces IMAGE atomically.  Every allocated block is kept; UUIDs, VMDK\n"
	"CID, adapter type and hardware version are kept.  Works for VDI (dynamic,\n"
	"fixed), sparse and flat VMDK and raw files (zero ranges stay holes).\n"
	"The filesystem needs free space for the new file; vdisk refuses to start\n"
	"otherwise.  Killed at any moment, IMAGE is intact.\n"
	"\n"
	"  -f, --format FMT   image format (default: probe)\n"
	"  -p, --progress     show progress (default when stderr is a terminal)\n"
	"  -q, --quiet        no progress\n"
	"      --output=FMT   human (default) or json\n"
	"  -h, --help         show this help\n";

int cmd_defrag(int argc, char **argv)
{
	return cli_rewrite_cmd("defrag", usage, false, vd_defrag, argc, argv);
}
