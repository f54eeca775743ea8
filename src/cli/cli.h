/*
 * The vdisk command line: the only place that prints and picks exit codes.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef VDISK_CLI_H
#define VDISK_CLI_H

#include "vdisk.h"

#include <signal.h>
#include <stdio.h>

struct cli_cmd {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

extern const char *cli_prog;

/* Print "vdisk CMD: message" to stderr. */
void cli_err(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print the library error; returns 128+signal if it was an interruption,
 * else FALLBACK. */
int cli_fail(const char *cmd, const struct vd_error *err, int fallback);

/* SIGINT/SIGTERM set cli_cancel (to the signal number) instead of killing. */
extern volatile int cli_cancel;
void cli_catch_signals(void);

/* Human sizes: "1.5 GiB". */
const char *cli_human(uint64_t bytes, char *buf, size_t len);

/* JSON output helpers. */
void json_str(FILE *f, const char *s);

/* Progress on stderr: -p (ON), -q (OFF), or by default (AUTO) when stderr
 * is a terminal.  The last of -p and -q on the command line wins. */
enum { CLI_PROGRESS_OFF = -1, CLI_PROGRESS_AUTO = 0, CLI_PROGRESS_ON = 1 };
struct cli_progress {
	int enabled;
	double start, last;
	uint64_t last_done;
	int pending;  /* a progress line is on stderr without its newline */
};
void cli_progress_init(struct cli_progress *p, int mode);
/* End a pending progress line (a newline on stderr), before other output. */
void cli_progress_break(struct cli_progress *p);

/* The text of an sfdisk-style script from PATH (NULL or "-": standard
 * input), NUL-terminated, at most 16 MiB and without NUL bytes; NULL after
 * a message naming CMD and the file. */
char *cli_read_script(const char *cmd, const char *path);
void cli_progress_cb(void *ctx, uint64_t done, uint64_t total);
void cli_progress_end(struct cli_progress *p);

/* Parse --output=human|json. Returns 0 human, 1 json, -1 invalid. */
int cli_output_mode(const char *cmd, const char *arg);

/* Print the help text of CMD from the usage string. */
void cli_usage(FILE *f, const char *usage);

/* Snapshot chains: --backing FILE (repeatable: parent candidates, matched
 * by identity) and --force (open a parent changed since the snapshot, with
 * a warning), as the chain policy of include/vdisk.h. */
#define CLI_OPT_BACKING 2000
#define CLI_CHAIN_OPTION { "backing", required_argument, NULL, CLI_OPT_BACKING }
/* Add FILE; 0, or 1 after a message when there are too many. */
int cli_chain_backing(const char *cmd, const char *file);
/* Install the policy before the first image is opened. */
void cli_chain_apply(const char *cmd, bool force);

int cmd_info(int argc, char **argv);
int cmd_commit(int argc, char **argv);
int cmd_rebase(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_create(int argc, char **argv);
int cmd_map(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_geometry(int argc, char **argv);
int cmd_mbr(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_rawvmdk(int argc, char **argv);

/* --owner USER[:GROUP] (cmd-rawvmdk.c): check the argument; print the udev
 * rule and the chown command for DEV (LV: "VG/NAME" when known). */
int cli_owner_check(const char *cmd, const char *owner);
void cli_owner_hint(const char *dev, const char *lv, const char *owner);
int cmd_compact(int argc, char **argv);
int cmd_defrag(int argc, char **argv);
int cmd_zerofree(int argc, char **argv);
int cmd_mount(int argc, char **argv);
int cmd_umount(int argc, char **argv);
int cmd_serve(int argc, char **argv);

/* The report of compact and defrag (cmd-compact.c). */
int cli_rewrite_cmd(const char *cmd, const char *usage_text, bool fs_aware_ok,
		    int (*op)(const char *, const struct vd_rewrite_opts *,
			      struct vd_rewrite_result *, struct vd_error *),
		    int argc, char **argv);
void cli_rewrite_report(const char *cmd, const char *path, int json,
			const struct vd_rewrite_result *r);

/* Overlapping partitions: how many PT lists (at most VD_PTABLE_MAX_OVERLAPS),
 * and info's and geometry's JSON for them: ,"overlap-count": N,
 * "overlaps": [{"partition", "start", "end", "with": "partition" | "ebr" |
 * "mbr", "other", "other-start", "other-end"}, ...] */
unsigned cli_overlaps_listed(const struct vd_ptable *pt);
void cli_overlaps_json(const struct vd_ptable *pt);

#endif
