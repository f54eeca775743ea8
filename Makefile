# vdisk: virtual disk image toolkit.
#
#   make deps     install the Debian packages needed to build and test (root)
#   make          build libvdisk (static + shared) and the vdisk CLI
#   make check    run every test group (SANITIZE=1: under ASan + UBSan)
#   make bench    compare speed and memory with qemu-img
#   make fuzz     run each libFuzzer harness for FUZZ_SECONDS (default 180)
#   make install  PREFIX=/usr/local DESTDIR=

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCDIR ?= $(PREFIX)/include
MANDIR ?= $(PREFIX)/share/man
PKGDIR ?= $(LIBDIR)/pkgconfig

VERSION := 0.1.0
SOMAJOR := 0

CC ?= cc
ifeq ($(SANITIZE),1)
BUILD ?= build-san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
BUILD ?= build
SANFLAGS :=
endif

WARN := -Wall -Wextra -Wshadow -Wpointer-arith -Wcast-align -Wwrite-strings \
	-Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wno-format-nonliteral -Wno-format-truncation
ifeq ($(WERROR),1)
WARN += -Werror
endif
OPT ?= -O2 -g
CFLAGS ?= $(OPT)
ALL_CFLAGS := -std=gnu11 $(WARN) $(CFLAGS) $(SANFLAGS) -fPIC -D_FILE_OFFSET_BITS=64 \
	-Iinclude -Isrc/core
LIBS := -luuid -lpthread -lz -lblkid -llzma -lzstd -lbz2 -lnbd -lm
# libdeflate for whole-grain deflate (src/core/deflate.c); zlib otherwise
ifeq ($(shell pkg-config --exists libdeflate 2>/dev/null && echo y),y)
ALL_CFLAGS += -DHAVE_LIBDEFLATE
LIBS += -ldeflate
endif
# live access (issue 16): FUSE for vdisk mount, libnbd, nbdkit's plugin API
FUSE_CFLAGS := $(shell pkg-config --cflags fuse3)
FUSE_LIBS := $(shell pkg-config --libs fuse3)
NBDKIT_CFLAGS := $(shell pkg-config --cflags nbdkit 2>/dev/null)
NBDKIT_PLUGINDIR ?= $(shell pkg-config --variable=plugindir nbdkit 2>/dev/null)
ALL_LDFLAGS := $(LDFLAGS) $(SANFLAGS)

LIB_SRC := $(wildcard src/core/*.c) $(wildcard src/ops/*.c) $(wildcard formats/*.c) $(wildcard src/fs/*.c)
CLI_SRC := $(wildcard src/cli/*.c)
UNIT_SRC := $(wildcard tests/unit/test_*.c)

LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
# standalone reference tools for the tests (libc only, never libvdisk)
HELPER_SRC := $(wildcard tests/helpers/*.c)
HELPER_BIN := $(HELPER_SRC:tests/helpers/%.c=$(BUILD)/tests/helpers/%)

STATIC := $(BUILD)/libvdisk.a
SHARED := $(BUILD)/libvdisk.so.$(VERSION)
VDISK := $(BUILD)/vdisk
# nbdkit plugin: the static libvdisk (built -fPIC) inside, its symbols hidden
PLUGIN := $(BUILD)/nbdkit-vdisk-plugin.so

.PHONY: all deps check unit-tests bench fuzz install uninstall clean rebase

all: $(VDISK) $(STATIC) $(SHARED) $(PLUGIN)

DEBS := build-essential pkg-config zlib1g-dev uuid-dev libblkid-dev libcmocka-dev \
	qemu-utils fdisk e2fsprogs dosfstools mtools xfsprogs zerofree jq time xz-utils strace ntfs-3g \
	clang libclang-rt-14-dev libdeflate-dev liblzma-dev libzstd-dev libbz2-dev zstd bzip2 \
	libfuse3-dev fuse3 nbdkit nbdkit-plugin-dev libnbd-dev libnbd-bin bmap-tools

# root runs apt-get directly (CI, containers without sudo); others via sudo
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
deps:
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEBS)

$(BUILD)/%.o: %.c $(wildcard include/*.h src/core/*.h src/cli/*.h formats/*.h src/fs/*.h src/ops/*.h src/nbdkit/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(STATIC): $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

# Only the API of include/vdisk.h is exported: the version script lists the
# functions declared there (tests/cli/abi.sh checks the export table).
$(BUILD)/libvdisk.map: include/vdisk.h
	@mkdir -p $(BUILD)
	{ echo 'VDISK_$(SOMAJOR) {'; echo '  global:'; \
	  grep -E '^[a-z]' include/vdisk.h | grep -v '^static' | grep -oE '\bvd_[a-z0-9_]+\(' | tr -d '(' | sort -u | sed 's/.*/    &;/'; \
	  echo '  local: *;'; echo '};'; } >$@

