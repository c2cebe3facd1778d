#!/usr/bin/env bash
# Event store benchmark with calibration in the same run.
#
# Starts a private redis-server (no persistence) on a free loopback port,
# measures `redis-benchmark -c 50` unpipelined XADD on it, then runs
# BenchmarkAppendMessages (64 concurrent appenders) against the same server,
# ROUNDS times each, alternating, and reports medians and the ratio.
# Writes bench/results/eventstore-<UTC time>.md.
#
#   scripts/bench-eventstore.sh            # 5 rounds of 200k events
#   ROUNDS=3 EVENTS=100000 scripts/bench-eventstore.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
EVENTS=${EVENTS:-200000}
PORT=${PORT:-6391}
command -v redis-server >/dev/null || scripts/services.sh

dir=$(mktemp -d)
trap 'redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
	--dir "$dir" --logfile "$dir/redis.log" --pidfile "$dir/redis.pid"
for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

go test -c -o "$dir/eventstore.test" ./eventstore
payload=$(printf 'x%.0s' $(seq 120))

median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.0f\n", m}'; }

: >"$dir/cal" ; : >"$dir/spread" ; : >"$dir/one"
for r in $(seq "$ROUNDS"); do
	redis-cli -p "$PORT" flushall >/dev/null
	cal=$(redis-benchmark -p "$PORT" -c 50 -n "$EVENTS" --csv XADD calib:stream '*' v 1 s 0 d "$payload" |
		awk -F'","' 'NR==2 {gsub(/"/,"",$2); print $2}')
	echo "$cal" >>"$dir/cal"
	redis-cli -p "$PORT" flushall >/dev/null
	out=$(MPIM_TEST_REDIS=127.0.0.1:$PORT "$dir/eventstore.test" -test.run '^$' \
		-test.bench 'BenchmarkAppendMessages' -test.benchtime "${EVENTS}x")
	echo "$out" | awk '/spread/ {for(i=1;i<=NF;i++) if($(i+1)=="events/s") print $i}' >>"$dir/spread"
	echo "$out" | awk '/one-conversation/ {for(i=1;i<=NF;i++) if($(i+1)=="events/s") print $i}' >>"$dir/one"
	printf 'round %d: redis-benchmark XADD %s/s, append spread %s/s, one conversation %s/s\n' \
		"$r" "$cal" "$(tail -1 "$dir/spread")" "$(tail -1 "$dir/one")"
done

cal=$(median <"$dir/cal"); spread=$(median <"$dir/spread"); one=$(median <"$dir/one")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
mkdir -p bench/results
report=bench/results/eventstore-$(date -u +%Y%m%dT%H%M%SZ).md
cat >"$report" <<MD
# Event store append benchmark

- when: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git rev-parse --short HEAD 2>/dev/null || echo none)
- machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)
- redis: $(redis-server --version | awk '{print $3}'), private instance, no persistence; Go benchmark, Redis and redis-benchmark share the cores
- rounds: $ROUNDS, $EVENTS events each; medians below

| measurement | events/s (median) | ratio to calibration |
|---|---|---|
| redis-benchmark -c 50, unpipelined XADD (calibration) | $cal | 1.00 |
| mpim Append, 64 appenders, 64 conversations over 16 partitions | $spread | $(ratio "$spread" "$cal") |
| mpim Append, 64 appenders, one conversation | $one | $(ratio "$one" "$cal") |

Every mpim append is a full Lua transaction (version check, seq assignment,
XADD of a protobuf envelope, head update), group-committed per partition.

Raw rounds (calibration / spread / one):
$(paste -d' ' "$dir/cal" "$dir/spread" "$dir/one" | sed 's/^/- /')
MD
cat "$report"
