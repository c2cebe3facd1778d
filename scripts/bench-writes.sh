#!/usr/bin/env bash
# Write system calls and CPU of the gateway per message, for two revisions
# side by side in one run (issue 14's levers are measured this way).
#
#   scripts/bench-writes.sh BEFORE AFTER [ROUNDS [WINDOW [CODEC]]]   # git revisions; ROUNDS default 3, WINDOW 1, CODEC proto|json (default proto)
#
# Builds bin/mpimd of each revision into a temp dir (bin/mpim-bench of the
# working tree), then per round and revision starts a private Redis, a fresh
# MariaDB database, one `mpimd projector` and one `mpimd gateway`, and runs
# `mpim-bench --scenario pairs --users 400 --window WINDOW --warmup 3s
# --duration 10s --codec CODEC` (a bigger window piles up frames per connection). Per run it prints the gateway's write system calls per acked message
# (syscw of /proc/PID/io over the mpim-bench run, setup included: setup is
# the same for both) and mpimd's CPU per acked message over the measured
# window (mpim-bench's figure), and Redis EVALSHA calls (every script: append,
# routes, cursors) and all Redis commands per acked message (INFO
# commandstats over the mpim-bench run); then the medians per revision. Every run is
# an audit: an unclean one fails the script. Everything it started is
# stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# -ge 2 && $# -le 5 ]] || { sed -n '5p' "$0" >&2; exit 2; }
REVS=("$1" "$2")
ROUNDS=${3:-3}
WINDOW=${4:-1}
CODEC=${5:-proto}
[[ $ROUNDS =~ ^[1-9]$ ]] || { echo "bench-writes.sh: ROUNDS must be 1 to 9, got $ROUNDS" >&2; exit 2; }
[[ $WINDOW =~ ^[1-9][0-9]?$ ]] || { echo "bench-writes.sh: WINDOW must be 1 to 99, got $WINDOW" >&2; exit 2; }
[[ $CODEC == proto || $CODEC == json ]] || { echo "bench-writes.sh: CODEC must be proto or json, got $CODEC" >&2; exit 2; }
for r in "${REVS[@]}"; do
	git rev-parse --verify -q "$r^{commit}" >/dev/null || { echo "bench-writes.sh: no such revision: $r" >&2; exit 2; }
done

