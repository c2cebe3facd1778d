#!/usr/bin/env bash
# Runs mpim's main job on this machine: makes Redis, MariaDB and ZooKeeper
# reachable (installing and starting them when missing), builds mpimd and
# mpimctl into bin/, creates the database, and runs `mpimd all` (gateway,
# projectors, trim) in the foreground on the local services.
#
#   scripts/run.sh                 clients connect to ws://127.0.0.1:8080/ws
#   MPIM_LISTEN=0.0.0.0:8080 scripts/run.sh
#
# Every mpimd setting can be given as a flag after the script's name or as an
# MPIM_* environment variable (see `bin/mpimd all --help`).
#
# The password key (docs/deployment.md) is made once, mode 600, in
# $MPIM_STATE_DIR/password.key (default ~/.local/state/mpim) unless
# MPIM_PASSWORD_KEY_FILE or MPIM_PASSWORD_KEY names one; keep it: without it
# no password of the deployment verifies.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh
mkdir -p bin
go build -o bin/mpimd ./cmd/mpimd
go build -o bin/mpimctl ./cmd/mpimctl
db=${MPIM_DATABASE:-mpim}
mariadb -uroot -h127.0.0.1 -e "CREATE DATABASE IF NOT EXISTS \`$db\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
export MPIM_REDIS_ADDR=${MPIM_REDIS_ADDR:-127.0.0.1:6379}
export MPIM_MYSQL=${MPIM_MYSQL:-root@tcp(127.0.0.1:3306)/$db}
export MPIM_ZOOKEEPER=${MPIM_ZOOKEEPER:-127.0.0.1:2181}
if [[ -z ${MPIM_PASSWORD_KEY_FILE:-} && -z ${MPIM_PASSWORD_KEY:-} ]]; then
	state=${MPIM_STATE_DIR:-$HOME/.local/state/mpim}
	export MPIM_PASSWORD_KEY_FILE=$state/password.key
	if [[ ! -s $MPIM_PASSWORD_KEY_FILE ]]; then
		(umask 077 && mkdir -p "$state" && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$MPIM_PASSWORD_KEY_FILE.new" &&
			echo >>"$MPIM_PASSWORD_KEY_FILE.new" && mv "$MPIM_PASSWORD_KEY_FILE.new" "$MPIM_PASSWORD_KEY_FILE")
		echo "mpim: made the password key $MPIM_PASSWORD_KEY_FILE (keep it: without it no password of this deployment verifies)"
	fi
fi
echo "mpim: starting mpimd all (clients: ws://${MPIM_LISTEN:-127.0.0.1:8080}/ws, metrics: http://${MPIM_HTTP_ADDR:-127.0.0.1:9464}/metrics)"
exec bin/mpimd all "$@"
