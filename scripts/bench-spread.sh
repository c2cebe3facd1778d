#!/usr/bin/env bash
# Partition spread before and after the mixing partition hash, in one run.
#
# Builds bin/mpimd and bin/mpim-bench, starts a private Redis (no persistence)
# and a fresh MariaDB database, and runs ROUNDS rounds (default 3) of two
# deployments each, alternating: "fnv1a" (mpim:meta created beforehand
# without the hash field, as a deployment from before the field existed, so
# the store keeps FNV-1a) and "fnv1a-fmix32" (a new deployment). Each
# deployment is one `mpimd all` under its own prefix and one mpim-bench
# pairs run (1,000 users, window 1, 3 s warm-up, 10 s measured). It prints
# the msg/s acked and the entry count of each of the 16 partition streams.
# Everything it started is stopped on exit; the database is dropped.
#
#   scripts/bench-spread.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
[[ $ROUNDS =~ ^[1-9]$ ]] || { echo "bench-spread.sh: ROUNDS must be 1..9, got $ROUNDS" >&2; exit 2; }
scripts/services.sh >/dev/null
mkdir -p bin
go build -o bin/mpimd ./cmd/mpimd
go build -o bin/mpim-bench ./cmd/mpim-bench

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/mpim-spread.XXXXXX")
rport=$(free_port)
PIDS=()
cleanup() {
	((${#PIDS[@]})) && kill -TERM "${PIDS[@]}" 2>/dev/null || true
	wait
	redis-cli -p "$rport" shutdown nosave >/dev/null 2>&1 || true
	for i in $(seq "$ROUNDS"); do for h in a b; do
		mariadb -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS \`mpimspread_$$_$i$h\`" 2>/dev/null || true
	done; done
	[[ -n ${KEEP:-} ]] || rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 2' INT TERM

redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes --dir "$dir" --logfile "$dir/redis.log"
for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/password.key")

run() { # run ROUND a|b HASH
	local db=mpimspread_$$_$1$2 prefix="s$1$2:" listen=127.0.0.1:$(free_port) http=127.0.0.1:$(free_port)
	mariadb -uroot -h127.0.0.1 -e "CREATE DATABASE \`$db\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
	[[ $3 == fnv1a ]] && redis-cli -p "$rport" hset "${prefix}mpim:meta" partitions 16 >/dev/null
	bin/mpimd all --redis-addr "127.0.0.1:$rport" --prefix "$prefix" --mysql "root@tcp(127.0.0.1:3306)/$db" \
		--password-key-file "$dir/password.key" --log-level warn --listen "$listen" --http-addr "$http" \
		--client-rate 1000 --client-burst 2000 --password-memory-kib 1024 --password-passes 1 \
		--password-attempts-per-address -1 --max-unauthenticated-per-address -1 --max-unauthenticated 1000000 \
		--max-conns-per-address -1 >"$dir/mpimd.log" 2>&1 &
	local pid=$!
	PIDS+=("$pid")
	for _ in $(seq 300); do curl -fsS "http://$http/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
	local audit=clean rate
	timeout 120 bin/mpim-bench --gateways "ws://$listen/ws" --scenario pairs --users 1000 --window 1 \
		--warmup 3s --duration 10s --json "$dir/r.json" >"$dir/bench.log" 2>&1 || audit="FAILED (see $dir/bench.log)"
	rate=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["sends_acked_per_s"]))' "$dir/r.json" 2>/dev/null || echo "?")
	local lens=()
	for p in $(seq 0 15); do lens+=("$(redis-cli -p "$rport" xlen "${prefix}{p$p}:log")"); done
	echo "round $1 $3: acked/s $rate, audit $audit; entries per partition: ${lens[*]}"
	kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
}
for i in $(seq "$ROUNDS"); do
	run "$i" a fnv1a
	run "$i" b fnv1a-fmix32
done
