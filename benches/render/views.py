#!/usr/bin/env python3
"""Picks the views render.sh draws: the densest tiles of an archive, spread over its zooms.

usage: views.py ARCHIVE.pmtiles COUNT > views.json

Reads the PMTiles v3 header and directories (no tile data), ranks each zoom's tiles by their
stored size, and takes the largest tile of each zoom, then the second largest of each, and so
on (later rounds from the deepest zoom up), until COUNT views (or every tile). A view is the tile's centre at the tile's zoom: a
512-pixel MapLibre map there shows exactly that tile. Prints JSON:
[{"name": "v01-z14", "zoom": 14, "lon": ..., "lat": ..., "tile": "14/x/y", "bytes": n}, ...]
"""
import heapq
import json
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from pmtiles_dir import read  # noqa: E402


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
    try:
        _, tiles = read(path)
    except (OSError, ValueError) as e:
        sys.exit(f"views.py: {e}")
    for tid, _, e_len, _ in tiles:
        # A run of identical tiles (a polygon's interior) counts as its first tile.
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
