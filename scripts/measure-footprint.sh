#!/usr/bin/env bash
# Bytes per user, per connection, per message and per group member, in Redis
# and in MySQL: the figures docs/scaling.md sizes memory and disks from.
#
#   scripts/measure-footprint.sh [USERS [MESSAGES [GROUP_SIZE]]]
#   scripts/measure-footprint.sh 2000 20000 50          # the defaults, about 3 minutes
#
# USERS 100..20000 (even), MESSAGES 1000..200000, GROUP_SIZE 2..500. Builds
# bin/mpimd and bin/mpim-bench, starts a private redis-server without
# persistence on a free loopback port, a fresh MariaDB database, one `mpimd
# projector` (static coordinator, --trim-interval 0 so that the log keeps
# every entry to be measured) and one `mpimd gateway`, then three phases,
# each an mpim-bench run with its audit:
#   idle:   USERS connections held (fresh users); Redis commands and CPU
#           over 10 s of the hold with no traffic; measured while every one
#           has a presence route, and again after they closed;
#   pairs:  USERS fresh users in USERS/2 pairs send MESSAGES 100-byte texts;
#   groups: USERS fresh users in groups of GROUP_SIZE send MESSAGES/GROUP_SIZE
#           100-byte texts at a fixed rate.
# After each phase (once the projectors caught up: the MySQL messages count
# and the inbox entry count stop moving) it takes a snapshot: per key class
# (log, heads, histories, cells, idempotency records, inboxes, cursors,
# presence, caches, ...) the keys, the elements (XLEN, HLEN, 1 per string)
# and MEMORY USAGE ... SAMPLES 0 summed; INFO used_memory; per MySQL table
# the rows (COUNT(*)) and data+index bytes after ANALYZE TABLE. It prints
# each snapshot and the difference between consecutive ones, and writes
# them to bench/results/footprint-<UTC time>.md. Every bound: mpim-bench
# runs are capped by count and time, every wait by 120 s. Everything it
# started is stopped on exit; the database is dropped.
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${1:-2000} MESSAGES=${2:-20000} GROUP=${3:-50}
[[ $USERS =~ ^[0-9]+$ ]] && ((USERS >= 100 && USERS <= 20000 && USERS % 2 == 0)) ||
	{ echo "measure-footprint.sh: USERS must be an even number 100..20000, got $USERS" >&2; exit 2; }
[[ $MESSAGES =~ ^[0-9]+$ ]] && ((MESSAGES >= 1000 && MESSAGES <= 200000)) ||
	{ echo "measure-footprint.sh: MESSAGES must be 1000..200000, got $MESSAGES" >&2; exit 2; }
[[ $GROUP =~ ^[0-9]+$ ]] && ((GROUP >= 2 && GROUP <= 500 && GROUP <= USERS)) ||
	{ echo "measure-footprint.sh: GROUP_SIZE must be 2..500 and at most USERS, got $GROUP" >&2; exit 2; }

