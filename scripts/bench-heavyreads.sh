#!/usr/bin/env bash
# Heavy-read memory attacks against one gateway (cmd/mpim-bench/heavyreads):
# a connection that never reads its history answers, and four connections
# of two users reading history pages as fast as the limits allow; reports the
# gateway's RSS growth and a bystander's conversations p50/p99, idle and
# under each attack.
#
# Uses the shared Redis (a private key prefix) and MariaDB (a fresh database,
# dropped on exit) on loopback, starts one `mpimd projector` and one `mpimd
# gateway` with default limits, and stops both on exit. MPIMD=path runs
# another build of mpimd (to compare); extra arguments go to heavyreads.
#
#   scripts/bench-heavyreads.sh                 # about a minute
#   MPIMD=/tmp/mpimd-old scripts/bench-heavyreads.sh --requests 100
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bin
go build -o bin/mpim-bench-heavyreads ./cmd/mpim-bench/heavyreads
if [[ -z ${MPIMD:-} ]]; then
	go build -o bin/mpimd ./cmd/mpimd
	MPIMD=bin/mpimd
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
run_id=$(date +%s)$$
db=mpimheavy_$run_id
dir=$(mktemp -d "${TMPDIR:-/tmp}/mpim-heavyreads.XXXXXX")
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	mariadb -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS \`$db\`" || true
	rm -rf "$dir"
}
trap cleanup EXIT
mariadb -uroot -h127.0.0.1 -e "CREATE DATABASE \`$db\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/password.key") # this deployment's password key
common=(--redis-addr 127.0.0.1:6379 --prefix "heavy$run_id:" --mysql "root@tcp(127.0.0.1:3306)/$db" --log-level warn
	--password-key-file "$dir/password.key")

wait_ready() { # wait_ready HTTP_ADDR PID NAME
	for _ in $(seq 300); do
		curl -fsS "http://$1/readyz" >/dev/null 2>&1 && return 0
		kill -0 "$2" 2>/dev/null || { echo "bench-heavyreads: $3 exited; log:" >&2; tail -20 "$dir/$3.log" >&2; exit 2; }
		sleep 0.1
	done
	echo "bench-heavyreads: $3 not ready after 30s" >&2; exit 2
}
http=127.0.0.1:$(free_port)
"$MPIMD" projector "${common[@]}" --http-addr "$http" --member-id "heavy-proj-$run_id" >"$dir/projector.log" 2>&1 &
PIDS+=("$!")
wait_ready "$http" "$!" projector
listen=127.0.0.1:$(free_port) http=127.0.0.1:$(free_port)
"$MPIMD" gateway "${common[@]}" --listen "$listen" --http-addr "$http" --gateway-id "heavy-gw-$run_id" \
	--password-memory-kib 1024 --password-passes 1 >"$dir/gateway.log" 2>&1 &
gw=$!
PIDS+=("$gw")
wait_ready "$http" "$gw" gateway
bin/mpim-bench-heavyreads --gateway "ws://$listen/ws" --pid "$gw" "$@"
