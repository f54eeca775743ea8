/* Raw-disk VMDK descriptors (formats/vmdk-raw.c): the VirtualBox text for
 * fullDevice, the partitionedDevice extents (legacy 63-sector layout with a
 * gap, EBR areas, geometry cap) and the rejections. */
#include "unit.h"

#include <errno.h>

#include "../../formats/vmdk.h"

static struct vd_mbr_part part(unsigned n, uint64_t start, uint64_t size, uint8_t type,
			       uint64_t ebr)
{
	struct vd_mbr_part p = { 0 };

	p.number = n;
	p.start = start;
	p.size = size;
	p.type = type;
	p.ebr = ebr;
	return p;
}

static void test_full_device_text(void **state)
{
	struct vd_rawvmdk_params p = { 0 };
	struct vd_rawvmdk_layout l;
	struct vd_error e = { 0 };
	struct vmdk_desc d;
	static const char want[] =
		"# Disk DescriptorFile\n"
		"version=1\n"
		"CID=0000abcd\n"
		"parentCID=ffffffff\n"
		"createType=\"fullDevice\"\n"
		"\n"
		"# Extent description\n"
		"RW 41943040000 FLAT \"/dev/sdb\" 0\n"
		"\n"
		"# The disk Data Base \n"
		"#DDB\n"
		"\n"
		"ddb.virtualHWVersion = \"4\"\n"
		"ddb.adapterType=\"lsilogic\"\n"
		"ddb.geometry.cylinders=\"16383\"\n"
		"ddb.geometry.heads=\"16\"\n"
		"ddb.geometry.sectors=\"63\"\n"
		"ddb.uuid.image=\"11111111-2222-4333-8444-555555555555\"\n"
		"ddb.uuid.parent=\"00000000-0000-0000-0000-000000000000\"\n"
		"ddb.uuid.modification=\"00000000-0000-0000-0000-000000000000\"\n"
		"ddb.uuid.parentmodification=\"00000000-0000-0000-0000-000000000000\"\n";

	(void)state;
	p.device = "/dev/sdb";
	p.disk_sectors = 41943040000ull; /* 20 TB: cylinders capped */
	p.adapter = "lsilogic";
	p.cid = 0xabcd;
	p.uuid = "11111111-2222-4333-8444-555555555555";
	assert_ok(vd_rawvmdk_layout(&p, &l, &e), &e);
	assert_string_equal(l.text, want);
	assert_int_equal(l.nareas, 0);
	/* the VMDK backend's parser reads it back */
	assert_ok(vmdk_desc_parse(&d, l.text, strlen(l.text), "t.vmdk", &e), &e);
	assert_string_equal(d.create_type, "fullDevice");
	assert_string_equal(d.adapter, "lsilogic");
	assert_int_equal(d.cylinders, 16383);
	assert_int_equal(d.nextents, 1);
	assert_int_equal(d.extents[0].sectors, 41943040000ull);
	vmdk_desc_free(&d);
	vd_rawvmdk_layout_free(&l);
}

/* A legacy layout: partition 1 at 63, a gap, extended with two logicals
 * whose EBRs sit 63 sectors before them, then free space to the end. */
