package eventstore

import (
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/mpim/mpim/domain"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"google.golang.org/protobuf/proto"
)

// ExpectedVersion is the optimistic-concurrency condition of an append.
type ExpectedVersion struct {
	kind    byte // 'a' any, 'n' no stream, 'e' exact
	version uint64
}

var (
	// Any appends whatever the aggregate's version (messages use it: the
	// store assigns the next version and seq, so senders never conflict).
	Any = ExpectedVersion{kind: 'a'}
	// NoStream appends only if the aggregate has no events yet.
	NoStream = ExpectedVersion{kind: 'n'}
)

// Exact appends only if the aggregate's current version is v (0 = no events).
func Exact(v uint64) ExpectedVersion {
	if v == 0 {
		return NoStream
	}
	return ExpectedVersion{kind: 'e', version: v}
}

func (e ExpectedVersion) String() string {
	switch e.kind {
	case 'n':
		return "no stream"
	case 'e':
		return "version " + strconv.FormatUint(e.version, 10)
	}
	return "any"
}

// IdempotencyKey identifies a transaction across retries: appending again with
// a key seen within Config.IdempotencyTTL writes nothing and returns the
// original result (same event ids, versions, seqs and positions). Keys are
// scoped to the partition of the request; callers namespace them
// ("send:<user>:<client msg id>").
type IdempotencyKey string

// Guard requires another aggregate of the same partition to be at Version
// (0 = no events) for the append to happen. It is how a decision that read
// one aggregate (a group's membership, a pair's blocks) stays valid while the
// events go to another (the conversation).
type Guard struct {
	Aggregate string
	Version   uint64
}

// Cell is a compact state value of one message of a conversation, kept by the
// store beside the aggregate so decisions about that message (recall, edit)
// are made on state consistent with the append.
//
// With Seq 0 the value is stored under the seq assigned to this event (which
// must be a MessageSent). With Seq > 0 the cell at Seq is compared with Expect
// and replaced by Value; a mismatch fails the append with a conflict.
type Cell struct {
	Seq    uint64
	Expect []byte
	Value  []byte
}

// StreamAppend is the part of a request that appends to one aggregate.
type StreamAppend struct {
	Aggregate string
	Expected  ExpectedVersion
	// KeepHistory also appends the events to the aggregate's own stream, so
	// ReadAggregate can rebuild it. Set it for aggregates whose decisions
	// need their history (users, usernames, relationships, groups), not for
	// conversations or readers.
	KeepHistory bool
	// Events must have id (16 bytes), aggregate (equal to Aggregate),
	// occurred_at and a payload set; version and seq must be zero: the store
	// assigns them. A MessageSent payload is given the conversation's next seq.
	Events []*mpimv1.Event
	// Cells is nil or parallel to Events; a nil entry means no cell.
	Cells []*Cell
}

// AppendRequest is one atomic transaction on one partition: every guard,
// expected version and cell condition is checked, then all events are
// appended, or none is.
type AppendRequest struct {
	// PartitionKey picks the partition; empty means Streams[0].Aggregate.
	// Every aggregate of the request must live in that partition.
	PartitionKey   string
	IdempotencyKey IdempotencyKey
	Guards         []Guard
	Streams        []StreamAppend
}

// Appended is the stored identity of one appended event.
type Appended struct {
	ID       [16]byte
	Version  uint64
	Seq      uint64 // conversation seq of a MessageSent, else 0
	Position Position
}

// AppendResult is the outcome of a successful append.
type AppendResult struct {
	Partition int
	Events    []Appended // in request order
	// Duplicate is true when the idempotency key had been seen: nothing was
	// written and Events are those of the first execution.
	Duplicate bool
}

// prepared is a validated request, encoded as script keys and arguments.
type prepared struct {
	partition int
	keys      []string
	args      []any
	heads     []string // the aggregates whose heads the script reads
	nevents   int
	req       *AppendRequest
}

// MaxGuards bounds the guards of one append request.
const MaxGuards = 16

// invalid returns a domain EInvalid error prefixed by the package.
func invalid(format string, args ...any) error {
	return domain.Errorf(domain.EInvalid, "eventstore: "+format, args...)
}

// prepare validates req and encodes it. It writes nothing and is safe to call
// concurrently.
func (s *Store) prepare(req *AppendRequest) (*prepared, error) {
	if len(req.Streams) == 0 {
		return nil, invalid("append without streams")
	}
	pk := req.PartitionKey
	if pk == "" {
		pk = req.Streams[0].Aggregate
	}
	if pk == "" {
		return nil, invalid("empty partition key")
	}
	p := &prepared{partition: s.keys.partitionOf(pk), req: req}
	if len(req.Guards) > MaxGuards {
		return nil, invalid("%d guards in one append, limit %d", len(req.Guards), MaxGuards)
	}
	// Sized up front: one allocation each for the common request.
	nargs, nkeys := 3+2*len(req.Guards), 1
	for i := range req.Streams {
		nargs += 5 + 6*len(req.Streams[i].Events)
		nkeys += 2
	}
	p.args = make([]any, 0, nargs)
	p.keys = make([]string, 0, nkeys)
	p.heads = make([]string, 0, len(req.Guards)+len(req.Streams))
	if req.IdempotencyKey != "" {
		if len(req.IdempotencyKey) > 200 {
			return nil, invalid("idempotency key longer than 200 bytes")
		}
		p.args = append(p.args, "1")
		p.keys = append(p.keys, s.keys.idem(p.partition, req.IdempotencyKey))
	} else {
		p.args = append(p.args, "0")
	}
	p.args = append(p.args, len(req.Guards))
	for _, g := range req.Guards {
		if g.Aggregate == "" || len(g.Aggregate) > 200 || !utf8.ValidString(g.Aggregate) {
			return nil, invalid("invalid guard aggregate %q", g.Aggregate)
		}
		p.args = append(p.args, g.Aggregate, g.Version)
		p.heads = append(p.heads, g.Aggregate)
	}
	p.args = append(p.args, len(req.Streams))
	for i := range req.Streams {
		st := &req.Streams[i]
		for j := range i {
			if req.Streams[j].Aggregate == st.Aggregate {
				return nil, invalid("aggregate %s appears twice in one request", st.Aggregate)
			}
		}
		if err := s.prepareStream(p, st); err != nil {
			return nil, err
		}
	}
	if p.nevents > s.cfg.MaxEventsPerAppend {
		return nil, domain.Errorf(domain.ETooLarge, "eventstore: %d events in one append, limit %d", p.nevents, s.cfg.MaxEventsPerAppend)
	}
	return p, nil
}

