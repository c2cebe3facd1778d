package testsvc

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// BuildBinary builds the main package of the test's directory (go test runs
// a test there) with the race detector, as name in a directory of tb's, and
// returns its path: for tests that run, signal and kill the real process.
func BuildBinary(tb testing.TB, name string) string {
	tb.Helper()
	return BuildPackage(tb, name, ".")
}

// BuildPackage is BuildBinary for the main package in dir (relative to the
// test's directory), e.g. another command a process test runs.
func BuildPackage(tb testing.TB, name, dir string) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), name)
	cmd := exec.Command("go", "build", "-race", "-o", bin, dir)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("building %s: %v", name, err)
	}
	return bin
}
