.PHONY: run run-services test services proto proto-check bench bench-eventstore

# The main job (README): `mpimd all` on its embedded in-memory stand-ins.
run:
	go run ./cmd/mpimd all

# The main job on real local services (installed and started when missing).
run-services:
	scripts/run.sh

# The test command (README): services, generated-code check, vet, race tests.
test:
	scripts/test.sh

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
