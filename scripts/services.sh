#!/usr/bin/env bash
# services.sh makes the real servers that mpim's tests (and a local non-embedded
# mpimd) use reachable on loopback:
#
#   Redis 7          127.0.0.1:6379
#   MariaDB / MySQL  127.0.0.1:3306   root with an empty password over TCP, database `test`
#   ZooKeeper 3.8    127.0.0.1:2181   4lw ruok,srvr,stat allowed
#
# For each service: if it already answers, it is used as it is; else, if it is
# installed, it is started; else it is installed with apt-get (one `apt-get
# update` per run) and started. protoc (protobuf-compiler), which the proto
# generate check needs, chromium (the web chat test) and fuse3 (the power-loss
# fault tests) are installed when missing. Then every service is waited
# for (at most MPIM_SERVICES_WAIT seconds each, default 60).
#
# The script is idempotent: a second run finds everything answering and changes
# nothing. It prints one line per service saying what it did and exits non-zero
# with a message on the first problem. Concurrent runs are not supported.
# Installing and starting MariaDB need root; ZooKeeper's config and data live in
# MPIM_ZK_DIR (default /var/lib/mpim-zk as root, else $TMPDIR/mpim-zk-<uid>).
set -euo pipefail

readonly HOST=127.0.0.1
readonly REDIS_PORT=6379
readonly MYSQL_PORT=3306
readonly ZK_PORT=2181
readonly WAIT_SECONDS=${MPIM_SERVICES_WAIT:-60}
readonly ZK_HOME=/usr/share/zookeeper

if [[ -n ${MPIM_ZK_DIR:-} ]]; then
	ZK_DIR=$MPIM_ZK_DIR
elif [[ $(id -u) == 0 ]]; then
	ZK_DIR=/var/lib/mpim-zk
else
	ZK_DIR=${TMPDIR:-/tmp}/mpim-zk-$(id -u)
fi
readonly ZK_DIR

LOG=$(mktemp "${TMPDIR:-/tmp}/mpim-services.XXXXXX")
readonly LOG
trap 'rm -f "$LOG"' EXIT

die() {
	echo "services.sh: $*" >&2
	exit 1
}

# die_log prints the tail of the command log (apt-get, daemon start output) and dies.
die_log() {
	if [[ -s $LOG ]]; then
		echo "services.sh: last output:" >&2
		tail -n 25 "$LOG" | sed 's/^/    /' >&2
	fi
	die "$@"
}

report() { printf '%-10s %s\n' "$1:" "$2"; }

is_root() { [[ $(id -u) == 0 ]]; }

# tcp_talk HOST PORT PAYLOAD sends PAYLOAD (printf %b escapes) and prints what
# the server sends back until it closes the connection, for at most 3 seconds.
tcp_talk() {
	timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2" || exit 1; printf "%b" "$3" >&3; cat <&3' _ "$@" 2>/dev/null || true
}

# port_open HOST PORT succeeds when something accepts TCP connections there.
port_open() {
	timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$@" 2>/dev/null
}

# wait_for COMMAND... polls COMMAND until it succeeds or WAIT_SECONDS pass.
wait_for() {
	local deadline=$((SECONDS + WAIT_SECONDS))
	until "$@"; do
		((SECONDS < deadline)) || return 1
		sleep 0.5
	done
}

# did NAME WORD records what the script did to a service, for its report line.
declare -A DID=()
did() { DID[$1]="${DID[$1]:+${DID[$1]} and }$2"; }
done_what() { echo "${DID[$1]:-already running}"; }

# ---------------------------------------------------------------- apt

APT_UPDATED=
apt_install() {
	is_root || die "need root to install $* (or install it yourself and re-run)"
	command -v apt-get >/dev/null || die "apt-get not found; install $* yourself and re-run"
	local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300)
	if [[ -z $APT_UPDATED ]]; then
		"${apt[@]}" update >>"$LOG" 2>&1 || die_log "apt-get update failed"
		APT_UPDATED=1
	fi
	"${apt[@]}" install -y --no-install-recommends "$@" >>"$LOG" 2>&1 ||
		die_log "apt-get install $* failed"
}

# ---------------------------------------------------------------- Redis

redis_version() {
	tcp_talk "$HOST" "$REDIS_PORT" 'INFO server\r\nQUIT\r\n' |
		sed -n 's/^redis_version:\([0-9.]*\).*/\1/p'
}

redis_up() { [[ -n $(redis_version) ]]; }

redis_start() {
	redis-server --daemonize yes --bind "$HOST" --port "$REDIS_PORT" \
		--save "" --appendonly no --dir "${TMPDIR:-/tmp}" >>"$LOG" 2>&1 ||
		die_log "redis-server failed to start"
}

