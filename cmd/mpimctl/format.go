package main

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/eventjson"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// printer writes events as human lines or as the JSON lines of
// docs/analytics-format.md; it is safe for concurrent use. Secrets (password
// hashes, push tokens) are printed redacted unless secrets is set.
type printer struct {
	mu      sync.Mutex
	w       io.Writer
	json    bool
	secrets bool
}

// eventLine is the JSON line (docs/analytics-format.md, no newline) of r,
// its secrets redacted unless secrets is set.
func eventLine(r eventstore.Recorded, secrets bool) ([]byte, error) {
	ev := r.Event
	if !secrets {
		ev = redact(ev).(*mpimv1.Event)
	}
	return eventjson.Marshal(r.Partition, r.Position, ev)
}

// undecodableLine is the JSON line (no newline) of an entry that cannot be
// decoded: its position, why, and its stored bytes in base64.
func undecodableLine(de *eventstore.DecodeError) []byte {
	line, err := eventjson.MarshalUndecodable(de.Partition, de.Position, de.Err.Error(), de.Raw)
	if err != nil { // a struct of strings and an int always marshals
		panic(err)
	}
	return line
}

func (p *printer) print(r eventstore.Recorded) error {
	if p.json {
		line, err := eventLine(r, p.secrets)
		if err != nil {
			return fmt.Errorf("printing %d/%s: %w", r.Partition, r.Position, err)
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		_, err = fmt.Fprintf(p.w, "%s\n", line)
		return err
	}
	ev := r.Event
	kind := eventjson.TypeOf(ev)
	if kind == "" {
		kind = "?"
	}
	when := time.UnixMilli(ev.GetOccurredAtMs()).UTC().Format("15:04:05.000")
	seq := ""
	if ev.GetSeq() > 0 {
		seq = fmt.Sprintf(" seq=%d", ev.GetSeq())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	_, err := fmt.Fprintf(p.w, "p%02d %-20s %s %-22s %s v%d%s actor=%s\n", r.Partition, r.Position, when, kind, ev.GetAggregate(),
		ev.GetVersion(), seq, ev.GetActor().GetUserId())
	return err
}

func (p *printer) printBad(de *eventstore.DecodeError) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json {
		fmt.Fprintf(p.w, "%s\n", undecodableLine(de))
		return
	}
	fmt.Fprintf(p.w, "p%02d %-20s UNDECODABLE: %v\n", de.Partition, de.Position, de.Err)
}
