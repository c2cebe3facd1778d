.PHONY: test services proto proto-check bench-eventstore

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
