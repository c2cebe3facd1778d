package projectors

import (
	"context"
	"errors"
	"time"

	"github.com/mpim/mpim/eventstore"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/oklog/ulid/v2"
	"google.golang.org/protobuf/proto"
)

// Quarantiner is implemented by projectors that can set aside an entry they
// cannot apply, so that one poison event does not stop its partition. The
// runner calls Quarantine when applying a batch of exactly that one entry
// failed MaxAttempts times with errors that are not Transient.
type Quarantiner interface {
	// Quarantine records the batch's only entry (b.Events[0] or
	// b.Skipped[0]) as quarantined because of cause, with the projector's
	// name, the partition, the position, the raw entry and the time, and
	// moves the checkpoint from b.After to b.To, with the fencing and
	// compare-and-set of Apply (ErrFenced, ErrCheckpointMoved), in one
	// atomic step. It applies none of the entry's effects; a projector may
	// record what it must for the entries after it to apply (an aggregate's
	// version moving past it). Any other error means nothing conclusive: the
	// runner calls it again.
	Quarantine(ctx context.Context, b *Batch, cause error) error
}

// QuarantineRecord is one quarantined entry as the projectors store it and
// mpimctl lists it.
type QuarantineRecord struct {
	Projector string
	Partition int
	Position  eventstore.Position
	// Reason is the error that set the entry aside.
	Reason string
	// Raw is the entry's stored envelope bytes ("" if the entry had none).
	Raw []byte
	At  time.Time
}

// EntryInfo is what can be read from a raw entry's envelope: empty fields
// when the bytes do not parse.
type EntryInfo struct {
	EventID   string
	Aggregate string
	Type      string
}

// DescribeRaw reads the event id, aggregate and payload type of a stored
// envelope, as far as they parse.
func DescribeRaw(raw []byte) EntryInfo {
	var env mpimv1.Event
	if len(raw) == 0 || proto.Unmarshal(raw, &env) != nil {
		return EntryInfo{}
	}
	return describe(&env)
}

func describe(env *mpimv1.Event) EntryInfo {
	if env == nil {
		return EntryInfo{}
	}
	info := EntryInfo{Aggregate: env.GetAggregate()}
	var id ulid.ULID
	if len(env.GetId()) == len(id) {
		copy(id[:], env.GetId())
		info.EventID = id.String()
	}
	m := env.ProtoReflect()
	if fd := m.WhichOneof(m.Descriptor().Oneofs().ByName("payload")); fd != nil && fd.Message() != nil {
		info.Type = string(fd.Message().Name())
	}
	return info
}

// size is the number of entries of the batch.
func (b *Batch) size() int { return len(b.Events) + len(b.Skipped) }

// position returns the position of the batch's i-th entry (events first,
// then skipped entries, which always end a batch).
func (b *Batch) position(i int) eventstore.Position {
	if i < len(b.Events) {
		return b.Events[i].Position
	}
	return b.Skipped[i-len(b.Events)].Position
}

// split cuts the batch before its k-th entry (0 < k < size) into two batches
// that follow each other.
func (b *Batch) split(k int) (*Batch, *Batch) {
	ne := min(k, len(b.Events))
	ns := max(0, k-len(b.Events))
	first := &Batch{Partition: b.Partition, Token: b.Token, After: b.After, To: b.position(k - 1),
		Events: b.Events[:ne:ne], Skipped: b.Skipped[:ns:ns]}
	second := &Batch{Partition: b.Partition, Token: b.Token, After: first.To, To: b.To,
		Events: b.Events[ne:], Skipped: b.Skipped[ns:]}
	return first, second
}

// stopping reports whether err ends the partition's processing rather than
// a batch's attempts: the context ended, or the owner was fenced or its
// checkpoint moved.
func stopping(ctx context.Context, err error) bool {
	return ctx.Err() != nil || errors.Is(err, ErrFenced) || errors.Is(err, ErrCheckpointMoved)
}

// isolate finds the entries of b that fail for good and quarantines each of
// them, applying the others: it applies the halves of b in order, each with
// one attempt against errors that are not transient, and splits a failing
// half again, down to single entries, which get MaxAttempts attempts before
// they are quarantined. cause is the error b failed with.
func (r *Runner) isolate(ctx context.Context, o *owned, b *Batch, cause error) error {
	if b.size() == 1 {
		return r.quarantine(ctx, o, b, cause)
	}
	first, second := b.split(b.size() / 2)
	for _, half := range []*Batch{first, second} {
		attempts := 1
		if half.size() == 1 {
			attempts = r.cfg.MaxAttempts
		}
		start := time.Now()
		err := r.retry(ctx, o, "apply", attempts, func() error { return r.proj.Apply(ctx, half) })
		if err == nil {
			r.applied(o, half, start)
			continue
		}
		if stopping(ctx, err) {
			return err
		}
		if err := r.isolate(ctx, o, half, err); err != nil {
			return err
		}
	}
	return nil
}

// quarantine sets b's only entry aside through the projector's Quarantiner,
// retrying every failure. A projector that is not a Quarantiner keeps
// failing on the entry: the runner retries it without end, as the partition
// cannot move past it.
func (r *Runner) quarantine(ctx context.Context, o *owned, b *Batch, cause error) error {
	var info EntryInfo
	if len(b.Events) == 1 {
		info = describe(b.Events[0].Event)
	} else if len(b.Skipped) == 1 {
		info = DescribeRaw(b.Skipped[0].Raw)
	}
	q, ok := r.proj.(Quarantiner)
	if !ok {
		o.lg.Error("event cannot be applied and the projector cannot quarantine it; retrying without end",
			"position", b.To.String(), "event_id", info.EventID, "err", cause)
		start := time.Now()
		if err := r.retry(ctx, o, "apply", 0, func() error { return r.proj.Apply(ctx, b) }); err != nil {
			return err
		}
		r.applied(o, b, start)
		return nil
	}
	if err := r.retry(ctx, o, "quarantine", 0, func() error { return q.Quarantine(ctx, b, cause) }); err != nil {
		return err
	}
	o.pm.quarantined.Inc()
	o.pm.checkpoint.Set(float64(b.To.Ms))
	o.lg.Error("event quarantined: applying it failed repeatedly; the partition moves on",
		"position", b.To.String(), "event_id", info.EventID, "type", info.Type, "aggregate", info.Aggregate,
		"attempts", r.cfg.MaxAttempts, "err", cause)
	return nil
}
