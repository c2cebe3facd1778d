#!/usr/bin/env bash
# A/B of the append script: builds the eventstore test binary of two git
# revisions and runs BenchmarkAppendMessages/<MODE> with each, alternately,
# ROUNDS times, against one private redis-server (no persistence, loopback),
# with INFO commandstats reset before each run. Per run it prints events per
# script call, EVALSHA usec_per_call, Lua us per event, redis.calls inside
# the script per event (by command) and Redis CPU us per event; then medians.
#
#   scripts/bench-append.sh main HEAD 5            # mode send, 30k events
#   MODE=spread EVENTS=50000 scripts/bench-append.sh main HEAD 3
set -euo pipefail
cd "$(dirname "$0")/.."
A=${1:?before revision} B=${2:?after revision} ROUNDS=${3:-3}
MODE=${MODE:-send} EVENTS=${EVENTS:-30000} PORT=${PORT:-6398}
dir=$(mktemp -d)
trap 'redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
for rev in "$A" "$B"; do
	mkdir -p "$dir/src-$rev" && git archive "$rev" | tar -x -C "$dir/src-$rev"
	(cd "$dir/src-$rev" && go test -c -o "$dir/$rev.test" ./eventstore)
done
redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
	--dir "$dir" --logfile "$dir/redis.log" --pidfile "$dir/redis.pid"
for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
cpu() { redis-cli -p "$PORT" info cpu | awk -F: '/used_cpu_(sys|user):/ {s+=$2} END {printf "%.6f", s}'; }
for r in $(seq "$ROUNDS"); do
	for rev in "$A" "$B"; do
		redis-cli -p "$PORT" flushall >/dev/null
		redis-cli -p "$PORT" config resetstat >/dev/null
		c0=$(cpu)
		MPIM_TEST_REDIS=127.0.0.1:$PORT "$dir/$rev.test" -test.run '^$' \
			-test.bench "BenchmarkAppendMessages/$MODE\$" -test.benchtime "${EVENTS}x" >/dev/null
		c1=$(cpu)
		redis-cli -p "$PORT" info commandstats | tr -d '\r' | awk -F'[:=,]' -v n="$EVENTS" -v c0="$c0" -v c1="$c1" -v rev="$rev" -v r="$r" '
		/^cmdstat_/ {c=substr($1,9); calls[c]=$3; usec[c]=$5; upc[c]=$7}
		END {
			inner=0; list=""
			for (c in calls) if (c ~ /^(get|set|hget|hmget|hset|xadd)$/) {inner+=calls[c]; list=list sprintf(" %s=%.2f", c, calls[c]/n)}
			printf "round %d %s: %.2f events/call, evalsha %.1f us/call, lua %.1f us/event, %.2f redis.calls/event (%s), redis cpu %.1f us/event\n",
				r, rev, n/calls["evalsha"], upc["evalsha"], usec["evalsha"]/n, inner/n, substr(list,2), (c1-c0)*1e6/n
		}' | tee -a "$dir/runs"
	done
done
median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f", m}'; }
for rev in "$A" "$B"; do
	grep " $rev: " "$dir/runs" >"$dir/m"
	printf '%s medians: evalsha %s us/call, lua %s us/event, %s redis.calls/event, redis cpu %s us/event\n' "$rev" \
		"$(awk '{print $7}' "$dir/m" | median)" "$(awk '{print $10}' "$dir/m" | median)" \
		"$(awk '{print $12}' "$dir/m" | median)" "$(awk '{print $(NF-1)}' "$dir/m" | median)"
done
