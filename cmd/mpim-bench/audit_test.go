package main

import (
	"bytes"
	"strings"
	"testing"
)

// fixture is one conversation: device 0 sends; device 1 (the peer) and
// device 2 (the sender's user's other device) receive; the sending device
// has its copy in the send response and receives nothing.
func fixture(tb testing.TB) ([]*sendRecord, []*deviceAudit) {
	tb.Helper()
	sends := []*sendRecord{
		{ClientMsgID: "m1", From: 0, Recipients: []int{1, 2}, Acked: true, EventID: "e1"},
		{ClientMsgID: "m2", From: 0, Recipients: []int{1, 2}, Acked: true, EventID: "e2"},
	}
	devs := []*deviceAudit{newDeviceAudit(), newDeviceAudit(), newDeviceAudit()}
	for _, d := range devs[1:] {
		d.push(delivery{InboxID: "100-0", EventID: "e1", ClientMsgID: "m1", Conversation: "c1", Seq: 1})
		d.push(delivery{InboxID: "100-1", EventID: "e2", ClientMsgID: "m2", Conversation: "c1", Seq: 2})
	}
	return sends, devs
}

func TestAudit(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(sends []*sendRecord, devs []*deviceAudit) []*sendRecord
		want   AuditResult
	}{
		{"clean run passes", func(s []*sendRecord, _ []*deviceAudit) []*sendRecord { return s }, AuditResult{}},
		{"resend of an unacked entry is allowed", func(s []*sendRecord, d []*deviceAudit) []*sendRecord {
			d[1].push(delivery{InboxID: "100-1", EventID: "e2", ClientMsgID: "m2", Conversation: "c1", Seq: 2, Resend: true})
			return s
		}, AuditResult{}},
		{"acked message missing on the devices is lost", func(s []*sendRecord, d []*deviceAudit) []*sendRecord {
			return append(s, &sendRecord{ClientMsgID: "m3", From: 0, Recipients: []int{1, 2}, Acked: true, EventID: "e3"})
		}, AuditResult{AckedNotDelivered: 2}},
		{"acked message missing on the sender's other device is lost", func(s []*sendRecord, d []*deviceAudit) []*sendRecord {
			d[1].push(delivery{InboxID: "100-2", EventID: "e3", ClientMsgID: "m3", Conversation: "c1", Seq: 3})
			return append(s, &sendRecord{ClientMsgID: "m3", From: 0, Recipients: []int{1, 2}, Acked: true, EventID: "e3"})
		}, AuditResult{AckedNotDelivered: 1}},
		{"a message pushed to the device that sent it is an echo", func(s []*sendRecord, d []*deviceAudit) []*sendRecord {
			d[0].push(delivery{InboxID: "100-1", EventID: "e2", ClientMsgID: "m2", Conversation: "c1", Seq: 2})
			return s
		}, AuditResult{Echoes: 1}},
		{"one client message id under two event ids is reappended", func(s []*sendRecord, d []*deviceAudit) []*sendRecord {
			for _, dev := range d[1:] {
				dev.push(delivery{InboxID: "100-2", EventID: "e1-again", ClientMsgID: "m1", Conversation: "c1", Seq: 3})
			}
			return s
		}, AuditResult{Reappended: 2}},
		{"an acked event replaced by another of its client message id is lost", func(s []*sendRecord, d []*deviceAudit) []*sendRecord {
			d[1].push(delivery{InboxID: "100-2", EventID: "e3-other", ClientMsgID: "m3", Conversation: "c1", Seq: 3})
			d[2].push(delivery{InboxID: "100-2", EventID: "e3", ClientMsgID: "m3", Conversation: "c1", Seq: 3})
			return append(s, &sendRecord{ClientMsgID: "m3", From: 0, Recipients: []int{1, 2}, Acked: true, EventID: "e3"})
		}, AuditResult{AckedNotDelivered: 1}},
		{"unacked undelivered send is not lost", func(s []*sendRecord, d []*deviceAudit) []*sendRecord {
			return append(s, &sendRecord{ClientMsgID: "m3", From: 0, Recipients: []int{1, 2}})
		}, AuditResult{}},
		{"resend after a confirmed ack is a duplicate", func(s []*sendRecord, d []*deviceAudit) []*sendRecord {
			d[1].acked("100-1")
			d[1].push(delivery{InboxID: "100-1", EventID: "e2", ClientMsgID: "m2", Conversation: "c1", Seq: 2, Resend: true})
			return s
		}, AuditResult{Duplicates: 1}},
		{"second inbox entry of one event is a duplicate", func(s []*sendRecord, d []*deviceAudit) []*sendRecord {
			d[2].push(delivery{InboxID: "101-0", EventID: "e1", ClientMsgID: "m1", Conversation: "c1", Seq: 1, Resend: true})
			return s
		}, AuditResult{Duplicates: 1}},
		{"repeat without the resend flag is a duplicate", func(s []*sendRecord, d []*deviceAudit) []*sendRecord {
			d[2].push(delivery{InboxID: "100-1", EventID: "e2", ClientMsgID: "m2", Conversation: "c1", Seq: 2})
			return s
		}, AuditResult{Duplicates: 1}},
		{"lower seq in a conversation is out of order", func(s []*sendRecord, d []*deviceAudit) []*sendRecord {
			d[1].push(delivery{InboxID: "100-2", EventID: "e0", ClientMsgID: "m0", Conversation: "c1", Seq: 1})
			return append(s, &sendRecord{ClientMsgID: "m0", From: 0, Recipients: []int{1}, Acked: true, EventID: "e0"})
		}, AuditResult{OutOfOrder: 1}},
		{"seqs of other conversations are independent", func(s []*sendRecord, d []*deviceAudit) []*sendRecord {
			d[0].push(delivery{InboxID: "100-2", EventID: "e9", ClientMsgID: "m9", Conversation: "c2", Seq: 1})
			return append(s, &sendRecord{ClientMsgID: "m9", From: 1, Recipients: []int{0}, Acked: true, EventID: "e9"})
		}, AuditResult{}},
		{"delivery of a never acked send is reported once", func(s []*sendRecord, d []*deviceAudit) []*sendRecord {
			for _, dev := range d[1:] {
				dev.push(delivery{InboxID: "100-5", EventID: "e5", ClientMsgID: "m5", Conversation: "c1", Seq: 3})
			}
			return append(s, &sendRecord{ClientMsgID: "m5", From: 0, Recipients: []int{1, 2}})
		}, AuditResult{DeliveredNotAcked: 1}},
		{"malformed inbox id is counted", func(s []*sendRecord, d []*deviceAudit) []*sendRecord {
			d[0].push(delivery{InboxID: "garbage", EventID: "e7", ClientMsgID: "m7", Conversation: "c3", Seq: 1})
			return append(s, &sendRecord{ClientMsgID: "m7", From: 1, Recipients: []int{0}, Acked: true, EventID: "e7"})
		}, AuditResult{MalformedInboxIDs: 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sends, devs := fixture(t)
			sends = tc.mutate(sends, devs)
			got := audit(sends, devs)
			if got != tc.want {
				t.Fatalf("audit = %+v, want %+v", got, tc.want)
			}
			if got.Clean() != (tc.want == AuditResult{}) {
				t.Fatalf("Clean() = %v for %+v", got.Clean(), got)
			}
		})
	}
}

