#!/usr/bin/env bash
# End-to-end benchmark and audit of mpim, with calibration in the same run.
#
# Makes the shared services reachable (scripts/services.sh), builds bin/mpimd
# and bin/mpim-bench, then starts everything the run owns: a private Redis on
# a free loopback port (durability --durability none|everysec|always, data in
# a temp dir), a fresh MariaDB database, a unique ZooKeeper root on the shared
# ZooKeeper, one `mpimd projector` and --gateways (1 or 2) `mpimd gateway`
# processes. It calibrates with `redis-benchmark -c 50` unpipelined XADD on
# the private Redis, runs the scenarios with bin/mpim-bench (every run is also
# an audit), samples the CPU (utime+stime from /proc) of mpimd, Redis and
# MariaDB around each scenario and the RSS of mpimd, and writes
# bench/results/bench-<UTC time>.md (plus the raw JSON beside it, and a PNG
# of each traffic scenario's latency percentiles over time, which the
# markdown links). The storm scenario (everyone offline, missed messages,
# everyone reconnects at once) gets a table of its own.
# Everything it started is stopped on exit; the database is dropped.
#
#   scripts/bench.sh --short                 # quick check, under 2 minutes
#   scripts/bench.sh --durability always     # the full set
#   scripts/bench.sh --only 'idle|pairs closed 1000'   # scenarios whose name matches (grep -E)
#   scripts/bench.sh --short --only 'pairs closed' --repeat 3 --bench-bin /tmp/mpim-bench-old
#                                            # each scenario 3 times, with another mpim-bench build
#
# Scenarios whose name ends in "json" drive JSON clients (mpim-bench --codec
# json, subprotocol mpim.v1.json); the others binary protobuf clients. Every
# traffic row also gives mpim-bench's own CPU per acked message over the
# measured window, so that the load generator's share of the machine shows.
#
# Exits 1 if any scenario failed: its audit (lost, duplicated, reordered or
# twice-appended messages, send errors, unanswered sends, dropped
# connections), the MySQL projection lag target (caught up within 10 s of
# the scenario's end), or an idle memory figure that is not positive; 2 on a
# setup problem.
set -euo pipefail
cd "$(dirname "$0")/.."
wall0=$(date +%s.%N)

SHORT=
DURABILITY=everysec
GATEWAYS=2
ONLY=
REPEAT=1
BENCH_BIN=
while (($#)); do
	case $1 in
	--short) SHORT=1 ;;
	--durability) DURABILITY=${2:?--durability needs none, everysec or always}; shift ;;
	--durability=*) DURABILITY=${1#*=} ;;
	--gateways) GATEWAYS=${2:?--gateways needs 1 or 2}; shift ;;
	--only) ONLY=${2:?--only needs a pattern of scenario names}; shift ;;
	--repeat) REPEAT=${2:?--repeat needs a count}; shift ;;
	--bench-bin) BENCH_BIN=${2:?--bench-bin needs the path of an mpim-bench binary}; shift ;;
	-h | --help) sed -n '2,34p' "$0"; exit 0 ;;
	*) echo "bench.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
case $DURABILITY in
none) AOF=(--appendonly no) ;;
everysec | always) AOF=(--appendonly yes --appendfsync "$DURABILITY") ;;
*) echo "bench.sh: --durability must be none, everysec or always" >&2; exit 2 ;;
esac
[[ $GATEWAYS == 1 || $GATEWAYS == 2 ]] || { echo "bench.sh: --gateways must be 1 or 2" >&2; exit 2; }
[[ $REPEAT =~ ^[1-9]$ ]] || { echo "bench.sh: --repeat must be 1..9" >&2; exit 2; }
if [[ -n $BENCH_BIN ]]; then
	[[ -x $BENCH_BIN ]] || { echo "bench.sh: --bench-bin $BENCH_BIN is not an executable" >&2; exit 2; }
	BENCH_BIN=$(realpath "$BENCH_BIN")
fi

