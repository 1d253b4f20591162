#!/usr/bin/env bash
# GeoParquet read benchmark: 1M points as GeoParquet -> GeoJSON sequence with etl-data, against
# the same points as a GeoJSON sequence -> GeoJSON sequence with etl-data and with GDAL's
# `ogr2ogr -f GeoJSONSeq`. Debian's GDAL (3.6) has no Parquet driver, so ogr2ogr cannot read the
# GeoParquet file itself: it converts the GeoJSON form of the same data, the closest like for like.
#
#   bash benches/geoparquet.sh              # RUNS=3
#   RUNS=1 bash benches/geoparquet.sh       # quick check
#   ETL_DATA_BIN=path/to/etl-data bash benches/geoparquet.sh   # that binary, no build
#   TARGET=postgis bash benches/geoparquet.sh   # into a throwaway PostGIS instead: etl-data
#       --mode replace from each form, ogr2ogr -f PostgreSQL (PG_USE_COPY, GIST index) from GeoJSON
#
# Input: points.geojsonl of the synthetic set at scale 1.0 (1M points, ../shared/bench/
# gen_synthetic.py), and points.parquet made from it once, untimed, by etl-data itself (GeoParquet
# 1.1, WKB, zstd, row groups of 65,536 rows). Every output is checked for 1M lines. Wall time is the
# whole process; peak RSS from `/usr/bin/time -v`. Tools alternate order; the median of RUNS runs.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

RUNS=${RUNS:-3}
TARGET=${TARGET:-geojsonseq}
SHARED_DIR=${TAK_SHARED_DIR:-$ROOT/../shared}
BENCH_DIR=$(realpath -m "${TAK_BENCH_DIR:-/var/tmp/tak-etl-bench}")
SYN=$BENCH_DIR/synthetic-1.0
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/tak-etl-target}

say() { echo "bench: $*" >&2; }
die() {
  echo "bench: ERROR: $*" >&2
  exit 1
}
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, not '$RUNS'"
[[ $TARGET == geojsonseq || $TARGET == postgis ]] || die "TARGET must be geojsonseq or postgis, not '$TARGET'"
# shellcheck source=scripts/services.sh
source "$ROOT/scripts/services.sh"
command -v ogr2ogr >/dev/null || apt_install_quiet gdal-bin || die "could not install gdal-bin"
[[ -x /usr/bin/time ]] || apt_install_quiet time || die "could not install time"

if [[ -n ${ETL_DATA_BIN:-} ]]; then
  BIN=$ETL_DATA_BIN
else
  say "building etl-data (release)"
  cargo build --release -q -p etl-data
  BIN=$CARGO_TARGET_DIR/release/etl-data
fi
[[ -x $BIN ]] || die "$BIN is not an executable"

if [[ ! -f $SYN/.complete ]]; then
  say "generating the synthetic set at scale 1.0 in $SYN"
  pip_install_quiet numpy numpy || die "could not install numpy"
  mkdir -p "$SYN"
  python3 "$SHARED_DIR/bench/gen_synthetic.py" "$SYN" 1.0
  touch "$SYN/.complete"
fi
JSON=$SYN/points.geojsonl
PARQUET=$BENCH_DIR/geoparquet/points.parquet
WORK=$(mktemp -d "${TMPDIR:-/tmp}/geoparquet-bench.XXXXXX")
cleanup() {
  [[ $TARGET == postgis ]] && stop_services
  rm -rf "$WORK"
}
trap cleanup EXIT
if [[ $TARGET == postgis ]]; then
  start_postgis
  PSQL=("$TAK_PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -d "$DATABASE_URL")
  OGR_PG="PG:host=127.0.0.1 port=$TAK_PG_PORT dbname=tak_etl user=postgres"
fi
if [[ ! -f $PARQUET || $PARQUET -ot $JSON ]]; then
  say "writing $PARQUET from $JSON with etl-data (untimed)"
  mkdir -p "$(dirname "$PARQUET")"
  rm -f "$PARQUET"
  "$BIN" --input "$JSON" --output "$PARQUET" >"$WORK/make.log" 2>&1 ||
    { cat "$WORK/make.log" >&2; die "writing the GeoParquet input failed"; }
fi
EXPECTED=$(wc -l <"$JSON")
say "inputs: $(du -h "$JSON" | cut -f1) GeoJSON sequence, $(du -h "$PARQUET" | cut -f1) GeoParquet, $EXPECTED features"

RESULTS=$WORK/runs.tsv
: >"$RESULTS"
run_tool() { # TOOL RUN
  local tool=$1 run=$2 out=$WORK/$1.$2.geojsonl table=${1//-/_}_$2
  local cmd
  case $TARGET/$tool in
  geojsonseq/etl-data-parquet) cmd=("$BIN" --input "$PARQUET" --output "$out") ;;
  geojsonseq/etl-data-geojson) cmd=("$BIN" --input "$JSON" --output "$out") ;;
  geojsonseq/ogr2ogr-geojson) cmd=(ogr2ogr -f GeoJSONSeq "$out" "$JSON") ;;
  postgis/etl-data-parquet) cmd=("$BIN" --input "$PARQUET" --output "$DATABASE_URL" --table "$table" --mode replace) ;;
  postgis/etl-data-geojson) cmd=("$BIN" --input "$JSON" --output "$DATABASE_URL" --table "$table" --mode replace) ;;
  postgis/ogr2ogr-geojson)
    cmd=(env PG_USE_COPY=YES ogr2ogr -f PostgreSQL "$OGR_PG" "$JSON" -nln "$table" -overwrite
      -lco GEOMETRY_NAME=geom -lco FID=id -lco SPATIAL_INDEX=GIST -preserve_fid)
    ;;
  esac
  sync
  /usr/bin/time -v -o "$WORK/time.txt" "${cmd[@]}" >"$WORK/log.txt" 2>&1 ||
    { cat "$WORK/log.txt" >&2; die "$tool failed"; }
  local lines wall rss
  if [[ $TARGET == postgis ]]; then
    lines=$("${PSQL[@]}" -c "SELECT count(*) FROM \"$table\"")
  else
    lines=$(wc -l <"$out")
  fi
  [[ $lines -eq $EXPECTED ]] || die "$tool wrote $lines features, expected $EXPECTED"
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }' "$WORK/time.txt")
  rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$WORK/time.txt")
  printf '%s\t%s\t%s\t%s\n' "$tool" "$run" "$wall" "$rss" >>"$RESULTS"
  say "$tool run $run: ${wall}s, peak RSS $((rss / 1024)) MB"
  rm -f "$out"
}

TOOLS=(etl-data-parquet etl-data-geojson ogr2ogr-geojson)
for ((run = 1; run <= RUNS; run++)); do
  n=${#TOOLS[@]}
  for ((i = 0; i < n; i++)); do
    run_tool "${TOOLS[$(((i + run - 1) % n))]}" "$run"
  done
done

mkdir -p "$BENCH_DIR/results"
cp "$RESULTS" "$BENCH_DIR/results/geoparquet-$TARGET-$(date +%Y%m%dT%H%M%S).tsv"
printf '%-18s %10s %12s\n' tool median_s peak_rss_mb
for tool in "${TOOLS[@]}"; do
  median=$(awk -F'\t' -v t="$tool" '$1 == t { print $3 }' "$RESULTS" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
  rss=$(awk -F'\t' -v t="$tool" '$1 == t && $4 > m { m = $4 } END { print int(m / 1024) }' "$RESULTS")
  printf '%-18s %10s %12s\n' "$tool" "$median" "$rss"
done
