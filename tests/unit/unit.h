/* Common includes for the cmocka unit tests. */
#ifndef VDISK_UNIT_H
#define VDISK_UNIT_H
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "vdisk-int.h"
#endif