func TestClientMsgIDRoundTrips(t *testing.T) {
	r := newRunner(&Config{TextBytes: 1}, &bytes.Buffer{})
	r.clients = make([]*client, 8)
	id := r.clientMsgID(7, 42, 1234567890123)
	if len(id) > 64 {
		t.Fatalf("client message id %q is longer than the protocol's 64 bytes", id)
	}
	from, at, ok := r.parseClientMsgID(id)
	if !ok || from != 7 || at != 1234567890123 {
		t.Fatalf("parse(%q) = %d, %d, %v", id, from, at, ok)
	}
	if _, _, ok := r.parseClientMsgID("other." + id); ok {
		t.Fatal("an id of another run was accepted")
	}
	for _, bad := range []string{r.prefix + "x.7.42.1", r.prefix + ".7.42", r.prefix + ".7.42.1.2", r.prefix + ".8.42.1", r.prefix + ".7.42.x", r.prefix} {
		if _, _, ok := r.parseClientMsgID(bad); ok {
			t.Errorf("malformed id %q was accepted", bad)
		}
	}
	if testing.AllocsPerRun(100, func() { r.parseClientMsgID(id) }) != 0 {
		t.Error("parsing a client message id allocates")
	}
}

func TestFlags(t *testing.T) {
	gw := []string{"--gateways", "ws://127.0.0.1:8080/ws"}
	cases := []struct {
		name string
		args []string
		want []string // substrings of the error; none: valid
	}{
		{"defaults with a gateway are valid", gw, nil},
		{"dispatch alone is valid", []string{"--dispatch", "http://localhost:8080/dispatch"}, nil},
		{"no target is rejected", nil, []string{"give --gateways or --dispatch"}},
		{"both targets are rejected", append(gw, "--dispatch", "http://127.0.0.1:1/dispatch"), []string{"not both"}},
		{"remote gateway is rejected", []string{"--gateways", "ws://10.0.0.1:8080/ws"}, []string{"only loopback"}},
		{"wrong scheme is rejected", []string{"--gateways", "http://127.0.0.1:8080/ws"}, []string{"scheme must be ws"}},
		{"json clients are valid", append(gw, "--codec", "json"), nil},
		{"unknown codec is rejected", append(gw, "--codec", "xml"), []string{`codec "xml": want proto or json`}},
		{"unknown scenario is rejected", append(gw, "--scenario", "chaos"), []string{`scenario "chaos"`}},
		{"odd pairs is rejected", append(gw, "--users", "7"), []string{"users must be even"}},
		{"groups must divide users", append(gw, "--scenario", "groups", "--users", "10", "--group-size", "3"), []string{"multiple of group-size"}},
		{"every problem is reported at once", append(gw, "--window", "0", "--rate", "-1", "--duration", "0s"),
			[]string{"window must be", "rate must not be negative", "duration must be"}},
		{"bad pid is rejected", append(gw, "--pid", "12,x"), []string{`bad pid "x"`}},
		{"storm is valid", append(gw, "--scenario", "storm", "--users", "200", "--senders", "20", "--missed", "20"), nil},
		{"storm checks its shape", append(gw, "--scenario", "storm", "--users", "7", "--senders", "9", "--missed", "0", "--reconnect-concurrency", "0", "--rate", "10"),
			[]string{"storm: users must be even", "storm: senders must be", "storm: missed must be", "reconnect-concurrency", "--rate is not supported"}},
		{"storm is bounded", append(gw, "--scenario", "storm", "--users", "200000", "--missed", "100"), []string{"users x missed"}},
		{"plot interval is checked", append(gw, "--plot-interval", "1ms"), []string{"plot-interval must be"}},
		{"stray argument is rejected", append(gw, "extra"), []string{"unexpected arguments"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			_, err := parseConfig(tc.args, &stderr)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("parseConfig(%q) = %v, want no error", tc.args, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("parseConfig(%q) succeeded, want an error", tc.args)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
