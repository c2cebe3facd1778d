package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mpim/mpim/push/webhook"
	"github.com/redis/go-redis/v9"
)

// TestPushDeadLettersListAndResend dead-letters a call (the receiver answers
// 400 once), lists it with mpimctl and re-sends it.
func TestPushDeadLettersListAndResend(t *testing.T) {
	base := seed(t)
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			http.Error(w, "unknown token", http.StatusBadRequest)
		}
	}))
	defer srv.Close()
	secret := "0123456789abcdef-ctl-secret"
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	prefix := base[3]
	rdb := redis.NewClient(&redis.Options{Addr: base[1]})
	defer rdb.Close()
	s, err := webhook.New(rdb, webhook.Config{URL: srv.URL, Secret: []byte(secret), Window: webhook.MinWindow, DeadLetterKey: webhook.DeadLetterKey(prefix)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := s.Submit(ctx, []webhook.Notification{{User: "u/01HZY000000000000000000001", EventID: "1-1",
		Devices: []webhook.Device{{ID: "phone", Platform: webhook.PlatformFCM, Token: "tok"}}}})
	if err == nil {
		err = s.Wait(ctx, b)
	}
	if err != nil {
		t.Fatal(err)
	}
	s.Close(ctx)

	out, _, err := ctl(t, append([]string{"push", "dead-letters", "list"}, base...)...)
	if err != nil || strings.Count(out, "\n") != 1 || !strings.Contains(out, `status=400 reason="400 unknown token"`) {
		t.Fatalf("list: %v\n%s", err, out)
	}
	id := strings.Fields(out)[0]
	out, _, err = ctl(t, append([]string{"push", "dead-letters", "list", "--json"}, base...)...)
	if err != nil || !strings.Contains(out, `"key":"1-1"`) || !strings.Contains(out, `"user":"u/01HZY000000000000000000001"`) ||
		!strings.Contains(out, `"token":"[redacted]"`) || strings.Contains(out, `"tok"`) {
		t.Fatalf("list --json: %v\n%s", err, out)
	}
	out, _, err = ctl(t, append([]string{"push", "dead-letters", "list", "--json", "--with-secrets"}, base...)...)
	if err != nil || !strings.Contains(out, `"token":"tok"`) {
		t.Fatalf("list --json --with-secrets: %v\n%s", err, out)
	}
	out, _, err = ctl(t, append([]string{"push", "dead-letters", "resend", "--id", id, "--webhook-url", srv.URL, "--webhook-secret-file", secretFile}, base...)...)
	if err != nil || out != "re-sent 1 of 1 dead letters\n" || calls.Load() != 2 {
		t.Fatalf("resend: %v, %d calls\n%s", err, calls.Load(), out)
	}
	if out, _, err := ctl(t, append([]string{"push", "dead-letters", "list"}, base...)...); err != nil || out != "" {
		t.Fatalf("list after resend: %v\n%s", err, out)
	}

	resend := []string{"push", "dead-letters", "resend", "--webhook-url", srv.URL, "--webhook-secret-file", secretFile}
	for _, args := range [][]string{
		{"push"},
		{"push", "dead-letters"},
		{"push", "dead-letters", "purge"},
		{"push", "letters", "list"},
		append([]string{"push", "dead-letters", "list", "--limit", "0"}, base...),
		append([]string{"push", "dead-letters", "list", "--limit", "10001"}, base...),
		append([]string{"push", "dead-letters", "list", "--after", "yesterday"}, base...),
		append([]string{"push", "dead-letters", "list", "extra"}, base...),
		append(resend, base...),                                       // neither --id nor --all
		append(append(resend, base...), "--id", id, "--all"),          // both
		append(append(resend, base...), "--id", "garbage"),            // bad id
		append(append(resend, base...), "--id", id),                   // gone
		append(append(slices.Clone(resend[:5]), base...), "--id", id), // no secret file
		append([]string{"push", "dead-letters", "resend", "--all", "--webhook-url", "ftp://x", "--webhook-secret-file", secretFile}, base...),
		append([]string{"push", "dead-letters", "resend", "--all", "--webhook-url", srv.URL, "--webhook-secret-file", "/nonexistent"}, base...),
	} {
		if _, _, err := ctl(t, args...); err == nil {
			t.Errorf("mpimctl %v succeeded", args)
		}
	}
}
