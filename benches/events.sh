#!/usr/bin/env bash
# Whole-process import benchmark: etl-events vs GDAL's ogr2ogr converting the same KML, GPX and
# Shapefile to a GeoJSON sequence, in one run; then etl-events' full import (GeoJSON sequence +
# PMTiles + manifest); then the 1 MB KML event path against the loopback S3 server. Every
# etl-events run uses its default flags and no environment variable.
#
#   bash benches/events.sh                 # RUNS=3
#   RUNS=1 bash benches/events.sh          # quick check
#   ETL_EVENTS_BIN=path/to/etl-events bash benches/events.sh   # that binary, no build
#   CASES=shapefile-nztm-1m-points bash benches/events.sh          # only the cases named (comma list)
#
# Inputs are made once from the synthetic set (../shared/bench/gen_synthetic.py, scale 0.25: the
# first 200k points and the 50k lines) by ogr2ogr itself: points.kml, tracks.gpx (a tracks layer),
# points.shp (zipped for etl-events, which takes a Shapefile as a zip). Like for like: both tools
# write one Feature per line; ogr2ogr reads the GPX `tracks` layer only, etl-events reads every
# layer (the other two are empty). Each conversion's output is checked: same feature count.
# shapefile-nztm-1m-points: 1M random points over New Zealand written by ogr2ogr in NZTM2000
# (EPSG:2193, GDAL's ESRI .prj), so both tools reproject every point to WGS 84.
# gpkg-nztm-1m-points: the same points as a GeoPackage (ogr2ogr's default: R-tree index, NZTM2000).
# Wall time is the whole process; peak RSS from `/usr/bin/time -v`. Tools alternate order.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

RUNS=${RUNS:-3}
CASES=${CASES:-all}
wants_case() { [[ $CASES == all || ,$CASES, == *,$1,* ]]; }
SHARED_DIR=${TAK_SHARED_DIR:-$ROOT/../shared}
BENCH_DIR=$(realpath -m "${TAK_BENCH_DIR:-/var/tmp/tak-etl-bench}")
SYN=$BENCH_DIR/synthetic-0.25
DATA=$BENCH_DIR/events
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/tak-etl-target}

say() { echo "bench: $*" >&2; }
die() {
  echo "bench: ERROR: $*" >&2
  exit 1
}
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, not '$RUNS'"
# shellcheck source=scripts/services.sh
source "$ROOT/scripts/services.sh"
command -v ogr2ogr >/dev/null || apt_install_quiet gdal-bin || die "could not install gdal-bin"
[[ -x /usr/bin/time ]] || apt_install_quiet time || die "could not install time"
command -v zip >/dev/null || apt_install_quiet zip || die "could not install zip"

if [[ -n ${ETL_EVENTS_BIN:-} ]]; then
  BIN=$ETL_EVENTS_BIN
else
  say "building etl-events (release)"
  cargo build --release -q -p etl-events
  BIN=$CARGO_TARGET_DIR/release/etl-events
fi

# --- inputs -----------------------------------------------------------------------------------
if [[ ! -f $SYN/.complete ]]; then
  say "generating the synthetic set at scale 0.25 in $SYN"
  pip_install_quiet numpy numpy || die "could not install numpy"
  mkdir -p "$SYN"
  python3 "$SHARED_DIR/bench/gen_synthetic.py" "$SYN" 0.25
  touch "$SYN/.complete"
fi
if [[ ! -f $DATA/.complete ]]; then
  say "making KML, GPX and Shapefile inputs with ogr2ogr in $DATA"
  rm -rf "$DATA" && mkdir -p "$DATA"
  head -n 200000 "$SYN/points.geojsonl" >"$DATA/points.geojsonl"
  ogr2ogr -f KML "$DATA/points.kml" "$DATA/points.geojsonl"
  ogr2ogr -f GPX "$DATA/tracks.gpx" "$SYN/lines.geojsonl" -nlt MULTILINESTRING -lco FORCE_GPX_TRACK=YES -dsco GPX_USE_EXTENSIONS=YES
  ogr2ogr -f "ESRI Shapefile" "$DATA/points.shp" "$DATA/points.geojsonl"
  (cd "$DATA" && zip -q points.zip points.shp points.shx points.dbf points.prj)
  # A 1 MB KML for the event path.
  head -n 3000 "$DATA/points.geojsonl" >"$DATA/small.geojsonl"
  ogr2ogr -f KML "$DATA/small.kml" "$DATA/small.geojsonl"
  touch "$DATA/.complete"
