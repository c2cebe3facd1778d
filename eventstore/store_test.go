package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/testsvc"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/oklog/ulid/v2"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/encoding/protowire"
)

// harness is a store on a real Redis under a key prefix of its own.
type harness struct {
	rdb    *redis.Client
	store  *eventstore.Store
	prefix string
}

// readAll reads partition p from after to its end, page entries per read.
func (h *harness) readAll(tb testing.TB, p int, after eventstore.Position, page int) []eventstore.Recorded {
	tb.Helper()
	var all []eventstore.Recorded
	for {
		rs, err := h.store.ReadPartition(context.Background(), p, after, page)
		if err != nil {
			tb.Fatal(err)
		}
		if len(rs) == 0 {
			return all
		}
		all = append(all, rs...)
		after = rs[len(rs)-1].Position
	}
}

func newHarness(tb testing.TB, cfg eventstore.Config) *harness {
	tb.Helper()
	rt := testsvc.Redis(tb)
	rdb := redis.NewClient(&redis.Options{Addr: rt.Addr, PoolSize: 32})
	tb.Cleanup(func() { rdb.Close() })
	cfg.Prefix = rt.Prefix
	s, err := eventstore.Open(context.Background(), rdb, cfg)
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return &harness{rdb: rdb, store: s, prefix: rt.Prefix}
}

// logLen is the total length of every partition stream.
func (h *harness) logLen(tb testing.TB) int64 {
	tb.Helper()
	var n int64
	for p := range h.store.Partitions() {
		info, err := h.store.Info(context.Background(), p)
		if err != nil {
			tb.Fatal(err)
		}
		n += info.Length
	}
	return n
}

func newID() []byte {
	// ulid.Make, as the write side mints ids (monotonic, no syscall per id).
	id := ulid.Make()
	return id[:]
}

func messageEvent(conv, text string) *mpimv1.Event {
	return &mpimv1.Event{
		Id: newID(), Aggregate: conv, OccurredAtMs: time.Now().UnixMilli(),
		Actor: &mpimv1.Actor{UserId: "u/01HZZZZZZZZZZZZZZZZZZZZZZZ", DeviceId: "d1"},
		Payload: &mpimv1.Event_MessageSent{MessageSent: &mpimv1.MessageSent{
			ConversationId: conv, SenderId: "u/01HZZZZZZZZZZZZZZZZZZZZZZZ", Kind: mpimv1.MessageKind_MESSAGE_KIND_TEXT, Text: text,
		}},
	}
}

func renameEvent(agg, name string) *mpimv1.Event {
	return &mpimv1.Event{
		Id: newID(), Aggregate: agg, OccurredAtMs: time.Now().UnixMilli(),
		Payload: &mpimv1.Event_GroupRenamed{GroupRenamed: &mpimv1.GroupRenamed{Name: name}},
	}
}

func TestExactVersionEveryVersionHasOneWinner(t *testing.T) {
	h := newHarness(t, eventstore.Config{})
	ctx := context.Background()
	const agg, workers, perWorker = "g/01J00000000000000000000000", 64, 8
	var conflicts atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done := 0; done < perWorker; {
				v, _, err := h.store.Version(ctx, agg, agg)
				if err != nil {
					t.Error(err)
					return
				}
				_, err = h.store.Append(ctx, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
					Aggregate: agg, Expected: eventstore.Exact(v), KeepHistory: true,
					Events: []*mpimv1.Event{renameEvent(agg, string(rune('a'+w%26)))},
				}}})
				switch {
				case err == nil:
					done++
				case errors.Is(err, domain.ErrConflict):
					conflicts.Add(1)
				default:
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	events, err := h.store.ReadAggregate(ctx, agg, agg)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != workers*perWorker {
		t.Fatalf("history has %d events, want %d (lost or extra updates)", len(events), workers*perWorker)
	}
	for i, r := range events {
		if r.Event.Version != uint64(i+1) {
			t.Fatalf("event %d has version %d", i, r.Event.Version)
		}
	}
	if v, _, _ := h.store.Version(ctx, agg, agg); v != workers*perWorker {
		t.Fatalf("head version %d, want %d", v, workers*perWorker)
	}
	t.Logf("%d appends, %d conflicts retried", workers*perWorker, conflicts.Load())
}

