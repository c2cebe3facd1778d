package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The password key comes from --password-key-file, --password-key, their
// MPIM_ variables or the config file; bad key text is refused at start-up
// with an error that says what is wrong.
func TestPasswordKeySettings(t *testing.T) {
	dir := t.TempDir()
	file := func(name, text string, mode os.FileMode) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyA, keyB := strings.Repeat("0a", 32), strings.Repeat("b1", 32)
	good := file("good.key", "# new key first, the old one still opens\n"+keyB+"\n"+keyA+"\n", 0o600)
	conf := file("mpimd.json", `{"password-key-file": "`+good+`"}`, 0o600)
	for _, args := range [][]string{{"--password-key-file", good}, {"--password-key", keyA}, {"--config", conf}} {
		m := &Main{Stdout: io.Discard, Stderr: io.Discard}
		if err := m.ParseFlags("gateway", args); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		keys, err := m.Config.passwordKeys(false, slog.New(slog.DiscardHandler))
		if err != nil || keys == nil {
			t.Fatalf("%v: keys %v, %v", args, keys, err)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--password-key-file", file("empty.key", "\n", 0o600)}, "no key"},
		{[]string{"--password-key-file", file("short.key", keyA[:40], 0o600)}, "40 hex digits, want 64"},
		{[]string{"--password-key-file", file("junk.key", "not a key at all!", 0o600)}, "neither hex nor base64"},
		{[]string{"--password-key-file", file("open.key", keyA, 0o644)}, "chmod 600"},
		{[]string{"--password-key-file", filepath.Join(dir, "missing.key")}, "no such file"},
		{[]string{"--password-key", "c2hvcnQ="}, "password-key: sealed: key on line 1: base64 of 5 bytes"},
		{[]string{"--password-key", keyA, "--password-key-file", good}, "both set"},
	} {
		m := &Main{Stdout: io.Discard, Stderr: io.Discard}
		if err := m.ParseFlags("gateway", tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}

// A gateway on real servers without a password key refuses to start and
// says how to make one; on the embedded stand-ins it makes a key for the
// process and says so.
func TestGatewayWithoutPasswordKey(t *testing.T) {
	m := &Main{Stdout: io.Discard, Stderr: io.Discard}
	if err := m.ParseFlags("gateway", newDeployment(t).args("--listen", "127.0.0.1:0")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := m.Run(ctx); err == nil || !strings.Contains(err.Error(), "no password key") || !strings.Contains(err.Error(), "openssl rand -hex 32") {
		t.Fatalf("gateway without a password key: %v, want a refusal that says how to make one", err)
	}
	var logs bytes.Buffer
	keys, err := m.Config.passwordKeys(true, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil || keys == nil || !strings.Contains(logs.String(), "made for this process") {
		t.Fatalf("embedded without a key: %v, %v, log %q", keys, err, logs.String())
	}
}
