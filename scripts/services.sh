# shellcheck shell=bash
# Throwaway test services on loopback: a PostGIS cluster and an S3 server (moto).
#
#   source scripts/services.sh
#   trap stop_services EXIT
#   start_postgis   # exports DATABASE_URL
#   start_s3        # exports S3_ENDPOINT and AWS_*
#
# Both install what they need on first use (apt-get / pip), quietly; a failure prints the log and
# returns non-zero. Nothing here touches the machine's own PostgreSQL cluster: each call creates
# its own cluster in a fresh temp dir on a free port, and stop_services removes it again.
#
# Why moto and not s3s-fs: moto 5.2 enforces everything the jobs rely on (If-None-Match: * and
# If-Match on PutObject and CompleteMultipartUpload -> 412, multipart visible only after Complete,
# abort leaves no object, InvalidPart and EntityTooSmall on Complete, ListObjectsV2 prefix,
# delimiter and continuation, ranged GET -> 206/416, aws-chunked bodies with trailing checksums),
# installs from PyPI in about a minute instead of a 3-minute cargo build, and also serves the
# Batch and EventBridge APIs. Known gaps: UploadPart to an aborted upload answers 500, not 404
# NoSuchUpload; a checksum sent in an aws-chunked trailer is not stored (one sent as a header is).

TAK_PG_BIN=${TAK_PG_BIN:-/usr/lib/postgresql/15/bin}
# Checked with 5.2.1 (what this machine kind may come with) and 5.2.5.
TAK_MOTO_REQUIREMENT=${TAK_MOTO_REQUIREMENT:-moto[server]==5.2.5}

_svc_say() { echo "services: $*" >&2; }

# Prints the log file (if any) and returns 1.
_svc_fail() {
  local msg=$1 log=${2:-}
  echo "services: ERROR: $msg" >&2
  if [[ -n $log && -s $log ]]; then
    echo "---- last lines of $log ----" >&2
    tail -n 40 "$log" >&2
    echo "----" >&2
  fi
  return 1
}

# A TCP port that was free on 127.0.0.1 a moment ago. Callers retry on a bind race.
_svc_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# apt_install_quiet PKG...: installs Debian packages; runs `apt-get update` only when the plain
# install fails (no package lists yet, or stale ones).
apt_install_quiet() {
  if [[ $(id -u) != 0 ]]; then
    _svc_fail "need root to apt-get install $* (or install it yourself)"
    return 1
  fi
  local log
  log=$(mktemp /tmp/tak-etl-apt.XXXXXX.log)
  local -a apt=(apt-get -y -q -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=300
    install --no-install-recommends "$@")
  _svc_say "installing $* with apt-get"
  if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" >"$log" 2>&1; then
    if ! DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300 update >>"$log" 2>&1 ||
      ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" >>"$log" 2>&1; then
      _svc_fail "apt-get install $* failed" "$log"
      return 1
    fi
  fi
  rm -f "$log"
}