func TestConcurrentSendersGetGaplessSeqs(t *testing.T) {
	h := newHarness(t, eventstore.Config{})
	ctx := context.Background()
	const conv, workers, perWorker = "d/A.B", 64, 1000
	seen := make([]atomic.Int32, workers*perWorker+1)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perWorker {
				res, err := h.store.Append(ctx, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
					Aggregate: conv, Expected: eventstore.Any, Events: []*mpimv1.Event{messageEvent(conv, "hi")},
				}}})
				if err != nil {
					t.Error(err)
					return
				}
				seq := res.Events[0].Seq
				if seq == 0 || seq > uint64(len(seen)-1) {
					t.Errorf("seq %d out of range", seq)
					return
				}
				seen[seq].Add(1)
			}
		}()
	}
	wg.Wait()
	for seq := 1; seq < len(seen); seq++ {
		if n := seen[seq].Load(); n != 1 {
			t.Fatalf("seq %d assigned %d times", seq, n)
		}
	}
	// The log agrees: seqs in append order are 1..N.
	want := uint64(1)
	for _, r := range h.readAll(t, h.store.PartitionOf(conv), eventstore.Position{}, 5000) {
		if r.Event.Seq != want || r.Event.Version != want {
			t.Fatalf("log entry %s has seq %d version %d, want %d", r.Position, r.Event.Seq, r.Event.Version, want)
		}
		want++
	}
	if want != workers*perWorker+1 {
		t.Fatalf("log holds %d messages, want %d", want-1, workers*perWorker)
	}
}

func TestIdempotentRetryReturnsOriginal(t *testing.T) {
	h := newHarness(t, eventstore.Config{})
	ctx := context.Background()
	const conv = "d/A.C"
	req := func() eventstore.AppendRequest {
		return eventstore.AppendRequest{IdempotencyKey: "send:u1:c-42", Streams: []eventstore.StreamAppend{{
			Aggregate: conv, Expected: eventstore.Any, Events: []*mpimv1.Event{messageEvent(conv, "once")},
		}}}
	}
	first, err := h.store.Append(ctx, req())
	if err != nil {
		t.Fatal(err)
	}
	before := h.logLen(t)
	second, err := h.store.Append(ctx, req()) // a retry builds a new event id
	if err != nil {
		t.Fatal(err)
	}
	if !second.Duplicate || first.Duplicate {
		t.Fatalf("duplicate flags: first %v, second %v", first.Duplicate, second.Duplicate)
	}
	if first.Events[0] != second.Events[0] {
		t.Fatalf("retry returned %+v, original %+v", second.Events[0], first.Events[0])
	}
	if after := h.logLen(t); after != before {
		t.Fatalf("retry wrote: log %d -> %d", before, after)
	}
	if _, seq, _ := h.store.Version(ctx, conv, conv); seq != 1 {
		t.Fatalf("seq after retry %d, want 1", seq)
	}
}

func TestOneUsernameClaimWins(t *testing.T) {
	h := newHarness(t, eventstore.Config{})
	ctx := context.Background()
	const agg = "n/alice"
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ev := &mpimv1.Event{Id: newID(), Aggregate: agg, OccurredAtMs: 1,
				Payload: &mpimv1.Event_UsernameClaimed{UsernameClaimed: &mpimv1.UsernameClaimed{Username: "alice", UserId: "u/x"}}}
			_, err := h.store.Append(ctx, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
				Aggregate: agg, Expected: eventstore.NoStream, KeepHistory: true, Events: []*mpimv1.Event{ev}}}})
			switch {
			case err == nil:
				wins.Add(1)
			case !errors.Is(err, domain.ErrConflict):
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d claims won, want 1", wins.Load())
	}
}