func (s *Store) prepareStream(p *prepared, st *StreamAppend) error {
	switch {
	case st.Aggregate == "" || len(st.Aggregate) > 200 || !utf8.ValidString(st.Aggregate):
		return invalid("invalid aggregate id %q", st.Aggregate)
	case len(st.Events) == 0:
		return invalid("no events for %s", st.Aggregate)
	case st.Cells != nil && len(st.Cells) != len(st.Events):
		return invalid("cells for %s: %d cells for %d events", st.Aggregate, len(st.Cells), len(st.Events))
	case st.Expected.kind == 0:
		return invalid("expected version of %s not set", st.Aggregate)
	}
	keep := "0"
	if st.KeepHistory {
		keep = "1"
	}
	p.args = append(p.args, string(st.Expected.kind), st.Expected.version, keep, len(st.Events), st.Aggregate)
	p.heads = append(p.heads, st.Aggregate)
	if st.KeepHistory {
		p.keys = append(p.keys, s.keys.history(p.partition, st.Aggregate))
	}
	p.keys = append(p.keys, s.keys.cells(p.partition, st.Aggregate))
	for i, ev := range st.Events {
		data, sequenced, err := s.encode(st.Aggregate, ev)
		if err != nil {
			return err
		}
		seqFlag := "0"
		if sequenced {
			seqFlag = "1"
		}
		id := ulidString(ev.GetId())
		p.args = append(p.args, id, seqFlag, data)
		var c *Cell
		if st.Cells != nil {
			c = st.Cells[i]
		}
		switch {
		case c == nil:
			p.args = append(p.args, "-")
		case c.Seq == 0:
			if !sequenced {
				return invalid("cell at the assigned seq of %s event, which gets no seq", payloadName(ev))
			}
			p.args = append(p.args, "s", c.Value)
		default:
			if c.Expect == nil {
				return invalid("cell compare-and-set at seq %d without an expected value", c.Seq)
			}
			p.args = append(p.args, "x", c.Seq, c.Expect, c.Value)
		}
		p.nevents++
	}
	return nil
}

// encode validates one envelope and marshals it. The version and seq stay
// zero in the stored bytes; readers fill them from the stream entry.
func (s *Store) encode(aggregate string, ev *mpimv1.Event) (data []byte, sequenced bool, err error) {
	switch {
	case ev == nil:
		return nil, false, invalid("nil event")
	case len(ev.GetId()) != 16:
		return nil, false, invalid("event id must be 16 bytes, got %d", len(ev.GetId()))
	case ev.GetAggregate() != aggregate:
		return nil, false, invalid("event aggregate %q differs from stream %q", ev.GetAggregate(), aggregate)
	case ev.GetOccurredAtMs() <= 0:
		return nil, false, invalid("event %s has no occurred_at", ulidString(ev.GetId()))
	case ev.GetVersion() != 0 || ev.GetSeq() != 0:
		return nil, false, invalid("event %s sets version or seq; the store assigns them", ulidString(ev.GetId()))
	case ev.GetPayload() == nil:
		return nil, false, invalid("event %s has no payload or an unknown event type", ulidString(ev.GetId()))
	case len(ev.ProtoReflect().GetUnknown()) != 0:
		return nil, false, invalid("event %s carries unknown fields", ulidString(ev.GetId()))
	}
	data, err = proto.MarshalOptions{Deterministic: true}.Marshal(ev)
	if err != nil {
		return nil, false, invalid("encoding event: %v", err)
	}
	if len(data) > s.cfg.MaxEventBytes {
		return nil, false, domain.Errorf(domain.ETooLarge, "eventstore: event %s is %d bytes, limit %d", ulidString(ev.GetId()), len(data), s.cfg.MaxEventBytes)
	}
	_, sequenced = ev.GetPayload().(*mpimv1.Event_MessageSent)
	return data, sequenced, nil
}

// eventAt is the i-th event of req in request order, or nil.
func eventAt(req *AppendRequest, i int) *mpimv1.Event {
	for j := range req.Streams {
		evs := req.Streams[j].Events
		if i < len(evs) {
			return evs[i]
		}
		i -= len(evs)
	}
	return nil
}

func payloadName(ev *mpimv1.Event) string {
	if ev.GetPayload() == nil {
		return "empty"
	}
	return fmt.Sprintf("%T", ev.GetPayload())
}