# ensure_browser_tools: Debian's chromium (the preview test drives it headless) and node/npm
# (jobs/tiles/build.rs bundles the preview's JavaScript with them), installed when missing.
ensure_browser_tools() {
  local -a pkgs=()
  command -v "${CHROMIUM:-/usr/bin/chromium}" >/dev/null 2>&1 || pkgs+=(chromium)
  command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
  command -v npm >/dev/null 2>&1 || pkgs+=(npm)
  ((${#pkgs[@]} == 0)) || apt_install_quiet "${pkgs[@]}"
}

# _svc_tools: makes sure python3 (with venv and ensurepip, for the moto venv and free ports) and
# curl (readiness probes) exist, installing the Debian packages only for what is missing. A
# pyenv or other python3 that already has venv is used as it is.
_svc_tools() {
  local -a pkgs=()
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    pkgs+=(python3 python3-venv)
  fi
  if ! command -v curl >/dev/null 2>&1; then
    pkgs+=(curl ca-certificates)
  fi
  ((${#pkgs[@]} == 0)) && return 0
  apt_install_quiet "${pkgs[@]}" || return 1
  hash -r
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    _svc_fail "python3 with the venv and ensurepip modules is still missing after installing ${pkgs[*]}"
    return 1
  fi
  command -v curl >/dev/null 2>&1 || {
    _svc_fail "curl is still missing after installing ${pkgs[*]}"
    return 1
  }
}

# pip_install_quiet MODULES REQUIREMENT...: installs REQUIREMENTs unless `import MODULES` works
# (MODULES is comma-separated, as in a Python import statement).
pip_install_quiet() {
  local module=$1
  shift
  if python3 -c "import $module" >/dev/null 2>&1; then
    return 0
  fi
  local log
  log=$(mktemp /tmp/tak-etl-pip.XXXXXX.log)
  _svc_say "installing $* with pip"
  if ! python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore "$@" >"$log" 2>&1; then
    _svc_fail "pip install $* failed" "$log"
    return 1
  fi
  rm -f "$log"
  python3 -c "import $module" || _svc_fail "pip installed $* but 'import $module' still fails"
}

# A venv with exactly the moto version the tests were checked with, cached outside the clone.
# Not the system Python's moto: 5.2.1 (which this machine kind may ship) answers
# CompleteMultipartUpload with a <CompleteMultipartUploadResponse> root that the AWS SDK for Rust
# rightly refuses; 5.2.5 answers <CompleteMultipartUploadResult> as S3 does.
TAK_MOTO_VENV=${TAK_MOTO_VENV:-/var/tmp/tak-etl-tools/moto-5.2.5}
_svc_moto_venv() {
  if "$TAK_MOTO_VENV/bin/python" -c 'import moto, moto.server, flask, flask_cors; assert moto.__version__ == "5.2.5"' >/dev/null 2>&1; then
    return 0
  fi
  local log
  log=$(mktemp /tmp/tak-etl-pip.XXXXXX.log)
  _svc_say "installing $TAK_MOTO_REQUIREMENT into $TAK_MOTO_VENV"
  rm -rf "$TAK_MOTO_VENV"
  mkdir -p "$(dirname "$TAK_MOTO_VENV")"
  if ! { python3 -m venv "$TAK_MOTO_VENV" &&
    "$TAK_MOTO_VENV/bin/python" -m pip install -q --disable-pip-version-check "$TAK_MOTO_REQUIREMENT"; } >"$log" 2>&1; then
    _svc_fail "installing $TAK_MOTO_REQUIREMENT failed" "$log"
    return 1
  fi
  rm -f "$log"
}

# Runs a command as the postgres OS user when we are root, else as ourselves.
_svc_as_pg() {
  if [[ $(id -u) == 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# Stops servers left behind by a script that was killed before its EXIT trap ran: each temp dir
# records the PID of the shell that owns it, and only dirs whose owner is gone are touched.
_svc_reap_stale() {
  local d owner pid
  for d in /tmp/tak-etl-pg.* /tmp/tak-etl-s3.*; do
    [[ -f $d/owner.pid ]] || continue
    owner=$(<"$d/owner.pid")
    [[ $owner =~ ^[0-9]+$ ]] || continue
    kill -0 "$owner" 2>/dev/null && continue
    if [[ -f $d/data/postmaster.pid ]]; then
      _svc_as_pg "$TAK_PG_BIN/pg_ctl" -D "$d/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
    fi
    if [[ -f $d/moto.pid ]]; then
      pid=$(<"$d/moto.pid")
      # Only if that PID is still a moto server (PIDs get reused).
      if [[ $pid =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q moto.server; then
        kill "$pid" 2>/dev/null || true
      fi
    fi
    rm -rf "$d"
  done
  return 0
}

start_postgis() {
  if [[ -n ${TAK_PG_DIR:-} && -n ${DATABASE_URL:-} ]] &&
    _svc_as_pg "$TAK_PG_BIN/pg_ctl" -D "$TAK_PG_DIR/data" status >/dev/null 2>&1; then
    return 0 # already started by this shell
  fi
  _svc_tools || return 1
  if [[ ! -f /usr/share/postgresql/15/extension/postgis.control ]]; then
    apt_install_quiet postgresql-15-postgis-3 || return 1
  fi
  [[ -x $TAK_PG_BIN/initdb ]] || {
    _svc_fail "$TAK_PG_BIN/initdb not found (apt-get install postgresql-15)"
    return 1
  }

  # Short path under /tmp: the unix socket lives here and socket paths are limited to ~100 bytes;
  # $TMPDIR may also be a directory the postgres user cannot enter.
  _svc_reap_stale
  TAK_PG_DIR=$(mktemp -d /tmp/tak-etl-pg.XXXXXX)
  export TAK_PG_DIR
  echo $$ >"$TAK_PG_DIR/owner.pid"
  if [[ $(id -u) == 0 ]]; then
    chown postgres:postgres "$TAK_PG_DIR"
  fi
  local log=$TAK_PG_DIR/postgres.log
  if ! _svc_as_pg "$TAK_PG_BIN/initdb" -D "$TAK_PG_DIR/data" -U postgres --auth=trust \
    --encoding=UTF8 --no-locale --no-sync >"$TAK_PG_DIR/initdb.log" 2>&1; then
    _svc_fail "initdb failed" "$TAK_PG_DIR/initdb.log"
    return 1
  fi

  local port attempt started=0
  for attempt in 1 2 3 4 5; do
    port=$(_svc_free_port)
    # -w waits until the server accepts connections; a port taken in the meantime makes it fail,
    # and we retry on another port.
    if _svc_as_pg "$TAK_PG_BIN/pg_ctl" -D "$TAK_PG_DIR/data" -l "$log" -w -t 60 -o "\
-c listen_addresses=127.0.0.1 -p $port -k $TAK_PG_DIR \
-c fsync=off -c synchronous_commit=off -c full_page_writes=off \
-c max_connections=200 -c shared_buffers=256MB -c max_wal_size=4GB \
-c checkpoint_timeout=30min -c maintenance_work_mem=512MB -c work_mem=16MB" \
      start >>"$TAK_PG_DIR/pg_ctl.log" 2>&1; then
      started=1
      break
    fi
    _svc_say "postgres did not start on port $port (attempt $attempt), retrying"
  done
  if [[ $started != 1 ]]; then
    _svc_fail "could not start postgres in $TAK_PG_DIR" "$log"
    return 1
  fi
  export TAK_PG_PORT=$port

  local psql=("$TAK_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres)
  if ! "${psql[@]}" -d postgres -c "CREATE DATABASE tak_etl" >>"$log" 2>&1 ||
    ! "${psql[@]}" -d tak_etl -c "CREATE EXTENSION postgis" >>"$log" 2>&1; then
    _svc_fail "could not create database tak_etl with postgis" "$log"
    return 1
  fi
  export DATABASE_URL="postgres://postgres@127.0.0.1:$port/tak_etl"
}

start_s3() {
  if [[ -n ${TAK_S3_PID:-} ]] && kill -0 "$TAK_S3_PID" 2>/dev/null; then
    return 0 # already started by this shell
  fi
  _svc_tools || return 1
  _svc_moto_venv || return 1

  _svc_reap_stale
  TAK_S3_DIR=$(mktemp -d /tmp/tak-etl-s3.XXXXXX)
  export TAK_S3_DIR
  echo $$ >"$TAK_S3_DIR/owner.pid"
  local log=$TAK_S3_DIR/moto.log port attempt i
  for attempt in 1 2 3 4 5; do
    port=$(_svc_free_port)
    "$TAK_MOTO_VENV/bin/python" -m moto.server -H 127.0.0.1 -p "$port" </dev/null >>"$log" 2>&1 &
    TAK_S3_PID=$!
    export TAK_S3_PID
    echo "$TAK_S3_PID" >"$TAK_S3_DIR/moto.pid"
    # Ready when the S3 API answers ListBuckets; give up after ~30 s or when the process died
    # (port taken in the meantime, or a broken install).
    for ((i = 0; i < 300; i++)); do
      if curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:$port/"; then
        # Batch jobs submitted to moto succeed without a Docker engine (for the Batch tests).
        curl -fs -o /dev/null --max-time 5 -X POST -H 'Content-Type: application/json' \
          -d '{"batch": {"use_docker": false}}' "http://127.0.0.1:$port/moto-api/config" ||
          _svc_say "warning: could not set moto's batch.use_docker=false"
        export S3_ENDPOINT="http://127.0.0.1:$port"
        export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
        export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
        export AWS_EC2_METADATA_DISABLED=true
        return 0
      fi
      kill -0 "$TAK_S3_PID" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$TAK_S3_PID" 2>/dev/null; then
      kill "$TAK_S3_PID" 2>/dev/null || true
      wait "$TAK_S3_PID" 2>/dev/null || true
      unset TAK_S3_PID
      _svc_fail "moto server on port $port did not answer within 30 s" "$log"
      return 1
    fi
    wait "$TAK_S3_PID" 2>/dev/null || true
    unset TAK_S3_PID
    _svc_say "moto server exited on port $port (attempt $attempt), retrying"
  done
  _svc_fail "could not start moto server" "$log"
}

# Stops whatever start_* started in this shell and removes their temp dirs. Never fails, so it is
# safe as an EXIT trap and keeps the script's own exit status.
stop_services() {
  if [[ -n ${TAK_PG_DIR:-} ]]; then
    if [[ -f $TAK_PG_DIR/data/postmaster.pid ]]; then
      _svc_as_pg "$TAK_PG_BIN/pg_ctl" -D "$TAK_PG_DIR/data" -m fast -w -t 60 stop >/dev/null 2>&1 ||
        _svc_say "warning: pg_ctl stop failed for $TAK_PG_DIR"
    fi
    rm -rf "$TAK_PG_DIR"
    unset TAK_PG_DIR TAK_PG_PORT DATABASE_URL
  fi
  if [[ -n ${TAK_S3_PID:-} ]]; then
    kill "$TAK_S3_PID" 2>/dev/null || true
    wait "$TAK_S3_PID" 2>/dev/null || true
    unset TAK_S3_PID S3_ENDPOINT
  fi
  if [[ -n ${TAK_S3_DIR:-} ]]; then
    rm -rf "$TAK_S3_DIR"
    unset TAK_S3_DIR
  fi
  return 0
}