fi
ls -l "$DATA"/points.kml "$DATA"/tracks.gpx "$DATA"/points.zip "$DATA"/small.kml >&2
NZTM=$BENCH_DIR/events-nztm
if wants_case shapefile-nztm-1m-points && [[ ! -f $NZTM/.complete ]]; then
  say "making 1M NZTM2000 points as a Shapefile with ogr2ogr in $NZTM"
  rm -rf "$NZTM" && mkdir -p "$NZTM"
  python3 - "$NZTM/points.csv" <<'PY'
import random, sys
random.seed(2193)
with open(sys.argv[1], "w") as f:
    f.write("id,name,value,lon,lat\n")
    for i in range(1_000_000):
        f.write(f"{i},p{i},{random.random() * 100:.3f},{random.uniform(166.5, 178.5):.7f},{random.uniform(-47.2, -34.5):.7f}\n")
PY
  ogr2ogr -f "ESRI Shapefile" "$NZTM/points.shp" "$NZTM/points.csv" -oo X_POSSIBLE_NAMES=lon \
    -oo Y_POSSIBLE_NAMES=lat -oo KEEP_GEOM_COLUMNS=NO -s_srs EPSG:4326 -t_srs EPSG:2193 -nln points
  (cd "$NZTM" && zip -q points.zip points.shp points.shx points.dbf points.prj)
  rm "$NZTM/points.csv"
  touch "$NZTM/.complete"
fi
if wants_case gpkg-nztm-1m-points && [[ ! -f $NZTM/points.gpkg ]]; then
  [[ -f $NZTM/.complete ]] || die "make the Shapefile first: CASES=shapefile-nztm-1m-points,gpkg-nztm-1m-points"
  say "making the 1M NZTM2000 points as a GeoPackage with ogr2ogr"
  rm -f "$NZTM/partial.gpkg"
  ogr2ogr -f GPKG "$NZTM/partial.gpkg" "$NZTM/points.shp" -nln points
  mv "$NZTM/partial.gpkg" "$NZTM/points.gpkg"
fi

OUT=$(mktemp -d "${TMPDIR:-/tmp}/events-bench.XXXXXX")
trap 'rm -rf "$OUT"' EXIT
RESULTS=$BENCH_DIR/results/events-$(date -u +%Y%m%dT%H%M%SZ).tsv
mkdir -p "$(dirname "$RESULTS")"
printf 'case\ttool\trun\tseconds\tpeak_rss_mb\tfeatures\n' >"$RESULTS"

# timed CASE TOOL RUN CMD...: runs CMD under /usr/bin/time, records wall seconds and peak RSS.
timed() {
  local case=$1 tool=$2 run=$3
  shift 3
  local log=$OUT/time.log
  /usr/bin/time -v -o "$log" "$@" >/dev/null 2>"$OUT/stderr.log" || {
    cat "$OUT/stderr.log" >&2
    die "$case/$tool failed"
  }
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,t,":"); s=0; for(i=1;i<=n;i++) s=s*60+t[i]; print s}' "$log")
  rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2/1024}' "$log")
  LAST_WALL=$wall
  LAST_RSS=$rss
}

# features DIR: lines of the GeoJSON sequence in DIR: ogr2ogr's out.geojsonl, or the one
# etl-events' manifest out.json names (its outputs are versioned, out.vTIME-ID.geojsonl).
features() {
  local dir=$1 file
  if [[ -f $dir/out.json ]]; then
    file=$(python3 -c 'import json, sys; print(next(o["file"] for o in json.load(open(sys.argv[1]))["outputs"] if o["kind"] == "geojsonl"))' "$dir/out.json") ||
      die "no GeoJSON sequence in $dir/out.json"
  else
    file=out.geojsonl
  fi
  wc -l <"$dir/$file"
}

