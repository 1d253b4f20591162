#!/bin/sh
# Entrypoint of the tak-etl image, installed as /usr/local/bin/etl:
#   etl JOB [ARGS...]   runs the job binary etl-JOB with ARGS (etl data --input ... -> etl-data --input ...)
#   etl help | --help   lists the jobs in this image
#   ETL_JOB=JOB etl     runs etl-JOB when no command is given (the image's default is `help`)
# exec keeps the job as the container's main process, so SIGTERM from Batch/ECS reaches it directly.
set -eu

bindir=${ETL_BIN_DIR:-$(dirname "$0")}

list_jobs() {
  found=0
  for f in "$bindir"/etl-*; do
    if [ -f "$f" ] && [ -x "$f" ]; then
      echo "  ${f##*/etl-}"
      found=1
    fi
  done
  [ "$found" = 1 ] || echo "  (none found in $bindir)"
}

usage() {
  echo "usage: etl JOB [ARGS...]   (etl JOB --help for the job's options)"
  echo "jobs:"
  list_jobs
}

# A task definition that sets no command (CloudTAK's events service) names the job in ETL_JOB:
# ETL_JOB=events with ETL_CLOUDTAK=true runs CloudTAK's import worker on its own variables.
if [ -n "${ETL_JOB:-}" ] && { [ $# -eq 0 ] || [ "$*" = help ]; }; then
  set -- "$ETL_JOB"
fi

if [ $# -eq 0 ]; then
  usage >&2
  exit 64
fi

job=$1
shift
case $job in
  help | -h | --help)
    usage
    exit 0
    ;;
  etl-*) job=${job#etl-} ;; # `etl etl-data ...` works too
esac

case $job in
  "" | *[!a-z0-9_-]*)
    echo "etl: '$job' is not a job name" >&2
    usage >&2
    exit 64
    ;;
esac

if [ ! -x "$bindir/etl-$job" ]; then
  echo "etl: unknown job '$job'" >&2
  usage >&2
  exit 64
fi
exec "$bindir/etl-$job" "$@"
