#!/usr/bin/env bash
# Whole-process load benchmark: etl-data (--mode replace, and the default --mode append into a
# new table, into an existing empty table and into one that holds as many rows as the input)
# vs GDAL's ogr2ogr vs a bare COPY (the floors), loading the synthetic points set (1M points at
# SCALE=1.0) into a throwaway PostGIS, in one run.
#
#   bash benches/load_points.sh                     # SCALE=1.0 RUNS=3, every tool
#   SCALE=0.1 RUNS=1 bash benches/load_points.sh    # quick check
#   TOOLS=ogr2ogr,floor bash benches/load_points.sh # without etl-data (no cargo build)
#   ETL_DATA_BIN=path/to/etl-data bash benches/load_points.sh   # use that binary, no build
#   INPUT_FORMAT=gpkg TOOLS=etl-data,etl-append,ogr2ogr bash benches/load_points.sh
#                                                   # the same points from a GeoPackage
#
# Each tool loads into its own fresh table with an index on id (a primary key where the tool
# makes one) and a GIST index on geom; the "existing" cases load into an empty table that has
# both indexes already. The tools alternate order between runs. Every load is checked (row
# count, index on id, GIST index, SRID, and a fingerprint of ids and coordinates) and the bench
# fails if the tables differ.
# Wall time is the whole process; peak RSS is the client process's (`/usr/bin/time -v`), so the
# server's own memory is not in it. See benches/README.md.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

SCALE=${SCALE:-1.0}
RUNS=${RUNS:-3}
TOOLS=${TOOLS:-etl-data,etl-append,etl-append-existing,etl-append-large,ogr2ogr,floor,floor-existing}
# The input every tool loads: the synthetic GeoJSON sequence, or the same points as a GeoPackage.
INPUT_FORMAT=${INPUT_FORMAT:-geojsonl}
SHARED_DIR=${TAK_SHARED_DIR:-$ROOT/../shared}
BENCH_DIR=$(realpath -m "${TAK_BENCH_DIR:-/var/tmp/tak-etl-bench}")
DATA=$BENCH_DIR/synthetic-$SCALE
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/tak-etl-target}

say() { echo "bench: $*" >&2; }
die() {
  echo "bench: ERROR: $*" >&2
  exit 1
}
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, not '$RUNS'"
[[ $INPUT_FORMAT == geojsonl || $INPUT_FORMAT == gpkg ]] ||
  die "INPUT_FORMAT must be geojsonl or gpkg, not '$INPUT_FORMAT'"

IFS=, read -r -a tools <<<"$TOOLS"
for t in "${tools[@]}"; do
  case $t in
  etl-data | etl-append | etl-append-existing | etl-append-large | ogr2ogr | floor | floor-existing) ;;
  *) die "unknown tool '$t' in TOOLS (etl-data, etl-append, etl-append-existing, etl-append-large, ogr2ogr, floor, floor-existing)" ;;
  esac
done
wants() { [[ ,$TOOLS, == *,$1,* ]]; }
wants_etl() { wants etl-data || wants etl-append || wants etl-append-existing || wants etl-append-large; }

