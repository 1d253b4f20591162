#!/usr/bin/env bash
# MLT against MVT: etl-pmtiles on each layer of the synthetic set alone (points, lines, polygons)
# and on all three, with --tile-format mvt and --tile-format mlt, same flags otherwise.
#
#   bash benches/mlt.sh                         # SCALE=1.0, -z14 --drop-densest-as-needed
#   FLAGS="-zg" SCALE=0.1 bash benches/mlt.sh    # other flags, a tenth of the data
#   ETL_PMTILES_BIN=path/to/etl-pmtiles bash benches/mlt.sh
#
# Prints, per input and format: wall time, archive bytes, tiles, and MLT's size as a share of
# MVT's. Both formats store each tile gzipped. The synthetic set is made once by
# ../shared/bench/gen_synthetic.py (see benches/pmtiles.sh); archives go to a temp dir and are
# removed unless KEEP_ARCHIVES=1.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SCALE=${SCALE:-1.0}
FLAGS=${FLAGS:--z14 --drop-densest-as-needed}
KEEP_ARCHIVES=${KEEP_ARCHIVES:-0}
SHARED_DIR=${TAK_SHARED_DIR:-$ROOT/../shared}
BENCH_DIR=$(realpath -m "${TAK_BENCH_DIR:-/var/tmp/tak-etl-bench}")
DATA=$BENCH_DIR/synthetic-$SCALE
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/tak-etl-target}
die() {
  echo "mlt: ERROR: $*" >&2
  exit 1
}
[[ $SCALE =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "SCALE must be a number like 1.0 or 0.1, not '$SCALE'"
if [[ -z ${ETL_PMTILES_BIN:-} ]]; then
  cargo build --release --locked -p etl-pmtiles || die "cargo build --release -p etl-pmtiles failed"
  ETL_PMTILES_BIN=$CARGO_TARGET_DIR/release/etl-pmtiles
fi
[[ -x $ETL_PMTILES_BIN ]] || die "$ETL_PMTILES_BIN is not an executable"
# shellcheck source=scripts/services.sh
source scripts/services.sh # pip_install_quiet
if [[ ! -f $DATA/.complete ]]; then
  pip_install_quiet numpy numpy || die "could not install numpy"
  [[ -f $SHARED_DIR/bench/gen_synthetic.py ]] || die "$SHARED_DIR/bench/gen_synthetic.py not found (set TAK_SHARED_DIR)"
  rm -rf "$DATA" && mkdir -p "$DATA"
  python3 "$SHARED_DIR/bench/gen_synthetic.py" "$DATA" "$SCALE"
  touch "$DATA/.complete"
fi
WORK=$(mktemp -d "$BENCH_DIR/mlt.XXXXXX")
[[ $KEEP_ARCHIVES == 1 ]] || trap 'rm -rf "$WORK"' EXIT
read -r -a flags <<<"$FLAGS"
printf '%-10s %-4s %9s %14s %9s %9s\n' input fmt wall_s archive_bytes tiles mlt/mvt
for input in points lines polygons all; do
  if [[ $input == all ]]; then
    src=(-L "points:$DATA/points.geojsonl" -L "polygons:$DATA/polygons.geojsonl" -L "lines:$DATA/lines.geojsonl")
  else
    src=(-L "$input:$DATA/$input.geojsonl")
  fi
  mvt_bytes=
  for fmt in mvt mlt; do
    out=$WORK/$input.$fmt.pmtiles
    t0=$(date +%s.%N)
    "$ETL_PMTILES_BIN" -o "$out" -f -P "${flags[@]}" --tile-format "$fmt" "${src[@]}" >"$WORK/$input.$fmt.log" 2>&1 ||
      die "etl-pmtiles failed on $input ($fmt): $(tail -n 3 "$WORK/$input.$fmt.log")"
    t1=$(date +%s.%N)
    "$ETL_PMTILES_BIN" verify "$out" >/dev/null || die "verify failed on $out"
    bytes=$(stat -c %s "$out")
    tiles=$("$ETL_PMTILES_BIN" show "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tiles"])')
    share=
    if [[ $fmt == mvt ]]; then mvt_bytes=$bytes; else share=$(awk -v a="$bytes" -v b="$mvt_bytes" 'BEGIN { printf "%.3f", a / b }'); fi
    printf '%-10s %-4s %9.2f %14s %9s %9s\n' "$input" "$fmt" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" "$bytes" "$tiles" "$share"
  done
done
[[ $KEEP_ARCHIVES == 1 ]] && echo "archives kept in $WORK"
exit 0
