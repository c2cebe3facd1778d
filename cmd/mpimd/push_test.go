package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/projectors/push"
	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/mpim/mpim/push/webhook"
)

// secretFile writes a webhook secret file of content with mode perm.
func secretFile(tb testing.TB, content string, perm os.FileMode) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "secret")
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		tb.Fatal(err)
	}
	return path
}

// TestPushFlagsAreValidated: each bad push flag alone is refused, naming
// itself; with a webhook URL the push projector joins the default set,
// and only then.
func TestPushFlagsAreValidated(t *testing.T) {
	good := secretFile(t, "0123456789abcdef0123456789abcdef\n", 0o600)
	url := "https://relay.example/push"
	parse := func(args ...string) (*Main, error) {
		m := &Main{Stdout: io.Discard, Stderr: io.Discard}
		return m, m.ParseFlags("projector", args)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--push-window", "9ms"}, "push-window must be 10ms..1m0s"},
		{[]string{"--push-window", "61s"}, "push-window must be 10ms..1m0s"},
		{[]string{"--push-max-pending", "0"}, "push-max-pending must be 1..10000, got 0"},
		{[]string{"--push-max-pending", "10001"}, "push-max-pending must be 1..10000, got 10001"},
		{[]string{"--push-preview", "all"}, "push-preview must be none, sender or text"},
		{[]string{"--push-start", "tail"}, "push-start must be head or zero"},
		{[]string{"--push-webhook-url", "ftp://relay.example/push", "--push-webhook-secret-file", good}, "push-webhook-url must be an absolute http or https URL"},
		{[]string{"--push-webhook-url", "/push", "--push-webhook-secret-file", good}, "push-webhook-url must be an absolute http or https URL"},
		{[]string{"--push-webhook-url", "https://relay.example/" + strings.Repeat("x", 2048), "--push-webhook-secret-file", good}, "push-webhook-url must be an absolute"},
		{[]string{"--push-webhook-url", url}, "push-webhook-secret-file is required"},
		{[]string{"--push-webhook-url", url, "--push-webhook-secret-file", filepath.Join(t.TempDir(), "missing")}, "push-webhook-secret-file"},
		{[]string{"--push-webhook-url", url, "--push-webhook-secret-file", secretFile(t, "short\n", 0o600)}, "must hold 16..1024 bytes, has 5"},
		{[]string{"--push-webhook-url", url, "--push-webhook-secret-file", secretFile(t, strings.Repeat("s", 1025), 0o600)}, "must hold 16..1024 bytes"},
		{[]string{"--push-webhook-url", url, "--push-webhook-secret-file", secretFile(t, "0123456789abcdef", 0o644)}, "lets other users read it"},
		{[]string{"--push-webhook-secret-file", good}, "push-webhook-secret-file is set without push-webhook-url"},
		{[]string{"--projectors", "cache,push", "--trim-interval", "0"}, `unknown projector "push"`},
		{[]string{"--push-webhook-url", url, "--push-webhook-secret-file", good, "--projectors", "archive,mysql,cache,inbox"}, "trim-interval needs every projector"},
	} {
		if _, err := parse(c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v; want an error saying %q", c.args, err, c.want)
		}
	}
	t.Run("without a URL the default set has no push projector", func(t *testing.T) {
		m, err := parse()
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(m.Config.Projectors, push.Name) || !m.Config.runsEveryProjector() {
			t.Errorf("projectors %v", m.Config.Projectors)
		}
		if c := m.Config.Push; c.Window != webhook.DefaultWindow || c.Preview != "sender" || c.Start != "head" || c.MaxPending != push.DefaultMaxPending {
			t.Errorf("push defaults %+v", c)
		}
	})
	t.Run("with a URL the default set gains the push projector", func(t *testing.T) {
		m, err := parse("--push-webhook-url", url, "--push-webhook-secret-file", good, "--push-window", "100ms", "--push-preview", "text", "--push-start", "zero", "--push-max-pending", "8")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(m.Config.Projectors, push.Name) || !m.Config.runsEveryProjector() {
			t.Errorf("projectors %v", m.Config.Projectors)
		}
		if c := m.Config.Push; c.Window != 100*time.Millisecond || c.Preview != "text" || c.Start != "zero" || c.MaxPending != 8 {
			t.Errorf("push settings %+v", c)
		}
		if s, err := m.Config.Push.secret(); err != nil || string(s) != "0123456789abcdef0123456789abcdef" {
			t.Errorf("secret %q, %v", s, err)
		}
	})
	t.Run("an explicit projector list is kept as given", func(t *testing.T) {
		m, err := parse("--push-webhook-url", url, "--push-webhook-secret-file", good, "--projectors", "cache", "--trim-interval", "0")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(m.Config.Projectors, []string{"cache"}) {
			t.Errorf("projectors %v", m.Config.Projectors)
		}
		if _, err := parse("--push-webhook-url", url, "--push-webhook-secret-file", good, "--projectors", "push", "--trim-interval", "0"); err != nil {
			t.Errorf("push alone: %v", err)
		}
	})
}

