#!/bin/sh
# cdb_redis's entrypoint (mounted read-only; runs as the redis user): the password goes from the compose secret into
# a config file only this user can read, on a tmpfs, never onto a command line (`ps`, `docker inspect`, logs).
#   start.sh [redis-server options...]
# REDIS_PASSWORD_FILE (default /run/secrets/redis_password), REDIS_CONF_DIR (default /run/redis).
set -eu
secret="${REDIS_PASSWORD_FILE:-/run/secrets/redis_password}"
conf="${REDIS_CONF_DIR:-/run/redis}/redis.conf"
password="$(cat "$secret")"  # $(...) drops the trailing newline
case "$password" in
    "" | *[!A-Za-z0-9_-]*)
        echo "cdb_redis: the password in $secret must be letters, digits, - or _ (and not empty)" >&2
        exit 2
        ;;
esac
umask 077
printf 'requirepass %s\n' "$password" >"$conf"  # printf is built in: no process with the password in its arguments
exec redis-server "$conf" "$@"
