#!/usr/bin/env bash
# Tile-serving load benchmark: `etl-tiles serve` vs martin 1.14, same archive, same tiles, one run.
#
#   bash benches/tiles.sh                                # 20 s per server, 64 connections, both servers
#   DURATION=5 bash benches/tiles.sh                     # quick check
#   SERVERS=etl-tiles bash benches/tiles.sh              # etl-tiles alone (also: ETL_ONLY=1)
#   ARCHIVE=/path/to/x.pmtiles bash benches/tiles.sh     # bench another archive (not rebuilt)
#   INSTALL_MARTIN=1 bash benches/tiles.sh               # build martin 1.14 first if missing (~10 min)
#   ETL_TILES_BIN=path/to/etl-tiles bash benches/tiles.sh   # use that server binary, no build
#
# Steps: build etl-tiles and the `tile_list` example (release); make or reuse the archive (z0-14 of
# the synthetic set, cut by etl-pmtiles) and the list of every tile in it, shuffled with a fixed
# seed; then, for each server in turn (never both at once): start it on 127.0.0.1, warm it with a
# WARMUP-second wrk run over the list (run again, longer, if that did not reach every tile), run `wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency`
# with benches/tiles/paths.lua (cycles through the list, Accept-Encoding: gzip, counts statuses),
# and the memory check: VmRSS before and after MISSES requests for distinct missing tiles at the max
# zoom and MISSES malformed paths (curl, keep-alive, parallel). wrk and the server share the
# machine's cores (2 here): the numbers are the pair's, not the server's alone.
#
# Fails when a run over existing tiles saw any non-200 response or socket error, when etl-tiles
# answers any memory-check request with 5xx (or not at all) or a missing tile with anything but
# 204, or when its RSS grows by more than RSS_LIMIT_MB during the memory check. The throughput and
# p99 targets (TARGET_RPS, TARGET_P99_MS) are printed as met/MISSED, not enforced. See
# benches/README.md.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

DURATION=${DURATION:-20}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1}
WARMUP=${WARMUP:-5}
SERVERS=${SERVERS:-etl-tiles,martin}
ETL_ONLY=${ETL_ONLY:-0}
INSTALL_MARTIN=${INSTALL_MARTIN:-0}
SCALE=${SCALE:-0.1}
MISSES=${MISSES:-10000}
MISS_PARALLEL=${MISS_PARALLEL:-8}
RSS_LIMIT_MB=${RSS_LIMIT_MB:-50}
TARGET_RPS=${TARGET_RPS:-20000}
TARGET_P99_MS=${TARGET_P99_MS:-10}
SHARED_DIR=${TAK_SHARED_DIR:-$ROOT/../shared}
BENCH_DIR=$(realpath -m "${TAK_BENCH_DIR:-/var/tmp/tak-etl-bench}")
MARTIN_VERSION=1.14.0
MARTIN_ROOT=${MARTIN_ROOT:-/var/tmp/tak-etl-tools/martin-1.14}
MARTIN_BIN=$MARTIN_ROOT/bin/martin
DATA=$BENCH_DIR/synthetic-$SCALE
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/tak-etl-target}
NAME=bench # served as /tiles/bench/… by etl-tiles and /bench/… by martin

say() { echo "bench: $*" >&2; }
die() {
  echo "bench: ERROR: $*" >&2
  exit 1
}
for v in DURATION CONNECTIONS THREADS WARMUP MISSES MISS_PARALLEL RSS_LIMIT_MB TARGET_RPS TARGET_P99_MS; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, not '${!v}'"
done
((DURATION > 0 && CONNECTIONS > 0 && THREADS > 0 && MISS_PARALLEL > 0)) ||
  die "DURATION, CONNECTIONS, THREADS and MISS_PARALLEL must be positive"
