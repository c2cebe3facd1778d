#!/usr/bin/env bash
# redis-cluster.sh starts or stops a local Redis Cluster for trying mpim on a
# cluster and for benchmarks: three masters and three replicas on loopback,
# ports BASEPORT..BASEPORT+5 (default 7000..7005; cluster bus ports 10000
# above), without persistence, daemonized, each node in its own directory
# under MPIM_REDIS_CLUSTER_DIR (default $TMPDIR/mpim-redis-cluster-BASEPORT).
#
#   scripts/redis-cluster.sh start [BASEPORT]   start (or reuse) and wait for cluster_state:ok
#   scripts/redis-cluster.sh stop  [BASEPORT]   shut every node down and remove the directory
#
# start is idempotent: a cluster already answering cluster_state:ok on every
# port is used as it is. It prints the --redis-addr to use, e.g.
#   mpimd all --redis-addr 127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002 ...
# Tests do not need it (internal/testsvc starts its own cluster) but use it
# when MPIM_TEST_REDIS_CLUSTER lists its six nodes. MPIM_REDIS_CLUSTER_ARGS
# adds redis-server arguments to every node's, after the defaults, e.g.
# "--appendonly yes --appendfsync everysec" (scripts/bench.sh --cluster).
# MPIM_REDIS_CLUSTER_REPLICAS=0 starts the three masters only (ports
# BASEPORT..BASEPORT+2; scripts/bench.sh --cluster-replicas 0).
# Needs redis-server and redis-cli 7 (scripts/services.sh installs them).
set -euo pipefail

readonly HOST=127.0.0.1
readonly WAIT_SECONDS=${MPIM_SERVICES_WAIT:-60}

die() {
	echo "redis-cluster.sh: $*" >&2
	exit 1
}

readonly REPLICAS=${MPIM_REDIS_CLUSTER_REPLICAS:-1}
[[ $REPLICAS == 0 || $REPLICAS == 1 ]] || die "MPIM_REDIS_CLUSTER_REPLICAS must be 0 or 1, got $REPLICAS"
readonly NODES=$((3 * (1 + REPLICAS)))

usage() { die "usage: redis-cluster.sh start|stop [BASEPORT]"; }

[[ $# -ge 1 && $# -le 2 ]] || usage
readonly ACTION=$1
readonly BASE=${2:-7000}
[[ $BASE =~ ^[0-9]+$ ]] && ((BASE >= 1024 && BASE + NODES - 1 + 10000 <= 65535)) ||
	die "BASEPORT must be a number in 1024..$((65535 - 10000 - NODES + 1)), got $BASE"
readonly DIR=${MPIM_REDIS_CLUSTER_DIR:-${TMPDIR:-/tmp}/mpim-redis-cluster-$BASE}
read -ra EXTRA_ARGS <<<"${MPIM_REDIS_CLUSTER_ARGS:-}"

ports() { seq "$BASE" $((BASE + NODES - 1)); }

addrs() {
	local p
	for p in $(ports); do printf '%s:%s ' "$HOST" "$p"; done
}

cli() { redis-cli -h "$HOST" -p "$1" "${@:2}"; }

state_ok() {
	local p
	for p in $(ports); do
		cli "$p" cluster info 2>/dev/null | tr -d '\r' | grep -qx 'cluster_state:ok' || return 1
		cli "$p" cluster info 2>/dev/null | tr -d '\r' | grep -qx "cluster_known_nodes:$NODES" || return 1
	done
}

wait_for() {
	local deadline=$((SECONDS + WAIT_SECONDS))
	until "$@"; do
		((SECONDS < deadline)) || return 1
		sleep 0.5
	done
}

start() {
	command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
		die "redis-server and redis-cli are needed (scripts/services.sh installs them)"
	if state_ok; then
		echo "redis-cluster: already running on ports $BASE..$((BASE + NODES - 1))"
	else
		local p
		for p in $(ports); do
			if cli "$p" ping >/dev/null 2>&1; then
				die "port $p answers but the cluster is not ok; run: redis-cluster.sh stop $BASE"
			fi
		done
		mkdir -p "$DIR"
		for p in $(ports); do
			mkdir -p "$DIR/$p"
			redis-server --port "$p" --bind "$HOST" --cluster-enabled yes --cluster-config-file nodes.conf \
				--cluster-node-timeout 5000 --dir "$DIR/$p" --save '' --appendonly no --daemonize yes \
				--pidfile "$DIR/$p/redis.pid" --logfile "$DIR/$p/redis.log" --protected-mode no "${EXTRA_ARGS[@]}" ||
				die "redis-server on port $p did not start (log: $DIR/$p/redis.log)"
		done
		for p in $(ports); do
			wait_for cli "$p" ping >/dev/null 2>&1 || die "redis-server on port $p does not answer (log: $DIR/$p/redis.log)"
		done
		# shellcheck disable=SC2046
		redis-cli --cluster create $(addrs) --cluster-replicas "$REPLICAS" --cluster-yes >"$DIR/create.log" 2>&1 ||
			die "redis-cli --cluster create failed: $(tail -n 5 "$DIR/create.log")"
		wait_for state_ok || die "cluster_state is not ok on every node within ${WAIT_SECONDS}s"
		echo "redis-cluster: started 3 masters + $((3 * REPLICAS)) replicas on ports $BASE..$((BASE + NODES - 1)) in $DIR"
	fi
	echo "--redis-addr $HOST:$BASE,$HOST:$((BASE + 1)),$HOST:$((BASE + 2))"
}

stop() {
	local p
	for p in $(ports); do
		cli "$p" shutdown nosave >/dev/null 2>&1 || true
	done
	for p in $(ports); do
		wait_for bash -c "! redis-cli -h $HOST -p $p ping >/dev/null 2>&1" || die "port $p still answers"
	done
	rm -rf "$DIR"
	echo "redis-cluster: stopped ports $BASE..$((BASE + NODES - 1))"
}

case $ACTION in
start) start ;;
stop) stop ;;
*) usage ;;
esac
