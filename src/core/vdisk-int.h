/*
 * Everything internal, for the core (src/core/) and the unit tests:
 * base.h (shared by every layer), backend.h (the contract between the
 * block-I/O layer and the format backends) and ops.h (the operations'
 * internals).  Not installed.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef VDISK_INT_H
#define VDISK_INT_H

#include "base.h"
#include "backend.h"
#include "ops.h"


#endif