((CONNECTIONS >= THREADS)) || die "CONNECTIONS ($CONNECTIONS) must be at least THREADS ($THREADS)"
[[ $SCALE =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "SCALE must be a number like 1.0 or 0.1, not '$SCALE'"
[[ $ETL_ONLY == 1 ]] && SERVERS=etl-tiles
IFS=, read -r -a servers <<<"$SERVERS"
((${#servers[@]} > 0)) || die "SERVERS must not be empty"
for s in "${servers[@]}"; do
  case $s in etl-tiles | martin) ;; *) die "unknown server '$s' in SERVERS (etl-tiles, martin)" ;; esac
done

# shellcheck source=scripts/services.sh
source scripts/services.sh # apt_install_quiet, pip_install_quiet, _svc_tools, _svc_free_port
WORK=
SERVER_PID=
stop_server() {
  if [[ -n $SERVER_PID ]]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
  fi
}
cleanup() {
  stop_server
  [[ -n $WORK ]] && rm -rf "$WORK"
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
wants() { [[ ,$SERVERS, == *,$1,* ]]; }

# ---- 1. builds and tools ----
if wants etl-tiles; then
  if [[ -n ${ETL_TILES_BIN:-} ]]; then
    [[ -x $ETL_TILES_BIN ]] || die "ETL_TILES_BIN=$ETL_TILES_BIN is not an executable"
    ETL_TILES_BIN=$(realpath "$ETL_TILES_BIN")
  else
    say "building etl-tiles (cargo build --release --locked -p etl-tileserver --bin etl-tiles)"
    cargo build --release --locked -p etl-tileserver --bin etl-tiles ||
      die "etl-tiles did not build (cargo build above failed). Fix the build, point ETL_TILES_BIN at a binary,
  or bench martin alone: SERVERS=martin bash benches/tiles.sh"
    ETL_TILES_BIN=$CARGO_TARGET_DIR/release/etl-tiles
    [[ -x $ETL_TILES_BIN ]] || die "cargo build succeeded but $ETL_TILES_BIN is missing"
  fi
fi
say "building the tile_list example (cargo build --release --locked -p etl-tiles --example tile_list)"
cargo build --release --locked -p etl-tiles --example tile_list || die "the tile_list example did not build"
TILE_LIST=$CARGO_TARGET_DIR/release/examples/tile_list

if wants martin && [[ ! -x $MARTIN_BIN ]]; then
  if [[ $INSTALL_MARTIN == 1 ]]; then
    say "installing martin $MARTIN_VERSION into $MARTIN_ROOT (cargo install, several minutes on 2 cores)"
    log=$(mktemp /tmp/tak-etl-martin.XXXXXX.log)
    if ! cargo install --locked "martin@$MARTIN_VERSION" --no-default-features --features pmtiles \
      --root "$MARTIN_ROOT" >"$log" 2>&1; then
      tail -n 40 "$log" >&2
      die "cargo install martin@$MARTIN_VERSION failed (log above)"
    fi
    rm -f "$log"
  else
    say "NOTE: martin is not installed at $MARTIN_BIN: skipping it (as with ETL_ONLY=1). Install it once with
  cargo install --locked martin@$MARTIN_VERSION --no-default-features --features pmtiles --root $MARTIN_ROOT
  or run with INSTALL_MARTIN=1."
    kept=()
    for s in "${servers[@]}"; do [[ $s == martin ]] || kept+=("$s"); done
    ((${#kept[@]} > 0)) || die "SERVERS=martin but martin is not installed"
    servers=("${kept[@]}")
    SERVERS=$(IFS=,; echo "${servers[*]}")
  fi
fi
if wants martin; then
  martin_version=$("$MARTIN_BIN" --version 2>&1 || true)
  [[ $martin_version == "martin $MARTIN_VERSION" ]] ||
    die "$MARTIN_BIN reports '$martin_version', expected martin $MARTIN_VERSION (remove $MARTIN_ROOT to reinstall)"
fi
command -v wrk >/dev/null 2>&1 || apt_install_quiet wrk || die "could not install wrk"
[[ -x /usr/bin/time ]] || apt_install_quiet time || die "could not install time"
_svc_tools || die "python3 or curl is missing"

# ---- 2. archive and path list ----
if [[ -n ${ARCHIVE:-} ]]; then
  [[ -f $ARCHIVE ]] || die "ARCHIVE=$ARCHIVE does not exist"
  ARCHIVE=$(realpath "$ARCHIVE")
else
  ARCHIVE=$BENCH_DIR/tiles-z14-$SCALE.pmtiles
  if [[ ! -f $ARCHIVE ]]; then
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
    pmtiles_bin=${ETL_PMTILES_BIN:-$CARGO_TARGET_DIR/release/etl-pmtiles}
    if [[ ! -x $pmtiles_bin ]]; then
      say "building etl-pmtiles (cargo build --release --locked -p etl-pmtiles)"
      cargo build --release --locked -p etl-pmtiles || die "etl-pmtiles did not build"
    fi
    say "cutting $ARCHIVE with etl-pmtiles -z14 (once)"
    tmp=$(mktemp -d "$BENCH_DIR/tiles-archive.XXXXXX")
    if ! (cd "$tmp" && "$pmtiles_bin" -o "$tmp/out.pmtiles" -f -P -z14 --drop-densest-as-needed \
      -L "points:$DATA/points.geojsonl" -L "polygons:$DATA/polygons.geojsonl" \
      -L "lines:$DATA/lines.geojsonl") >"$tmp/log" 2>&1; then
      tail -n 20 "$tmp/log" >&2
      rm -rf "$tmp"
      die "etl-pmtiles failed (log above)"
    fi
    mv -f "$tmp/out.pmtiles" "$ARCHIVE"
    rm -rf "$tmp"
  fi
fi
PATHS=$ARCHIVE.paths.txt # every tile as z/x/y, shuffled with a fixed seed
if [[ ! -s $PATHS || $PATHS -ot $ARCHIVE || $PATHS -ot $TILE_LIST ]]; then
  say "listing the tiles of $ARCHIVE into $PATHS"
  "$TILE_LIST" "$ARCHIVE" >"$PATHS.tmp" || die "tile_list failed on $ARCHIVE"
  shuf --random-source=<(yes) "$PATHS.tmp" >"$PATHS.shuf"
  rm -f "$PATHS.tmp"
  mv -f "$PATHS.shuf" "$PATHS"
fi
n_paths=$(wc -l <"$PATHS")
((n_paths > 0)) || die "$ARCHIVE has no tiles"
max_zoom=$(cut -d/ -f1 "$PATHS" | sort -n | tail -n 1)

mkdir -p "$BENCH_DIR"
WORK=$(mktemp -d "$BENCH_DIR/tiles-work.XXXXXX")
mkdir -p "$WORK/root"
ln -s "$ARCHIVE" "$WORK/root/$NAME.pmtiles"

# The memory check's requests, in the shape of each server: ROUTE is what comes before the
# archive's name (/tiles/ or /), SUFFIX what follows "z/x/y" (.pbf or nothing).
#   misses:    MISSES distinct tiles at the archive's max zoom, spread over the whole grid by a
#              multiplicative permutation, none of which is in the archive (inside the zoom range,
#              outside the data: 204 expected).
#   malformed: MISSES distinct bad paths: %2F and .. in the name, unknown names, bad extensions,
#              x/y beyond 2^z, zooms beyond 31, negative or non-numeric or overflowing numbers,
#              extra segments, NUL, overlong names.
cat >"$WORK/gen.py" <<'EOF'
import sys
kind, n, route, name, suffix, maxz, paths = sys.argv[1:8]
n, maxz = int(n), int(maxz)
side = 1 << maxz
out = []
if kind == "misses":
    have = set()
    with open(paths) as f:
        for line in f:
            z, x, y = line.split("/")
            if int(z) == maxz:
                have.add((int(x), int(y)))
    cells, mult = side * side, 2654435761  # odd, so i -> i*mult mod 4^z is a permutation
    i = 0
    while len(out) < n and i < cells:
        t = (i * mult) % cells
        x, y = t % side, t // side
        if (x, y) not in have:
            out.append(f"{route}{name}/{maxz}/{x}/{y}{suffix}")
        i += 1
else:
    for i in range(n):
        k, j = i % 14, i // 14
        out.append([
            f"{route}{name}%2F..%2Fetc{j}/0/0/0{suffix}",
            f"{route}..%2F{j}/0/0/0{suffix}",
            f"{route}{name}/../{name}{j}/1/0/0{suffix}",
            f"{route}{name}/{maxz}/{j}/{j}.png",
            f"{route}{name}/{maxz}/{j}/{j}.pbf.gz",
            f"{route}{name}/{maxz}/{side + j}/0{suffix}",
            f"{route}{name}/{maxz}/0/{side * 7 + j}{suffix}",
            f"{route}{name}/{32 + j}/0/0{suffix}",
            f"{route}{name}/{maxz}/-{j + 1}/0{suffix}",
            f"{route}{name}/{maxz}/{j}abc/0{suffix}",
            f"{route}nosuch{j}/0/0/0{suffix}",
            f"{route}{name}/{maxz}/{j}/0/1{suffix}",
            f"{route}{name}/{maxz}/0/1844674407370955161{j}{suffix}",
            f"{route}{name}%00{j}/0/0/0{suffix}",
        ][k] if k != 13 or j % 2 else f"{route}{'x' * 300}{j}/0/0/0{suffix}")
for p in out:
    print(p)
EOF

# ---- 3. runs ----
# Busy CPU of the whole machine: "busy_ticks total_ticks" from /proc/stat (all cores).
sys_ticks() { awk '$1 == "cpu" { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t; exit }' /proc/stat; }
rss_kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$SERVER_PID/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat" 2>/dev/null || echo 0; }
# Dies with the server's log and exit status when it is gone.
check_alive() { # SERVER WHEN
  kill -0 "$SERVER_PID" 2>/dev/null && return 0
  local status=0
  wait "$SERVER_PID" 2>/dev/null || status=$?
  SERVER_PID=
  tail -n 20 "$WORK/$1.log" >&2
  die "$1 died $2 (exit status $status; log above)"
}
CLK_TCK=$(getconf CLK_TCK)

start_server() { # SERVER: sets SERVER_PID, BASE, ROUTE, PREFIX, SUFFIX, HEALTH
  local log=$WORK/$1.log port line i
  case $1 in
  etl-tiles)
    "$ETL_TILES_BIN" serve --root "$WORK/root" --listen 127.0.0.1:0 --no-auth >"$log.out" 2>"$log" &
    SERVER_PID=$!
    for ((i = 0; i < 100; i++)); do
      line=$(head -n 1 "$log.out" 2>/dev/null || true)
      [[ $line == "listening on http://"* ]] && break
      kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 20 "$log" >&2; die "etl-tiles exited at start (log above)"; }
      sleep 0.1
    done
    [[ $line == "listening on http://"* ]] || die "etl-tiles printed no 'listening on' line in 10 s (log: $log)"
    BASE=${line#listening on }
    ROUTE=/tiles/
    PREFIX=$ROUTE$NAME/
    SUFFIX=.pbf
    HEALTH=$BASE/health
    ;;
  martin)
    port=$(_svc_free_port)
    "$MARTIN_BIN" --listen-addresses "127.0.0.1:$port" "$WORK/root/$NAME.pmtiles" >"$log" 2>&1 &
    SERVER_PID=$!
    BASE=http://127.0.0.1:$port
    ROUTE=/
    PREFIX=$ROUTE$NAME/
    SUFFIX=
    HEALTH=$BASE/health
    ;;
  esac
  for ((i = 0; i < 100; i++)); do
    curl -sf -o /dev/null "$HEALTH" && break
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 20 "$log" >&2; die "$1 exited at start (log above)"; }
    sleep 0.1
  done
  curl -sf -o /dev/null "$HEALTH" || die "$1 did not answer $HEALTH in 10 s (log: $log)"
  # The first tile must be there, gzip-encoded, under the URL shape used below.
  local first code
  first=$(head -n 1 "$PATHS")
  code=$(curl -s -o /dev/null -w '%{http_code} %header{content-encoding}' -H 'Accept-Encoding: gzip' \
    "$BASE$PREFIX$first$SUFFIX" || true)
  [[ $code == "200 gzip" ]] ||
    die "$1: GET $PREFIX$first$SUFFIX answered '$code', expected '200 gzip' (log: $WORK/$1.log)"
}

# Runs wrk over the path list; prints its output to WORK/TAG.wrk and the RESULT fields to stdout.
run_wrk() { # TAG SECONDS
  /usr/bin/time -f '%U %S' -o "$WORK/$1.wrk.time" \
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$2"s --latency -s benches/tiles/paths.lua "$BASE" \
    -- "$PATHS" "$PREFIX" "$SUFFIX" >"$WORK/$1.wrk" 2>&1 ||
    { cat "$WORK/$1.wrk" >&2; die "wrk failed ($1)"; }
  grep '^RESULT ' "$WORK/$1.wrk" | tail -n 1 | cut -d' ' -f2- ||
    { cat "$WORK/$1.wrk" >&2; die "wrk printed no RESULT line ($1)"; }
}
field() { # NAME "k=v k=v ..."
  local kv
  for kv in $2; do [[ ${kv%%=*} == "$1" ]] && { echo "${kv#*=}"; return; }; done
  echo "?"
}

# Sends a list of requests with curl (keep-alive, MISS_PARALLEL at a time); prints "code:count ...".
send_list() { # FILE
  local cfg=$1.curl
  awk -v base="$BASE" '{ printf "url = \"%s%s\"\noutput = \"/dev/null\"\n", base, $0 }' "$1" >"$cfg"
  curl -s --path-as-is --parallel --parallel-max "$MISS_PARALLEL" -H 'Accept-Encoding: gzip' \
    -w '%{http_code}\n' --config "$cfg" >"$1.codes" 2>/dev/null || true
  sort "$1.codes" | uniq -c | awk '{ printf "%s%s:%s", (NR > 1 ? " " : ""), $2, $1 }'
}

RESULTS=$WORK/runs.tsv
: >"$RESULTS"
FAILED=0
cat "$ARCHIVE" >/dev/null # page cache, for both servers alike
read -r b0 a0 < <(sys_ticks)
sleep 1
read -r b1 a1 < <(sys_ticks)
idle_busy=$(awk -v b0="$b0" -v b1="$b1" -v a0="$a0" -v a1="$a1" -v n="$(nproc)" 'BEGIN { printf "%.2f", (b1 - b0) / (a1 - a0) * n }')
if awk -v b="$idle_busy" 'BEGIN { exit !(b > 0.2) }'; then
  say "NOTE: $idle_busy cores were busy before any server started (another build or bench?): the numbers will be low and noisy"
  ps -eo pcpu=,comm= --sort=-pcpu | head -n 3 | sed 's/^/bench:   /' >&2
fi
for server in "${servers[@]}"; do
  say "$server: starting"
  start_server "$server"
  say "$server: warm-up, ${WARMUP}s of wrk over the $n_paths paths"
  warm=$(run_wrk "$server.warmup" "$WARMUP")
  check_alive "$server" "during the warm-up"
  warm_n=$(field requests "$warm")
  if ((warm_n < n_paths)); then
    # Every wrk run starts at the top of the list: a longer second run, not a second chunk,
    # reaches every tile (a cold server is slower than a warm one, hence 1.5x the first rate).
    secs=$(awk -v n="$n_paths" -v r="$(field rps "$warm")" 'BEGIN { s = int(1.5 * n / (r > 500 ? r : 500)) + 1; print (s > 120 ? 120 : s) }')
    say "$server: the warm-up reached $warm_n of the $n_paths paths; warming up again for ${secs}s"
    warm=$(run_wrk "$server.warmup2" "$secs")
    check_alive "$server" "during the warm-up"
    warm_n=$(field requests "$warm")
    ((warm_n >= n_paths)) || say "$server: NOTE: the warm-up sent $warm_n requests, fewer than the $n_paths paths (raise WARMUP)"
  fi
  rss_warm=$(rss_kb VmRSS)
  cpu0=$(cpu_ticks)
  read -r sys_busy0 sys_all0 < <(sys_ticks)
  say "$server: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency -s benches/tiles/paths.lua $BASE -- PATHS $PREFIX $SUFFIX"
  res=$(run_wrk "$server" "$DURATION")
  check_alive "$server" "during the timed run"
  cpu1=$(cpu_ticks)
  read -r sys_busy1 sys_all1 < <(sys_ticks)
  sed -n '/^Running/,/^Transfer/p' "$WORK/$server.wrk" | sed 's/^/  /' >&2
  read -r wrk_user wrk_sys <"$WORK/$server.wrk.time"
  secs=$(awk -v d="$(field duration_us "$res")" 'BEGIN { print d / 1e6 }')
  server_cores=$(awk -v a="$cpu0" -v b="$cpu1" -v t="$CLK_TCK" -v s="$secs" 'BEGIN { printf "%.2f", (b - a) / t / s }')
  wrk_cores=$(awk -v u="$wrk_user" -v k="$wrk_sys" -v s="$secs" 'BEGIN { printf "%.2f", (u + k) / s }')
  # What else ran meanwhile: the machine's busy cores less the server's and wrk's (a build on
  # the other core shows up here; then the numbers are not comparable).
  other_cores=$(awk -v b0="$sys_busy0" -v b1="$sys_busy1" -v a0="$sys_all0" -v a1="$sys_all1" \
    -v n="$(nproc)" -v s="$server_cores" -v w="$wrk_cores" \
    'BEGIN { o = (b1 - b0) / (a1 - a0) * n - s - w; printf "%.2f", (o < 0 ? 0 : o) }')
  rss_run=$(rss_kb VmRSS)
  non200=$(field non200 "$res")
  errors=$(field errors "$res")
  say "$server: $(field rps "$res") req/s, p50 $(field p50_us "$res") us, p99 $(field p99_us "$res") us," \
    "non-200 $non200 (204: $(field s204 "$res"), 404: $(field s404 "$res"), 400: $(field s400 "$res"), other: $(field sother "$res")), socket errors $errors, gzip $(field gzip "$res")/$(field s200 "$res");" \
    "CPU: server $server_cores cores, wrk $wrk_cores cores, other processes $other_cores cores"
  if [[ $non200 != 0 || $errors != 0 || $(field timeouts "$res") != 0 ]]; then
    say "$server: FAIL: the run over existing tiles saw $non200 non-200 responses, $errors socket errors, $(field timeouts "$res") timeouts"
    FAILED=1
  fi

  # Memory check.
  python3 "$WORK/gen.py" misses "$MISSES" "$ROUTE" "$NAME" "$SUFFIX" "$max_zoom" "$PATHS" >"$WORK/$server.misses"
  python3 "$WORK/gen.py" malformed "$MISSES" "$ROUTE" "$NAME" "$SUFFIX" "$max_zoom" "$PATHS" >"$WORK/$server.malformed"
  rss_before=$(rss_kb VmRSS)
  say "$server: memory check: $(wc -l <"$WORK/$server.misses") missing tiles at z$max_zoom, then $(wc -l <"$WORK/$server.malformed") malformed paths (curl, $MISS_PARALLEL in parallel)"
  miss_codes=$(send_list "$WORK/$server.misses")
  rss_misses=$(rss_kb VmRSS)
  bad_codes=$(send_list "$WORK/$server.malformed")
  sleep 1
  check_alive "$server" "during the memory check"
  rss_after=$(rss_kb VmRSS)
  hwm=$(rss_kb VmHWM)
  health=$(curl -s "$HEALTH" || true)
  growth=$(((rss_after - rss_before) / 1024))
  say "$server: RSS after warm-up $((rss_warm / 1024)) MB, after the run $((rss_run / 1024)) MB;" \
    "memory check: before $((rss_before / 1024)) MB, after misses $((rss_misses / 1024)) MB, after malformed $((rss_after / 1024)) MB ($growth MB), peak (VmHWM) $((hwm / 1024)) MB"
  say "$server: misses answered $miss_codes; malformed answered $bad_codes"
  say "$server: $HEALTH: $health"
  if [[ $server == etl-tiles ]]; then
    if ((growth > RSS_LIMIT_MB)); then
      say "etl-tiles: FAIL: RSS grew by $growth MB during the memory check (limit RSS_LIMIT_MB=$RSS_LIMIT_MB)"
      FAILED=1
    fi
    if [[ " $miss_codes " != " 204:"*" " || $miss_codes == *" "* ]]; then
      say "etl-tiles: FAIL: missing tiles must all answer 204, got $miss_codes"
      FAILED=1
    fi
    if [[ " $miss_codes $bad_codes" =~ \ (5[0-9][0-9]|000): ]]; then
      say "etl-tiles: FAIL: 5xx or no answer (000) during the memory check"
      FAILED=1
    fi
  fi
  stop_server
  caches=$(python3 -c 'import json, sys
try:
    print(json.dumps(json.loads(sys.argv[1]).get("caches", "-"), separators=(",", ":")))
except Exception:
    print(sys.argv[1].strip() or "-")' "$health")
  row=("$server" "$(field rps "$res")" "$(field p50_us "$res")" "$(field p90_us "$res")"
    "$(field p99_us "$res")" "$(field max_us "$res")" "$(field requests "$res")" "$(field bytes "$res")"
    "$non200" "$errors" "$server_cores" "$wrk_cores" "$rss_warm" "$rss_run" "$rss_before" "$rss_misses"
    "$rss_after" "$hwm" "$miss_codes" "$bad_codes" "$caches" "$other_cores")
  (IFS=$'\t'; echo "${row[*]}") >>"$RESULTS"
done

# ---- 4. report ----
echo
echo "tiles: $(basename "$ARCHIVE") ($n_paths tiles, z0-$max_zoom, $(du -h "$ARCHIVE" | cut -f1)), paths shuffled with a fixed seed"
echo "load: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency (after ${WARMUP}s warm-up), Accept-Encoding: gzip;" \
  "$(nproc) cores shared by wrk and the server; $idle_busy cores busy before the servers started, load average at the end:$(uptime | sed 's/.*load average://')"
wants etl-tiles && echo "etl-tiles: $ETL_TILES_BIN serve --root DIR --listen 127.0.0.1:0 --no-auth  (GET /tiles/$NAME/{z}/{x}/{y}.pbf;" \
  "built $(date -r "$ETL_TILES_BIN" '+%F %T'), tree $(git describe --always --dirty 2>/dev/null || echo '?'))"
wants martin && echo "martin: $martin_version, $MARTIN_BIN --listen-addresses 127.0.0.1:PORT DIR/$NAME.pmtiles  (GET /$NAME/{z}/{x}/{y})"
printf '  %-10s %9s %8s %8s %8s %8s %7s %10s %11s %8s %10s\n' server req/s p50_ms p90_ms p99_ms max_ms MB/s non200/err server_cpu wrk_cpu other_cpu
awk -F'\t' -v d="$DURATION" '{ printf "  %-10s %9.0f %8.2f %8.2f %8.2f %8.2f %7.1f %10s %11s %8s %10s\n",
  $1, $2, $3 / 1000, $4 / 1000, $5 / 1000, $6 / 1000, $8 / 1048576 / d, $9 "/" $10, $11, $12, $22 }' "$RESULTS"
echo "  (cpu columns: cores busy during the timed run; other_cpu above ~0.1 means something else ran and the numbers are off)"
if wants etl-tiles && wants martin; then
  awk -F'\t' '{ r[$1] = $2; p50[$1] = $3; p99[$1] = $5 }
    END { printf "  etl-tiles/martin: req/s %.2fx, p50 %.2fx, p99 %.2fx (req/s above 1: etl-tiles serves more; latency below 1: etl-tiles is faster)\n",
      r["etl-tiles"] / r["martin"], p50["etl-tiles"] / p50["martin"], p99["etl-tiles"] / p99["martin"] }' "$RESULTS"
fi
if wants etl-tiles; then
  awk -F'\t' -v tr="$TARGET_RPS" -v tp="$TARGET_P99_MS" '$1 == "etl-tiles" {
    printf "  targets (etl-tiles): >= %d req/s: %s (%.0f); p99 < %d ms: %s (%.2f ms)\n",
      tr, ($2 >= tr ? "met" : sprintf("MISSED by %.0f%%", 100 * (tr - $2) / tr)), $2,
      tp, ($5 / 1000 < tp ? "met" : sprintf("MISSED by %.0f%%", 100 * ($5 / 1000 - tp) / tp)), $5 / 1000 }' "$RESULTS"
fi
echo
echo "memory (VmRSS MB; the check sends $MISSES missing tiles, then $MISSES malformed paths):"
printf '  %-10s %9s %9s %9s %12s %15s %7s %7s\n' server warm after_run before after_misses after_malformed growth VmHWM
awk -F'\t' '{ printf "  %-10s %9.0f %9.0f %9.0f %12.0f %15.0f %7.0f %7.0f\n", $1, $13 / 1024, $14 / 1024,
  $15 / 1024, $16 / 1024, $17 / 1024, ($17 - $15) / 1024, $18 / 1024 }' "$RESULTS"
awk -F'\t' '{ printf "  %-10s misses: %s; malformed: %s\n", $1, $19, $20 }' "$RESULTS"
awk -F'\t' '$1 == "etl-tiles" { printf "  etl-tiles /health caches after the check: %s\n", $21 }' "$RESULTS"
mkdir -p "$BENCH_DIR/results"
out=$BENCH_DIR/results/tiles-$(date +%Y%m%dT%H%M%S).tsv
{
  printf 'server\trps\tp50_us\tp90_us\tp99_us\tmax_us\trequests\tbytes\tnon200\tsocket_errors\tserver_cores\twrk_cores\trss_warm_kb\trss_run_kb\trss_before_kb\trss_misses_kb\trss_after_kb\tvmhwm_kb\tmiss_codes\tmalformed_codes\tcaches\tother_cores\n'
  cat "$RESULTS"
} >"$out"
echo
echo "raw runs: $out"
((FAILED == 0)) || die "at least one check failed (see the FAIL lines above)"