redis_check() {
	local v
	v=$(redis_version)
	[[ -n $v && ${v%%.*} -ge 7 ]] || die "redis on $HOST:$REDIS_PORT is version $v; mpim needs Redis 7 or later"
	REDIS_VERSION=$v
}

# ---------------------------------------------------------------- MariaDB / MySQL

MYSQL=
MYSQLADMIN=
find_mysql_client() {
	MYSQL=$(command -v mariadb || command -v mysql || true)
	MYSQLADMIN=$(command -v mariadb-admin || command -v mysqladmin || true)
}

mysql_server_bin() {
	local b
	for b in /usr/sbin/mariadbd /usr/sbin/mysqld; do
		if [[ -x $b ]]; then
			echo "$b"
			return 0
		fi
	done
	return 1
}

# mysql_alive succeeds when a server answers on the TCP port, even if it
# refuses root: mysqladmin ping exits 0 on "access denied".
mysql_alive() {
	"$MYSQLADMIN" --protocol=tcp -h"$HOST" -P"$MYSQL_PORT" -uroot --connect-timeout=2 ping >/dev/null 2>&1
}

# mysql_tcp runs SQL as root with an empty password over TCP.
mysql_tcp() {
	"$MYSQL" --protocol=tcp -h"$HOST" -P"$MYSQL_PORT" -uroot --connect-timeout=5 -N -B -e "$1" 2>>"$LOG"
}

# mysql_socket runs SQL as root over the local socket (unix_socket auth as OS root).
mysql_socket() {
	"$MYSQL" --protocol=socket -uroot -N -B -e "$1" 2>>"$LOG"
}

mysql_start() {
	is_root || die "need root to start MariaDB"
	local bin datadir
	bin=$(mysql_server_bin) || die "no mariadbd/mysqld found"
	id mysql >/dev/null 2>&1 || die "system user 'mysql' is missing; reinstall mariadb-server"
	install -d -o mysql -g mysql -m 0755 /run/mysqld
	datadir=$(my_print_defaults --mysqld mariadbd server 2>/dev/null | sed -n 's/^--datadir=//p' | tail -n 1)
	datadir=${datadir:-/var/lib/mysql}
	if [[ ! -d $datadir/mysql ]]; then
		local installdb
		installdb=$(command -v mariadb-install-db || command -v mysql_install_db || true)
		[[ -n $installdb ]] || die "MariaDB data directory $datadir is not initialised and mariadb-install-db is missing"
		"$installdb" --user=mysql --datadir="$datadir" >>"$LOG" 2>&1 ||
			die_log "initialising MariaDB data directory $datadir failed"
	fi
	start-stop-daemon --start --oknodo --background --exec "$bin" -- \
		--user=mysql --bind-address="$HOST" --port="$MYSQL_PORT" >>"$LOG" 2>&1 ||
		die_log "starting $bin failed"
}

# mysql_fix_root makes root@127.0.0.1 able to log in over TCP with an empty
# password, using the socket (Debian's root@localhost authenticates via
# unix_socket). Only called when the TCP login fails.
mysql_fix_root() {
	mysql_socket 'SELECT 1' >/dev/null ||
		die_log "root cannot log in over TCP ($HOST:$MYSQL_PORT, empty password) nor over the socket; grant root@127.0.0.1 an empty password yourself"
	mysql_socket "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
		ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY '';
		GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;" ||
		die_log "could not create root@127.0.0.1"
	if mysql_tcp 'SELECT 1' >/dev/null; then
		return 0
	fi
	# Without skip-name-resolve, 127.0.0.1 may resolve to "localhost" and be
	# matched against root@localhost, which accepts only the socket. Let it
	# also accept an empty password (MariaDB syntax).
	mysql_socket "ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('');" ||
		die_log "could not let root@localhost log in with an empty password"
	mysql_tcp 'SELECT 1' >/dev/null ||
		die_log "root still cannot log in over TCP with an empty password"
}

MYSQL_NOTE=
mysql_check() {
	if ! mysql_tcp 'SELECT 1' >/dev/null; then
		mysql_fix_root
		MYSQL_NOTE="; granted root@127.0.0.1 an empty password"
	fi
	mysql_tcp 'CREATE DATABASE IF NOT EXISTS test' || die_log "could not create database test"
	MYSQL_VERSION=$(mysql_tcp 'SELECT VERSION()')
}

# ---------------------------------------------------------------- ZooKeeper

