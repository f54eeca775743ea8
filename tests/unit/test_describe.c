/*
 * The typed description and identity of images (src/core/describe.c and
 * each backend's describe/identity): allocation kind, block size, the
 * files with their roles, guest ranges and access, and that create keeps
 * an identity it is given (options winning over it).
 *
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include "unit.h"

#define MiB (1u << 20)

static char dir[] = "/tmp/vdisk-describe-XXXXXX";

static int setup(void **state)
{
	(void)state;
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[64];
	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* A new image on a memory host. */
static struct vd_image *mem_image(const char *format, uint64_t size, const char *opts,
				  const struct vd_create_like *like)
{
	struct vd_host *h = vd_host_mem_new("img", 0);
	struct vd_image *img;
	struct vd_error e = { 0 };

	assert_non_null(h);
	assert_ok(vd_create_in_tmp_like(h, NULL, format, size, opts, VD_CREATE_DETERMINISTIC,
					like, NULL, &e), &e);
	assert_ok(vd_open_host(&img, h, format, VD_OPEN_RDWR, &e), &e);
	return img;
}

/* A new image file NAME in the test directory, opened. */
static struct vd_image *file_image(const char *name, const char *format, uint64_t size,
				   const char *opts)
{
	struct vd_image *img;
	struct vd_error e = { 0 };
	char path[128];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_ok(vd_create(path, format, size, opts, VD_CREATE_DETERMINISTIC, NULL, &e), &e);
	assert_ok(vd_open(&img, path, format, 0, &e), &e);
	return img;
}

static void describe(struct vd_image *img, struct vd_describe *d)
{
	struct vd_error e = { 0 };
	assert_ok(vd_describe(img, d, &e), &e);
}

static void identity(struct vd_image *img, struct vd_identity *id)
{
	struct vd_error e = { 0 };
	assert_ok(vd_get_identity(img, id, &e), &e);
}

static void assert_file(const struct vd_file_desc *f, int role, int access, uint64_t goff,
			uint64_t glen, uint64_t foff, const char *suffix)
{
	assert_int_equal(f->role, role);
	assert_int_equal(f->access, access);
	assert_int_equal(f->guest_off, goff);
	assert_int_equal(f->guest_len, glen);
	assert_int_equal(f->file_off, foff);
	if (!suffix) {
		assert_null(f->path);
	} else {
		size_t n = strlen(f->path), k = strlen(suffix);
		assert_non_null(f->path);
		if (n < k || strcmp(f->path + n - k, suffix))
			fail_msg("file %s does not end in %s", f->path, suffix);
	}
}

static void test_raw(void **state)
{
	struct vd_image *img = mem_image("raw", 4 * MiB, NULL, NULL);
	struct vd_describe d;
	struct vd_identity id;

	(void)state;
	describe(img, &d);
	assert_int_equal(d.alloc, VD_ALLOC_RAW);
	assert_int_equal(d.block_size, 0);
	assert_true(d.discard_releases);
	assert_true(d.zero_init && d.rewritable && d.starts_zeroed);
	assert_int_equal(d.nfiles, 1);
	assert_file(&d.files[0], VD_FILE_IMAGE, VD_FILE_RW, 0, 4 * MiB, 0, "img");
	vd_describe_free(&d);
	assert_null(d.files);
	identity(img, &id);
	assert_string_equal(id.uuid, "");
	assert_false(id.has_cid);
	assert_int_equal(id.parent_cid, 0xffffffffu);
	assert_int_equal(vd_format_identity_fields("raw"), 0);
	vd_close(img, NULL);
}

/* A backend without describe gets the core's conservative default. */
static int fake_read(struct vd_image *img, uint64_t off, void *buf, size_t len,
		     struct vd_error *err)
{
	(void)img, (void)off, (void)err;
	memset(buf, 0, len);
	return 0;
}

static void test_default(void **state)
{
	static const struct vd_driver fake = { .name = "fake", .read = fake_read };
	struct vd_host *h = vd_host_mem_new("fake.img", MiB);
	struct vd_image img = { .drv = &fake, .host = h, .size = MiB, .align = 1 };
	struct vd_describe d;
	struct vd_identity id;

	(void)state;
	describe(&img, &d);
	assert_int_equal(d.alloc, VD_ALLOC_RAW);
	assert_false(d.discard_releases);
	assert_false(d.rewritable);
	assert_false(d.zero_init);
	assert_int_equal(d.nfiles, 1);
	assert_file(&d.files[0], VD_FILE_IMAGE, VD_FILE_RW, 0, MiB, 0, "fake.img");
	vd_describe_free(&d);
	identity(&img, &id);
	assert_string_equal(id.uuid, "");
	vd_host_close(h);
}

