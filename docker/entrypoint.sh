#!/bin/sh
# One entrypoint for every process of Claire de Binare (the Dockerfile's ENTRYPOINT; roles: docs/operations.md):
#   entrypoint.sh web | worker | beat | feed [run_feed args] | migrate | <any command>
# Logs are JSON lines on stdout/stderr (LOGGING in cdb_project/settings.py); daphne's plain access log is off.
set -eu
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
role="${1:-web}"
[ $# -gt 0 ] && shift

# prometheus_client multiprocess mode: an empty directory per start (the processes of this container, or of
# this machine when web and workers share it: then only the first to start wipes, CDB_METRICS_KEEP=1 for the rest).
if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
    mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
    if [ "${CDB_METRICS_KEEP:-0}" != "1" ]; then
        find "$PROMETHEUS_MULTIPROC_DIR" -maxdepth 1 -name '*.db' -delete
    fi
fi

case "$role" in
    web)
        if [ "${CDB_MIGRATE:-1}" = "1" ]; then
            "$PYTHON" manage.py migrate --noinput
            "$PYTHON" manage.py ensure_admin
        fi
        exec "$PYTHON" -m daphne -v 0 -b "${WEB_BIND:-0.0.0.0}" -p "${WEB_PORT:-8000}" cdb_project.asgi:application
        ;;
    worker)
        exec "$PYTHON" -m celery --quiet -A cdb_project worker -l "${LOG_LEVEL:-INFO}" -P prefork \
            -c "${WORKER_CONCURRENCY:-2}" -n "${WORKER_NAME:-worker}@%h" --without-gossip --without-mingle "$@"
        ;;
    beat)
        exec "$PYTHON" -m celery --quiet -A cdb_project beat -l "${LOG_LEVEL:-INFO}" \
            --schedule "${BEAT_SCHEDULE_FILE:-/tmp/celerybeat-schedule}" "$@"
        ;;
    feed)
        if [ $# -eq 0 ]; then set -- --source "${FEED_SOURCE:-sim}"; fi
        exec "$PYTHON" manage.py run_feed --no-progress "$@"
        ;;
    migrate)
        exec "$PYTHON" manage.py migrate --noinput
        ;;
    *)
        exec "$role" "$@"
        ;;
esac