scripts/services.sh >/dev/null
mkdir -p bin bench/results
go build -o bin/mpimd ./cmd/mpimd
go build -o bin/mpim-bench ./cmd/mpim-bench

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
stamp=$(date -u +%Y%m%dT%H%M%SZ)
dir=$(mktemp -d "${TMPDIR:-/tmp}/mpim-footprint.XXXXXX")
db=mpimfootprint_$(date +%s)$$
rport=$(free_port)
PIDS=()
cleanup() {
	((${#PIDS[@]})) && kill -TERM "${PIDS[@]}" 2>/dev/null || true
	wait
	redis-cli -p "$rport" shutdown nosave >/dev/null 2>&1 || true
	mariadb -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS \`$db\`" 2>/dev/null || true
	[[ -n ${KEEP:-} ]] || rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 2' INT TERM

redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes --dir "$dir" --logfile "$dir/redis.log"
for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
mariadb -uroot -h127.0.0.1 -e "CREATE DATABASE \`$db\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/password.key")
common=(--redis-addr "127.0.0.1:$rport" --mysql "root@tcp(127.0.0.1:3306)/$db" --log-level warn --password-key-file "$dir/password.key")

wait_ready() { # wait_ready HTTP_ADDR PID NAME
	for _ in $(seq 300); do
		curl -fsS "http://$1/readyz" >/dev/null 2>&1 && return 0
		kill -0 "$2" 2>/dev/null || { echo "measure-footprint.sh: $3 exited; log:" >&2; tail -20 "$dir/$3.log" >&2; exit 2; }
		sleep 0.1
	done
	echo "measure-footprint.sh: $3 not ready after 30 s" >&2; exit 2
}
http=127.0.0.1:$(free_port)
bin/mpimd projector "${common[@]}" --http-addr "$http" --trim-interval 0 >"$dir/projector.log" 2>&1 &
PIDS+=("$!") proj_pid=$!
wait_ready "$http" "$!" projector
listen=127.0.0.1:$(free_port) ghttp=127.0.0.1:$(free_port)
bin/mpimd gateway "${common[@]}" --listen "$listen" --http-addr "$ghttp" --gateway-id footprint-gw \
	--client-rate 1000 --client-burst 2000 --password-memory-kib 1024 --password-passes 1 --max-group-members 1000 \
	--password-attempts-per-address -1 --max-unauthenticated-per-address -1 --max-unauthenticated 1000000 \
	--max-conns-per-address -1 >"$dir/gateway.log" 2>&1 &
PIDS+=("$!") gw_pid=$!
wait_ready "$ghttp" "$!" gateway
redis_pid=$(redis-cli -p "$rport" INFO server | tr -d '\r' | awk -F: '$1 == "process_id" {print $2}')

rcli() { redis-cli -p "$rport" "$@"; }
# key_classes: one line per key class, "class keys elements bytes".
key_classes() {
	rcli --scan >"$dir/keys"
	awk '{
		c = "other"; e = "EXISTS"
		if ($0 ~ /^\{p[0-9]+\}:log$/) { c = "log"; e = "XLEN" }
		else if ($0 ~ /^\{p[0-9]+\}:h$/) { c = "heads"; e = "HLEN" }
		else if ($0 ~ /^\{p[0-9]+\}:e:/) { c = "histories"; e = "XLEN" }
		else if ($0 ~ /^\{p[0-9]+\}:snap:/) c = "snapshots"
		else if ($0 ~ /^\{p[0-9]+\}:c:/) { c = "cells"; e = "HLEN" }
		else if ($0 ~ /^\{p[0-9]+\}:i:/) c = "idempotency"
		else if ($0 ~ /^inbox:\{[^}]*\}$/) { c = "inbox"; e = "XLEN" }
		else if ($0 ~ /^inbox:\{[^}]*\}:bytes$/) c = "inbox-bytes"
		else if ($0 ~ /^inbox:\{[^}]*\}:cursor:/) c = "cursors"
		else if ($0 ~ /^presence:/) { c = "presence"; e = "HLEN" }
		else if ($0 ~ /^lastseen:/) c = "lastseen"
		else if ($0 ~ /^cache:/) c = "cache"
		else if ($0 ~ /^\{routes\}:changes$/) { c = "route-changes"; e = "XLEN" }
		print c >"'"$dir"'/classes"
		print "MEMORY USAGE " $0 " SAMPLES 0"
		print e " " $0
	}' "$dir/keys" | rcli >"$dir/answers"
	paste -d' ' "$dir/classes" <(paste -d' ' - - <"$dir/answers") |
		awk '{k[$1]++; b[$1] += $2; e[$1] += $3} END {for (c in k) print c, k[c], e[c], b[c]}' | sort
}
# mysql_tables: one line per table, "table rows bytes" (data + indexes).
mysql_tables() {
	local t tables
	tables=$(mariadb -uroot -h127.0.0.1 -N -e "SELECT table_name FROM information_schema.tables WHERE table_schema='$db' ORDER BY 1")
	for t in $tables; do mariadb -uroot -h127.0.0.1 -N "$db" -e "ANALYZE TABLE \`$t\`" >/dev/null; done
	for t in $tables; do
		printf '%s %s %s\n' "$t" \
			"$(mariadb -uroot -h127.0.0.1 -N "$db" -e "SELECT COUNT(*) FROM \`$t\`")" \
			"$(mariadb -uroot -h127.0.0.1 -N -e "SELECT data_length + index_length FROM information_schema.tables WHERE table_schema='$db' AND table_name='$t'")"
	done
}
# cpu_ticks PID: utime+stime in clock ticks.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
# snapshot NAME: writes $dir/NAME.redis, $dir/NAME.mysql, $dir/NAME.mem and
# $dir/NAME.cpu (ticks of the projector, the gateway and Redis, taken first).
snapshot() {
	echo "$(cpu_ticks "$proj_pid") $(cpu_ticks "$gw_pid") $(cpu_ticks "$redis_pid")" >"$dir/$1.cpu"
	key_classes >"$dir/$1.redis"
	mysql_tables >"$dir/$1.mysql"
	rcli INFO memory | tr -d '\r' | awk -F: '$1 == "used_memory" {print $2}' >"$dir/$1.mem"
}
# settle: waits (at most 120 s) until the MySQL messages count and the inbox
# entries stop moving for 2 s: the projectors caught up.
settle() {
	local last= now i
	for i in $(seq 120); do
		now="$(mariadb -uroot -h127.0.0.1 -N "$db" -e 'SELECT COUNT(*) FROM messages') $(rcli --scan --pattern 'inbox:*' |
			awk '!/:cursor:|:bytes$/ {print "XLEN " $0}' | rcli | awk '{s += $1} END {print s + 0}')"
		[[ $now == "$last" ]] && ((i > 2)) && return 0
		last=$now
		sleep 2
	done
	echo "measure-footprint.sh: projectors did not catch up within 240 s" >&2; exit 1
}
bench() { # bench NAME FLAGS...: one mpim-bench run; a failed audit stops the script
	local name=$1; shift
	bin/mpim-bench --gateways "ws://$listen/ws" --progress 30s --json "$dir/$name.json" --setup-concurrency 16 "$@" >"$dir/$name.out" 2>&1 ||
		{ echo "measure-footprint.sh: mpim-bench $name failed:" >&2; tail -20 "$dir/$name.out" >&2; exit 1; }
	echo "measure-footprint.sh: $name: $(jq -c '{total_acked, audit_clean}' "$dir/$name.json")" >&2
}

settle
snapshot start

# idle: hold USERS connections; snapshot while every one has a route.
bin/mpim-bench --gateways "ws://$listen/ws" --scenario idle --users "$USERS" --duration 40s --setup-concurrency 16 \
	--progress 30s --json "$dir/idle.json" >"$dir/idle.out" 2>&1 &
idle_pid=$!
PIDS+=("$idle_pid")
for _ in $(seq 600); do
	(($(rcli --scan --pattern 'presence:*' | wc -l) >= USERS)) && break
	kill -0 "$idle_pid" 2>/dev/null || { echo "measure-footprint.sh: idle ended early:" >&2; tail "$dir/idle.out" >&2; exit 1; }
	sleep 0.2
done
# What held connections cost Redis with no traffic: heartbeats and the
# gateway's position checks, over 10 s (the hold lasts 40 s).
redis_sample() { # redis_sample FILE: INFO commandstats as "command calls usec", then "@cpu SECONDS"
	rcli INFO commandstats | tr -d '\r' | awk -F'[:,=]' '/^cmdstat_/ {sub(/^cmdstat_/, "", $1); print $1, $3, $5}' >"$1"
	rcli INFO cpu | tr -d '\r' | awk -F: '/^used_cpu_(sys|user):/ {s += $2} END {print "@cpu", s}' >>"$1"
}
sleep 2
redis_sample "$dir/quiet0"
sleep 10
redis_sample "$dir/quiet1"
settle
snapshot held
wait "$idle_pid" || { echo "measure-footprint.sh: idle failed:" >&2; tail "$dir/idle.out" >&2; exit 1; }
settle
snapshot idle

bench pairs --scenario pairs --users "$USERS" --window 4 --messages "$MESSAGES" --warmup 0s --duration 120s --drain 30s
settle
snapshot pairs

gmsgs=$((MESSAGES / GROUP))
bench groups --scenario groups --users "$USERS" --group-size "$GROUP" --rate 200 --messages "$gmsgs" --warmup 0s --duration 120s --drain 60s
settle
snapshot groups

# diff A B: per class and per table, B - A.
diff_redis() {
	awk 'FNR == NR {k[$1] = $2; e[$1] = $3; b[$1] = $4; next}
		{dk = $2 - k[$1]; de = $3 - e[$1]; db = $4 - b[$1]
		 if (dk || de || db) printf "| %s | %+d | %+d | %+d | %s |\n", $1, dk, de, db, (de > 0 ? sprintf("%.0f", db / de) : "-")}' "$dir/$1.redis" "$dir/$2.redis"
}
diff_mysql() {
	awk 'FNR == NR {r[$1] = $2; b[$1] = $3; next}
		{dr = $2 - r[$1]; db = $3 - b[$1]
		 if (dr || db) printf "| %s | %+d | %+d | %s |\n", $1, dr, db, (dr > 0 ? sprintf("%.0f", db / dr) : "-")}' "$dir/$1.mysql" "$dir/$2.mysql"
}
report=bench/results/footprint-$stamp.md
{
	echo "# Footprint, $(date -u +%Y-%m-%dT%H:%MZ)"
	echo
	echo "Command: \`scripts/measure-footprint.sh $USERS $MESSAGES $GROUP\` (commit $(git rev-parse --short HEAD)); Redis $(redis-server --version | awk '{print $3}'), $(mariadb -uroot -h127.0.0.1 -N -e 'SELECT VERSION()')."
	echo
	for ph in idle pairs groups; do echo "- $ph: $(jq -c '{scenario, users, total_acked, audit_clean}' "$dir/$ph.json")"; done
	echo
	echo "## $USERS idle connections held, 10 s"
	echo
	echo "Redis per connection per second (INFO commandstats and used_cpu_sys+user, INFO excluded):"
	echo
	awk -v n="$USERS" 'FNR == NR {c[$1] = $2; u[$1] = $3; next}
		$1 == "@cpu" {printf "- Redis CPU: %.2f µs\n", ($2 - c[$1]) * 1e6 / n / 10; next}
		$1 != "info" && $2 > c[$1] {printf "- %s: %.3f calls (%.1f µs/call)\n", $1, ($2 - c[$1]) / n / 10, ($3 - u[$1]) / ($2 - c[$1])}' "$dir/quiet0" "$dir/quiet1"
	prev=start
	for ph in held idle pairs groups; do
		echo
		echo "## $prev -> $ph"
		echo
		echo "used_memory: $(cat "$dir/$prev.mem") -> $(cat "$dir/$ph.mem") bytes ($(($(cat "$dir/$ph.mem") - $(cat "$dir/$prev.mem"))))"
		if [[ -f $dir/$ph.json ]]; then
			echo
			paste -d' ' "$dir/$prev.cpu" "$dir/$ph.cpu" | awk -v hz="$(getconf CLK_TCK)" -v n="$(jq .total_acked "$dir/$ph.json")" '
				n > 0 {printf "CPU per acked message, whole phase (setup and settling included; a noisy machine: read the shares): projector %.0f µs, gateway %.0f µs, Redis %.0f µs\n",
					($4 - $1) / hz * 1e6 / n, ($5 - $2) / hz * 1e6 / n, ($6 - $3) / hz * 1e6 / n}'
		fi
		echo
		echo "| Redis class | keys | elements | bytes | bytes/element |"
		echo "|---|---|---|---|---|"
		diff_redis "$prev" "$ph"
		echo
		echo "| MySQL table | rows | bytes (data + index) | bytes/row |"
		echo "|---|---|---|---|"
		diff_mysql "$prev" "$ph"
		prev=$ph
	done
	echo
	echo "## Totals at the end"
	echo
	echo "| Redis class | keys | elements | bytes |"
	echo "|---|---|---|---|"
	awk '{printf "| %s | %d | %d | %d |\n", $1, $2, $3, $4}' "$dir/groups.redis"
	echo
	echo "| MySQL table | rows | bytes |"
	echo "|---|---|---|"
	awk '{printf "| %s | %d | %d |\n", $1, $2, $3}' "$dir/groups.mysql"
} | tee "$report"
echo "measure-footprint.sh: wrote $report" >&2
