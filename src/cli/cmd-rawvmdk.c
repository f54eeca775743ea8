/*
 * vdisk rawvmdk: the VirtualBox raw-disk VMDK descriptor for a block
 * device, and (--owner) the udev rule and chown command that let a normal
 * user's VirtualBox open it.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static const char usage[] =
	"Usage: vdisk rawvmdk [-P N[,N...]] [--relative] [--adapter TYPE]\n"
	"                     [--owner USER[:GROUP] [--install]] [--force]\n"
	"                     DEVICE OUT.vmdk\n"
	"\n"
	"Write the VMDK descriptor VirtualBox uses to give a VM a raw block device\n"
	"(what VBoxManage createrawvmdk writes).  OUT.vmdk is built in a temporary\n"
	"file and renamed into place.  DEVICE must be a block device (for an image\n"
	"file use convert, or a monolithicFlat descriptor).\n"
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
	"                         (printed only); OUT.vmdk must be readable by USER\n"
	"      --install          with --owner: write the rule into\n"
	"                         /etc/udev/rules.d ($VDISK_UDEV_RULES_DIR), run\n"
	"                         udevadm control --reload and chown DEVICE\n"
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

/* The udev rule that gives DEV (an LV: VG/LV) to OWNER at every boot. */
struct owner_rule {
	char user[128], group[128];
	char file[300];   /* 99-vdisk-NAME.rules */
	char rule[800];   /* one line, no newline */
};

