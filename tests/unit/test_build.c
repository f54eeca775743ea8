/* vd_build and its parts: SHA-256 vectors, vd_mbr_encode against
 * vd_mbr_write, file= fields in scripts, cancel and early rejections. */
#define _GNU_SOURCE
#include "unit.h"
#include "../../src/ops/sha256.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

static void hex_of(const void *data, size_t len, size_t piece, char out[65])
{
	struct vd_sha256 s;
	uint8_t d[32];
	const uint8_t *p = data;

	vd_sha256_init(&s);
	for (size_t off = 0; off < len; off += piece)
		vd_sha256_update(&s, p + off, len - off < piece ? len - off : piece);
	vd_sha256_final(&s, d);
	vd_sha256_hex(d, out);
}

static void test_sha256_vectors(void **state)
{
	char h[65];
	size_t n = 1000000;
	char *a = malloc(n);

	(void)state;
	hex_of("", 0, 1, h);
	assert_string_equal(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	hex_of("abc", 3, 3, h);
	assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	hex_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56, 56, h);
	assert_string_equal(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
	assert_non_null(a);
	memset(a, 'a', n);
	/* pieces that straddle the 64-byte blocks */
	hex_of(a, n, 61, h);
	assert_string_equal(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	hex_of(a, n, n, h);
	assert_string_equal(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	free(a);
}

/* vd_mbr_encode gives exactly the sectors vd_mbr_write writes. */
static void encode_matches_write(const char *script, const uint8_t *boot)
{
	struct vd_error err = { 0 };
	uint64_t size = 64ull << 20, n;
	struct vd_host *h = vd_host_mem_new("disk", size);
	struct vd_image *img;
	struct vd_mbr_script *s = calloc(1, sizeof(*s));
	struct vd_mbr *m = calloc(1, sizeof(*m));
	struct vd_mbr_sector *sec = calloc(VD_MBR_MAX_SECTORS, sizeof(*sec));
	unsigned nsec = 0, nonzero = 0;
	uint8_t *disk;

	assert_non_null(s);
	assert_non_null(m);
	assert_non_null(sec);
	assert_ok(vd_open_host(&img, h, "raw", VD_OPEN_RDWR, &err), &err);
	assert_ok(vd_mbr_parse_script(script, s, &err), &err);
	assert_ok(vd_mbr_layout(s, size / 512, VD_ALIGN_MIB, 255, 63, 0xdeadbeef, m, &err), &err);
	assert_ok(vd_mbr_write(img, m, boot, 255, 63, &err), &err);
	assert_ok(vd_mbr_encode(m, boot, 0, 0, sec, &nsec, &err), &err);
	disk = vd_host_mem_data(img->host, &n);
	for (unsigned i = 0; i < nsec; i++) {
		if (i)
			assert_true(sec[i].lba > sec[i - 1].lba); /* guest order */
		assert_same(sec[i].data, disk + sec[i].lba * 512, 512, "encoded sector");
	}
	for (uint64_t off = 0; off < n; off += 512)
		nonzero += !vd_is_zero(disk + off, 512);
	assert_int_equal(nonzero, nsec);
	vd_close(img, NULL);
	free(s);
	free(m);
	free(sec);
}

static void test_encode_matches_write(void **state)
{
	uint8_t boot[440];

	(void)state;
	for (unsigned i = 0; i < sizeof(boot); i++)
		boot[i] = (uint8_t)(i * 7 + 1);
	encode_matches_write("label: dos\n,8MiB,L,*\n,,E\n,4MiB,c\n,4MiB,S\n,,L\n", NULL);
	encode_matches_write("label: dos\nlabel-id: 0x1\n,8MiB,L\n,,E\n", boot);
	encode_matches_write("label: dos\n", NULL);
}

static char dir[64];

static void put_file(const char *name, const void *data, size_t len, uint64_t at, uint64_t size)
{
	char path[128];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	if (len)
		assert_int_equal(pwrite(fd, data, len, (off_t)at), (ssize_t)len);
	close(fd);
}

static unsigned entries(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	unsigned n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(d);
	return n;
}

static void test_build_file_fields(void **state)
{
	struct vd_error err = { 0 };
	struct vd_build_summary sum;
	struct vd_build_opts o = { .format = "raw", .size = 16 << 20 };
	struct vd_image *img;
	uint8_t got[512], a[512], b[512];
	char script[512], out[128];

	(void)state;
	memset(a, 0xa1, sizeof(a));
	memset(b, 0xb2, sizeof(b));
	put_file("a.img", a, sizeof(a), 4096, 1 << 20);     /* data at 4 KiB */
	put_file("b,c.img", b, sizeof(b), 0, 2 << 20);       /* a comma in the name */
	snprintf(script, sizeof(script),
		 "label: dos\nlabel-id: 0x01020304\n"
		 "disk1 : file=%s/a.img, start=2048, size=2048, type=83\n"
		 "start=8192, file = \"%s/b,c.img\" , size=4096, type=c\n", dir, dir);
	o.script = script;
	snprintf(out, sizeof(out), "%s/out.img", dir);
	assert_ok(vd_build(out, &o, &sum, &err), &err);
	assert_int_equal(sum.mbr.nparts, 2);
	assert_int_equal(sum.mbr.disk_id, 0x01020304);
	assert_non_null(sum.part_file[0]);
	assert_non_null(strstr(sum.part_file[1], "b,c.img"));
	assert_int_equal(sum.part_data[0], 4096); /* whole 4 KiB units */
	assert_int_equal(sum.part_data[1], 4096);
	assert_int_equal(sum.nfiles, 1);
	vd_build_summary_free(&sum);
	assert_ok(vd_open(&img, out, "raw", 0, &err), &err);
	assert_ok(vd_read(img, 2048 * 512 + 4096, got, 512, &err), &err);
	assert_same(got, a, 512, "partition 1 data");
	assert_ok(vd_read(img, 8192 * 512, got, 512, &err), &err);
	assert_same(got, b, 512, "partition 2 data");
	vd_close(img, NULL);
	unlink(out);

	/* a field that is not file= keeps its error */
	snprintf(script, sizeof(script), "label: dos\nfile=%s/a.img, size=2048, colour=red\n", dir);
	assert_int_equal(vd_build(out, &o, &sum, &err), -EINVAL);
	assert_msg_has(&err, "colour");
	snprintf(script, sizeof(script), "label: dos\nfile=a, file=b, size=2048\n");
	assert_int_equal(vd_build(out, &o, &sum, &err), -EINVAL);
	assert_msg_has(&err, "twice");
	snprintf(script, sizeof(script), "label: dos\nsize=2048, file=\n");
	assert_int_equal(vd_build(out, &o, &sum, &err), -EINVAL);
	assert_msg_has(&err, "needs a path");
	assert_int_equal(entries(), 2); /* the inputs only */
	snprintf(out, sizeof(out), "%s/a.img", dir);
	unlink(out);
	snprintf(out, sizeof(out), "%s/b,c.img", dir);
	unlink(out);
}

static void test_build_cancel_and_rejections(void **state)
{
	struct vd_error err = { 0 };
	struct vd_build_summary sum;
	volatile int cancel = 1;
	struct vd_build_opts o = { .format = "vmdk", .format_opts = "subformat=twoGbMaxExtentFlat",
				   .size = 16 << 20, .cancel = &cancel };
	struct vd_build_part part = { 1, NULL, NULL };
	char script[256], out[128], in[128];
	uint8_t x[4096];

	(void)state;
	memset(x, 0x5a, sizeof(x));
	put_file("big.img", x, sizeof(x), 0, 3 << 20);
	snprintf(in, sizeof(in), "%s/big.img", dir);
	snprintf(out, sizeof(out), "%s/out.vmdk", dir);
	snprintf(script, sizeof(script), "label: dos\n,4MiB,L\n");
	o.script = script;
	part.path = in;
	o.parts = &part;
	o.nparts = 1;
	assert_int_equal(vd_build(out, &o, &sum, &err), -ECANCELED);
	assert_int_equal(entries(), 1); /* no output, no extent, no temp file */

	cancel = 0;
	snprintf(script, sizeof(script), "label: dos\n,2MiB,L\n");
	assert_int_equal(vd_build(out, &o, &sum, &err), -EFBIG);
	assert_msg_has(&err, "do not fit partition 1");
	o.script = NULL;
	assert_int_equal(vd_build(out, &o, &sum, &err), -EINVAL);
	assert_msg_has(&err, "need a partition table script");
	o.nparts = 0;
	o.size = 0;
	assert_int_equal(vd_build(out, &o, &sum, &err), -EINVAL);
	assert_msg_has(&err, "no size");
	assert_int_equal(entries(), 1);
	unlink(in);
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/vdisk-test-build.XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sha256_vectors),
		cmocka_unit_test(test_encode_matches_write),
		cmocka_unit_test(test_build_file_fields),
		cmocka_unit_test(test_build_cancel_and_rejections),
	};
	return unit_run_setup(tests, setup, teardown);
}
