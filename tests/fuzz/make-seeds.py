#!/usr/bin/env python3
"""Seed corpus for fuzz_image.

  make-seeds.py OUTDIR [IMAGE...]

Writes small hand-built VDI images (dynamic and fixed, 512 B to 4 KiB
blocks, block extra, zero blocks, leaks, partial last block) and a compacted
copy of each IMAGE given (header + block map moved to the front, data area
right after it, truncated to 64 KiB) so that real-world headers from
VirtualBox, qemu-img and vdisk fit under -max_len.
"""
import os
import struct
import sys

SIG = 0xBEDA107F
BANNER = b"<<< Oracle VM VirtualBox Disk Image >>>\n"


def vdi(disk, bs, bmap, data, typ=1, extra=0, cbheader=400, nalloc=None,
        off_blocks=512, comment=b"fuzz seed"):
    n = len(bmap)
    off_data = off_blocks + ((4 * n + 511) // 512) * 512
    if nalloc is None:
        nalloc = sum(1 for e in bmap if e < 0xFFFFFFFE)
    h = bytearray(512)
    h[0:len(BANNER)] = BANNER
    struct.pack_into("<IIII", h, 64, SIG, 0x00010001, cbheader, typ)
    h[84:84 + len(comment)] = comment
    struct.pack_into("<II", h, 340, off_blocks, off_data)
    struct.pack_into("<IIII", h, 348, 16, 16, 63, 512)
    struct.pack_into("<QIIII", h, 368, disk, bs, extra, n, nalloc)
    for i, off in enumerate((392, 408)):
        h[off:off + 16] = bytes(range(i * 16 + 1, i * 16 + 17))
    if cbheader >= 400:
        struct.pack_into("<IIII", h, 456, 16, 16, 63, 512)
    img = bytearray(off_data)
    img[0:512] = h
    for i, e in enumerate(bmap):
        struct.pack_into("<I", img, off_blocks + 4 * i, e)
    img += data
    return bytes(img)


def pattern(n, seed):
    return bytes(((i * 7 + seed) & 0xFF) | 1 for i in range(n))


def compact(raw, limit=65536):
    if len(raw) < 400 or struct.unpack_from("<I", raw, 64)[0] != SIG:
        return raw[:limit]
    ob, od = struct.unpack_from("<II", raw, 340)
    bs, extra, n = struct.unpack_from("<III", raw, 376)
    n = min(n, 8192)
    bmap = raw[ob:ob + 4 * n]
    new_ob = 512
    new_od = new_ob + ((4 * n + 511) // 512) * 512
    out = bytearray(raw[:512]) + bytearray(new_od - 512)
    struct.pack_into("<II", out, 340, new_ob, new_od)
    out[new_ob:new_ob + len(bmap)] = bmap
    out += raw[od:od + max(0, limit - new_od)]
    return bytes(out[:limit])


def main():
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    U, Z = 0xFFFFFFFF, 0xFFFFFFFE
    seeds = {
        # dynamic, 512 B blocks, three allocated out of order, a zero block
        "dyn512.vdi": vdi(8 * 512, 512, [1, U, 0, Z, 2, U, U, U],
                          pattern(3 * 512, 1)),
        # dynamic, 4 KiB blocks, partial last block (cbDisk not block aligned)
        "dyn4k-partial.vdi": vdi(3 * 4096 + 1000, 4096, [0, U, U, 1],
                                 pattern(4096 + 1000, 2)),
        # fixed, 1 KiB blocks, every slot used in order
        "fixed1k.vdi": vdi(4 * 1024, 1024, [0, 1, 2, 3], pattern(4 * 1024, 3),
                           typ=2),
        # fixed with an unused slot below the last used one (leak)
        "fixed-leak.vdi": vdi(3 * 512, 512, [0, 2, U], pattern(3 * 512, 4),
                              typ=2, nalloc=3),
        # dynamic with block extra
        "dyn-extra.vdi": vdi(4 * 1024, 1024, [U, 0, U, 1],
                             pattern(2 * (512 + 1024), 5), extra=512),
        # dynamic with a leaked slot and bytes past the last slot
        "dyn-leak.vdi": vdi(4 * 512, 512, [2, U, 0, U],
                            pattern(3 * 512 + 700, 6), nalloc=3),
        # 384-byte header, all unallocated
        "hdr384.vdi": vdi(64 * 512, 512, [U] * 64, b"", cbheader=384),
        # cBlocksAllocated too large
        "nalloc-big.vdi": vdi(4 * 512, 512, [0, U, U, U], pattern(512, 7),
                              nalloc=4),
    }
    for name, data in seeds.items():
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(data)
    for path in sys.argv[2:]:
        with open(path, "rb") as f:
            raw = f.read()
        name = "c-" + os.path.basename(path)
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(compact(raw))


if __name__ == "__main__":
    main()
