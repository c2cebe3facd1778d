package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/mpim/mpim/eventstore"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// printer writes events as human lines or JSON lines; it is safe for
// concurrent use. Secrets (password hashes) are printed redacted unless
// secrets is set.
type printer struct {
	mu      sync.Mutex
	w       io.Writer
	json    bool
	secrets bool
}

var compact = protojson.MarshalOptions{UseProtoNames: true}

func (p *printer) print(r eventstore.Recorded) error {
	ev := r.Event
	if !p.secrets {
		ev = redact(ev).(*mpimv1.Event)
	}
	body, err := compact.Marshal(ev)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json {
		line, err := json.Marshal(struct {
			Partition int             `json:"partition"`
			Position  string          `json:"position"`
			Event     json.RawMessage `json:"event"`
		}{r.Partition, r.Position.String(), body})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(p.w, "%s\n", line)
		return err
	}
	kind := "?"
	if pl := ev.ProtoReflect().WhichOneof(ev.ProtoReflect().Descriptor().Oneofs().ByName("payload")); pl != nil {
		kind = string(pl.Message().Name())
	}
	when := time.UnixMilli(ev.GetOccurredAtMs()).UTC().Format("15:04:05.000")
	seq := ""
	if ev.GetSeq() > 0 {
		seq = fmt.Sprintf(" seq=%d", ev.GetSeq())
	}
	_, err = fmt.Fprintf(p.w, "p%02d %-20s %s %-22s %s v%d%s actor=%s\n", r.Partition, r.Position, when, kind, ev.GetAggregate(),
		ev.GetVersion(), seq, ev.GetActor().GetUserId())
	return err
}

func (p *printer) printBad(de *eventstore.DecodeError) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json {
		line, _ := json.Marshal(map[string]any{"partition": de.Partition, "position": de.Position.String(), "error": de.Err.Error()})
		fmt.Fprintf(p.w, "%s\n", line)
		return
	}
	fmt.Fprintf(p.w, "p%02d %-20s UNDECODABLE: %v\n", de.Partition, de.Position, de.Err)
}

// partitionList parses --partition: "all" or a number.
func partitionList(spec string, n int) ([]int, error) {
	if spec == "" || spec == "all" {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out, nil
	}
	var p int
	if _, err := fmt.Sscanf(spec, "%d", &p); err != nil || p < 0 || p >= n || fmt.Sprint(p) != strings.TrimSpace(spec) {
		return nil, fmt.Errorf("--partition must be \"all\" or 0..%d, got %q", n-1, spec)
	}
	return []int{p}, nil
}

func runTail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, c := newFlags("tail", stderr)
	part := fs.String("partition", "all", "partition to follow, or all")
	asJSON := fs.Bool("json", false, "JSON lines instead of human lines")
	fromStart := fs.Bool("from-start", false, "start at the oldest entry instead of the end")
	limit := fs.Int("limit", 0, "stop after this many events (0: follow until interrupted)")
	secrets := fs.Bool("with-secrets", false, "print password hashes instead of "+redacted)
	if err := parse(fs, args); err != nil {
		return err
	}
	return c.withPartitions(ctx, *part, func(store *eventstore.Store, parts []int) error {
		out := &printer{w: stdout, json: *asJSON, secrets: *secrets}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var printed sync.WaitGroup
		var mu sync.Mutex
		count := 0
		errc := make(chan error, len(parts))
		for _, p := range parts {
			var pos eventstore.Position
			if !*fromStart {
				info, err := store.Info(ctx, p)
				if err != nil {
					return err
				}
				pos = info.Last
			}
			printed.Add(1)
			go func() {
				defer printed.Done()
				errc <- follow(ctx, store, p, pos, func(r eventstore.Recorded) bool {
					if err := out.print(r); err != nil {
						return false
					}
					mu.Lock()
					defer mu.Unlock()
					count++
					if *limit > 0 && count >= *limit {
						cancel()
						return false
					}
					return true
				}, out.printBad)
			}()
		}
		printed.Wait()
		close(errc)
		for err := range errc {
			if err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
		}
		return nil
	})
}

// follow tails one partition from pos, calling each for every event until it
// returns false or ctx ends. Undecodable entries are reported and skipped.
func follow(ctx context.Context, store *eventstore.Store, p int, pos eventstore.Position, each func(eventstore.Recorded) bool, bad func(*eventstore.DecodeError)) error {
	for ctx.Err() == nil {
		recs, err := store.Tail(ctx, p, pos, 500, time.Second)
		var de *eventstore.DecodeError
		if errors.As(err, &de) {
			bad(de)
		} else if err != nil {
			if ctx.Err() != nil {
				return nil //nolint:nilerr // the caller ending the follow is no failure
			}
			return err
		}
		for _, r := range recs {
			if !each(r) {
				return nil
			}
			pos = r.Position
		}
		if de != nil {
			pos = de.Position
		}
	}
	return nil
}
