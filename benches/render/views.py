#!/usr/bin/env python3
"""Picks the views render.sh draws: the densest tiles of an archive, spread over its zooms.

usage: views.py ARCHIVE.pmtiles COUNT > views.json

Reads the PMTiles v3 header and directories (no tile data), ranks each zoom's tiles by their
stored size, and takes the largest tile of each zoom, then the second largest of each, and so
on (later rounds from the deepest zoom up), until COUNT views (or every tile). A view is the tile's centre at the tile's zoom: a
512-pixel MapLibre map there shows exactly that tile. Prints JSON:
[{"name": "v01-z14", "zoom": 14, "lon": ..., "lat": ..., "tile": "14/x/y", "bytes": n}, ...]
"""
import gzip
import heapq
import json
import math
import struct
import sys


def varint(b, i):
    shift = value = 0
    while True:
        byte = b[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7


def directory(raw, compression):
    if compression == 2:
        raw = gzip.decompress(raw)
    elif compression != 1:
        sys.exit(f"views.py: internal compression {compression} is not supported")
    n, i = varint(raw, 0)
    cols = []
    for _ in range(4):
        col = []
        for _ in range(n):
            v, i = varint(raw, i)
            col.append(v)
        cols.append(col)
    ids, runs, lens, offs = cols
    tid, out = 0, []
    for k in range(n):
        tid += ids[k]
        off = out[k - 1][1] + out[k - 1][2] if offs[k] == 0 and k > 0 else offs[k] - 1
        out.append((tid, off, lens[k], runs[k]))
    return out


def zxy(tile_id):
    """PMTiles tile id -> (z, x, y): zooms in order, each on the Hilbert curve."""
    z, acc = 0, 0
    while True:
        n = 1 << (2 * z)
        if tile_id < acc + n:
            break
        acc += n
        z += 1
    d, x, y, s = tile_id - acc, 0, 0, 1
    while s < (1 << z):
        rx = 1 & (d // 2)
        ry = 1 & (d ^ rx)
        if ry == 0:
            if rx == 1:
                x, y = s - 1 - x, s - 1 - y
            x, y = y, x
        x += s * rx
        y += s * ry
        d //= 4
        s *= 2
    return z, x, y


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    path, count = sys.argv[1], int(sys.argv[2])
    by_zoom = {}
    with open(path, "rb") as f:
        h = f.read(127)
        if h[:7] != b"PMTiles" or h[7] != 3:
            sys.exit(f"views.py: {path} is not a PMTiles v3 archive")
        (root_off, root_len, _, _, leaf_off, _, _, _, _, _, _) = struct.unpack_from("<11Q", h, 8)
        icomp = h[97]
        stack = [(root_off, root_len)]
        while stack:
            off, length = stack.pop()
            f.seek(off)
            for tid, e_off, e_len, run in directory(f.read(length), icomp):
                if run == 0:
                    stack.append((leaf_off + e_off, e_len))
                    continue
                # A run of identical tiles (a polygon's interior) is never the densest view.
                z, x, y = zxy(tid)
                heap = by_zoom.setdefault(z, [])
                heapq.heappush(heap, (e_len, x, y))
                if len(heap) > count:
                    heapq.heappop(heap)
    ranked = {z: sorted(h, reverse=True) for z, h in by_zoom.items()}
    views, rank = [], 0
    while len(views) < count and any(rank < len(r) for r in ranked.values()):
        # The first round from z0 down; later rounds from the deepest zoom up, where a
        # dense tile shows the most detail.
        for z in sorted(ranked, reverse=rank > 0):
            if rank < len(ranked[z]) and len(views) < count:
                size, x, y = ranked[z][rank]
                n = 1 << z
                lon = (x + 0.5) / n * 360.0 - 180.0
                lat = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * (y + 0.5) / n))))
                views.append({"zoom": z, "lon": round(lon, 6), "lat": round(lat, 6),
                              "tile": f"{z}/{x}/{y}", "bytes": size})
        rank += 1
    views.sort(key=lambda v: (v["zoom"], v["tile"]))
    for i, v in enumerate(views, 1):
        v["name"] = f"v{i:02d}-z{v['zoom']}"
    json.dump(views, sys.stdout, indent=1)
    print()


main()