# shellcheck source=scripts/services.sh
source scripts/services.sh
WORK=
cleanup() {
  stop_services
  [[ -n $WORK ]] && rm -rf "$WORK"
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- 1. etl-data first, so a broken build fails before minutes of data generation ----
if wants_etl; then
  if [[ -n ${ETL_DATA_BIN:-} ]]; then
    [[ -x $ETL_DATA_BIN ]] || die "ETL_DATA_BIN=$ETL_DATA_BIN is not an executable"
  else
    say "building etl-data (cargo build --release --locked -p etl-data)"
    if ! cargo build --release --locked -p etl-data; then
      die "etl-data did not build (cargo build --release --locked -p etl-data failed above).
  Fix the build, or bench the others alone: TOOLS=ogr2ogr,floor bash benches/load_points.sh"
    fi
    ETL_DATA_BIN=$CARGO_TARGET_DIR/release/etl-data
    [[ -x $ETL_DATA_BIN ]] || die "cargo build succeeded but $ETL_DATA_BIN is missing"
  fi
fi

# ---- 2. tools and data ----
command -v ogr2ogr >/dev/null || apt_install_quiet gdal-bin || die "could not install gdal-bin"
[[ -x /usr/bin/time ]] || apt_install_quiet time || die "could not install time"
if [[ ! -f $DATA/.complete ]]; then
  pip_install_quiet numpy numpy || die "could not install numpy"
  [[ -f $SHARED_DIR/bench/gen_synthetic.py ]] ||
    die "$SHARED_DIR/bench/gen_synthetic.py not found (set TAK_SHARED_DIR)"
  say "generating the synthetic set at SCALE=$SCALE into $DATA (once)"
  rm -rf "$DATA"
  mkdir -p "$DATA"
  python3 "$SHARED_DIR/bench/gen_synthetic.py" "$DATA" "$SCALE"
  touch "$DATA/.complete"
fi
GEOJSONL=$DATA/points.geojsonl
case $INPUT_FORMAT in
geojsonl) INPUT=$GEOJSONL ;;
gpkg)
  # The same points as a GeoPackage, made once by ogr2ogr (untimed): the feature ids become
  # the FIDs, so every tool's table has the same ids and the fingerprints still compare.
  INPUT=$DATA/points.gpkg
  if [[ ! -f $INPUT ]]; then
    say "writing the points as a GeoPackage with ogr2ogr (once)"
    rm -f "$DATA/partial.gpkg"
    ogr2ogr -f GPKG "$DATA/partial.gpkg" "$GEOJSONL" -nln points -preserve_fid
    mv "$DATA/partial.gpkg" "$INPUT"
  fi
  ;;
esac
EXPECTED_ROWS=$(wc -l <"$GEOJSONL")
EXPECTED_ROWS=$((EXPECTED_ROWS + 0))