# zk_up succeeds when a ZooKeeper that serves requests answers on the port.
# A server that does not allow "ruok" still answers "srvr" (the 3.8 default).
zk_up() {
	local r
	r=$(tcp_talk "$HOST" "$ZK_PORT" 'ruok')
	[[ $r == imok ]] && return 0
	[[ $r == *"not in the whitelist"* ]] || return 1
	r=$(tcp_talk "$HOST" "$ZK_PORT" 'srvr')
	[[ $r == *"Zookeeper version"* ]]
}

zk_installed() { [[ -x $ZK_HOME/bin/zkServer.sh ]] && command -v java >/dev/null; }

# zk_pid_alive succeeds when the pid file zkServer.sh wrote names a running
# ZooKeeper (not a process that reused the pid after a reboot).
zk_pid_alive() {
	local pidfile=$ZK_DIR/data/zookeeper_server.pid pid
	[[ -s $pidfile ]] || return 1
	pid=$(cat "$pidfile")
	[[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q QuorumPeerMain
}

zk_start() {
	mkdir -p "$ZK_DIR/data"
	local cfg=$ZK_DIR/zoo.cfg tmp
	tmp=$(mktemp "$ZK_DIR/zoo.cfg.XXXXXX")
	cat >"$tmp" <<EOF
# Written by mpim scripts/services.sh: a standalone ZooKeeper for development
# and tests. forceSync=no trades durability for speed; do not use in production.
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$ZK_DIR/data
clientPort=$ZK_PORT
clientPortAddress=$HOST
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,stat
forceSync=no
autopurge.snapRetainCount=3
autopurge.purgeInterval=1
EOF
	chmod 0644 "$tmp"
	mv -f "$tmp" "$cfg"
	if zk_pid_alive; then
		ZK_STARTING=1 # started earlier and still coming up: wait for it
		return 0
	fi
	# A stale pid file would make zkServer.sh refuse to start.
	rm -f "$ZK_DIR/data/zookeeper_server.pid"
	local logdir
	logdir=$(. "$ZK_HOME/bin/zkEnv.sh" >/dev/null 2>&1 && echo "${ZOO_LOG_DIR:-}")
	if [[ -n $logdir ]] && ! is_root && [[ ! -w $logdir ]]; then
		die "need root to start ZooKeeper: zkServer.sh logs to $logdir"
	fi
	# Debian's zkEnv.sh (/etc/zookeeper/conf/environment) fixes ZOOCFGDIR,
	# ZOOCFG, ZOO_LOG_DIR and CLASSPATH, overriding the environment, so the
	# config path goes in as the argument (a path outside ZOOCFGDIR is used as
	# given) and the pid file lands in dataDir. Debian's classpath has no SLF4J
	# binding, so ZooKeeper would log nothing; a later -cp in JVMFLAGS wins, so
	# add slf4j-simple at WARN: start-up errors then reach the .out file in
	# ZOO_LOG_DIR. setsid keeps the JVM out of our session and process group.
	local flags="-Xms32m -Xmx256m -XX:+UseSerialGC"
	local simple=/usr/share/java/slf4j-simple.jar
	if [[ -r $simple ]]; then
		local cp
		cp=$(. "$ZK_HOME/bin/zkEnv.sh" >/dev/null 2>&1 && echo "${CLASSPATH:-}")
		if [[ -n $cp ]]; then
			flags+=" -cp $cp:$simple -Dorg.slf4j.simpleLogger.defaultLogLevel=warn"
		fi
	fi
	JMXDISABLE=true JVMFLAGS="${JVMFLAGS:-$flags}" \
		setsid -w "$ZK_HOME/bin/zkServer.sh" start "$cfg" >>"$LOG" 2>&1 ||
		die_log "zkServer.sh start failed (logs: /var/log/zookeeper)"
}

# ---------------------------------------------------------------- main

main() {
	local need_pkgs=()

	# 1. What answers, what is missing?
	local redis_ok= mysql_ok= zk_ok=
	redis_up && redis_ok=1
	find_mysql_client
	if [[ -n $MYSQL && -n $MYSQLADMIN ]] && mysql_alive; then
		mysql_ok=1
	fi
	zk_up && zk_ok=1

	if [[ -z $redis_ok ]]; then
		port_open "$HOST" "$REDIS_PORT" && die "something on $HOST:$REDIS_PORT accepts connections but does not answer INFO like an unauthenticated Redis"
		command -v redis-server >/dev/null || need_pkgs+=(redis-server)
	fi
	if [[ -z $mysql_ok ]]; then
		if [[ -z $MYSQL || -z $MYSQLADMIN ]]; then
			if port_open "$HOST" "$MYSQL_PORT" || mysql_server_bin >/dev/null; then
				need_pkgs+=(mariadb-client)
			else
				need_pkgs+=(mariadb-server)
			fi
		elif ! mysql_server_bin >/dev/null && ! port_open "$HOST" "$MYSQL_PORT"; then
			need_pkgs+=(mariadb-server)
		fi
	fi
	if [[ -z $zk_ok ]]; then
		port_open "$HOST" "$ZK_PORT" && ! zk_pid_alive &&
			die "something on $HOST:$ZK_PORT accepts connections but does not answer ZooKeeper's ruok/srvr"
		zk_installed || need_pkgs+=(zookeeper)
	fi
	command -v protoc >/dev/null || need_pkgs+=(protobuf-compiler)

	# 2. Install what is missing, in one apt-get run.
	if ((${#need_pkgs[@]} > 0)); then
		apt_install "${need_pkgs[@]}"
		local p
		for p in "${need_pkgs[@]}"; do
			case $p in
			redis-server) did redis installed ;;
			mariadb-*) did mariadb "installed $p" ;;
			zookeeper) did zookeeper installed ;;
			protobuf-compiler) did protoc installed ;;
			esac
		done
		find_mysql_client
		command -v protoc >/dev/null || die "protoc still missing after installing protobuf-compiler"
	fi

	# 3. Start what does not answer (a package's postinst may have started it),
	#    all before waiting so the slow starts overlap.
	if [[ -z $redis_ok ]] && ! redis_up; then
		redis_start
		did redis started
	fi
	if [[ -z $mysql_ok ]] && ! mysql_alive; then
		port_open "$HOST" "$MYSQL_PORT" &&
			die "something on $HOST:$MYSQL_PORT accepts connections but does not answer like MySQL"
		mysql_start
		did mariadb started
	fi
	if [[ -z $zk_ok ]] && ! zk_up; then
		zk_installed || die "ZooKeeper is not installed at $ZK_HOME"
		ZK_STARTING=
		zk_start
		if [[ -n $ZK_STARTING ]]; then
			did zookeeper "waited for the instance already starting"
		else
			did zookeeper started
		fi
	fi

	# 4. Wait for each, then check versions and access.
	wait_for redis_up || die_log "Redis did not answer on $HOST:$REDIS_PORT within ${WAIT_SECONDS}s"
	redis_check
	report redis "$(done_what redis) on $HOST:$REDIS_PORT (redis $REDIS_VERSION)"

	wait_for mysql_alive ||
		die_log "MariaDB did not answer on $HOST:$MYSQL_PORT within ${WAIT_SECONDS}s (see its error log, e.g. /var/log/mysql/error.log)"
	mysql_check
	report mariadb "$(done_what mariadb) on $HOST:$MYSQL_PORT ($MYSQL_VERSION; root over TCP ok; database test ok$MYSQL_NOTE)"

	wait_for zk_up ||
		die_log "ZooKeeper did not answer on $HOST:$ZK_PORT within ${WAIT_SECONDS}s (see /var/log/zookeeper)"
	local zk_note=
	[[ -n ${DID[zookeeper]:-} ]] && zk_note=" (config $ZK_DIR/zoo.cfg, logs /var/log/zookeeper)"
	report zookeeper "$(done_what zookeeper) on $HOST:$ZK_PORT$zk_note"

	DID[protoc]=${DID[protoc]:-present}
	report protoc "$(done_what protoc) ($(protoc --version))"
	ensure_chromium
	ensure_fuse
}

# ensure_fuse checks what the power-loss fault tests need: /dev/fuse (their
# redis-server keeps its AOF on a FUSE file system that loses unsynced
# writes) and, for a non-root user, fusermount3 (Debian's fuse3) to mount it;
# root mounts with mount(2). A missing /dev/fuse is reported, not fatal: those
# tests then fail and say so, the others run.
ensure_fuse() {
	local dev="/dev/fuse present"
	[[ -e /dev/fuse ]] || dev="MISSING /dev/fuse (the power-loss fault tests will fail; a container needs --device /dev/fuse)"
	if ! command -v fusermount3 >/dev/null; then
		apt_install fuse3
		command -v fusermount3 >/dev/null || die "fusermount3 still missing after installing fuse3"
		report fuse "installed fuse3; $dev"
		return
	fi
	report fuse "present; $dev"
}

# ensure_chromium installs Debian's chromium (the web chat test drives it
# headless) when it is missing.
ensure_chromium() {
	if command -v chromium >/dev/null; then
		report chromium present
		return
	fi
	apt_install chromium
	command -v chromium >/dev/null || die "chromium still missing after installing it"
	report chromium installed
}

main "$@"