func TestReadPartitionFromAnyPosition(t *testing.T) {
	h := newHarness(t, eventstore.Config{Partitions: 4})
	const conv = "d/X.Y"
	positions := h.appendMessages(t, conv, 30)
	p := h.store.PartitionOf(conv)
	for start := range positions {
		var after eventstore.Position
		if start > 0 {
			after = positions[start-1]
		}
		var got []eventstore.Position
		for _, r := range h.readAll(t, p, after, 7) {
			got = append(got, r.Position)
		}
		if len(got) != len(positions)-start {
			t.Fatalf("from %d: read %d events, want %d", start, len(got), len(positions)-start)
		}
		for i, pos := range got {
			if pos != positions[start+i] {
				t.Fatalf("from %d: event %d at %s, want %s", start, i, pos, positions[start+i])
			}
		}
	}
}

// A Tail at the head blocks until an append wakes it. The append is made
// only once Redis lists the Tail's connection as blocked in XREAD, so the
// test exercises the wake-up however slowly the goroutine starts.
func TestTailBlocksUntilAppend(t *testing.T) {
	h := newHarness(t, eventstore.Config{Partitions: 2})
	ctx := context.Background()
	// The tailing store has a connection of its own, named, so that Redis's
	// client list tells when its XREAD blocks.
	name := "tail-" + strings.TrimSuffix(h.prefix, ":")
	trdb := redis.NewClient(&redis.Options{Addr: h.rdb.Options().Addr, ClientName: name})
	t.Cleanup(func() { trdb.Close() })
	tail, err := eventstore.Open(ctx, trdb, eventstore.Config{Prefix: h.prefix, Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tail.Close() })
	const conv = "d/T.U"
	p := h.store.PartitionOf(conv)
	got := make(chan []eventstore.Recorded, 1)
	go func() {
		rs, err := tail.Tail(ctx, p, eventstore.Position{}, 10, time.Minute)
		if err != nil {
			t.Error(err)
		}
		got <- rs
	}()
	testsvc.Eventually(t, 30*time.Second, "the tail blocked in XREAD", func() bool { return blockedInXRead(t, h.rdb, name) })
	if _, err := h.store.Append(ctx, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
		Aggregate: conv, Expected: eventstore.Any, Events: []*mpimv1.Event{messageEvent(conv, "wake")}}}}); err != nil {
		t.Fatal(err)
	}
	rs := <-got
	if len(rs) != 1 || rs[0].Event.GetMessageSent().GetText() != "wake" {
		t.Fatalf("tail returned %v", rs)
	}
	empty, err := h.store.Tail(ctx, p, rs[0].Position, 10, 20*time.Millisecond)
	if err != nil || len(empty) != 0 {
		t.Fatalf("tail at head returned %v, %v", empty, err)
	}
}

// blockedInXRead reports whether Redis lists a connection named name as
// blocked (flag b) in XREAD.
func blockedInXRead(tb testing.TB, rdb *redis.Client, name string) bool {
	tb.Helper()
	list, err := rdb.ClientList(context.Background()).Result()
	if err != nil {
		tb.Fatal(err)
	}
	for line := range strings.Lines(list) {
		f := " " + strings.TrimSpace(line) + " "
		if strings.Contains(f, " name="+name+" ") && strings.Contains(f, " cmd=xread ") {
			for field := range strings.FieldsSeq(f) {
				if flags, ok := strings.CutPrefix(field, "flags="); ok && strings.Contains(flags, "b") {
					return true
				}
			}
		}
	}
	return false
}

func TestPartitionCountMismatchRefused(t *testing.T) {
	h := newHarness(t, eventstore.Config{Partitions: 8})
	_, err := eventstore.Open(context.Background(), h.rdb, eventstore.Config{Prefix: h.prefix, Partitions: 16})
	if !errors.Is(err, eventstore.ErrPartitionMismatch) {
		t.Fatalf("open with another count: %v", err)
	}
	s, err := eventstore.Open(context.Background(), h.rdb, eventstore.Config{Prefix: h.prefix, Partitions: 8})
	if err != nil {
		t.Fatalf("open with the recorded count: %v", err)
	}
	s.Close()
}

