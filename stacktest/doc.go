// Package stacktest holds the end-to-end tests of the core in one process:
// the event store, the write side, the projectors run over the log, the
// delivery hub and the gateway, spoken to with the protocol client. The
// gateway's and the projectors' own tests never import each other; the
// tests that need both live here. It has no code besides its tests.
package stacktest