$(SHARED): $(LIB_OBJ) $(BUILD)/libvdisk.map
	$(CC) -shared -Wl,-soname,libvdisk.so.$(SOMAJOR) -Wl,--version-script=$(BUILD)/libvdisk.map \
		$(ALL_LDFLAGS) -o $@ $(LIB_OBJ) $(LIBS)

$(BUILD)/src/cli/cmd-mount.o: ALL_CFLAGS += $(FUSE_CFLAGS)

$(VDISK): $(CLI_OBJ) $(STATIC)
	$(CC) $(ALL_LDFLAGS) -o $@ $(CLI_OBJ) $(STATIC) $(LIBS) $(FUSE_LIBS)

PLUGIN_OBJ := $(BUILD)/src/nbdkit/vdisk-plugin.o $(BUILD)/src/nbdkit/overlay.o
$(PLUGIN_OBJ): ALL_CFLAGS += $(NBDKIT_CFLAGS)

$(PLUGIN): $(PLUGIN_OBJ) $(STATIC)
	$(CC) -shared -Wl,--exclude-libs,ALL $(ALL_LDFLAGS) -o $@ $(PLUGIN_OBJ) $(STATIC) $(LIBS)

$(BUILD)/tests/%: tests/unit/%.c tests/unit/unit.h $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests/unit $(ALL_LDFLAGS) -o $@ $< $(STATIC) $(LIBS) -lcmocka

$(BUILD)/tests/helpers/%: tests/helpers/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 $(WARN) $(CFLAGS) $(SANFLAGS) -D_FILE_OFFSET_BITS=64 $(ALL_LDFLAGS) -o $@ $<

unit-tests: $(UNIT_BIN) $(HELPER_BIN)

check: all unit-tests
	@VDISK=$(abspath $(VDISK)) BUILD=$(abspath $(BUILD)) bash tests/run.sh $(UNIT_BIN)

rebase: all
	@VDISK=$(abspath $(VDISK)) REBASE=1 bash tests/run.sh

bench: all
	@VDISK=$(abspath $(VDISK)) bash tests/bench/bench.sh

# Each harness in turn (clang's libFuzzer); corpora and crashes in tests/fuzz/out.
FUZZ_SECONDS ?= 180
FUZZ_HARNESSES := $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
fuzz:
	@for h in $(FUZZ_HARNESSES); do \
		echo "== $$h ($(FUZZ_SECONDS) s)"; \
		mkdir -p tests/fuzz/out; HARNESS=$$h sh tests/fuzz/run.sh $(FUZZ_SECONDS) 2>&1 | tee tests/fuzz/out/$$h.log | \
			grep -E '^(stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY)' || true; \
		! grep -qE '==[0-9]+==ERROR|deadly signal|Test unit written' tests/fuzz/out/$$h.log || exit 1; \
		grep -q 'stat::number_of_executed_units' tests/fuzz/out/$$h.log || exit 1; \
	done

vdisk.pc: Makefile
	@printf 'prefix=%s\nlibdir=%s\nincludedir=%s\n\nName: libvdisk\nDescription: virtual disk images (raw, VDI) behind one block-I/O layer\nVersion: %s\nLibs: -L$${libdir} -lvdisk\nLibs.private: -luuid -lpthread -lz -lblkid -llzma -lzstd -lbz2 -lnbd -lm\nCflags: -I$${includedir}\n' \
		'$(PREFIX)' '$(LIBDIR)' '$(INCDIR)' '$(VERSION)' > $(BUILD)/vdisk.pc

install: all vdisk.pc
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCDIR) \
		$(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(PKGDIR)
	install -m 755 $(VDISK) $(DESTDIR)$(BINDIR)/vdisk
	install -m 644 $(STATIC) $(DESTDIR)$(LIBDIR)/libvdisk.a
	install -m 755 $(SHARED) $(DESTDIR)$(LIBDIR)/libvdisk.so.$(VERSION)
	ln -sf libvdisk.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libvdisk.so.$(SOMAJOR)
	ln -sf libvdisk.so.$(SOMAJOR) $(DESTDIR)$(LIBDIR)/libvdisk.so
	install -m 644 include/vdisk.h $(DESTDIR)$(INCDIR)/vdisk.h
	install -m 644 man/*.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 644 $(BUILD)/vdisk.pc $(DESTDIR)$(PKGDIR)/vdisk.pc
	install -d $(DESTDIR)$(NBDKIT_PLUGINDIR)
	install -m 755 $(PLUGIN) $(DESTDIR)$(NBDKIT_PLUGINDIR)/nbdkit-vdisk-plugin.so

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/vdisk $(DESTDIR)$(LIBDIR)/libvdisk.* \
		$(DESTDIR)$(INCDIR)/vdisk.h $(DESTDIR)$(PKGDIR)/vdisk.pc \
		$(DESTDIR)$(NBDKIT_PLUGINDIR)/nbdkit-vdisk-plugin.so
	cd man && for m in *.1; do rm -f $(DESTDIR)$(MANDIR)/man1/$$m; done

clean:
	rm -rf build build-san
