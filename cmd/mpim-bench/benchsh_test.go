package main

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBenchScriptRefusesBadProfile checks that scripts/bench.sh refuses a
// --profile that is not 1..600 seconds with exit status 2, before it
// starts or builds anything, and lists it in its help.
func TestBenchScriptRefusesBadProfile(t *testing.T) {
	script, err := filepath.Abs("../../scripts/bench.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"0", "601", "-1", "abc", "20x", "0600"} {
		out, err := exec.Command("bash", script, "--profile", v).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "--profile") {
			t.Errorf("--profile %q: %v, output %q; want exit 2 naming --profile", v, err, out)
		}
	}
	out, err := exec.Command("bash", script, "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--profile SECS") {
		t.Fatalf("--help: %v, output lacks --profile SECS:\n%s", err, out)
	}
}

// TestBenchScriptRefusesBadLayout checks that scripts/bench.sh refuses a
// --layout other than one or cluster, and --layout with --cluster (which
// runs both), with exit status 2 before it starts anything, and lists both
// options in its help.
func TestBenchScriptRefusesBadLayout(t *testing.T) {
	script, err := filepath.Abs("../../scripts/bench.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"--layout", "two"}, {"--cluster", "--layout", "cluster"}, {"--layout", "one", "--cluster"}} {
		out, err := exec.Command("bash", append([]string{script}, args...)...).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "--layout") {
			t.Errorf("%q: %v, output %q; want exit 2 naming --layout", args, err, out)
		}
	}
	out, err := exec.Command("bash", script, "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--layout L") || !strings.Contains(string(out), "--cluster ") {
		t.Fatalf("--help: %v, output lacks --layout L or --cluster:\n%s", err, out)
	}
}

// TestBenchScriptHelpNamesPush checks that scripts/bench.sh's help tells
// of the offline push scenarios and the +push comparison.
func TestBenchScriptHelpNamesPush(t *testing.T) {
	script, err := filepath.Abs("../../scripts/bench.sh")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("bash", script, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("--help: %v\n%s", err, out)
	}
	for _, want := range []string{"Offline push (issue 16)", `"X +push"`, "--push-window 100ms", "lost pushes"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("--help lacks %q:\n%s", want, out)
		}
	}
}
