// Package archtest holds the architecture test of the module: a table of the
// top-level packages and what each may import, checked against the imports
// of every package, tests included. It has no code of its own; adding a
// top-level package means adding a row to the table in archtest_test.go.
package archtest