static void owner_rule(const char *dev, const char *lv, const char *owner, struct owner_rule *o)
{
	char vg[128], name[128], *real;
	const char *colon = strchr(owner, ':');
	const char *base;

	if (colon) {
		snprintf(o->user, sizeof(o->user), "%.*s", (int)(colon - owner), owner);
		snprintf(o->group, sizeof(o->group), "%s", colon + 1);
	} else {
		snprintf(o->user, sizeof(o->user), "%s", owner);
		snprintf(o->group, sizeof(o->group), "%s", owner);
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
	snprintf(o->file, sizeof(o->file), "99-vdisk-%s%s%s.rules",
		 vg[0] ? vg : base, vg[0] ? "-" : "", vg[0] ? name : "");
	if (vg[0])
		snprintf(o->rule, sizeof(o->rule), "ENV{DM_VG_NAME}==\"%s\", ENV{DM_LV_NAME}==\"%s\", OWNER=\"%s\", GROUP=\"%s\", MODE=\"0660\"",
			 vg, name, o->user, o->group);
	else
		snprintf(o->rule, sizeof(o->rule), "SUBSYSTEM==\"block\", KERNEL==\"%s\", OWNER=\"%s\", GROUP=\"%s\", MODE=\"0660\"",
			 base, o->user, o->group);
	free(real);
}

void cli_owner_hint(const char *dev, const char *lv, const char *owner)
{
	struct owner_rule o;

	owner_rule(dev, lv, owner, &o);
	printf("# udev rule (printed, not installed): save it as /etc/udev/rules.d/%s,\n"
	       "# then run: udevadm control --reload && udevadm trigger\n%s\n",
	       o.file, o.rule);
	printf("# until the next boot:\nchown %s:%s %s\n", o.user, o.group, dev);
}

/* --owner USER[:GROUP] names a user and a group of this system. */
static int owner_ids(const char *owner, uid_t *uid, gid_t *gid)
{
	struct owner_rule o;
	struct passwd *pw;
	struct group *gr;

	owner_rule("/dev/null", NULL, owner, &o);
	errno = 0;
	pw = getpwnam(o.user);
	if (!pw) {
		cli_err("rawvmdk", "--owner '%s': no user '%s' on this system (getent passwd %s)%s%s",
			owner, o.user, o.user, errno ? ": " : "", errno ? strerror(errno) : "");
		return -1;
	}
	errno = 0;
	gr = getgrnam(o.group);
	if (!gr) {
		cli_err("rawvmdk", "--owner '%s': no group '%s' on this system (getent group %s)%s%s",
			owner, o.group, o.group, errno ? ": " : "", errno ? strerror(errno) : "");
		return -1;
	}
	*uid = pw->pw_uid;
	*gid = gr->gr_gid;
	return 0;
}

/* udevadm ARGS... if it is installed: 0 ran and succeeded, 1 absent, -1 failed. */
static int run_udevadm(char *const argv[])
{
	pid_t pid;
	int st, e;

	e = posix_spawnp(&pid, "udevadm", NULL, NULL, argv, environ);
	if (e == ENOENT)
		return 1;
	if (e) {
		cli_err("rawvmdk", "warning: udevadm: %s", strerror(e));
		return -1;
	}
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* --install: the rule file (VDISK_UDEV_RULES_DIR, default
 * /etc/udev/rules.d) through a temporary file and rename, udev told to
 * reload, and DEV chowned now. */
static int install_rule(const char *dev, const char *owner, uid_t uid, gid_t gid)
{
	const char *dir = getenv("VDISK_UDEV_RULES_DIR");
	char path[4096], tmp[4200];
	struct owner_rule o;
	FILE *f;
	int fd, r;

	if (!dir || !*dir)
		dir = "/etc/udev/rules.d";
	owner_rule(dev, NULL, owner, &o);
	snprintf(path, sizeof(path), "%s/%s", dir, o.file);
	snprintf(tmp, sizeof(tmp), "%s/.%s.vdisk-tmp", dir, o.file);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0) {
		cli_err("rawvmdk", "--install: %s: %s", tmp, strerror(errno));
		return -1;
	}
	f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		unlink(tmp);
		cli_err("rawvmdk", "--install: %s: %s", tmp, strerror(errno));
		return -1;
	}
	fprintf(f, "# written by vdisk rawvmdk --install: %s for %s:%s\n%s\n", dev, o.user, o.group, o.rule);
	r = fflush(f) == 0 && fsync(fileno(f)) == 0 ? 0 : -1;
	if (fclose(f) != 0)
		r = -1;
	if (r == 0 && rename(tmp, path) < 0)
		r = -1;
	if (r < 0) {
		cli_err("rawvmdk", "--install: %s: %s", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	printf("installed udev rule %s:\n%s\n", path, o.rule);
	char a0[] = "udevadm", a1[] = "control", a2[] = "--reload";
	r = run_udevadm((char *const[]){ a0, a1, a2, NULL });
	if (r == 0)
		printf("udevadm control --reload: done\n");
	else if (r == 1)
		cli_err("rawvmdk", "warning: udevadm not found: udev reads the rule at its next start (the next boot)");
	else
		cli_err("rawvmdk", "warning: udevadm control --reload failed: udev reads the rule at its next start");
	if (chown(dev, uid, gid) < 0) {
		cli_err("rawvmdk", "--install: chown %s:%s %s: %s", o.user, o.group, dev, strerror(errno));
		return -1;
	}
	printf("chown %s:%s %s: done\n", o.user, o.group, dev);
	return 0;
}

/* VirtualBox opens the descriptor (and the -pt file) as the user too. */
static void descriptor_note(const char *out, bool pt, const char *owner, uid_t uid, gid_t gid)
{
	struct owner_rule o;
	struct stat st;
	bool ok;

	owner_rule("/dev/null", NULL, owner, &o);
	if (stat(out, &st) < 0)
		return;
	ok = (st.st_uid == uid && (st.st_mode & S_IRUSR)) ||
	     (st.st_gid == gid && (st.st_mode & S_IRGRP)) || (st.st_mode & S_IROTH);
	printf("# the descriptor%s must be readable by %s too (VirtualBox opens it as that user): %s is %s\n",
	       pt ? " and its -pt file" : "", o.user, out, ok ? "readable" : "not readable by them");
	if (!ok)
		printf("chown %s:%s %s%s\n", o.user, o.group, out, pt ? " (and the -pt file)" : "");
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
		{ "install", no_argument, NULL, 'I' },
		{ "force", no_argument, NULL, 'F' },
		{ "deterministic", no_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	unsigned parts[VD_MBR_MAX_PARTS];
	struct vd_rawvmdk_opts o = { 0 };
	struct vd_error err = { 0 };
	const char *owner = NULL;
	bool install = false;
	uid_t uid = 0;
	gid_t gid = 0;
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
		case 'I': install = true; break;
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
	if (install && !owner) {
		cli_err("rawvmdk", "--install needs --owner");
		return 1;
	}
	if (owner && owner_ids(owner, &uid, &gid) < 0)
		return 1;
	if (vd_rawvmdk(argv[optind], argv[optind + 1], &o, &err) < 0)
		return cli_fail("rawvmdk", &err, 1);
	if (!owner)
		return 0;
	if (!install)
		cli_owner_hint(argv[optind], NULL, owner);
	else if (install_rule(argv[optind], owner, uid, gid) < 0)
		return 1;
	descriptor_note(argv[optind + 1], o.npartitions > 0, owner, uid, gid);
	return 0;
}
