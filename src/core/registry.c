/*
 * The explicit, static list of backends.  Probing asks every one and takes
 * the highest score; raw answers 1 so that any real format wins.
 *
 * SPDX-License-Identifier: MIT
 */
#include "vdisk-int.h"

extern const struct vd_driver vd_driver_raw;
extern const struct vd_driver vd_driver_vdi;
extern const struct vd_driver vd_driver_vmdk;

const struct vd_driver *const vd_drivers[] = {
	&vd_driver_vdi,
	&vd_driver_vmdk,
	&vd_driver_raw,
	NULL,
};
