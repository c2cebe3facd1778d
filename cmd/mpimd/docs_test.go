package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDocsPassSecretsOutsideTheCommandLine checks that no example in the
// docs puts the Redis password or a MySQL DSN with a password on a command
// line, where every local user can read it, and that the deployment guide
// says so and shows the environment and config-file ways.
func TestDocsPassSecretsOutsideTheCommandLine(t *testing.T) {
	files, err := filepath.Glob("../../docs/*.md")
	if err != nil || len(files) == 0 {
		t.Fatalf("no docs found: %v", err)
	}
	files = append(files, "../../README.md")
	onCommandLine := []*regexp.Regexp{
		regexp.MustCompile(`--mysql[= ]+['"]?[^\s'"@:]*:[^\s'"@]*@`), // --mysql 'user:password@...'
		regexp.MustCompile(`--redis-password[= ]+[^\s|` + "`" + `]`), // --redis-password value
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			for _, re := range onCommandLine {
				if m := re.FindString(line); m != "" {
					t.Errorf("%s:%d passes a secret on the command line (%q): use MPIM_* or the config file", filepath.Base(f), i+1, m)
				}
			}
		}
	}
	guide, err := os.ReadFile("../../docs/deployment.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## Secrets", "visible to every\nlocal user", "MPIM_MYSQL='", "MPIM_REDIS_PASSWORD='", `"redis-password":`} {
		if !strings.Contains(string(guide), want) {
			t.Errorf("docs/deployment.md does not say %q", want)
		}
	}
}