// TestEmbeddedPushWebhook: `mpimd all` with a webhook URL runs the push
// projector. Bob has tokens on his phone and tablet; with the tablet
// connected and the phone gone, a message from alice reaches the
// receiver as signed calls naming the phone only, and none for alice.
func TestEmbeddedPushWebhook(t *testing.T) {
	secret := "0123456789abcdef0123456789abcdef"
	type taken struct {
		p  webhook.Payload
		ok bool // signed with secret
	}
	calls := make(chan taken, 100)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		ts, _ := strconv.ParseInt(r.Header.Get(webhook.HeaderTimestamp), 10, 64)
		c := taken{ok: webhook.Verify([]byte(secret), ts, body, r.Header.Get(webhook.HeaderSignature)) &&
			r.Header.Get(webhook.HeaderIdempotency) != ""}
		if err := json.Unmarshal(body, &c.p); err != nil {
			c.ok = false
		}
		select {
		case calls <- c:
		default:
		}
	}))
	t.Cleanup(recv.Close)
	cl := startEmbeddedCluster(t, "--push-webhook-url", recv.URL, "--push-webhook-secret-file", secretFile(t, secret+"\n", 0o600),
		"--push-window", "10ms")
	gw := cl.gateways[0]
	alice, bob := cl.register(t, gw, "alice"), cl.register(t, gw, "bob")
	a := cl.login(t, alice, "laptop", gw, frame.Proto)
	phone := cl.login(t, bob, "phone", gw, frame.Proto)
	tablet := cl.login(t, bob, "tablet", gw, frame.JSON)
	token := func(tok string) *mpimv1.ClientFrame_RegisterPushToken {
		return &mpimv1.ClientFrame_RegisterPushToken{RegisterPushToken: &mpimv1.RegisterPushTokenRequest{Platform: "apns", Token: tok}}
	}
	phone.call(t, token("phone-token"))
	tablet.call(t, token("tablet-token"))
	a.call(t, token("alice-token"))
	phone.goOffline()
	// The gateway removes the phone's route shortly after the connection
	// closes: messages go until one is pushed (at most 50, 100ms apart).
	for i := range 50 {
		a.call(t, &mpimv1.ClientFrame_Send{Send: toUser(bob, "push-"+strconv.Itoa(i))})
		select {
		case c := <-calls:
			if !c.ok {
				t.Fatalf("unsigned or malformed call %+v", c.p)
			}
			if c.p.User != domain.UserID(bob.id) || len(c.p.Devices) != 1 || c.p.Devices[0].ID != "phone" || c.p.Devices[0].Token != "phone-token" {
				t.Fatalf("call %+v, want one to bob naming the phone only", c.p)
			}
			if !strings.Contains(c.p.Preview, "alice") {
				t.Errorf("preview %q, want the sender's name", c.p.Preview)
			}
			if c.p.UnreadBadge == nil || *c.p.UnreadBadge < 1 {
				t.Errorf("unread badge %v, want at least the message pushed", c.p.UnreadBadge)
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatal("no webhook call after 50 messages to an offline device")
}
