.PHONY: run run-services test lint services proto proto-check bench bench-eventstore

# The main job (README): `mpimd all` on its embedded in-memory stand-ins.
run:
	go run ./cmd/mpimd all

# The main job on real local services (installed and started when missing).
run-services:
	scripts/run.sh

# The test command (README): services, generated-code check, vet, race tests.
test:
	scripts/test.sh

# Static checks (.golangci.yml), with the pinned golangci-lint, installed
# into GOPATH/bin when missing or another version.
GOLANGCI_LINT_VERSION := 2.15.0
GOLANGCI_LINT := $(shell go env GOPATH)/bin/golangci-lint

lint:
	@$(GOLANGCI_LINT) version 2>/dev/null | grep -q 'version $(GOLANGCI_LINT_VERSION) ' || \
		go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v$(GOLANGCI_LINT_VERSION)
	$(GOLANGCI_LINT) run ./...

services:
	scripts/services.sh

proto:
	scripts/genproto.sh

proto-check:
	scripts/genproto.sh --check

bench-eventstore:
	scripts/bench-eventstore.sh

bench:
	scripts/bench.sh --short
