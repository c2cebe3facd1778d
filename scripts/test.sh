#!/usr/bin/env bash
# The test command: makes Redis, MariaDB and ZooKeeper reachable (starting or
# installing them when missing), checks generated code and formatting, then
# runs every test with the race detector.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh
scripts/genproto.sh --check

mapfile -t gofiles < <(find . -name '*.go' -not -path './.git/*')
unformatted=$(gofmt -l "${gofiles[@]}")
if [[ -n "$unformatted" ]]; then
	echo "gofmt needed on:" >&2
	echo "$unformatted" >&2
	exit 1
fi
go vet ./...
go test -race -count=1 -timeout 45m "$@" ./...