func TestBadInputIsRefusedAndWritesNothing(t *testing.T) {
	h := newHarness(t, eventstore.Config{MaxEventBytes: 1024, MaxEventsPerAppend: 3})
	ctx := context.Background()
	const conv = "d/B.I"
	if _, err := h.store.Append(ctx, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
		Aggregate: conv, Expected: eventstore.Any, Events: []*mpimv1.Event{messageEvent(conv, "seed")}}}}); err != nil {
		t.Fatal(err)
	}
	with := func(f func(*mpimv1.Event)) []*mpimv1.Event {
		ev := messageEvent(conv, "x")
		f(ev)
		return []*mpimv1.Event{ev}
	}
	unknownType := messageEvent(conv, "x")
	unknownType.Payload = nil
	unknownType.ProtoReflect().SetUnknown(protowire.AppendBytes(protowire.AppendTag(nil, 999, protowire.BytesType), []byte("future")))
	cases := []struct {
		name string
		code domain.Code
		req  eventstore.AppendRequest
	}{
		{"oversized payload is too large", domain.ETooLarge, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
			Aggregate: conv, Expected: eventstore.Any, Events: []*mpimv1.Event{messageEvent(conv, strings.Repeat("x", 2000))}}}}},
		{"too many events is too large", domain.ETooLarge, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
			Aggregate: conv, Expected: eventstore.Any, Events: []*mpimv1.Event{messageEvent(conv, "1"), messageEvent(conv, "2"), messageEvent(conv, "3"), messageEvent(conv, "4")}}}}},
		{"short id is invalid", domain.EInvalid, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
			Aggregate: conv, Expected: eventstore.Any, Events: with(func(e *mpimv1.Event) { e.Id = e.Id[:8] })}}}},
		{"other aggregate is invalid", domain.EInvalid, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
			Aggregate: conv, Expected: eventstore.Any, Events: with(func(e *mpimv1.Event) { e.Aggregate = "d/other" })}}}},
		{"preset version is invalid", domain.EInvalid, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
			Aggregate: conv, Expected: eventstore.Any, Events: with(func(e *mpimv1.Event) { e.Version = 7 })}}}},
		{"missing time is invalid", domain.EInvalid, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
			Aggregate: conv, Expected: eventstore.Any, Events: with(func(e *mpimv1.Event) { e.OccurredAtMs = 0 })}}}},
		{"empty payload is invalid", domain.EInvalid, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
			Aggregate: conv, Expected: eventstore.Any, Events: with(func(e *mpimv1.Event) { e.Payload = nil })}}}},
		{"unknown event type is invalid", domain.EInvalid, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
			Aggregate: conv, Expected: eventstore.Any, Events: []*mpimv1.Event{unknownType}}}}},
		{"nil event is invalid", domain.EInvalid, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
			Aggregate: conv, Expected: eventstore.Any, Events: []*mpimv1.Event{nil}}}}},
		{"no streams is invalid", domain.EInvalid, eventstore.AppendRequest{}},
		{"unset expected version is invalid", domain.EInvalid, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
			Aggregate: conv, Events: []*mpimv1.Event{messageEvent(conv, "x")}}}}},
		{"wrong expected version conflicts", domain.EConflict, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
			Aggregate: conv, Expected: eventstore.Exact(5), Events: []*mpimv1.Event{messageEvent(conv, "x")}}}}},
		{"existing stream conflicts with no stream", domain.EConflict, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
			Aggregate: conv, Expected: eventstore.NoStream, Events: []*mpimv1.Event{messageEvent(conv, "x")}}}}},
		{"failed guard conflicts", domain.EConflict, eventstore.AppendRequest{PartitionKey: conv, Guards: []eventstore.Guard{{Aggregate: "g/nope", Version: 3}},
			Streams: []eventstore.StreamAppend{{Aggregate: conv, Expected: eventstore.Any, Events: []*mpimv1.Event{messageEvent(conv, "x")}}}}},
		{"too many guards is invalid", domain.EInvalid, eventstore.AppendRequest{PartitionKey: conv, Guards: manyGuards(eventstore.MaxGuards + 1),
			Streams: []eventstore.StreamAppend{{Aggregate: conv, Expected: eventstore.Any, Events: []*mpimv1.Event{messageEvent(conv, "x")}}}}},
		{"cell mismatch conflicts", domain.EConflict, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
			Aggregate: conv, Expected: eventstore.Any, Events: []*mpimv1.Event{renameEvent(conv, "r")},
			Cells: []*eventstore.Cell{{Seq: 1, Expect: []byte("not this"), Value: []byte("v")}}}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := h.logLen(t)
			v0, s0, _ := h.store.Version(ctx, conv, conv)
			_, err := h.store.Append(ctx, tc.req)
			if got := domain.ErrorCode(err); got != tc.code {
				t.Fatalf("error %v has code %q, want %q", err, got, tc.code)
			}
			if !strings.HasPrefix(err.Error(), "eventstore: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			if after := h.logLen(t); after != before {
				t.Fatalf("log grew %d -> %d", before, after)
			}
			if v1, s1, _ := h.store.Version(ctx, conv, conv); v1 != v0 || s1 != s0 {
				t.Fatalf("head moved: %d/%d -> %d/%d", v0, s0, v1, s1)
			}
		})
	}
}

