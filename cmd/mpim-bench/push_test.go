package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/push/webhook"
)

var testPushSecret = []byte("0123456789abcdef0123456789abcdef")

// pushCall is a webhook call as mpimd's sender makes it: body p, signed
// at ts under secret, with the event id as idempotency key.
func pushCall(t *testing.T, secret []byte, ts time.Time, p webhook.Payload) *http.Request {
	t.Helper()
	body, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/push", strings.NewReader(string(body)))
	sec := ts.Unix()
	req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(sec, 10))
	req.Header.Set(webhook.HeaderSignature, webhook.Sign(secret, sec, body))
	req.Header.Set(webhook.HeaderIdempotency, p.EventID)
	return req
}

func payloadFor(user, token, eventID string, seq int64, count int) webhook.Payload {
	return webhook.Payload{User: domain.UserID("u/" + user), Devices: []webhook.Device{{ID: "bench-1", Platform: "custom", Token: token}},
		Conversation: "c/1", EventID: eventID, Seq: seq, Count: count}
}

// The receiver takes a call signed with its secret and records it; it
// refuses, and counts as bad, a call with another signature, an old
// timestamp, another method, an idempotency key that is not the event id
// or without the receiver's token; it answers a call for a user of another
// run without counting it.
func TestPushReceiverChecksCalls(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	recv := newPushReceiver(testPushSecret)
	recv.now = func() time.Time { return now }
	recv.expect("u/alice", "tok-alice")
	serve := func(req *http.Request) int {
		w := httptest.NewRecorder()
		recv.ServeHTTP(w, req)
		return w.Code
	}

	if got := serve(pushCall(t, testPushSecret, now, payloadFor("alice", "tok-alice", "p0:1-0:u/alice", 3, 2))); got != http.StatusOK {
		t.Fatalf("a good call: status %d", got)
	}
	if got := serve(pushCall(t, testPushSecret, now.Add(-time.Minute), payloadFor("alice", "tok-alice", "p0:1-0:u/alice", 3, 2))); got != http.StatusOK {
		t.Fatalf("a retry of it: status %d", got)
	}
	calls := recv.callsFor("u/alice")
	if len(calls) != 2 || calls[0].seq != 3 || calls[0].count != 2 || calls[0].at != now.UnixNano() {
		t.Fatalf("calls recorded = %+v", calls)
	}
	if recv.repeated != 1 || recv.bad != 0 {
		t.Fatalf("repeated %d, bad %d; want 1, 0", recv.repeated, recv.bad)
	}
	if got := serve(pushCall(t, testPushSecret, now, payloadFor("bob", "tok-bob", "p0:2-0:u/bob", 1, 1))); got != http.StatusOK || recv.foreign != 1 {
		t.Fatalf("a call for another run's user: status %d, foreign %d", got, recv.foreign)
	}

	wrongKey := pushCall(t, testPushSecret, now, payloadFor("alice", "tok-alice", "p0:3-0:u/alice", 4, 1))
	wrongKey.Header.Set(webhook.HeaderIdempotency, "p0:9-0:u/alice")
	get := pushCall(t, testPushSecret, now, payloadFor("alice", "tok-alice", "p0:3-0:u/alice", 4, 1))
	get.Method = http.MethodGet
	noCount := payloadFor("alice", "tok-alice", "p0:3-0:u/alice", 4, 1)
	noCount.Count = 0
	for _, tc := range []struct {
		name   string
		req    *http.Request
		status int
		err    string
	}{
		{"another secret", pushCall(t, []byte("another-secret-of-32-bytes-long!"), now, payloadFor("alice", "tok-alice", "p0:3-0:u/alice", 4, 1)), http.StatusUnauthorized, "signature"},
		{"an old timestamp", pushCall(t, testPushSecret, now.Add(-time.Hour), payloadFor("alice", "tok-alice", "p0:3-0:u/alice", 4, 1)), http.StatusUnauthorized, "timestamp"},
		{"GET", get, http.StatusMethodNotAllowed, "method"},
		{"a key that is not the event id", wrongKey, http.StatusBadRequest, webhook.HeaderIdempotency},
		{"no count", pushCall(t, testPushSecret, now, noCount), http.StatusBadRequest, "count"},
		{"another token", pushCall(t, testPushSecret, now, payloadFor("alice", "tok-mallory", "p0:3-0:u/alice", 4, 1)), http.StatusBadRequest, "token"},
	} {
		bad := recv.bad
		recv.firstBad = ""
		if got := serve(tc.req); got != tc.status || recv.bad != bad+1 || !strings.Contains(recv.firstBad, tc.err) {
			t.Errorf("%s: status %d, bad %d -> %d, error %q; want %d, one more bad call, an error naming %q",
				tc.name, got, bad, recv.bad, recv.firstBad, tc.status, tc.err)
		}
	}
	if got := len(recv.callsFor("u/alice")); got != 2 {
		t.Fatalf("refused calls were recorded: %d calls", got)
	}
}

// A message arrived with the first call, by arrival time, whose seq is at
// least its own; a message no call reached has none.
func TestPushArrivals(t *testing.T) {
	calls := []pushCallAt{{at: 300, seq: 5, count: 2}, {at: 100, seq: 2, count: 2}, {at: 200, seq: 1, count: 1}} // the third repeats an old one
	msgs := []pushMessage{{seq: 1}, {seq: 2}, {seq: 3}, {seq: 5}, {seq: 6}}
	got := pushArrivals(msgs, calls)
	want := []int64{100, 100, 300, 300, 0}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("arrivals = %v, want %v", got, want)
		}
	}
	if got := pushArrivals(msgs[:1], nil); got[0] != 0 {
		t.Fatalf("with no call: %v", got)
	}
}

// The push scenario's flags: a loopback --push-listen and a secret file of
// 16..1024 bytes are required, and only the push scenario takes them.
func TestPushFlags(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "secret")
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(good, append(testPushSecret, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(short, []byte("tooshort\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"--gateways", "ws://127.0.0.1:1/ws", "--scenario", "push", "--users", "4"}
	cfg, err := parseConfig(append(base, "--push-listen", "127.0.0.1:9900", "--push-secret-file", good), io.Discard)
	if err != nil {
		t.Fatalf("good flags: %v", err)
	}
	if string(cfg.pushSecret) != string(testPushSecret) {
		t.Fatalf("secret %q: the trailing newline was not dropped", cfg.pushSecret)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--push-secret-file", good}, "give --push-listen"},
		{[]string{"--push-listen", "127.0.0.1:9900"}, "give --push-secret-file"},
		{[]string{"--push-listen", "10.0.0.1:9900", "--push-secret-file", good}, "loopback"},
		{[]string{"--push-listen", "127.0.0.1", "--push-secret-file", good}, "host:port"},
		{[]string{"--push-listen", "127.0.0.1:9900", "--push-secret-file", short}, "16..1024 bytes"},
		{[]string{"--push-listen", "127.0.0.1:9900", "--push-secret-file", filepath.Join(dir, "none")}, "no such file"},
		{[]string{"--users", "5", "--push-listen", "127.0.0.1:9900", "--push-secret-file", good}, "users must be even"},
	} {
		_, err := parseConfig(append(append([]string{}, base...), tc.args...), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one naming %q", tc.args, err, tc.want)
		}
	}
	_, err = parseConfig([]string{"--gateways", "ws://127.0.0.1:1/ws", "--scenario", "pairs", "--push-listen", "127.0.0.1:9900"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "push scenario only") {
		t.Errorf("pairs with --push-listen: error %v, want it refused", err)
	}
}
