package main

import "github.com/mpim/mpim/internal/streamid"

// The audit: every benchmark run checks that what the gateways acknowledged
// was delivered, once, in order, to every device that must have it and not
// to the connection that sent it (its send response is its copy), and that
// nothing was delivered that the sender was not told about. The types here are pure bookkeeping, fed by the
// clients and read once at the end; they do no I/O.

// delivery is one MessageSent push as a device received it.
type delivery struct {
	InboxID      string
	EventID      string // raw bytes of the event id, as a string
	ClientMsgID  string
	Conversation string
	Seq          uint64
	Resend       bool
}

// firstDelivery is what a device remembers of the first delivery of an event.
type firstDelivery struct {
	inbox streamid.ID
}

// deviceAudit is the audit state of one device (one connection). It is used
// by one goroutine at a time: the connection's reader, then the final audit.
type deviceAudit struct {
	seen      map[string]firstDelivery // by event id
	lastSeq   map[string]uint64        // by conversation
	ackedUpTo streamid.ID              // the highest inbox id whose ack the server confirmed
	// delivered maps the client message id of every message delivered to
	// the event id it first arrived under.
	delivered  map[string]string
	duplicates int
	reappended int
	disorder   int
	malformed  int
}

func newDeviceAudit() *deviceAudit {
	return &deviceAudit{seen: map[string]firstDelivery{}, lastSeq: map[string]uint64{}, delivered: map[string]string{}}
}

// push records a delivery and reports whether it was the first of its event
// on this device. A second delivery of an event is a duplicate unless it is
// a resend of the same inbox entry that the device had not yet acknowledged
// (confirmed by the server) when it arrived: the protocol allows those.
// A new event carrying a client message id the device already has under
// another event id is the message appended twice (the server's idempotency
// failed): it is counted and is not a first delivery.
func (d *deviceAudit) push(p delivery) (first bool) {
	pos, err := streamid.Parse(p.InboxID)
	if err != nil {
		d.malformed++
	}
	if prev, dup := d.seen[p.EventID]; dup {
		if !p.Resend || pos != prev.inbox || !pos.After(d.ackedUpTo) {
			d.duplicates++
		}
		return false
	}
	d.seen[p.EventID] = firstDelivery{inbox: pos}
	if last, ok := d.lastSeq[p.Conversation]; ok && p.Seq <= last {
		d.disorder++
	} else {
		d.lastSeq[p.Conversation] = p.Seq
	}
	if _, again := d.delivered[p.ClientMsgID]; again {
		d.reappended++
		return false
	}
	d.delivered[p.ClientMsgID] = p.EventID
	return true
}

// acked records that the server confirmed an ack of inboxID (it covers every
// entry up to it).
func (d *deviceAudit) acked(inboxID string) {
	if p, err := streamid.Parse(inboxID); err == nil && p.After(d.ackedUpTo) {
		d.ackedUpTo = p
	}
}

// sendRecord is one message a client sent. Recipients are the indexes of the
// devices that must receive it: every device of every member but the
// sending one (From), which must not.
type sendRecord struct {
	ClientMsgID string
	From        int
	Recipients  []int
	Acked       bool // the gateway answered the send with a result
	EventID     string
	Seq         uint64 // the message's seq in its conversation, once acked
}

// AuditResult holds the audit counters; any non-zero one fails the run.
type AuditResult struct {
	// AckedNotDelivered counts (message, recipient device) pairs of acked
	// messages that the device never received.
	AckedNotDelivered int `json:"acked_not_delivered"`
	// Duplicates counts deliveries of an event to a device that already had
	// it, beyond the allowed resends.
	Duplicates int `json:"duplicates"`
	// Reappended counts deliveries to a device of a message (client
	// message id) under a second event id: the message was appended twice.
	Reappended int `json:"reappended"`
	// OutOfOrder counts first deliveries whose seq did not exceed the last
	// one the device received in that conversation.
	OutOfOrder int `json:"out_of_order"`
	// Echoes counts messages pushed to the connection that sent them
	// (the gateway must not echo a message to its sending device).
	Echoes int `json:"echoes"`
	// DeliveredNotAcked counts messages some device received whose sender
	// never got an acknowledgement.
	DeliveredNotAcked int `json:"delivered_not_acked"`
	// MalformedInboxIDs counts pushes whose inbox id could not be parsed.
	MalformedInboxIDs int `json:"malformed_inbox_ids"`
	// SendErrors counts sends answered with an error other than
	// rate_limited (those are retried) or that could not be written.
	SendErrors int `json:"send_errors"`
	// Unanswered counts sends (rate-limited retries included) still waiting
	// for an answer when the run ended.
	Unanswered int `json:"unanswered"`
	// DroppedConnections counts connections that ended before the run
	// closed them.
	DroppedConnections int `json:"dropped_connections"`
	// PushesLost counts (push scenario) acked messages to offline
	// receivers that no webhook call carried within the wait.
	PushesLost int `json:"pushes_lost,omitempty"`
	// BadWebhookCalls counts (push scenario) webhook calls with a wrong
	// signature, timestamp or body, or without the receiver's token.
	BadWebhookCalls int `json:"bad_webhook_calls,omitempty"`
}

// Clean reports whether every counter is zero.
func (r AuditResult) Clean() bool { return r == AuditResult{} }

// closeAndAudit ends the run: it counts the connections that ended on
// their own, closes the others, and audits the sends and deliveries of
// every client and the answers of the sends. Every sender must have
// stopped issuing sends.
func (r *runner) closeAndAudit() AuditResult {
	dropped := 0
	for _, cl := range r.clients {
		if cl.c == nil {
			continue
		}
		select {
		case <-cl.c.Done():
			dropped++
		default:
		}
	}
	// Answers and their counters stop here: a rate-limited retry that
	// fires later finds its connection closed, and the snapshot below
	// counts it as unanswered.
	unanswered, sendErrors := r.inflight(), r.sendErrors.Load()
	r.closeAll() // the readers end: their audit state is ours now
	var sends []*sendRecord
	devices := make([]*deviceAudit, len(r.clients))
	for i, cl := range r.clients {
		sends = append(sends, cl.sends...)
		devices[i] = cl.audit
	}
	res := audit(sends, devices)
	res.SendErrors = int(sendErrors)
	res.Unanswered = int(max(unanswered, 0))
	res.DroppedConnections = dropped
	return res
}

// audit checks the sends against the devices' deliveries. devices is indexed
// like sendRecord.From and Recipients.
func audit(sends []*sendRecord, devices []*deviceAudit) AuditResult {
	var r AuditResult
	acked := make(map[string]bool, len(sends))
	for _, s := range sends {
		acked[s.ClientMsgID] = acked[s.ClientMsgID] || s.Acked
		if _, echoed := devices[s.From].delivered[s.ClientMsgID]; echoed {
			r.Echoes++
		}
		if !s.Acked {
			continue
		}
		// The event the sender was told of must arrive, not merely some
		// event of the same client message id.
		for _, to := range s.Recipients {
			if _, ok := devices[to].seen[s.EventID]; !ok {
				r.AckedNotDelivered++
			}
		}
	}
	unacked := map[string]struct{}{}
	for _, d := range devices {
		r.Duplicates += d.duplicates
		r.Reappended += d.reappended
		r.OutOfOrder += d.disorder
		r.MalformedInboxIDs += d.malformed
		for id := range d.delivered {
			if !acked[id] {
				unacked[id] = struct{}{}
			}
		}
	}
	r.DeliveredNotAcked = len(unacked)
	return r
}