// manyGuards returns n valid guards (aggregates without events).
func manyGuards(n int) []eventstore.Guard {
	gs := make([]eventstore.Guard, n)
	for i := range gs {
		gs[i] = eventstore.Guard{Aggregate: fmt.Sprintf("g/many-%d", i)}
	}
	return gs
}

func TestGuardsAndCells(t *testing.T) {
	h := newHarness(t, eventstore.Config{})
	ctx := context.Background()
	const group, conv = "g/G1", "c/G1"
	if _, err := h.store.Append(ctx, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
		Aggregate: group, Expected: eventstore.NoStream, KeepHistory: true, Events: []*mpimv1.Event{renameEvent(group, "one")}}}}); err != nil {
		t.Fatal(err)
	}
	send := eventstore.AppendRequest{PartitionKey: group, Guards: []eventstore.Guard{{Aggregate: group, Version: 1}},
		Streams: []eventstore.StreamAppend{{Aggregate: conv, Expected: eventstore.Any,
			Events: []*mpimv1.Event{messageEvent(conv, "hello")}, Cells: []*eventstore.Cell{{Value: []byte("state-1")}}}}}
	res, err := h.store.Append(ctx, send)
	if err != nil {
		t.Fatal(err)
	}
	seq := res.Events[0].Seq
	cell, err := h.store.Cell(ctx, group, conv, seq)
	if err != nil || string(cell) != "state-1" {
		t.Fatalf("cell %q, %v", cell, err)
	}
	// The group moves on: a send decided on version 1 must fail.
	if _, err := h.store.Append(ctx, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
		Aggregate: group, Expected: eventstore.Exact(1), KeepHistory: true, Events: []*mpimv1.Event{renameEvent(group, "two")}}}}); err != nil {
		t.Fatal(err)
	}
	send.Streams[0].Events = []*mpimv1.Event{messageEvent(conv, "late")}
	if _, err := h.store.Append(ctx, send); !errors.Is(err, domain.ErrConflict) {
		t.Fatalf("stale guard: %v", err)
	}
	// Compare-and-set of the message cell: the first recall wins.
	recall := func(expect string) error {
		_, err := h.store.Append(ctx, eventstore.AppendRequest{PartitionKey: group, Streams: []eventstore.StreamAppend{{
			Aggregate: conv, Expected: eventstore.Any, Events: []*mpimv1.Event{{Id: newID(), Aggregate: conv, OccurredAtMs: 1,
				Payload: &mpimv1.Event_MessageRecalled{MessageRecalled: &mpimv1.MessageRecalled{Seq: seq}}}},
			Cells: []*eventstore.Cell{{Seq: seq, Expect: []byte(expect), Value: []byte("recalled")}}}}})
		return err
	}
	if err := recall("state-1"); err != nil {
		t.Fatal(err)
	}
	if err := recall("state-1"); !errors.Is(err, domain.ErrConflict) {
		t.Fatalf("second recall on stale cell: %v", err)
	}
	if cell, _ := h.store.Cell(ctx, group, conv, seq); string(cell) != "recalled" {
		t.Fatalf("cell after recall %q", cell)
	}
	if _, err := h.store.Cell(ctx, group, conv, 999); domain.ErrorCode(err) != domain.ENotFound {
		t.Fatalf("missing cell: %v", err)
	}
}

