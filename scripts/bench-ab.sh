#!/usr/bin/env bash
# Two revisions side by side in one run: scripts/bench.sh's scenarios with
# the mpimd and mpim-bench of each revision, alternately, ROUNDS times.
#
#   scripts/bench-ab.sh BEFORE AFTER [ROUNDS] [--only PATTERN] [--full] [-- BENCH_ARGS...]
#   scripts/bench-ab.sh main HEAD 3 --only 'pairs closed'
#
# BEFORE and AFTER are git revisions; ROUNDS is 1..9 (default 3). Builds
# mpimd and mpim-bench of each revision (git archive into a temp dir;
# -trimpath, so that the packages the revisions share compile once), then per round runs this working tree's scripts/bench.sh once per
# revision (--short unless --full; --only PATTERN as bench.sh takes it;
# without calibration; BENCH_ARGS after "--" are passed on), BEFORE first in
# odd rounds and AFTER first in even ones, so that a drift of the shared
# machine's load falls on both. Each bench.sh run starts its own Redis,
# database and mpimd processes. Prints and writes
# bench/results/ab-<UTC time>.md: per scenario, the median and each run of
# msg/s, send->ack and send->delivery p50/p99, CPU per acked message per
# process, Redis commands, round trips and commands sent per message, and
# the ratio AFTER / BEFORE of the medians. bench.sh's own reports go to
# bench/results/ab-<UTC time>/.
#
# Exits 1 if any bench.sh run failed (audit, projection lag), after writing
# the table; 2 on a setup problem.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '5p' "$0" >&2; exit 2; }
REVS=() ROUNDS=3 ONLY= SHORT=--short BENCH_ARGS=()
while (($#)); do
	case $1 in
	--only) ONLY=${2:?--only needs a pattern of scenario names}; shift ;;
	--full) SHORT= ;;
	--) shift; BENCH_ARGS=("$@"); break ;;
	-h | --help) sed -n '2,23p' "$0"; exit 0 ;;
	-*) echo "bench-ab.sh: unknown option $1" >&2; usage ;;
	*)
		if ((${#REVS[@]} < 2)); then REVS+=("$1")
		elif [[ $1 =~ ^[1-9]$ ]]; then ROUNDS=$1
		else echo "bench-ab.sh: ROUNDS must be 1 to 9, got $1" >&2; exit 2; fi ;;
	esac
	shift
done
((${#REVS[@]} == 2)) || usage
for r in "${REVS[@]}"; do
	git rev-parse --verify -q "$r^{commit}" >/dev/null || { echo "bench-ab.sh: no such revision: $r" >&2; exit 2; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mpim-ab.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 2' INT TERM
for i in 0 1; do
	mkdir -p "$tmp/src$i"
	git archive "${REVS[$i]}" | tar -x -C "$tmp/src$i"
	echo "bench-ab.sh: building ${REVS[$i]} ($(git rev-parse --short "${REVS[$i]}"))" >&2
	(cd "$tmp/src$i" && go build -trimpath -o "$tmp/mpimd$i" ./cmd/mpimd && go build -trimpath -o "$tmp/mpim-bench$i" ./cmd/mpim-bench)
	: >"$tmp/summary$i.jsonl"
done

stamp=$(date -u +%Y%m%dT%H%M%SZ)
out=bench/results/ab-$stamp
mkdir -p "$out"
args=(${SHORT:+"$SHORT"} --no-calibration --out "$out" ${ONLY:+--only "$ONLY"} "${BENCH_ARGS[@]}")
failed=0 runs=()
for n in $(seq "$ROUNDS"); do
	order=(0 1)
	((n % 2)) || order=(1 0)
	for i in "${order[@]}"; do
		echo "bench-ab.sh: round $n of $ROUNDS: ${REVS[$i]}" >&2
		rc=0
		scripts/bench.sh "${args[@]}" --mpimd-bin "$tmp/mpimd$i" --bench-bin "$tmp/mpim-bench$i" \
			--summary "$tmp/summary$i.jsonl" >"$tmp/run.out" || rc=$?
		runs+=("round $n, ${REVS[$i]}: exit $rc")
		((rc == 0)) || { failed=1; echo "bench-ab.sh: round $n ${REVS[$i]}: bench.sh exit $rc" >&2; }
		((rc == 2)) && { tail -5 "$tmp/run.out" >&2; exit 2; }
	done
done

# One table per scenario: the medians of each revision's runs (each run in
# brackets) and their ratio AFTER / BEFORE.
report=bench/results/ab-$stamp.md
{
	echo "# A/B: ${REVS[0]} ($(git rev-parse --short "${REVS[0]}")) vs ${REVS[1]} ($(git rev-parse --short "${REVS[1]}"))"
	echo
	echo "- when: $(date -u '+%Y-%m-%d %H:%M UTC'); $ROUNDS round(s), alternating; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "- command: \`scripts/bench-ab.sh ${REVS[*]} $ROUNDS${ONLY:+ --only '$ONLY'}${SHORT:- --full}${BENCH_ARGS[*]:+ -- ${BENCH_ARGS[*]}}\`"
	echo "- each run: \`scripts/bench.sh ${args[*]} --mpimd-bin B --bench-bin B\`; its report in [ab-$stamp/](ab-$stamp/)"
	echo "- runs: $(IFS=';'; echo "${runs[*]}")"
	echo "- CPU is per acked message over the whole scenario (setup included) unless it says measured window; Redis"
	echo "  commands count the calls inside scripts; \"-\": a build without the counter. Medians, each run in brackets."
	echo
	jq -r -n -L scripts --slurpfile a "$tmp/summary0.jsonl" --slurpfile b "$tmp/summary1.jsonl" --arg ra "${REVS[0]}" --arg rb "${REVS[1]}" '
		include "stats";
		def figs: [["sends acked/s", "acked_per_s"], ["send->ack p50 ms", "ack_p50"], ["send->ack p99 ms", "ack_p99"],
			["send->delivery p50 ms", "del_p50"], ["send->delivery p99 ms", "del_p99"],
			["CPU µs/msg mpimd", "cpu_mpimd"], ["CPU µs/msg Redis", "cpu_redis"], ["CPU µs/msg MariaDB", "cpu_mariadb"],
			["CPU µs/msg server (sum)", "cpu_server"], ["CPU µs/msg mpimd, measured window", "cpu_mpimd_window"],
			["CPU µs/msg mpim-bench, measured window", "cpu_bench_window"], ["Redis commands/msg (scripts included)", "redis_cmds_per_msg"],
			["EVALSHA/msg", "evalsha_per_msg"], ["EVALSHA µs/call", "evalsha_usec_per_call"],
			["mpimd commands sent/msg", "cmds_sent_per_msg"], ["mpimd round trips/msg", "roundtrips_per_msg"],
			["GC share of mpimd CPU %", "gc_share_pct"], ["mpimd heap allocations/msg", "mallocs_per_msg"]];
		def cell($runs; $k): [$runs[] | .[$k]] as $all | ($all | map(select(. != null)) | median) as $m
			| {m: $m, text: "\($m | f) (\($all | map(f) | join(" / ")))"};
		($a + $b | map(.name) | unique)[] as $name
		| [$a[] | select(.name == $name)] as $x | [$b[] | select(.name == $name)] as $y
		| "### \($name)\n\n| figure | \($ra) | \($rb) | \($rb) / \($ra) |\n|---|---|---|---|\n"
		+ ([figs[] as [$title, $k] | cell($x; $k) as $cx | cell($y; $k) as $cy
			| "| \($title) | \($cx.text) | \($cy.text) | \(if $cx.m != null and $cy.m != null and $cx.m != 0 then "**\($cy.m / $cx.m * 100 | round / 100)x**" else "-" end) |"]
			| join("\n"))
		+ "\n| audits clean | \([$x[] | .audit_clean] | map(select(.)) | length)/\($x | length) | \([$y[] | .audit_clean] | map(select(.)) | length)/\($y | length) | |\n"'
} >"$report"
cat "$report"
echo "bench-ab.sh: report written to $report" >&2
exit "$failed"
