package inbox_test

import (
	"bytes"
	"reflect"
	"testing"
	"time"

	"github.com/mpim/mpim/internal/inbox"
)

func TestKeysShareTheUsersHashTag(t *testing.T) {
	k := inbox.NewKeys("t:x:")
	const u = "u/01HZZZZZZZZZZZZZZZZZZZZZZZ"
	for key, want := range map[string]string{
		k.Inbox(u):          "t:x:inbox:{u/01HZZZZZZZZZZZZZZZZZZZZZZZ}",
		k.Cursor(u, "ph-1"): "t:x:inbox:{u/01HZZZZZZZZZZZZZZZZZZZZZZZ}:cursor:ph-1",
		k.Presence(u):       "t:x:presence:{u/01HZZZZZZZZZZZZZZZZZZZZZZZ}",
		k.Notify("gw-1"):    "t:x:notify:{gw-1}",
		k.LastSeen(u):       "t:x:lastseen:{u/01HZZZZZZZZZZZZZZZZZZZZZZZ}",
		k.Signal("gw-1"):    "t:x:signal:{gw-1}",
	} {
		if key != want {
			t.Errorf("key %q, want %q", key, want)
		}
	}
}

func TestEntryRoundTrips(t *testing.T) {
	e := inbox.Entry{Type: "MessageSent", Partition: 7, Position: "1700000000000-3", Version: 42, Seq: 41, Envelope: []byte{0, 1, 2, 0xff}}
	copy(e.EventID[:], "0123456789abcdef")
	fields := e.AppendFields(nil)
	if len(fields) != 12 {
		t.Fatalf("%d field arguments, want 12", len(fields))
	}
	values := map[string]any{}
	for i := 0; i < len(fields); i += 2 {
		switch v := fields[i+1].(type) {
		case []byte:
			values[fields[i].(string)] = string(v) // as a Redis client returns it
		default:
			values[fields[i].(string)] = v
		}
	}
	got, err := inbox.DecodeEntry(values)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, e) {
		t.Fatalf("decoded %+v, want %+v", got, e)
	}
}

func TestDecodeEntryRejectsMalformedFields(t *testing.T) {
	good := map[string]any{"i": "0123456789abcdef", "t": "MessageSent", "p": "1:5-0", "v": "1", "s": "0", "d": "x"}
	for name, mutate := range map[string]func(map[string]any){
		"missing envelope": func(m map[string]any) { delete(m, "d") },
		"short id":         func(m map[string]any) { m["i"] = "abc" },
		"no partition":     func(m map[string]any) { m["p"] = "5-0" },
		"bad position":     func(m map[string]any) { m["p"] = "1:five" },
		"bad version":      func(m map[string]any) { m["v"] = "-1" },
		"empty type":       func(m map[string]any) { m["t"] = "" },
	} {
		m := map[string]any{}
		for k, v := range good {
			m[k] = v
		}
		mutate(m)
		if _, err := inbox.DecodeEntry(m); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
	if _, err := inbox.DecodeEntry(good); err != nil {
		t.Fatalf("good entry: %v", err)
	}
}

func TestRouteRoundTripsAndExpires(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_123).UTC()
	r := inbox.Route{Gateway: "gw-a.1", Expires: now.Add(inbox.RouteTTL)}
	got, err := inbox.DecodeRoute(r.Encode())
	if err != nil || got != r {
		t.Fatalf("decoded %+v, %v; want %+v", got, err, r)
	}
	if !r.Live(now) || r.Live(r.Expires) {
		t.Fatal("a route is live strictly before its deadline")
	}
	for _, bad := range []string{"", "gw", "gw x", "g{w} 1", " 1"} {
		if _, err := inbox.DecodeRoute(bad); err == nil {
			t.Errorf("route %q decoded without error", bad)
		}
	}
	if inbox.ValidGateway("gw}") || inbox.ValidGateway("") || !inbox.ValidGateway("gw_1.eu-west") {
		t.Fatal("ValidGateway disagrees with its documentation")
	}
}

func TestNotificationRoundTrips(t *testing.T) {
	n := inbox.Notification{Users: []inbox.Head{
		{User: "u/01HZZZZZZZZZZZZZZZZZZZZZZA", Last: "1700000000000-0"},
		{User: "u/01HZZZZZZZZZZZZZZZZZZZZZZB", Last: "1700000000001-7"},
	}}
	b := n.Encode()
	if !bytes.Equal(b, []byte("u/01HZZZZZZZZZZZZZZZZZZZZZZA 1700000000000-0\nu/01HZZZZZZZZZZZZZZZZZZZZZZB 1700000000001-7\n")) {
		t.Fatalf("payload %q", b)
	}
	got, err := inbox.DecodeNotification(b)
	if err != nil || !reflect.DeepEqual(got, n) {
		t.Fatalf("decoded %+v, %v", got, err)
	}
	for _, bad := range []string{"u/x 1-0", "u/x\n", "u/x 1\n", " 1-0\n"} {
		if _, err := inbox.DecodeNotification([]byte(bad)); err == nil {
			t.Errorf("payload %q decoded without error", bad)
		}
	}
}