static void test_partitioned_legacy(void **state)
{
	struct vd_rawvmdk_params p = { 0 };
	struct vd_rawvmdk_layout l;
	struct vd_error e = { 0 };
	struct vd_mbr m = { 0 };
	struct vmdk_desc d;
	static const unsigned sel[] = { 6, 1 };
	uint64_t total = 0;

	(void)state;
	m.disk_sectors = 100000;
	m.part[m.nparts++] = part(1, 63, 1000, 0x83, 0);
	m.part[m.nparts++] = part(2, 2000, 60000, 0x05, 0);
	m.part[m.nparts++] = part(5, 2063, 1000, 0x83, 2000);
	m.part[m.nparts++] = part(6, 3126, 500, 0x82, 3063);
	p.device = "/dev/sdc";
	p.disk_sectors = 100000;
	p.mbr = &m;
	p.sel = sel;
	p.nsel = 2;
	p.pt_name = "x-pt.vmdk";
	p.uuid = "u";
	assert_ok(vd_rawvmdk_layout(&p, &l, &e), &e);
	assert_non_null(strstr(l.text, "createType=\"partitionedDevice\"\n"));
	assert_non_null(strstr(l.text,
		"# Extent description\n"
		"RW 63 FLAT \"x-pt.vmdk\" 0\n"     /* MBR + 62-sector gap */
		"RW 1000 FLAT \"/dev/sdc\" 63\n"   /* 1, selected */
		"RW 937 ZERO \n"                   /* gap to the extended partition */
		"RW 63 FLAT \"x-pt.vmdk\" 63\n"    /* EBR of 5 */
		"RW 1000 ZERO \n"                  /* 5, not selected */
		"RW 63 FLAT \"x-pt.vmdk\" 126\n"   /* EBR of 6 */
		"RW 500 FLAT \"/dev/sdc\" 3126\n"  /* 6, selected */
		"RW 96374 ZERO \n"                 /* to the end of the disk */
		"\n# The disk Data Base \n"));
	assert_int_equal(l.nareas, 3);
	assert_int_equal(l.areas[1].dev_sector, 2000);
	assert_int_equal(l.areas[1].pt_sector, 63);
	assert_int_equal(l.areas[2].dev_sector, 3063);
	assert_int_equal(l.pt_sectors, 189);
	assert_non_null(strstr(l.text, "ddb.geometry.cylinders=\"99\"\n"));
	assert_ok(vmdk_desc_parse(&d, l.text, strlen(l.text), "t.vmdk", &e), &e);
	for (unsigned i = 0; i < d.nextents; i++)
		total += d.extents[i].sectors;
	assert_int_equal(total, 100000); /* the extents cover the disk exactly */
	vmdk_desc_free(&d);
	vd_rawvmdk_layout_free(&l);

	/* --relative: the partition devices at offset 0 */
	p.relative = true;
	p.device = "/dev/nvme0n1";
	assert_ok(vd_rawvmdk_layout(&p, &l, &e), &e);
	assert_non_null(strstr(l.text, "RW 1000 FLAT \"/dev/nvme0n1p1\" 0\n"));
	assert_non_null(strstr(l.text, "RW 500 FLAT \"/dev/nvme0n1p6\" 0\n"));
	vd_rawvmdk_layout_free(&l);
}

static void test_rejections(void **state)
{
	struct vd_rawvmdk_params p = { 0 };
	struct vd_rawvmdk_layout l;
	struct vd_error e = { 0 };
	struct vd_mbr m = { 0 };
	unsigned sel[] = { 1 };
	char dev[64];

	(void)state;
	p.device = "/dev/sdd";
	p.disk_sectors = 10000;
	p.uuid = "u";
	p.adapter = "scsi";
	assert_int_equal(vd_rawvmdk_layout(&p, &l, &e), -EINVAL);
	assert_msg_has(&e, "adapter type 'scsi'");
	p.adapter = NULL;
	p.device = "/dev/a\"b";
	assert_int_equal(vd_rawvmdk_layout(&p, &l, &e), -EINVAL);
	p.device = "/dev/sdd";
	p.disk_sectors = 0;
	assert_int_equal(vd_rawvmdk_layout(&p, &l, &e), -EINVAL);
	p.disk_sectors = 10000;

	p.mbr = &m;
	p.sel = sel;
	p.nsel = 1;
	p.pt_name = "p.vmdk";
	m.part[m.nparts++] = part(1, 2048, 4000, 0x83, 0);
	m.part[m.nparts++] = part(2, 5000, 2000, 0x83, 0); /* overlaps 1 */
	assert_int_equal(vd_rawvmdk_layout(&p, &l, &e), -EINVAL);
	assert_msg_has(&e, "partition 2");
	assert_msg_has(&e, "overlaps");
	m.part[1] = part(2, 8000, 4000, 0x83, 0); /* past the disk */
	assert_int_equal(vd_rawvmdk_layout(&p, &l, &e), -EINVAL);
	assert_msg_has(&e, "ends past the disk");
	m.part[1] = part(2, 8000, 1000, 0x05, 0);
	sel[0] = 2;
	assert_int_equal(vd_rawvmdk_layout(&p, &l, &e), -EINVAL);
	assert_msg_has(&e, "extended partition");
	sel[0] = 3;
	assert_int_equal(vd_rawvmdk_layout(&p, &l, &e), -ENOENT);
	assert_msg_has(&e, "no partition 3");
	sel[0] = 1;
	m.part[0] = part(1, 0, 100, 0x83, 0);
	assert_int_equal(vd_rawvmdk_layout(&p, &l, &e), -EINVAL);
	assert_msg_has(&e, "sector 0");

	vd_rawvmdk_partdev("/dev/sda", 5, dev, sizeof(dev));
	assert_string_equal(dev, "/dev/sda5");
	vd_rawvmdk_partdev("/dev/loop7", 1, dev, sizeof(dev));
	assert_string_equal(dev, "/dev/loop7p1");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_device_text),
		cmocka_unit_test(test_partitioned_legacy),
		cmocka_unit_test(test_rejections),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
