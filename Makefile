.PHONY: run test services proto proto-check bench bench-eventstore

# The main job (README): services, build, `mpimd all` on them.
run:
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