func TestUndecodableEntryIsReported(t *testing.T) {
	h := newHarness(t, eventstore.Config{Partitions: 1})
	ctx := context.Background()
	const conv = "d/Q.R"
	if _, err := h.store.Append(ctx, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
		Aggregate: conv, Expected: eventstore.Any, Events: []*mpimv1.Event{messageEvent(conv, "good")}}}}); err != nil {
		t.Fatal(err)
	}
	badID, err := h.rdb.XAdd(ctx, &redis.XAddArgs{Stream: h.prefix + "{p0}:log", Values: []string{"v", "1", "s", "0", "d", "\xff\xfegarbage"}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	rs, err := h.store.ReadPartition(ctx, 0, eventstore.Position{}, 10)
	var de *eventstore.DecodeError
	if !errors.As(err, &de) || de.Position.String() != badID || len(rs) != 1 {
		t.Fatalf("read returned %d events, err %v; want 1 event and a decode error at %s", len(rs), err, badID)
	}
}

func TestDurabilityRequirementChecked(t *testing.T) {
	rt := testsvc.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: rt.Addr})
	defer rdb.Close()
	conf, err := rdb.ConfigGet(context.Background(), "appendfsync").Result()
	if err != nil {
		t.Fatal(err)
	}
	aof, _ := rdb.ConfigGet(context.Background(), "appendonly").Result()
	_, err = eventstore.Open(context.Background(), rdb, eventstore.Config{Prefix: rt.Prefix, Durability: eventstore.Durability{RequireFsyncAlways: true}})
	always := conf["appendfsync"] == "always" && aof["appendonly"] == "yes"
	if always != (err == nil) {
		t.Fatalf("server appendonly=%s appendfsync=%s, open error %v", aof["appendonly"], conf["appendfsync"], err)
	}
}

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	err := eventstore.Config{Partitions: -1, MaxEventBytes: 10, MaxEventsPerAppend: -1, MaxBatchEvents: -5, Committers: 999, IdempotencyTTL: time.Millisecond}.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"partitions", "max event bytes", "max events per append", "max batch events", "committers", "idempotency TTL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// A prefix with a brace (a hash tag would put every key in one cluster
// slot) or longer than MaxPrefixBytes is refused; ordinary ones pass.
func TestPrefixWithBracesIsRefused(t *testing.T) {
	for _, p := range []string{"{app}:", "a{", "}b", "x{y}z", strings.Repeat("p", eventstore.MaxPrefixBytes+1)} {
		if err := (eventstore.Config{Prefix: p, Partitions: 1}).Validate(); err == nil || !strings.Contains(err.Error(), "prefix") {
			t.Errorf("prefix %q: %v", p, err)
		}
	}
	for _, p := range []string{"", "prod:", "t:abc:", strings.Repeat("p", eventstore.MaxPrefixBytes)} {
		if err := eventstore.CheckPrefix(p); err != nil {
			t.Errorf("prefix %q refused: %v", p, err)
		}
	}
}

func TestClosedStoreRefusesAppends(t *testing.T) {
	h := newHarness(t, eventstore.Config{Partitions: 1})
	h.store.Close()
	_, err := h.store.Append(context.Background(), eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
		Aggregate: "d/Z.Z", Expected: eventstore.Any, Events: []*mpimv1.Event{messageEvent("d/Z.Z", "x")}}}})
	if !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
}
