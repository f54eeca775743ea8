#!/usr/bin/env python3
"""Small hand-built VMDK seeds for fuzz_image (issue 12's hostile images).

  make-seeds-vmdk.py [--all] OUTDIR

Sparse (KDMV) files only, 4 KiB grains so each stays a few KiB: a good
monolithicSparse extent and a good streamOptimized stream (GD at the end,
footer, end-of-stream marker), then the damage check must find: cross-linked
grains and grain tables, a truncated last grain, compressed grains of size 0
and 0xffffffff, bad zlib data, data that inflates to half a grain, a record
naming another sector, a stream ending after its header, a missing
end-of-stream marker.  (Text descriptors are left out on purpose: the
harness's memory host lives in the current directory, so a descriptor
naming files would open real files.)

Without --all only the seeds the harness's default oracles accept are
written.  The others trip two oracles on purpose, because VMDK open does
not read every grain: "in-bounds reads of an image that opened without
VD_OPEN_CHECK succeed" (truncated last grain, bad compressed grains) and
"written data reads back" (cross-linked grains: a write through one entry
changes the other).  Use them with vdisk check, or once the harness knows.
"""
import os
import struct
import sys
import zlib

GRAIN = 8          # sectors
GTES = 16
NL = b"\n \r\n"


def header(version, flags, capacity, gd, rgd, overhead, compress=0, desc=(0, 0)):
    h = bytearray(512)
    struct.pack_into("<IIIQQQQIQQQ", h, 0, 0x564D444B, version, flags, capacity, GRAIN,
                     desc[0], desc[1], GTES, rgd, gd, overhead)
    h[73:77] = NL
    struct.pack_into("<H", h, 77, compress)
    return h


def grain_data(i):
    return bytes(((j * 7 + i * 31) & 255) for j in range(GRAIN * 512))


def sparse(ngrains=3):
    # header | GD (1 sector) | GT (1 sector) | grains
    capacity = GTES * GRAIN
    gd, gt, overhead = 1, 2, GRAIN
    img = bytearray(header(1, 1, capacity, gd, 0, overhead)) + bytearray(512 * (overhead - 1))
    struct.pack_into("<I", img, gd * 512, gt)
    for i in range(ngrains):
        at = len(img) // 512
        img += grain_data(i)
        struct.pack_into("<I", img, gt * 512 + 4 * i, at)
    return img


def marker(sectors, typ):
    m = bytearray(512)
    struct.pack_into("<QII", m, 0, sectors, 0, typ)
    return m


def stream(ngrains=3, half=None):
    capacity = GTES * GRAIN
    overhead = 1
    flags = 1 | (1 << 16) | (1 << 17)
    hd = header(3, flags, capacity, 0xFFFFFFFFFFFFFFFF, 0, overhead, 1)
    img = bytearray(hd)
    table = [0] * GTES
    for i in range(ngrains):
        data = grain_data(i)
        if half == i:
            data = data[:len(data) // 2]
        z = zlib.compress(data)
        rec = struct.pack("<QI", i * GRAIN, len(z)) + z
        rec += bytes(-len(rec) % 512)
        table[i] = len(img) // 512
        img += rec
    img += marker(1, 1)
    gt = len(img) // 512
    img += struct.pack("<%dI" % GTES, *table) + bytes(512 - 4 * GTES)
    img += marker(1, 2)
    gd = len(img) // 512
    img += struct.pack("<I", gt) + bytes(508)
    img += marker(1, 3)
    img += header(3, flags, capacity, gd, 0, overhead, 1)
    img += marker(0, 0)
    return img


def gt_of_stream(img):
    gd = struct.unpack_from("<Q", img, len(img) - 1024 + 56)[0]
    return struct.unpack_from("<I", img, gd * 512)[0]


# the ones the default oracles of fuzz_image accept
QUIET = {"vmdk-sparse.vmdk", "vmdk-stream.vmdk", "vmdk-stream-crosslinked.vmdk",
         "vmdk-stream-headeronly.vmdk", "vmdk-stream-noeos.vmdk"}


def main():
    args = sys.argv[1:]
    every = "--all" in args
    out = [a for a in args if a != "--all"][0]
    os.makedirs(out, exist_ok=True)
    seeds = {}
    s = sparse()
    seeds["vmdk-sparse.vmdk"] = s
    x = bytearray(s)
    struct.pack_into("<I", x, 2 * 512 + 4, struct.unpack_from("<I", x, 2 * 512)[0])
    seeds["vmdk-sparse-crosslinked.vmdk"] = x
    seeds["vmdk-sparse-truncated.vmdk"] = s[:-512]
    st = stream()
    seeds["vmdk-stream.vmdk"] = st
    gt = gt_of_stream(st)
    g1 = struct.unpack_from("<I", st, gt * 512 + 4)[0]
    for name, size in (("size0", 0), ("sizeffffffff", 0xFFFFFFFF)):
        x = bytearray(st)
        struct.pack_into("<I", x, g1 * 512 + 8, size)
        seeds["vmdk-stream-%s.vmdk" % name] = x
    x = bytearray(st)
    x[g1 * 512 + 12:g1 * 512 + 40] = b"\xa5" * 28
    seeds["vmdk-stream-badzlib.vmdk"] = x
    seeds["vmdk-stream-half.vmdk"] = stream(half=1)
    x = bytearray(st)
    struct.pack_into("<I", x, gt * 512 + 4, struct.unpack_from("<I", x, gt * 512)[0])
    seeds["vmdk-stream-crosslinked.vmdk"] = x
    seeds["vmdk-stream-headeronly.vmdk"] = st[:512]
    seeds["vmdk-stream-noeos.vmdk"] = st[:-512] + marker(0, 7)
    for name, data in seeds.items():
        if not every and name not in QUIET:
            continue
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


main()
