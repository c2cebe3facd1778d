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

func TestRouteChangeRoundTrips(t *testing.T) {
	r := inbox.Route{Gateway: "gw-1", Expires: time.UnixMilli(1_700_000_000_123).UTC()}
	for _, c := range []inbox.RouteChange{
		{Seq: 7, User: "u/01HZZZZZZZZZZZZZZZZZZZZZZZ", Device: "ph-1", Gateway: "gw-1", Route: r},
		{Seq: 8, User: "u/01HZZZZZZZZZZZZZZZZZZZZZZZ", Device: "ph-1", Gateway: "gw-1", Deleted: true},
	} {
		args := c.ChangeArgs()
		values := map[string]any{inbox.FieldChangeSeq: "7", inbox.FieldChangeUser: args[0], inbox.FieldChangeDevice: args[1],
			inbox.FieldChangeGateway: args[2], inbox.FieldChangeRoute: args[3]}
		values[inbox.FieldChangeSeq] = map[bool]string{false: "7", true: "8"}[c.Deleted]
		got, err := inbox.DecodeRouteChange(values)
		if err != nil || got != c {
			t.Fatalf("decoded %+v, %v; want %+v", got, err, c)
		}
	}
	good := map[string]any{"n": "1", "u": "u/01HZZZZZZZZZZZZZZZZZZZZZZZ", "d": "ph", "g": "gw-1", "r": r.Encode()}
	for name, mutate := range map[string]func(map[string]any){
		"zero number":       func(m map[string]any) { m["n"] = "0" },
		"missing device":    func(m map[string]any) { delete(m, "d") },
		"bad user":          func(m map[string]any) { m["u"] = "bob" },
		"bad gateway":       func(m map[string]any) { m["g"] = "g w" },
		"other gateway":     func(m map[string]any) { m["g"] = "gw-2" },
		"malformed route":   func(m map[string]any) { m["r"] = "gw-1" },
		"number not a word": func(m map[string]any) { m["n"] = "x" },
	} {
		m := map[string]any{}
		for k, v := range good {
			m[k] = v
		}
		mutate(m)
		if _, err := inbox.DecodeRouteChange(m); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
	if _, err := inbox.DecodeRouteChange(good); err != nil {
		t.Fatal(err)
	}
}

func TestNotificationCarriesEntries(t *testing.T) {
	e1 := inbox.Entry{EventID: [16]byte{1, 2}, Type: "MessageSent", Partition: 3, Position: "5-1", Version: 2, Seq: 9, Envelope: []byte("a\nb c\x00")}
	e2 := inbox.Entry{EventID: [16]byte{3, '\n'}, Type: "MessageRead", Partition: 0, Position: "6-0", Version: 1, Seq: 0, Envelope: []byte{}}
	n := inbox.Notification{Users: []inbox.Head{
		{User: "u/A", Last: "10-1", Prev: "0-0", Entries: []inbox.Carried{{ID: "10-0", Entry: e1}, {ID: "10-1", Entry: e2}}},
		{User: "u/B", Last: "11-0"},
		{User: "u/C", Last: "12-0", Prev: "9-3", Entries: []inbox.Carried{{ID: "12-0", Entry: e1}}},
	}}
	b := n.Encode()
	size, ends := 0, map[int]bool{}
	for i := range n.Users {
		size += n.Users[i].Size()
		ends[size] = true
	}
	if size != len(b) {
		t.Fatalf("Size says %d bytes, Encode made %d", size, len(b))
	}
	got, err := inbox.DecodeNotification(b)
	if err != nil || !reflect.DeepEqual(got, n) {
		t.Fatalf("decoded %+v, %v\nwant %+v", got, err, n)
	}
	// Every truncation of the payload but between heads, and entries out
	// of order or not ending at Last, fail.
	for i := 1; i < len(b); i++ {
		if ends[i] {
			continue
		}
		if _, err := inbox.DecodeNotification(b[:i]); err == nil {
			t.Errorf("payload cut at %d of %d decoded without error", i, len(b))
		}
	}
	for _, h := range []inbox.Head{
		{User: "u/A", Last: "10-1", Prev: "10-0", Entries: []inbox.Carried{{ID: "10-0", Entry: e1}, {ID: "10-1", Entry: e2}}},
		{User: "u/A", Last: "10-1", Prev: "0-0", Entries: []inbox.Carried{{ID: "10-1", Entry: e1}, {ID: "10-0", Entry: e2}}},
		{User: "u/A", Last: "10-2", Prev: "0-0", Entries: []inbox.Carried{{ID: "10-1", Entry: e1}}},
	} {
		if _, err := inbox.DecodeNotification(inbox.Notification{Users: []inbox.Head{h}}.Encode()); err == nil {
			t.Errorf("head %+v decoded without error", h)
		}
	}
	if _, err := inbox.DecodeNotification(make([]byte, inbox.MaxNotificationBytes+1)); err == nil {
		t.Error("an oversize payload decoded without error")
	}
}