static void test_vdi(void **state)
{
	struct vd_image *img = mem_image("vdi", 4 * MiB, NULL, NULL);
	struct vd_describe d;
	struct vd_identity id;

	(void)state;
	describe(img, &d);
	assert_int_equal(d.alloc, VD_ALLOC_BLOCKS);
	assert_int_equal(d.block_size, MiB);
	assert_int_equal(d.discard_granularity, MiB);
	assert_true(d.discard_releases && d.rewritable);
	assert_int_equal(d.nfiles, 1);
	assert_file(&d.files[0], VD_FILE_IMAGE, VD_FILE_RW, 0, 4 * MiB, 0, "img");
	vd_describe_free(&d);
	identity(img, &id);
	assert_string_equal(id.uuid, "00000000-0000-4000-8000-000000000001");
	assert_string_equal(id.modification_uuid, "00000000-0000-4000-8000-000000000002");
	assert_string_equal(id.parent_uuid, "");
	assert_false(id.has_cid);
	assert_int_equal(id.bios_heads, 0);
	assert_string_equal(id.comment, "");
	vd_close(img, NULL);

	img = mem_image("vdi", 4 * MiB, "subformat=fixed", NULL);
	describe(img, &d);
	assert_int_equal(d.alloc, VD_ALLOC_FULL);
	assert_false(d.discard_releases);
	assert_int_equal(d.block_size, MiB);
	vd_describe_free(&d);
	vd_close(img, NULL);
	assert_true(vd_format_identity_fields("vdi") & VD_ID_COMMENT);
	assert_false(vd_format_identity_fields("vdi") & VD_ID_CID);
	assert_int_equal(vd_format_identity_fields("nope"), 0);
}

static void test_vdi_identity_kept(void **state)
{
	struct vd_identity in = { 0 }, out;
	struct vd_create_like like = { .identity = &in, .block_size = 512 * 1024 };
	struct vd_image *img;
	struct vd_describe d;

	(void)state;
	snprintf(in.uuid, sizeof(in.uuid), "0f1e2d3c-4b5a-4697-8877-665544332211");
	snprintf(in.modification_uuid, sizeof(in.modification_uuid), "11111111-2222-4333-8444-555555555555");
	snprintf(in.comment, sizeof(in.comment), "kept through compact");
	in.cylinders = 130, in.heads = 16, in.sectors = 63;
	in.bios_cylinders = 8, in.bios_heads = 255, in.bios_sectors = 63;
	img = mem_image("vdi", 64 * MiB, NULL, &like);
	identity(img, &out);
	assert_string_equal(out.uuid, in.uuid);
	assert_string_equal(out.modification_uuid, in.modification_uuid);
	assert_string_equal(out.comment, in.comment);
	assert_int_equal(out.cylinders, 130);
	assert_int_equal(out.heads, 16);
	assert_int_equal(out.sectors, 63);
	assert_int_equal(out.bios_cylinders, 8);
	assert_int_equal(out.bios_heads, 255);
	assert_int_equal(out.bios_sectors, 63);
	describe(img, &d);
	assert_int_equal(d.block_size, 512 * 1024);
	vd_describe_free(&d);
	vd_close(img, NULL);

	/* options win over the identity */
	img = mem_image("vdi", 4 * MiB, "uuid=22222222-3333-4444-8555-666666666666,block_size=2M", &like);
	identity(img, &out);
	assert_string_equal(out.uuid, "22222222-3333-4444-8555-666666666666");
	assert_string_equal(out.modification_uuid, in.modification_uuid);
	describe(img, &d);
	assert_int_equal(d.block_size, 2 * MiB);
	vd_describe_free(&d);
	vd_close(img, NULL);

	/* a block size vdisk cannot write is refused, naming it */
	{
		struct vd_host *h = vd_host_mem_new("img", 0);
		struct vd_error e = { 0 };
		like.block_size = 3000;
		assert_int_equal(vd_create_in_tmp_like(h, NULL, "vdi", MiB, NULL, 0, &like, NULL, &e), -EINVAL);
		assert_msg_has(&e, "block size 3000");
		vd_host_close(h);
	}
}

