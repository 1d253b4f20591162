"""Reads a PMTiles v3 archive's header and directories (not its tiles): what the bench scripts
need without an etl-pmtiles binary (benches/pmtiles.sh) or before drawing (render/views.py)."""
import gzip
import struct


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
    """The entries of one directory: (tile id, offset, length, run length; 0 for a leaf)."""
    if compression == 2:
        raw = gzip.decompress(raw)
    elif compression != 1:
        raise ValueError(f"internal compression {compression} is not supported by this reader")
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


def read(path):
    """(header fields as a dict, every tile entry as (tile id, offset, length, run length))."""
    with open(path, "rb") as f:
        h = f.read(127)
        if h[:7] != b"PMTiles" or h[7] != 3:
            raise ValueError(f"{path} is not a PMTiles v3 archive")
        (root_off, root_len, _, _, leaf_off, _, _, _, addressed, entries, contents) = struct.unpack_from(
            "<11Q", h, 8
        )
        header = {
            "internal_compression": h[97],
            "tile_compression": h[98],
            "tile_type": h[99],
            "min_zoom": h[100],
            "max_zoom": h[101],
            "addressed_tiles": addressed,
            "tile_entries": entries,
            "tile_contents": contents,
        }
        tiles = []
        stack = [(root_off, root_len)]
        while stack:
            off, length = stack.pop()
            f.seek(off)
            for e in directory(f.read(length), header["internal_compression"]):
                if e[3] == 0:
                    stack.append((leaf_off + e[1], e[2]))
                else:
                    tiles.append(e)
    return header, tiles
