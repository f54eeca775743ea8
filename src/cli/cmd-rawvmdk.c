/*
 * vdisk rawvmdk: the VirtualBox raw-disk VMDK descriptor for a block
 * device, and (--owner) the udev rule and chown command that let a normal
 * user's VirtualBox open it.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cli.h"

#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
	"Usage: vdisk rawvmdk [-P N[,N...]] [--relative] [--adapter TYPE]\n"
	"                     [--owner USER[:GROUP]] [--force] DEVICE OUT.vmdk\n"
	"\n"
	"Write the VMDK descriptor VirtualBox uses to give a VM a raw block device\n"
	"(what VBoxManage createrawvmdk writes).  OUT.vmdk is built in a temporary\n"
	"file and renamed into place.\n"
	"\n"
	"  -P, --partition N[,N...]  only these MBR partitions (1-4 primary, 5...\n"
	"                         logical; repeatable): createType\n"
	"                         partitionedDevice; the MBR, the gap before the\n"
	"                         first partition and the EBRs\n"
	"                         are copied into OUT-pt.vmdk, the other partitions\n"
	"                         and the gaps read as zeros in the VM\n"
	"                         (default: the whole device, fullDevice)\n"
	"      --relative         the listed partitions through their own devices\n"
	"                         (/dev/sda1, /dev/loop0p1) instead of DEVICE\n"
	"      --adapter TYPE     ide (default), buslogic, lsilogic or legacyESX\n"
	"      --owner USER[:GROUP]  also print a udev rule that gives DEVICE to\n"
	"                         USER at every boot, and the chown command for now\n"
	"                         (printed only, never installed)\n"
	"      --force            replace an existing OUT.vmdk (and OUT-pt.vmdk)\n"
	"      --deterministic    fixed CID and UUID, for reproducible output\n"
	"  -h, --help             show this help\n"
	"\n"
	"vdisk reads the descriptor with --allow-devices.\n";

static bool safe_owner(const char *s)
{
	if (!*s || *s == ':' || *s == '-')
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || *s == '-' || *s == '.' ||
		      *s == ':' || *s == '$'))
			return false;
	return true;
}

int cli_owner_check(const char *cmd, const char *owner)
{
	if (!safe_owner(owner) || strchr(owner, ':') != strrchr(owner, ':') ||
	    owner[strlen(owner) - 1] == ':') {
		cli_err(cmd, "--owner '%s': expected USER or USER:GROUP", owner);
		return -1;
	}
	return 0;
}

void cli_owner_hint(const char *dev, const char *lv, const char *owner)
{
	char user[128], group[128], vg[128], name[128], *real;
	const char *colon = strchr(owner, ':');
	const char *base;

	if (colon) {
		snprintf(user, sizeof(user), "%.*s", (int)(colon - owner), owner);
		snprintf(group, sizeof(group), "%s", colon + 1);
	} else {
		snprintf(user, sizeof(user), "%s", owner);
		snprintf(group, sizeof(group), "%s", owner);
	}
	vg[0] = name[0] = '\0';
	if (lv && strchr(lv, '/')) {
		snprintf(vg, sizeof(vg), "%.*s", (int)(strchr(lv, '/') - lv), lv);
		snprintf(name, sizeof(name), "%s", strchr(lv, '/') + 1);
	} else if (!strncmp(dev, "/dev/", 5) && strchr(dev + 5, '/') &&
		   !strchr(strchr(dev + 5, '/') + 1, '/') && strncmp(dev + 5, "disk/", 5) &&
		   strncmp(dev + 5, "mapper/", 7)) {
		/* /dev/VG/LV */
		snprintf(vg, sizeof(vg), "%.*s", (int)(strchr(dev + 5, '/') - (dev + 5)), dev + 5);
		snprintf(name, sizeof(name), "%s", strchr(dev + 5, '/') + 1);
	}
	real = realpath(dev, NULL);
	base = strrchr(real ? real : dev, '/');
	base = base ? base + 1 : dev;
	printf("# udev rule (printed, not installed): save it as /etc/udev/rules.d/99-vdisk-%s%s%s.rules,\n"
	       "# then run: udevadm control --reload && udevadm trigger\n",
	       vg[0] ? vg : base, vg[0] ? "-" : "", vg[0] ? name : "");
	if (vg[0])
		printf("ENV{DM_VG_NAME}==\"%s\", ENV{DM_LV_NAME}==\"%s\", OWNER=\"%s\", GROUP=\"%s\", MODE=\"0660\"\n",
		       vg, name, user, group);
	else
		printf("SUBSYSTEM==\"block\", KERNEL==\"%s\", OWNER=\"%s\", GROUP=\"%s\", MODE=\"0660\"\n",
		       base, user, group);
	printf("# until the next boot:\nchown %s:%s %s\n", user, group, dev);
	free(real);
}

static int parse_partitions(const char *s, unsigned *v, unsigned *n)
{
	char *end;

	/* appends: -P 1 -P 5 is -P 1,5 */
	if (!*s)
		return -1;
	while (*s) {
		unsigned long x = strtoul(s, &end, 10);
		if (end == s || x < 1 || x > VD_MBR_MAX_PARTS || *n >= VD_MBR_MAX_PARTS ||
		    (*end && *end != ','))
			return -1;
		for (unsigned i = 0; i < *n; i++)
			if (v[i] == x)
				return -1;
		v[(*n)++] = (unsigned)x;
		s = *end ? end + 1 : end;
	}
	return *n ? 0 : -1;
}

int cmd_rawvmdk(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "partition", required_argument, NULL, 'P' },
		/* former names, not shown: --partitions (the same), -r and -a
		 * (check's --repair, the --align of create and mbr) */
		{ "partitions", required_argument, NULL, 'P' },
		{ "relative", no_argument, NULL, 'r' },
		{ "adapter", required_argument, NULL, 'a' },
		{ "owner", required_argument, NULL, 'U' },
		{ "force", no_argument, NULL, 'F' },
		{ "deterministic", no_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	unsigned parts[VD_MBR_MAX_PARTS];
	struct vd_rawvmdk_opts o = { 0 };
	struct vd_error err = { 0 };
	const char *owner = NULL;
	int c;

	while ((c = getopt_long(argc, argv, "P:ra:h", lo, NULL)) != -1) {
		switch (c) {
		case 'P':
			if (parse_partitions(optarg, parts, &o.npartitions) < 0) {
				cli_err("rawvmdk", "--partition '%s': expected distinct partition numbers like 1,5",
					optarg);
				return 1;
			}
			o.partitions = parts;
			break;
		case 'r': o.relative = true; break;
		case 'a': o.adapter = optarg; break;
		case 'U':
			if (cli_owner_check("rawvmdk", optarg) < 0)
				return 1;
			owner = optarg;
			break;
		case 'F': o.force = true; break;
		case 'd': o.deterministic = true; break;
		case 'h': cli_usage(stdout, usage); return 0;
		default: cli_usage(stderr, usage); return 1;
		}
	}
	if (optind + 2 != argc) {
		cli_usage(stderr, usage);
		return 1;
	}
	if (o.relative && !o.npartitions) {
		cli_err("rawvmdk", "--relative needs --partition");
		return 1;
	}
	if (vd_rawvmdk(argv[optind], argv[optind + 1], &o, &err) < 0)
		return cli_fail("rawvmdk", &err, 1);
	if (owner)
		cli_owner_hint(argv[optind], NULL, owner);
	return 0;
}