scripts/services.sh >/dev/null
dir=$(mktemp -d "${TMPDIR:-/tmp}/mpim-writes.XXXXXX")
PIDS=()
cleanup() {
	cleanup_run
	rm -rf "$dir"
}
cleanup_run() { # stops what a run started
	local p
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
	done
	PIDS=()
	[[ -n ${redis_port:-} ]] && redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
	[[ -n ${db:-} ]] && mariadb -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS \`$db\`" 2>/dev/null || true
	redis_port= db=
}
trap cleanup EXIT
trap 'exit 2' INT TERM

for i in 0 1; do
	mkdir -p "$dir/src$i"
	git archive "${REVS[$i]}" | tar -x -C "$dir/src$i"
	(cd "$dir/src$i" && go build -o "$dir/mpimd$i" ./cmd/mpimd)
done
go build -o "$dir/mpim-bench" ./cmd/mpim-bench

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() { # wait_ready HTTP_ADDR PID LOG
	for _ in $(seq 300); do
		curl -fsS "http://$1/readyz" >/dev/null 2>&1 && return 0
		kill -0 "$2" 2>/dev/null || { echo "bench-writes.sh: mpimd exited; log:" >&2; tail -5 "$3" >&2; exit 2; }
		sleep 0.1
	done
	echo "bench-writes.sh: mpimd not ready after 30s" >&2; exit 2
}
syscw() { awk '/^syscw/ {print $2}' "/proc/$1/io"; }
redis_calls() { # redis_calls PORT: "evalsha_calls all_calls" so far
	redis-cli -p "$1" info commandstats | tr -d '\r' | awk -F'[:=,]' '/^cmdstat_/ {all += $3; if ($1 == "cmdstat_evalsha") ev = $3} END {print ev + 0, all + 0}'
}

run() { # run I ROUND: prints "writes_per_msg cpu_us_per_msg evalsha_per_msg redis_calls_per_msg"
	local i=$1 n=$2 id proj gw listen http w0 w1 json e0 a0 e1 a1
	id=$(date +%s)$$$n$i
	redis_port=$(free_port) db=mpimwrites_$id
	redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
		--dir "$dir" --logfile "$dir/redis.log" --pidfile "$dir/redis.pid"
	for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
	mariadb -uroot -h127.0.0.1 -e "CREATE DATABASE \`$db\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
	(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/password.key")
	local common=(--redis-addr "127.0.0.1:$redis_port" --mysql "root@tcp(127.0.0.1:3306)/$db"
		--zookeeper 127.0.0.1:2181 --zk-root "/mpim-writes-$id" --log-level warn --password-key-file "$dir/password.key")
	http=127.0.0.1:$(free_port)
	"$dir/mpimd$i" projector "${common[@]}" --http-addr "$http" --member-id "writes-proj-$id" >"$dir/projector.log" 2>&1 &
	proj=$!
	PIDS=("$proj")
	wait_ready "$http" "$proj" "$dir/projector.log"
	listen=127.0.0.1:$(free_port) http=127.0.0.1:$(free_port)
	"$dir/mpimd$i" gateway "${common[@]}" --listen "$listen" --http-addr "$http" --gateway-id "writes-gw-$id" \
		--client-rate 1000 --client-burst 2000 --password-memory-kib 1024 --password-passes 1 \
		--password-attempts-per-address -1 --max-unauthenticated-per-address -1 --max-unauthenticated 1000000 --max-conns-per-address -1 >"$dir/gateway.log" 2>&1 &
	gw=$!
	PIDS+=("$gw")
	wait_ready "$http" "$gw" "$dir/gateway.log"
	json=$dir/run.json
	w0=$(syscw "$gw")
	read -r e0 a0 < <(redis_calls "$redis_port")
	"$dir/mpim-bench" --gateways "ws://$listen/ws" --scenario pairs --users 400 --window "$WINDOW" --warmup 3s --duration 10s --codec "$CODEC" \
		--pid "$proj,$gw" --progress 1m --json "$json" >/dev/null 2>"$dir/bench.log" ||
		{ echo "bench-writes.sh: mpim-bench failed:" >&2; tail -5 "$dir/bench.log" >&2; exit 1; }
	w1=$(syscw "$gw")
	read -r e1 a1 < <(redis_calls "$redis_port")
	[[ $(jq -r .audit_clean "$json") == true ]] || { echo "bench-writes.sh: audit failed: $(jq -c .audit "$json")" >&2; exit 1; }
	jq -r --arg w "$((w1 - w0))" --arg e "$((e1 - e0))" --arg a "$((a1 - a0))" \
		'"\(($w | tonumber) / .total_acked) \(.server_cpu_per_message_us) \(($e | tonumber) / .total_acked) \(($a | tonumber) / .total_acked)"' "$json"
	cleanup_run
}
declare -a W0 W1 C0 C1 E0 E1 A0 A1
for n in $(seq "$ROUNDS"); do
	for i in 0 1; do
		run "$i" "$n" >"$dir/result"
		read -r w c e a <"$dir/result"
		printf 'round %d %-12s write syscalls/msg %.2f  mpimd CPU %.0f us/msg  Redis EVALSHA/msg %.2f  Redis calls/msg %.2f\n' "$n" "${REVS[$i]}" "$w" "$c" "$e" "$a"
		if ((i == 0)); then W0+=("$w") C0+=("$c") E0+=("$e") A0+=("$a"); else W1+=("$w") C1+=("$c") E1+=("$e") A1+=("$a"); fi
	done
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
for i in 0 1; do
	if ((i == 0)); then
		w=$(median "${W0[@]}") c=$(median "${C0[@]}") e=$(median "${E0[@]}") a=$(median "${A0[@]}")
	else
		w=$(median "${W1[@]}") c=$(median "${C1[@]}") e=$(median "${E1[@]}") a=$(median "${A1[@]}")
	fi
	printf 'median %-12s write syscalls/msg %.2f  mpimd CPU %.0f us/msg  Redis EVALSHA/msg %.2f  Redis calls/msg %.2f\n' "${REVS[$i]}" "$w" "$c" "$e" "$a"
done
