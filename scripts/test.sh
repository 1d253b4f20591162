#!/usr/bin/env bash
# The test command: installs Chromium and Node when missing, starts throwaway PostGIS and S3
# (moto) servers on loopback, runs the workspace tests against them, stops them again. Extra
# arguments go to `cargo test`, e.g.
#   bash scripts/test.sh -p etl-core -- checkpoint
# Tests read DATABASE_URL, S3_ENDPOINT and AWS_* from the environment set here.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/services.sh
source scripts/services.sh
trap stop_services EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/tak-etl-target}

ensure_browser_tools
start_postgis
start_s3
echo "test services: DATABASE_URL=$DATABASE_URL S3_ENDPOINT=$S3_ENDPOINT (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"

log=$(mktemp /tmp/tak-etl-test.XXXXXX.log)
status=0
cargo test --workspace --locked "$@" 2>&1 | tee "$log" || status=${PIPESTATUS[0]}

# One closing line over all test binaries (cargo prints one `test result:` line per binary).
awk '/^test result:/ { p += $4; f += $6; s += $8; n++ }
     END { if (n) printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
rm -f "$log"
exit "$status"