static void test_vmdk_sparse_and_stream(void **state)
{
	struct vd_image *img = mem_image("vmdk", 4 * MiB, NULL, NULL);
	struct vd_describe d;
	struct vd_identity id;

	(void)state;
	describe(img, &d);
	assert_int_equal(d.alloc, VD_ALLOC_BLOCKS);
	assert_int_equal(d.block_size, 65536);
	assert_true(d.discard_releases && d.rewritable);
	assert_int_equal(d.nfiles, 1);
	assert_file(&d.files[0], VD_FILE_IMAGE, VD_FILE_RW, 0, 4 * MiB, 0, "img");
	vd_describe_free(&d);
	identity(img, &id);
	assert_true(id.has_cid);
	assert_int_equal(id.cid, 0x12345678u);
	assert_int_equal(id.parent_cid, 0xffffffffu);
	assert_string_equal(id.uuid, "00000000-0000-4000-8000-000000000001");
	assert_string_equal(id.parent_uuid, "");
	assert_string_equal(id.adapter_type, "ide");
	assert_int_equal(id.hw_version, 4);
	assert_int_equal(id.heads, 16);
	assert_int_equal(id.sectors, 63);
	assert_string_equal(id.tools_version, "");
	vd_close(img, NULL);

	img = mem_image("vmdk", 4 * MiB, "subformat=streamOptimized", NULL);
	describe(img, &d);
	assert_int_equal(d.alloc, VD_ALLOC_STREAM);
	assert_false(d.rewritable);
	assert_false(d.discard_releases);
	vd_describe_free(&d);
	vd_close(img, NULL);
}

static void test_vmdk_identity_kept(void **state)
{
	struct vd_identity in = { 0 }, out;
	struct vd_create_like like = { .identity = &in };
	struct vd_image *img;

	(void)state;
	snprintf(in.uuid, sizeof(in.uuid), "0f1e2d3c-4b5a-4697-8877-665544332211");
	in.has_cid = true;
	in.cid = 0xdeadbeef;
	snprintf(in.adapter_type, sizeof(in.adapter_type), "lsilogic");
	in.hw_version = 7;
	snprintf(in.tools_version, sizeof(in.tools_version), "10304");
	snprintf(in.long_content_id, sizeof(in.long_content_id), "0123456789abcdef0123456789abcdef");
	in.cylinders = 8, in.heads = 255, in.sectors = 63;
	in.bios_cylinders = 130, in.bios_heads = 16, in.bios_sectors = 63;
	img = mem_image("vmdk", 64 * MiB, NULL, &like);
	identity(img, &out);
	assert_string_equal(out.uuid, in.uuid);
	assert_int_equal(out.cid, 0xdeadbeef);
	assert_string_equal(out.adapter_type, "lsilogic");
	assert_int_equal(out.hw_version, 7);
	assert_string_equal(out.tools_version, "10304");
	assert_string_equal(out.long_content_id, in.long_content_id);
	assert_int_equal(out.cylinders, 8);
	assert_int_equal(out.heads, 255);
	assert_int_equal(out.bios_cylinders, 130);
	assert_int_equal(out.bios_heads, 16);
	assert_int_equal(out.bios_sectors, 63);
	vd_close(img, NULL);

	/* options win; a new adapter gets its own geometry */
	img = mem_image("vmdk", 64 * MiB, "adapter_type=ide,cid=abc,hwversion=9", &like);
	identity(img, &out);
	assert_string_equal(out.adapter_type, "ide");
	assert_int_equal(out.hw_version, 9);
	assert_int_equal(out.cid, 0xabc);
	assert_int_equal(out.heads, 16);
	assert_int_equal(out.cylinders, 130);
	assert_string_equal(out.tools_version, "10304");
	vd_close(img, NULL);

	/* a value that cannot be written back between quotes is dropped */
	snprintf(in.tools_version, sizeof(in.tools_version), "1\"\nx");
	img = mem_image("vmdk", 4 * MiB, NULL, &like);
	identity(img, &out);
	assert_string_equal(out.tools_version, "");
	vd_close(img, NULL);

	/* convert keeps only the hardware description */
	vd_identity_keep(&in, VD_ID_HARDWARE);
	assert_string_equal(in.uuid, "");
	assert_false(in.has_cid);
	assert_string_equal(in.long_content_id, "");
	assert_string_equal(in.adapter_type, "lsilogic");
	assert_int_equal(in.bios_heads, 16);
}