mkdir -p "$BENCH_DIR"
WORK=$(mktemp -d "$BENCH_DIR/work.XXXXXX")
start_postgis
PSQL=("$TAK_PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -d "$DATABASE_URL")
sql() { PGOPTIONS="-c client_min_messages=warning" "${PSQL[@]}" -c "$1"; }
ADMIN=("$TAK_PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -d "${DATABASE_URL%/*}/postgres")
admin() { PGOPTIONS="-c client_min_messages=warning" "${ADMIN[@]}" -c "$1"; }

# Every load gets a fresh database cloned from this template (tak_etl with PostGIS, as
# services.sh made it), so nothing a tool left behind (tables, checkpoints of an earlier run with
# the same run key) changes the next load.
admin "CREATE DATABASE bench_template TEMPLATE tak_etl"
fresh_db() {
  admin "DROP DATABASE IF EXISTS tak_etl WITH (FORCE)"
  admin "CREATE DATABASE tak_etl TEMPLATE bench_template"
  admin "CHECKPOINT"
  sync
}

OGR_PG="PG:host=127.0.0.1 port=$TAK_PG_PORT dbname=tak_etl user=postgres"
# ogr2ogr's PG driver already defaults to COPY and a GIST index on the geometry; spelled out here
# so the tables match: geometry column geom, FID column id as primary key (SERIAL PRIMARY KEY,
# filled from the GeoJSON feature ids with -preserve_fid), GIST index on geom.
ogr_cmd() { # TABLE: sets cmd
  cmd=(env PG_USE_COPY=YES ogr2ogr -f PostgreSQL "$OGR_PG" "$INPUT" -nln "$1" -overwrite
    -lco GEOMETRY_NAME=geom -lco FID=id -lco SPATIAL_INDEX=GIST -preserve_fid)
}

# ---- 3. warm-up (untimed): one ogr2ogr load, which also yields the floor's input file ----
say "warm-up load with ogr2ogr; exporting the rows for the floor"
fresh_db
ogr_cmd points_warmup
"${cmd[@]}" >"$WORK/warmup.log" 2>&1 || {
  cat "$WORK/warmup.log" >&2
  die "ogr2ogr warm-up load failed"
}
FLOOR_COLUMNS=$(sql "SELECT string_agg(quote_ident(attname) || ' ' || format_type(atttypid, atttypmod)
  || CASE WHEN attnotnull THEN ' NOT NULL' ELSE '' END, ', ' ORDER BY attnum)
  FROM pg_attribute WHERE attrelid = 'points_warmup'::regclass AND attnum > 0 AND NOT attisdropped")
FLOOR_FILE=$WORK/points.copy
sql "\\copy points_warmup TO '$FLOOR_FILE'"
sql "DROP TABLE points_warmup"
cat >"$WORK/floor.sql" <<EOF
CREATE TABLE points_floor ($FLOOR_COLUMNS);
\\copy points_floor FROM '$FLOOR_FILE'
ALTER TABLE points_floor ADD PRIMARY KEY (id);
CREATE INDEX points_floor_geom_idx ON points_floor USING gist (geom);
EOF
# The floor of appending into an existing table: the same COPY into an empty table that has its
# indexes already (a plain one on id, as etl-data gives an appended table, and GIST on geom), so
# every row is inserted into both indexes one by one instead of them being built at the end.
cat >"$WORK/floor_existing_setup.sql" <<EOF
CREATE TABLE points_floor_existing ($FLOOR_COLUMNS);
CREATE INDEX points_floor_existing_id_idx ON points_floor_existing (id);
CREATE INDEX points_floor_existing_geom_idx ON points_floor_existing USING gist (geom);
EOF
cat >"$WORK/floor_existing.sql" <<EOF
\\copy points_floor_existing FROM '$FLOOR_FILE'
EOF
# etl-data's existing table: made by etl-data itself from the first 1000 features (its own
# column types, a plain index on id, GIST on geom), then emptied, outside the timing.
SEED=$WORK/seed.geojsonl
head -n 1000 "$GEOJSONL" >"$SEED"
# etl-data's large existing table: the whole input loaded once by etl-data (from a copy, so the
# timed run, with another input URL, is not the same run), outside the timing. The timed append
# then doubles it: with the default flags etl-data appends straight into a table this size.
LARGE_SEED=$WORK/large-seed.geojsonl
if wants etl-append-large; then cp "$GEOJSONL" "$LARGE_SEED"; fi

# ---- 4. timed runs ----
table_of() {
  case $1 in
  etl-data) echo points_etl ;;
  etl-append) echo points_etl_append ;;
  etl-append-existing) echo points_etl_existing ;;
  etl-append-large) echo points_etl_large ;;
  ogr2ogr) echo points_ogr ;;
  floor) echo points_floor ;;
  floor-existing) echo points_floor_existing ;;
  esac
}
# What a tool needs before the timed load (untimed): the existing tables.
tool_setup() { # TOOL RUNDIR
  case $1 in
  etl-append-existing)
    (cd "$2" && "$ETL_DATA_BIN" --input "$SEED" --output "$DATABASE_URL" --table points_etl_existing) \
      >"$WORK/setup.log" 2>&1 || {
      tail -n 20 "$WORK/setup.log" >&2
      die "could not create etl-data's existing table"
    }
    sql "TRUNCATE points_etl_existing"
    ;;
  etl-append-large)
    (cd "$2" && "$ETL_DATA_BIN" --input "$LARGE_SEED" --output "$DATABASE_URL" --table points_etl_large) \
      >"$WORK/setup.log" 2>&1 || {
      tail -n 20 "$WORK/setup.log" >&2
      die "could not create etl-data's large existing table"
    }
    ;;
  floor-existing) "${PSQL[@]}" -f "$WORK/floor_existing_setup.sql" >/dev/null ;;
  esac
  admin "CHECKPOINT"
}
tool_cmd() { # TOOL: sets cmd
  case $1 in
  etl-data) cmd=("$ETL_DATA_BIN" --input "$INPUT" --output "$DATABASE_URL" --table points_etl --mode replace) ;;
  # The default flags (--mode append): into a missing table, then into the existing one.
  etl-append) cmd=("$ETL_DATA_BIN" --input "$INPUT" --output "$DATABASE_URL" --table points_etl_append) ;;
  etl-append-existing) cmd=("$ETL_DATA_BIN" --input "$INPUT" --output "$DATABASE_URL" --table points_etl_existing) ;;
  etl-append-large) cmd=("$ETL_DATA_BIN" --input "$INPUT" --output "$DATABASE_URL" --table points_etl_large) ;;
  ogr2ogr) ogr_cmd points_ogr ;;
  floor) cmd=("${PSQL[@]}" -f "$WORK/floor.sql") ;;
  floor-existing) cmd=("${PSQL[@]}" -f "$WORK/floor_existing.sql") ;;
  esac
}

# Prints "rows fingerprint" for TABLE after checking it has what every tool must produce.
verify_table() { # TOOL TABLE
  local tool=$1 t=$2 pk gist srid want=indisprimary what="primary key"
  # An appended table has a plain index on id (later appends may repeat ids), not a key.
  case $tool in etl-append* | floor-existing) want=true what="index" ;; esac
  pk=$(sql "SELECT count(*) FROM pg_index i JOIN pg_attribute a
      ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
      WHERE i.indrelid = '$t'::regclass AND $want AND i.indnatts = 1 AND a.attname = 'id'")
  [[ $pk == 1 ]] || die "$tool: table $t has no $what on (id)"
  gist=$(sql "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
      JOIN pg_am am ON am.oid = c.relam JOIN pg_attribute a
      ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
      WHERE i.indrelid = '$t'::regclass AND am.amname = 'gist' AND a.attname = 'geom'")
  [[ $gist -ge 1 ]] || die "$tool: table $t has no GIST index on geom"
  srid=$(sql "SELECT Find_SRID('public', '$t', 'geom')")
  [[ $srid == 4326 ]] || die "$tool: table $t column geom has SRID $srid, not 4326"
  local src=$t
  if [[ $tool == etl-append-large ]]; then
    # The table holds every row twice (the set-up load and the timed one), identical: it must
    # have exactly twice the rows, and one copy of each must fingerprint like the others.
    local all distinct
    all=$(sql "SELECT count(*) FROM $t")
    distinct=$(sql "SELECT count(DISTINCT id) FROM $t")
    [[ $all == $((2 * distinct)) ]] || die "$tool: table $t has $all rows for $distinct ids, not two of each"
    src="(SELECT DISTINCT ON (id) * FROM $t ORDER BY id) AS one_copy"
  fi
  sql "SELECT count(*) || ' ' || coalesce(min(id), -1) || '/' || coalesce(max(id), -1) || '/'
      || coalesce(sum(id), 0) || '/' || round(coalesce(sum(ST_X(geom)), 0)::numeric, 2) || '/'
      || round(coalesce(sum(ST_Y(geom)), 0)::numeric, 2) FROM $src"
}

RESULTS=$WORK/runs.tsv
: >"$RESULTS"
FINGERPRINT=
n=${#tools[@]}
for ((r = 1; r <= RUNS; r++)); do
  for ((k = 0; k < n; k++)); do
    tool=${tools[$(((r - 1 + k) % n))]}
    t=$(table_of "$tool")
    fresh_db
    log=$WORK/$tool.$r.log
    # Each load also runs in an empty directory, so local state (e.g. file checkpoints) from an
    # earlier run is not found either.
    rundir=$WORK/cwd.$tool.$r
    mkdir -p "$rundir"
    tool_setup "$tool" "$rundir"
    tool_cmd "$tool"
    t0=$(date +%s.%N)
    if ! (cd "$rundir" && /usr/bin/time -v -o "$WORK/time.txt" "${cmd[@]}") >"$log" 2>&1; then
      tail -n 30 "$log" >&2
      die "$tool failed in run $r (log above)"
    fi
    t1=$(date +%s.%N)
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    rss_kb=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$WORK/time.txt")
    verified=$(verify_table "$tool" "$t")
    read -r rows fp <<<"$verified"
    [[ $rows == "$EXPECTED_ROWS" ]] ||
      die "$tool loaded $rows rows into $t, expected $EXPECTED_ROWS (lines of $GEOJSONL)"
    if [[ -z $FINGERPRINT ]]; then
      FINGERPRINT=$fp FINGERPRINT_FROM=$tool
    elif [[ $fp != "$FINGERPRINT" ]]; then
      die "$tool's table differs from $FINGERPRINT_FROM's: min/max/sum(id) and sum(x)/sum(y) $fp vs $FINGERPRINT"
    fi
    if [[ $r == 1 ]]; then
      sql "SELECT string_agg(attname || ':' || format_type(atttypid, atttypmod), ' ' ORDER BY attnum)
        FROM pg_attribute WHERE attrelid = '$t'::regclass AND attnum > 0 AND NOT attisdropped" \
        >"$WORK/$tool.columns"
    fi
    printf '%s\t%s\t%s\t%s\t%s\n' "$tool" "$r" "$wall" "$rss_kb" "$rows" >>"$RESULTS"
    say "run $r/$RUNS $tool: ${wall}s, peak RSS $((rss_kb / 1024)) MB, $rows rows"
  done
done

# ---- 5. report ----
stats() { # TOOL -> "best median max_rss_mb rows"
  awk -F'\t' -v tool="$1" '$1 == tool { w[n++] = $3; if ($4 > rss) rss = $4; rows = $5 }
    END {
      for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (w[j] < w[i]) { x = w[i]; w[i] = w[j]; w[j] = x }
      med = (n % 2) ? w[int(n / 2)] : (w[n / 2 - 1] + w[n / 2]) / 2
      printf "%.2f %.2f %.0f %d\n", w[0], med, rss / 1024, rows
    }' "$RESULTS"
}
declare -A best
pg_version=$(sql "SELECT current_setting('server_version') || ', PostGIS ' || postgis_lib_version()")
gdal_version=$(ogr2ogr --version)
echo
echo "load_points: SCALE=$SCALE, $EXPECTED_ROWS points ($(du -h "$INPUT" | cut -f1) $INPUT_FORMAT), RUNS=$RUNS"
echo "server: PostgreSQL $pg_version on 127.0.0.1, fsync=off; $gdal_version; $(nproc) cores"
printf '%-20s %10s %10s %12s %10s\n' tool best_s median_s peak_rss_mb rows
for tool in "${tools[@]}"; do
  read -r b m rss rows < <(stats "$tool")
  best[$tool]=$b
  printf '%-20s %10s %10s %12s %10s\n' "$tool" "$b" "$m" "$rss" "$rows"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
# A/B by best wall time, when both ran, with what the pair compares.
show_ratio() { # A B TEXT
  if wants "$1" && wants "$2"; then
    echo "$1/$2 (best wall): $(ratio "${best[$1]}" "${best[$2]}")x  $3"
  fi
}
show_ratio ogr2ogr etl-data "(--mode replace; above 1: etl-data is faster)"
show_ratio ogr2ogr etl-append "(default flags, new table)"
show_ratio ogr2ogr etl-append-existing "(default flags, existing table)"
show_ratio etl-append etl-data "(default flags into a new table, against replace)"
show_ratio etl-append-existing etl-data "(default flags into an existing table, against replace)"
show_ratio etl-append-large etl-data "(default flags into a table already holding the input's rows, against replace)"
show_ratio etl-append-large floor-existing "(the same, against the floor of an existing indexed table)"
show_ratio etl-data floor "(replace, against its floor)"
show_ratio etl-append-existing floor-existing "(existing table, against its floor)"
show_ratio floor-existing floor "(indexes kept up row by row, against built at the end)"
show_ratio ogr2ogr floor ""
echo "tables (first run):"
for tool in "${tools[@]}"; do
  printf '  %-20s %s\n' "$tool" "$(cat "$WORK/$tool.columns")"
done
mkdir -p "$BENCH_DIR/results"
out=$BENCH_DIR/results/load_points-$(date +%Y%m%dT%H%M%S)-scale$SCALE.tsv
{
  printf 'tool\trun\twall_s\tpeak_rss_kb\trows\n'
  cat "$RESULTS"
} >"$out"
echo "raw runs: $out"
