#!/usr/bin/env bash
# Rendered comparison of two PMTiles archives: MapLibre GL JS (the preview's version, from
# jobs/tiles/web's lock file) in Debian's headless Chromium draws both at the same views, side by
# side, and measures the share of pixels that differ.
#
#   bash benches/render.sh A.pmtiles B.pmtiles [OUT_DIR]
#   VIEWS=20 LABEL_A=tippecanoe LABEL_B=etl-pmtiles bash benches/render.sh A B OUT
#
# The views are archive A's densest tiles, spread over its zooms (benches/render/views.py): the
# largest tile of each zoom, then the second largest of each from the deepest zoom up, until VIEWS
# (default 20). Each view
# is one tile at its own zoom on a 512-pixel map. Writes OUT_DIR/NAME.png per view (A left, B
# right), OUT_DIR/views.json and OUT_DIR/results.jsonl, and prints a table:
#   view, tile, differing (share of pixels whose colour differs by more than 48 over R+G+B),
#   ink A / ink B (share of pixels that are not background).
# The archives usually come from `KEEP_ARCHIVES=1 bash benches/pmtiles.sh` (see benches/README.md).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

die() {
  echo "render: ERROR: $*" >&2
  exit 1
}
(($# >= 2 && $# <= 3)) || die "usage: bash benches/render.sh A.pmtiles B.pmtiles [OUT_DIR]"
A=$(realpath "$1")
B=$(realpath "$2")
[[ -f $A ]] || die "$1: no such archive"
[[ -f $B ]] || die "$2: no such archive"
VIEWS=${VIEWS:-20}
[[ $VIEWS =~ ^[1-9][0-9]*$ ]] || die "VIEWS must be a positive integer, not '$VIEWS'"
LABEL_A=${LABEL_A:-$(basename "$A")}
LABEL_B=${LABEL_B:-$(basename "$B")}
BENCH_DIR=$(realpath -m "${TAK_BENCH_DIR:-/var/tmp/tak-etl-bench}")
OUT=$(realpath -m "${3:-$BENCH_DIR/render-$(date +%Y%m%dT%H%M%S)}")
NODE_DIR=$BENCH_DIR/render-node

cd "$ROOT"
# shellcheck source=scripts/services.sh
source scripts/services.sh # ensure_browser_tools, apt_install_quiet; no services started
ensure_browser_tools || die "could not install chromium, node and npm"
command -v python3 >/dev/null || apt_install_quiet python3 || die "could not install python3"

# maplibre-gl, pmtiles and playwright-core exactly as the preview's lock file pins them,
# installed once (again when the lock file changes).
mkdir -p "$NODE_DIR" "$OUT"
if ! cmp -s jobs/tiles/web/package-lock.json "$NODE_DIR/.installed-lock"; then
  echo "render: installing the preview's node packages into $NODE_DIR (once)" >&2
  cp jobs/tiles/web/package.json jobs/tiles/web/package-lock.json "$NODE_DIR/"
  log=$(mktemp /tmp/tak-etl-npm.XXXXXX.log)
  if ! (cd "$NODE_DIR" && npm ci --ignore-scripts --no-audit --no-fund) >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "npm ci failed in $NODE_DIR (log above)"
  fi
  rm -f "$log"
  cp jobs/tiles/web/package-lock.json "$NODE_DIR/.installed-lock"
fi

python3 benches/render/views.py "$A" "$VIEWS" >"$OUT/views.json" || die "views.py failed on $A"
status=0
node benches/render/compare.mjs --a "$A" --b "$B" --views "$OUT/views.json" --out "$OUT" \
  --label-a "$LABEL_A" --label-b "$LABEL_B" --modules "$NODE_DIR" >"$OUT/results.jsonl" || status=$?

echo "render: $LABEL_A ($A) vs $LABEL_B ($B), $(wc -l <"$OUT/results.jsonl") views, pictures in $OUT"
python3 - "$OUT/views.json" "$OUT/results.jsonl" <<'EOF'
import json, sys
views = {v["name"]: v for v in json.load(open(sys.argv[1]))}
rows = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
print(f"{'view':<10} {'tile':<16} {'differing':>9} {'ink A':>7} {'ink B':>7}")
for r in rows:
    tile = views.get(r["view"], {}).get("tile", "?")
    if "error" in r:
        print(f"{r['view']:<10} {tile:<16} error: {r['error']}")
        continue
    print(f"{r['view']:<10} {tile:<16} {r['differing']:>9.4f} {r['inkA']:>7.4f} {r['inkB']:>7.4f}")
ok = [r for r in rows if "error" not in r]
if ok:
    mean = sum(r["differing"] for r in ok) / len(ok)
    print(f"mean differing share over {len(ok)} views: {mean:.4f}; worst: "
          f"{max(ok, key=lambda r: r['differing'])['view']}")
EOF
((status == 0)) || die "compare.mjs failed on at least one view (see results above and $OUT/results.jsonl)"