convert_case() {
  local case=$1 input=$2 ogr_input=$3 ogr_layer=$4
  for run in $(seq 1 "$RUNS"); do
    local order=(etl-events ogr2ogr)
    ((run % 2 == 0)) && order=(ogr2ogr etl-events)
    for tool in "${order[@]}"; do
      rm -rf "$OUT/o" && mkdir -p "$OUT/o"
      if [[ $tool == etl-events ]]; then
        timed "$case" "$tool" "$run" "$BIN" --input "$input" --output "$OUT/o" --name out --outputs geojsonl
      else
        # shellcheck disable=SC2086
        timed "$case" "$tool" "$run" ogr2ogr -f GeoJSONSeq "$OUT/o/out.geojsonl" "$ogr_input" $ogr_layer
      fi
      local n
      n=$(features "$OUT/o")
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$case" "$tool" "$run" "$LAST_WALL" "$LAST_RSS" "$n" | tee -a "$RESULTS" >&2
    done
  done
}

if wants_case kml-200k-points; then convert_case kml-200k-points "$DATA/points.kml" "$DATA/points.kml" ""; fi
if wants_case gpx-50k-tracks; then convert_case gpx-50k-tracks "$DATA/tracks.gpx" "$DATA/tracks.gpx" "tracks"; fi
if wants_case shapefile-200k-points; then convert_case shapefile-200k-points "$DATA/points.zip" "$DATA/points.shp" ""; fi
if wants_case shapefile-nztm-1m-points; then convert_case shapefile-nztm-1m-points "$NZTM/points.zip" "$NZTM/points.shp" ""; fi
if wants_case gpkg-nztm-1m-points; then convert_case gpkg-nztm-1m-points "$NZTM/points.gpkg" "$NZTM/points.gpkg" ""; fi

# Full imports (GeoJSON sequence + PMTiles z0-14 + manifest): no peer does this in one step.
# Default flags and no environment, as the events job runs it.
for input in points.kml tracks.gpx points.zip; do
  wants_case "import-$input" || continue
  for run in $(seq 1 "$RUNS"); do
    rm -rf "$OUT/o" && mkdir -p "$OUT/o"
    timed "import-$input" etl-events "$run" "$BIN" --input "$DATA/$input" --output "$OUT/o" --name out
    n=$(features "$OUT/o")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "import-$input" etl-events "$run" "$LAST_WALL" "$LAST_RSS" "$n" | tee -a "$RESULTS" >&2
  done
done

# The event path: S3 GET, convert, GeoJSON + PMTiles + manifest PUT, on the loopback S3 server.
if wants_case event-1mb-kml; then
trap 'stop_services; rm -rf "$OUT"' EXIT
start_s3
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
# moto's own virtualenv has boto3: upload with a signed request, as a client would.
"$TAK_MOTO_VENV/bin/python" - "$S3_ENDPOINT" "$DATA/small.kml" <<'EOF'
import sys, boto3
ep, path = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=ep, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
s3.create_bucket(Bucket="bench")
s3.put_object(Bucket="bench", Key="import/small.kml", Body=open(path, "rb").read())
EOF
for run in $(seq 1 "$RUNS"); do
  # A fresh output prefix each run, so every run imports (a repeated event would be a no-op).
  timed event-1mb-kml etl-events "$run" "$BIN" --bucket bench --key import/small.kml \
    --allow-source s3://bench/import/ --output "s3://bench/run-$run/" --s3-endpoint "$S3_ENDPOINT"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' event-1mb-kml etl-events "$run" "$LAST_WALL" "$LAST_RSS" - | tee -a "$RESULTS" >&2
done
fi

say "results in $RESULTS"
python3 - "$RESULTS" <<'EOF'
import csv, sys, statistics as st
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
by = {}
for r in rows:
    by.setdefault((r["case"], r["tool"]), []).append(r)
print("| case | tool | median s | peak RSS MB | features |")
print("|---|---|---|---|---|")
for (case, tool), rs in by.items():
    print(f"| {case} | {tool} | {st.median(float(r['seconds']) for r in rs):.2f} | {max(float(r['peak_rss_mb']) for r in rs):.0f} | {rs[0]['features']} |")
for case in sorted({c for c, _ in by}):
    a, b = by.get((case, "ogr2ogr")), by.get((case, "etl-events"))
    if a and b:
        ratio = st.median(float(r["seconds"]) for r in a) / st.median(float(r["seconds"]) for r in b)
        print(f"{case}: etl-events is {ratio:.1f}x faster than ogr2ogr")
EOF