scripts/services.sh >/dev/null
mkdir -p bin bench/results
go build -o bin/mpimd ./cmd/mpimd
go build -o bin/mpim-bench ./cmd/mpim-bench
BENCH_BIN=${BENCH_BIN:-bin/mpim-bench}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
stamp=$(date -u +%Y%m%dT%H%M%SZ)
run_id=$(date +%s)$$
dir=$(mktemp -d "${TMPDIR:-/tmp}/mpim-bench.XXXXXX")
db=mpimbench_$run_id
zkroot=/mpim-bench-$run_id
redis_port=$(free_port)
PIDS=()

cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
	done
	redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
	mariadb -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS \`$db\`" 2>/dev/null || true
	if [[ ${failed:-0} != 0 ]]; then
		echo "bench.sh: a scenario failed; process logs kept in $dir" >&2
	else
		rm -rf "$dir"
	fi
}
trap cleanup EXIT
trap 'exit 2' INT TERM

# ------------------------------------------------------------ services
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" "${AOF[@]}" --daemonize yes \
	--dir "$dir" --logfile "$dir/redis.log" --pidfile "$dir/redis.pid"
for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
for _ in $(seq 50); do [[ -s $dir/redis.pid ]] && break; sleep 0.1; done
redis_pid=$(cat "$dir/redis.pid")
mariadb -uroot -h127.0.0.1 -e "CREATE DATABASE \`$db\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
mysql_pid=$(pgrep -o -x mariadbd || pgrep -o -x mysqld || true)

(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/password.key") # this deployment's password key
common=(--redis-addr "127.0.0.1:$redis_port" --mysql "root@tcp(127.0.0.1:3306)/$db"
	--zookeeper 127.0.0.1:2181 --zk-root "$zkroot" --log-level warn --password-key-file "$dir/password.key")

wait_ready() { # wait_ready HTTP_ADDR PID NAME
	for _ in $(seq 300); do
		curl -fsS "http://$1/readyz" >/dev/null 2>&1 && return 0
		kill -0 "$2" 2>/dev/null || { echo "bench.sh: $3 exited; log:" >&2; tail -20 "$dir/$3.log" >&2; exit 2; }
		sleep 0.1
	done
	echo "bench.sh: $3 not ready after 30s; log:" >&2; tail -20 "$dir/$3.log" >&2; exit 2
}

proj_http=127.0.0.1:$(free_port)
bin/mpimd projector "${common[@]}" --http-addr "$proj_http" --member-id "bench-proj-$run_id" >"$dir/projector.log" 2>&1 &
proj_pid=$!
PIDS+=("$proj_pid")
wait_ready "$proj_http" "$proj_pid" projector

GW_URLS=() GW_PIDS=() GW_METRICS=()
for g in $(seq "$GATEWAYS"); do
	listen=127.0.0.1:$(free_port) http=127.0.0.1:$(free_port)
	bin/mpimd gateway "${common[@]}" --listen "$listen" --http-addr "$http" --gateway-id "bench-gw$g-$run_id" --client-rate 1000 --client-burst 2000 \
		--password-memory-kib 1024 --password-passes 1 --max-group-members 1000 \
		--password-attempts-per-address -1 --max-unauthenticated-per-address -1 --max-unauthenticated 1000000 --max-conns-per-address -1 \
		--pprof >"$dir/gateway$g.log" 2>&1 &
	PIDS+=("$!") GW_PIDS+=("$!")
	wait_ready "$http" "$!" "gateway$g"
	GW_URLS+=("ws://$listen/ws") GW_METRICS+=("http://$http/metrics")
done
join() { local IFS=,; echo "$*"; }
gateways=$(join "${GW_URLS[@]}")
mpimd_pids=$(join "$proj_pid" "${GW_PIDS[@]}")

# ------------------------------------------------------------ calibration
payload=$(printf 'x%.0s' $(seq 100))
cal_n=200000
[[ -n $SHORT ]] && cal_n=100000
cal=$(redis-benchmark -p "$redis_port" -c 50 -n "$cal_n" --csv XADD calib:stream '*' v 1 s 0 d "$payload" |
	awk -F'","' 'NR==2 {gsub(/"/,"",$2); print $2}')
redis-cli -p "$redis_port" del calib:stream >/dev/null
echo "bench.sh: calibration: redis-benchmark -c 50 XADD $cal/s" >&2

# ------------------------------------------------------------ scenarios
# name|mpim-bench flags
if [[ -n $SHORT ]]; then
	SCENARIOS=(
		"pairs closed|--scenario pairs --users 100 --window 1 --warmup 1s --duration 5s --drain 20s"
		"pairs closed json|--scenario pairs --codec json --users 100 --window 1 --warmup 1s --duration 5s --drain 20s"
		"pairs open 1500/s|--scenario pairs --users 100 --rate 1500 --warmup 1s --duration 6s --drain 20s"
		"pairs open 1500/s json|--scenario pairs --codec json --users 100 --rate 1500 --warmup 1s --duration 6s --drain 20s"
		"groups K=10|--scenario groups --users 60 --group-size 10 --warmup 1s --duration 4s --drain 20s"
		"fanout 50|--scenario fanout --users 50 --senders 2 --warmup 1s --duration 4s"
		"idle|--scenario idle --users 1000 --duration 3s"
		"storm 200x20|--scenario storm --users 200 --senders 50 --missed 20 --window 2 --duration 60s --drain 20s --catchup-timeout 60s --setup-concurrency 16"
	)
	PLOT_INTERVAL=500ms
else
	SCENARIOS=(
		"pairs closed 1000 conns|--scenario pairs --users 1000 --window 1 --warmup 5s --duration 30s"
		"pairs closed 1000 conns json|--scenario pairs --codec json --users 1000 --window 1 --warmup 5s --duration 30s"
		"pairs closed 200 conns|--scenario pairs --users 200 --window 1 --warmup 5s --duration 30s"
		"pairs open 3000/s|--scenario pairs --users 1000 --rate 3000 --warmup 5s --duration 30s --drain 60s"
		"pairs open 10000/s|--scenario pairs --users 1000 --rate 10000 --warmup 5s --duration 30s --drain 120s"
		"groups K=100 open 100/s|--scenario groups --users 1000 --group-size 100 --rate 100 --warmup 5s --duration 20s --drain 60s"
		"fanout 1000 open 10/s|--scenario fanout --users 1000 --senders 2 --rate 10 --warmup 5s --duration 20s --drain 60s"
		"idle 10000|--scenario idle --users 10000 --duration 10s --setup-concurrency 32"
		"storm 10000x100|--scenario storm --users 10000 --senders 200 --missed 100 --window 2 --duration 45m --drain 60s --catchup-timeout 300s --setup-concurrency 32"
	)
	PLOT_INTERVAL=1s
fi
if [[ -n $ONLY ]]; then
	kept=()
	for s in "${SCENARIOS[@]}"; do
		if grep -Eq -- "$ONLY" <<<"${s%%|*}"; then kept+=("$s"); fi
	done
	((${#kept[@]})) || { echo "bench.sh: --only '$ONLY' matches no scenario name" >&2; exit 2; }
	SCENARIOS=("${kept[@]}")
fi
if ((REPEAT > 1)); then
	kept=()
	for s in "${SCENARIOS[@]}"; do
		for i in $(seq "$REPEAT"); do kept+=("${s%%|*} #$i|${s#*|}"); done
	done
	SCENARIOS=("${kept[@]}")
fi

# projection_drain: seconds from now until the mysql and archive projectors
# report no lag on any partition (mpim_projector_lag_milliseconds, which the
# projector updates once a second), or "> 60" if they do not within 60 s.
# The target is LAG_TARGET seconds: a scenario that takes longer fails.
LAG_TARGET=10
projection_drain() {
	local t0 lag
	t0=$(date +%s.%N)
	for _ in $(seq 600); do
		lag=$(curl -s --max-time 2 "http://$proj_http/metrics" |
			awk '/^mpim_projector_lag_milliseconds\{/ && /projector="(mysql|archive)"/ { n++; if ($NF + 0 > m) m = $NF + 0 } END { print (n ? m + 0 : -1) }')
		if [[ $lag == 0 ]]; then
			echo "$(date +%s.%N) - $t0" | bc | xargs printf '%.1f'
			return
		fi
		sleep 0.1
	done
	echo "> 60"
}

cpu_ticks() { # cpu_ticks PID: utime+stime in clock ticks, 0 if gone
	[[ -n $1 && -r /proc/$1/stat ]] || { echo 0; return; }
	sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}
sum_ticks() { local t=0 p; for p in "$@"; do t=$((t + $(cpu_ticks "$p"))); done; echo $t; }
rss_mib() { awk '/VmRSS/ {s+=$2} END {printf "%.0f", s/1024}' $(printf '/proc/%s/status ' "$@") 2>/dev/null; }
hz=$(getconf CLK_TCK)

failed=0
rows=() storm_rows=() plots=() walls=() lags=()
scen0=$(date +%s.%N)
n=0
for s in "${SCENARIOS[@]}"; do
	n=$((n + 1))
	name=${s%%|*} flags=${s#*|}
	json=$dir/s$n.json
	pids=$mpimd_pids
	extra=(--plot "$dir/s$n.png" --plot-interval "$PLOT_INTERVAL")
	[[ $flags == *idle* ]] && { pids=$(join "${GW_PIDS[@]}"); extra=(--metrics "$(join "${GW_METRICS[@]}")"); }
	m0=$(sum_ticks "$proj_pid" "${GW_PIDS[@]}") r0=$(cpu_ticks "$redis_pid") d0=$(cpu_ticks "$mysql_pid") t0=$(date +%s.%N)
	echo "bench.sh: scenario $name: $BENCH_BIN --gateways $gateways $flags" >&2
	rc=0
	# shellcheck disable=SC2086
	"$BENCH_BIN" --gateways "$gateways" $flags --pid "$pids" "${extra[@]}" --json "$json" || rc=$?
	m1=$(sum_ticks "$proj_pid" "${GW_PIDS[@]}") r1=$(cpu_ticks "$redis_pid") d1=$(cpu_ticks "$mysql_pid") t1=$(date +%s.%N)
	rss=$(rss_mib "$proj_pid" "${GW_PIDS[@]}")
	drain=$(projection_drain)
	if [[ $drain == ">"* ]] || (($(echo "$drain > $LAG_TARGET" | bc))); then
		echo "bench.sh: scenario $name: MySQL projection lag $drain s, over the $LAG_TARGET s target" >&2
		lags+=("$name|$drain s: **FAILED**, over the $LAG_TARGET s target")
		failed=1
	else
		lags+=("$name|$drain s")
	fi
	walls+=("$(echo "$t1 - $t0" | bc | xargs printf '%.0f')")
	if ((rc == 2)) || [[ ! -s $json ]]; then
		echo "bench.sh: scenario $name did not run (exit $rc)" >&2
		if [[ $flags == *storm* ]]; then
			storm_rows+=("| $name | did not run (exit $rc) |||||||||")
		else
			rows+=("| $name | did not run (exit $rc) |||||||||")
		fi
		failed=1
		continue
	fi
	((rc == 0)) || failed=1
	# A memory figure that is not positive measures the garbage collector,
	# not the connections (mpim-bench samples after a forced GC and a settled
	# RSS): the scenario fails rather than publish it.
	if [[ $(jq -r '.scenario == "idle" and ((.rss_per_connection_bytes // 0) <= 0 or (.heap_per_connection_bytes // 0) <= 0)' "$json") == true ]]; then
		echo "bench.sh: scenario $name: memory per connection not positive" >&2
		failed=1
	fi
	cp "$json" "bench/results/bench-$stamp-s$n.json"
	if [[ -s $dir/s$n.png ]]; then
		cp "$dir/s$n.png" "bench/results/bench-$stamp-s$n.png"
		plots+=("$name|bench-$stamp-s$n.png")
	fi
	if [[ $(jq -r .scenario "$json") == storm ]]; then
		storm_rows+=("$(jq -r --arg name "$name" --arg hz "$hz" --arg m "$((m1 - m0))" --arg r "$((r1 - r0))" --arg d "$((d1 - d0))" '
			def f(x): (x * 100 | round) / 100;
			def per(t): if .storm.catchup_deliveries > 0 then (((t | tonumber) / ($hz | tonumber)) * 1e6 / .storm.catchup_deliveries | round | tostring) else "-" end;
			.storm as $s |
			"| \($name) | \($s.clients) x \($s.missed_per_client) (\($s.missed_acked) acked) | \($s.offline_sends_acked_per_s | round) by \($s.sender_connections) conns, p99 ack \(f(.send_ack.p99_ms)) ms | \(f($s.reconnect_s)) s (\($s.reconnect_retries) retries) | \($s.catchup_p50_ms | round) / \($s.catchup_p99_ms | round) / **\($s.catchup_total_ms | round)** | \($s.catchup_deliveries_per_s | round) | \($s.caught_up)/\($s.clients)\(if $s.projected_before_reconnect then "" else " (projection still running at reconnect)" end) | catch-up window: mpimd \(.server_cpu_per_message_us // 0 | round) µs/delivery; whole scenario: mpimd \(per($m)), redis \(per($r)), mariadb \(per($d)) µs/missed message | \(.total_sends)/\(.total_acked) | \(if .audit_clean then "clean" else "FAILED \(.audit)" end) |"' "$json")")
		continue
	fi
	rows+=("$(jq -r --arg name "$name" --arg cal "$cal" --arg hz "$hz" --arg rss "$rss" \
		--arg m "$((m1 - m0))" --arg r "$((r1 - r0))" --arg d "$((d1 - d0))" --arg wall "$(echo "$t1 - $t0" | bc)" '
		def f(x): (x * 100 | round) / 100;
		def per(t): if .total_acked > 0 then (((t | tonumber) / ($hz | tonumber)) * 1e6 / .total_acked | round | tostring) else "-" end;
		if .scenario == "idle" then
			"| \($name) | \(.users) conns open: \(.open_connections) | - | - | - | - | - | RSS/conn \((.rss_per_connection_bytes // 0) / 1024 * 10 | round / 10) KiB, heap+stack/conn \((.heap_per_connection_bytes // 0) / 1024 * 10 | round / 10) KiB (after a forced GC: \(.gc_forced // false), RSS settled: \(.memory_settled // false)) | - | mpimd RSS \($rss) MiB | \(if .audit_clean then "clean" else "FAILED \(.audit)" end) |"
		else
			"| \($name) | \(.sends_acked_per_s | round) | \(.deliveries_per_s | round) | \(f(.deliveries_per_s / ($cal | tonumber))) | \(f(.send_ack.p50_ms)) / \(f(.send_ack.p99_ms)) / \(f(.send_ack.p999_ms)) / \(f(.send_ack.max_ms)) | \(f(.send_delivery.p50_ms)) / \(f(.send_delivery.p99_ms)) / \(f(.send_delivery.p999_ms)) / \(f(.send_delivery.max_ms)) | \(.rate_limited) | whole scenario incl. setup: mpimd \(per($m)), redis \(per($r)), mariadb \(per($d)) µs/msg; measured window: mpimd \(.server_cpu_per_message_us // 0 | round), mpim-bench \(f(.bench_cpu_per_message_us // 0)) µs/msg | \(.total_sends)/\(.total_acked) | mpimd RSS \($rss) MiB | \(if .audit_clean then "clean" else "FAILED \(.audit)" end) |"
		end' "$json")")
done

# ------------------------------------------------------------ report
report=bench/results/bench-$stamp.md
{
	echo "# mpim end-to-end benchmark and audit${SHORT:+ (short)}"
	echo
	echo "- when: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git rev-parse --short HEAD 2>/dev/null || echo none)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
	echo "- machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
	echo "- redis $(redis-server --version | awk '{print $3}' | sed 's/v=//'), private, durability **$DURABILITY**; $(mariadb -uroot -h127.0.0.1 -N -B -e 'SELECT VERSION()'); ZooKeeper root $zkroot"
	echo "- mpimd: 1 projector + $GATEWAYS gateway(s), clients spread round-robin over the gateways; load generator, Redis, MariaDB, ZooKeeper and mpimd share the cores"
	echo "- calibration: \`redis-benchmark -c 50 -n $cal_n\` unpipelined XADD of a 100-byte field: **$cal/s**"
	echo
	echo "| scenario | sends acked/s | deliveries/s | deliveries / calibration | send->ack p50/p99/p99.9/max ms | send->delivery p50/p99/p99.9/max ms | rate-limited retries | CPU per acked message | sent/acked | memory | audit |"
	echo "|---|---|---|---|---|---|---|---|---|---|---|"
	printf '%s\n' "${rows[@]}"
	echo
	if ((${#storm_rows[@]})); then
		echo "Storm: every client disconnects, sender connections (users of their own) send it the missed messages,"
		echo "then every client reconnects at once (resume with its token) and catches up from its stored cursor."
		echo "Catch-up is per client, from the reconnect start until it has every message it missed; total is the slowest."
		echo
		echo "| scenario | clients x missed | offline sends acked/s | all resumed after | catch-up median / p99 / total ms | catch-up deliveries/s | caught up | CPU | sent/acked | audit |"
		echo "|---|---|---|---|---|---|---|---|---|---|"
		printf '%s\n' "${storm_rows[@]}"
		echo
	fi
	echo "MySQL projection lag after each scenario: time from the end of the scenario (every send answered and"
	echo "delivered, or the drain limit hit) until the \`mysql\` and \`archive\` projectors report no lag on any partition"
	echo "(the metric is updated once a second, so figures below 1 s mean caught up; target: within $LAG_TARGET s,"
	echo "and a scenario over it fails the run):"
	echo
	for l in "${lags[@]}"; do echo "- ${l%%|*}: ${l#*|}"; done
	echo
	if ((${#plots[@]})); then
		echo "Latency percentiles over time (p50, p99, p99.9 of send->ack and send->delivery per $PLOT_INTERVAL, by when the"
		echo "answer or delivery arrived, from the start of the measured window; storm: the offline sending):"
		echo
		for p in "${plots[@]}"; do echo "- ${p%%|*}: [${p#*|}](${p#*|})"; done
		echo
		p=${plots[0]}
		echo "![${p%%|*}](${p#*|})"
		echo
	fi
	echo "Commands (each with \`--gateways $gateways --pid <mpimd pids> --json FILE\`):"
	echo
	i=0
	for s in "${SCENARIOS[@]}"; do echo "- ${s%%|*} (${walls[i]} s): \`bin/mpim-bench ${s#*|}\`"; i=$((i + 1)); done
	echo
	echo "Notes: deliveries count first deliveries of each message to every member device, the sender's own"
	echo "device included; send->delivery latency counts only other devices. Latencies are measured from the"
	echo "intended send time (open loop: the schedule; closed loop: when the window allowed the send)."
	echo "Rates are over the measured window after the warm-up. The audit covers every message of the run,"
	echo "warm-up included. CPU per message divides the CPU the processes spent over the whole scenario"
	echo "(setup with argon2id password hashing included; the gateways hash with 1 MiB x 1 pass so that setting up"
	echo "10,000 users takes seconds, not minutes: --password-memory-kib 1024 --password-passes 1) by the acked sends; the measured-window figure is"
	echo "the mpimd processes alone during the measured time. Every client acknowledges its latest push every"
	echo "100 ms; the gateways run with --client-rate 1000 --client-burst 2000; the per-connection rate limit applies to sends and acks"
	echo "alike and bounds what one connection can send; rate-limited sends are retried with the same client"
	echo "message id after the advised wait."
	echo
	echo "Wall time of the whole script: $(echo "$(date +%s.%N) - $wall0" | bc | xargs printf '%.0f') s, of which $(echo "$scen0 - $wall0" | bc | xargs printf '%.0f') s"
	echo "before the first scenario (services, builds, mpimd start, calibration); each scenario's own time is in parentheses above."
} >"$report"
cat "$report"
echo "bench.sh: report written to $report" >&2
exit "$failed"