static void test_vmdk_files(void **state)
{
	const uint64_t ext = 4192256ull * 512; /* 2047 MiB */
	struct vd_image *img;
	struct vd_describe d;

	(void)state;
	img = file_image("f.vmdk", "vmdk", 4 * MiB, "subformat=monolithicFlat");
	describe(img, &d);
	assert_int_equal(d.alloc, VD_ALLOC_FULL);
	assert_int_equal(d.block_size, 0);
	assert_false(d.discard_releases);
	assert_int_equal(d.nfiles, 2);
	assert_file(&d.files[0], VD_FILE_DESCRIPTOR, VD_FILE_RW, 0, 0, 0, "/f.vmdk");
	assert_file(&d.files[1], VD_FILE_EXTENT, VD_FILE_RW, 0, 4 * MiB, 0, "/f-flat.vmdk");
	vd_describe_free(&d);
	vd_close(img, NULL);

	img = file_image("s.vmdk", "vmdk", ext + 4 * MiB, "subformat=twoGbMaxExtentSparse");
	describe(img, &d);
	assert_int_equal(d.alloc, VD_ALLOC_BLOCKS);
	assert_int_equal(d.block_size, 65536);
	assert_int_equal(d.nfiles, 3);
	assert_file(&d.files[0], VD_FILE_DESCRIPTOR, VD_FILE_RW, 0, 0, 0, "/s.vmdk");
	assert_file(&d.files[1], VD_FILE_EXTENT, VD_FILE_RW, 0, ext, 0, "/s-s001.vmdk");
	assert_file(&d.files[2], VD_FILE_EXTENT, VD_FILE_RW, ext, 4 * MiB, 0, "/s-s002.vmdk");
	vd_describe_free(&d);
	vd_close(img, NULL);

	img = file_image("t.vmdk", "vmdk", ext + 4 * MiB, "subformat=twoGbMaxExtentFlat");
	describe(img, &d);
	assert_int_equal(d.alloc, VD_ALLOC_FULL);
	assert_int_equal(d.nfiles, 3);
	assert_file(&d.files[2], VD_FILE_EXTENT, VD_FILE_RW, ext, 4 * MiB, 0, "/t-f002.vmdk");
	vd_describe_free(&d);
	vd_close(img, NULL);
}

/* Write TEXT as NAME in the test directory and open it. */
static struct vd_image *descriptor(const char *name, const char *text)
{
	struct vd_image *img;
	struct vd_error e = { 0 };
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	snprintf(path, sizeof(path), "%s/data.raw", dir);
	f = fopen(path, "a");
	assert_non_null(f);
	fclose(f);
	assert_int_equal(truncate(path, MiB), 0);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_ok(vd_open(&img, path, "vmdk", 0, &e), &e);
	return img;
}

#define DESC(type) "# Disk DescriptorFile\nversion=1\nCID=00000001\nparentCID=ffffffff\ncreateType=\"" type "\"\n"

/* Access per file, whatever its position (past what info's extra keys
 * hold), ZERO ranges and FLAT offsets. */
static void test_vmdk_access(void **state)
{
	char text[8192];
	size_t n;
	struct vd_image *img;
	struct vd_describe d;

	(void)state;
	n = (size_t)snprintf(text, sizeof(text), DESC("monolithicFlat"));
	for (unsigned i = 0; i < 40; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, "%s 16 FLAT \"data.raw\" %u\n",
				      i == 33 ? "RDONLY" : i == 35 ? "NOACCESS" : "RW", i * 16);
	snprintf(text + n, sizeof(text) - n, "RW 64 ZERO\n");
	img = descriptor("acc.vmdk", text);
	describe(img, &d);
	assert_int_equal(d.alloc, VD_ALLOC_FULL);
	assert_int_equal(d.nfiles, 42);
	assert_file(&d.files[0], VD_FILE_DESCRIPTOR, VD_FILE_RW, 0, 0, 0, "/acc.vmdk");
	for (unsigned i = 0; i < 40; i++)
		assert_file(&d.files[1 + i], VD_FILE_EXTENT,
			    i == 33 ? VD_FILE_RDONLY : i == 35 ? VD_FILE_NOACCESS : VD_FILE_RW,
			    i * 16 * 512, 16 * 512, i * 16 * 512, "/data.raw");
	assert_file(&d.files[41], VD_FILE_EXTENT, VD_FILE_ZERO, 640 * 512, 64 * 512, 0, NULL);
	vd_describe_free(&d);
	vd_close(img, NULL);

	/* a raw-device descriptor is a device layer, whatever it names */
	img = descriptor("dev.vmdk", DESC("fullDevice") "RW 2048 FLAT \"data.raw\" 0\n");
	describe(img, &d);
	assert_int_equal(d.alloc, VD_ALLOC_DEVICE);
	assert_false(d.discard_releases);
	vd_describe_free(&d);
	vd_close(img, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_raw),
		cmocka_unit_test(test_default),
		cmocka_unit_test(test_vdi),
		cmocka_unit_test(test_vdi_identity_kept),
		cmocka_unit_test(test_vmdk_sparse_and_stream),
		cmocka_unit_test(test_vmdk_identity_kept),
		cmocka_unit_test(test_vmdk_files),
		cmocka_unit_test(test_vmdk_access),
	};
	return unit_run_setup(tests, setup, teardown);
}
