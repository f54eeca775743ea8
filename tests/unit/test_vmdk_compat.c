/*
 * VMDK compat presets (formats/vmdk-create.c, vmdk-desc.c): the geometry
 * rule at the 1 GiB boundary (VMware's lsilogic/pvscsi disks: 64 heads x
 * 32 sectors below, 255 x 63 from 1 GiB on), VMware's ddb.uuid form, and
 * the dialect and thin flag an image's identity carries.
 *
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdio.h>
#include "unit.h"
#include "../../formats/vmdk.h"

#define GiB (1ull << 30)

/* The identity of a new image of SIZE bytes made with OPTS. */
static void identity_of(const char *opts, uint64_t size, struct vd_identity *id)
{
	struct vd_host *h = vd_host_mem_new("img.vmdk", 0);
	struct vd_image *img;
	struct vd_error e = { 0 };

	assert_non_null(h);
	assert_ok(vd_create_on_host(h, "vmdk", size, opts, VD_CREATE_DETERMINISTIC, NULL, &e), &e);
	assert_ok(vd_open_host(&img, h, "vmdk", 0, &e), &e);
	assert_ok(vd_get_identity(img, id, &e), &e);
	assert_ok(vd_close(img, &e), &e);
}

static void geo(const char *opts, uint64_t size, uint32_t c, uint32_t hd, uint32_t s)
{
	struct vd_identity id;

	identity_of(opts, size, &id);
	if (id.cylinders != c || id.heads != hd || id.sectors != s)
		fail_msg("%s, %llu bytes: geometry %u/%u/%u, expected %u/%u/%u", opts,
			 (unsigned long long)size, id.cylinders, id.heads, id.sectors, c, hd, s);
}

static void test_geometry_boundary(void **state)
{
	(void)state;
	/* 2097151 sectors: 64 x 32, 1023 cylinders; 2097152: 255 x 63, 130 */
	geo("compat=esxi", GiB - 512, 1023, 64, 32);
	geo("compat=esxi", GiB, 130, 255, 63);
	geo("compat=workstation", GiB - 512, 1023, 64, 32);
	geo("compat=workstation", GiB, 130, 255, 63);
	geo("compat=esxi,adapter_type=pvscsi", GiB - 512, 1023, 64, 32);
	geo("compat=esxi,adapter_type=pvscsi", GiB, 130, 255, 63);
	/* the streams and the vmfs pair follow the same rule */
	geo("compat=esxi,subformat=streamOptimized", GiB - 512, 1023, 64, 32);
	/* ide is 16 x 63 on both sides; buslogic and vdisk's plain lsilogic
	 * keep 255 x 63 */
	geo("compat=esxi,adapter_type=ide", GiB - 512, 2080, 16, 63);
	geo("compat=esxi,adapter_type=ide", GiB, 2080, 16, 63);
	geo("compat=esxi,adapter_type=buslogic", GiB - 512, 130, 255, 63);
	geo("adapter_type=lsilogic", GiB - 512, 130, 255, 63);
	geo("compat=virtualbox", GiB - 512, 2080, 16, 63);
}

static void test_vmware_uuid(void **state)
{
	char out[37];

	(void)state;
	assert_int_equal(vmdk_uuid_from_vmware("60 00 C2 98 5d 08 de f2-a0 14 2e 05 94 9d d8 38", out), 0);
	assert_string_equal(out, "6000c298-5d08-def2-a014-2e05949dd838");
	assert_int_equal(vmdk_uuid_from_vmware("60 00 C2 98 5d 08 de f2 a0 14 2e 05 94 9d d8 38", out), -1);
	assert_int_equal(vmdk_uuid_from_vmware("60 00 C2 98 5d 08 de f2-a0 14 2e 05 94 9d d8", out), -1);
	assert_int_equal(vmdk_uuid_from_vmware("60 00 C2 98 5d 08 de f2-a0 14 2e 05 94 9d d8 38 00", out), -1);
	assert_int_equal(vmdk_uuid_from_vmware("60 00 C2 98 5d 08 de f2-a0 14 2e 05 94 9d d8 3g", out), -1);
	assert_int_equal(vmdk_uuid_from_vmware("6000c298-5d08-def2-a014-2e05949dd838", out), -1);
	assert_int_equal(vmdk_uuid_from_vmware("", out), -1);
}

static void test_dialect_identity(void **state)
{
	struct vd_identity id;

	(void)state;
	identity_of("compat=esxi", 64 << 20, &id);
	assert_string_equal(id.vmdk_dialect, "esxi");
	assert_true(id.thin_provisioned);
	assert_string_equal(id.uuid, "00000000-0000-4000-8000-000000000001"); /* from ddb.uuid */
	assert_string_equal(id.long_content_id + 24, "12345678");              /* the CID */
	identity_of("compat=esxi,subformat=streamOptimized", 64 << 20, &id);
	assert_string_equal(id.vmdk_dialect, "esxi");
	assert_false(id.thin_provisioned);
	assert_int_equal(id.hw_version, 4);
	identity_of("compat=workstation", 64 << 20, &id);
	assert_string_equal(id.vmdk_dialect, "workstation");
	assert_false(id.thin_provisioned);
	assert_string_equal(id.tools_version, "1");
	assert_int_equal(id.hw_version, 7);
	identity_of("compat=virtualbox", 64 << 20, &id);
	assert_string_equal(id.vmdk_dialect, "");
	assert_string_equal(id.uuid, "00000000-0000-4000-8000-000000000001");
	identity_of("", 64 << 20, &id);
	assert_string_equal(id.vmdk_dialect, "");
	/* a copy (convert keeps VD_ID_HARDWARE) keeps the dialect */
	identity_of("compat=esxi", 64 << 20, &id);
	vd_identity_keep(&id, VD_ID_HARDWARE);
	assert_string_equal(id.vmdk_dialect, "esxi");
	assert_true(id.thin_provisioned);
	vd_identity_keep(&id, VD_ID_HARDWARE & ~VD_ID_DIALECT);
	assert_string_equal(id.vmdk_dialect, "");
	assert_false(id.thin_provisioned);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_geometry_boundary),
		cmocka_unit_test(test_vmware_uuid),
		cmocka_unit_test(test_dialect_identity),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
