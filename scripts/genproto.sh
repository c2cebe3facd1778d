#!/usr/bin/env bash
# Regenerates the Go code of proto/ with protoc (Debian's protobuf-compiler)
# and protoc-gen-go at the version pinned in go.mod.
#   scripts/genproto.sh          regenerate in place
#   scripts/genproto.sh --check  fail if regenerating would change anything
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v protoc >/dev/null; then
	echo "genproto: protoc missing; installing protobuf-compiler" >&2
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler >/dev/null
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/bin/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go

out=proto
if [[ "${1:-}" == "--check" ]]; then
	out="$tmp/out"
	mkdir -p "$out"
fi

mapfile -t protos < <(cd proto && find . -name '*.proto' | sort)
(cd proto && protoc --plugin=protoc-gen-go="$tmp/bin/protoc-gen-go" \
	--go_out="$( [[ $out == proto ]] && echo . || echo "$out")" --go_opt=paths=source_relative "${protos[@]}")

if [[ "${1:-}" == "--check" ]]; then
	status=0
	for p in "${protos[@]}"; do
		gen="${p%.proto}.pb.go"
		if ! diff -u "proto/$gen" "$out/$gen"; then
			echo "genproto: proto/$gen is stale; run scripts/genproto.sh" >&2
			status=1
		fi
	done
	exit $status
fi
