package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/proto/codec"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"
)

// Recorded is an event as stored: its envelope with version and seq filled in,
// and where it sits in the log.
type Recorded struct {
	Partition int
	Position  Position
	Event     *mpimv1.Event
	// Raw is the stored envelope bytes (what the archive keeps).
	Raw []byte
	// decoded memoizes Domain for every copy of a Recorded read from the
	// log; nil in a Recorded built otherwise (Domain then decodes each call).
	decoded *decodedOnce
}

// decodedOnce is Recorded.Domain's result, computed once.
type decodedOnce struct {
	once sync.Once
	meta codec.Meta
	ev   domain.Event
	err  error
}

// Domain returns the envelope decoded to the domain (codec.Decode of Event).
// For a Recorded returned by a read it is decoded once, on the first call,
// and shared by every copy of it: the projectors of a process that read
// through one projectors.SharedLog share one decode per entry, so the caller
// must treat the event as read-only (its slices are shared). It is safe for
// concurrent use. An entry without an envelope fails.
func (r *Recorded) Domain() (codec.Meta, domain.Event, error) {
	d := r.decoded
	if d == nil {
		d = new(decodedOnce)
		d.decode(r.Event)
		return d.meta, d.ev, d.err
	}
	d.once.Do(func() { d.decode(r.Event) })
	return d.meta, d.ev, d.err
}

func (d *decodedOnce) decode(ev *mpimv1.Event) {
	if ev == nil {
		d.err = errors.New("eventstore: entry without an envelope")
		return
	}
	d.meta, d.ev, d.err = codec.Decode(ev)
}

// DecodeError reports a log entry that cannot be decoded. Readers return the
// entries before it together with the error, so a consumer can quarantine the
// bad entry (Position) and continue after it.
type DecodeError struct {
	Partition int
	Position  Position
	Raw       []byte
	Err       error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("eventstore: undecodable entry %d/%s: %v", e.Partition, e.Position, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// decode turns stream messages into events. It stops at the first entry it
// cannot decode and returns the events before it with a *DecodeError.
func decode(partition int, msgs []redis.XMessage) ([]Recorded, error) {
	out := make([]Recorded, 0, len(msgs))
	for _, m := range msgs {
		pos, err := ParsePosition(m.ID)
		if err != nil {
			return out, &DecodeError{Partition: partition, Err: err}
		}
		r, err := decodeEntry(m.Values)
		if err != nil {
			raw, _ := m.Values["d"].(string)
			return out, &DecodeError{Partition: partition, Position: pos, Raw: []byte(raw), Err: err}
		}
		r.Partition, r.Position = partition, pos
		out = append(out, r)
	}
	return out, nil
}

func decodeEntry(values map[string]any) (Recorded, error) {
	d, ok1 := values["d"].(string)
	vs, ok2 := values["v"].(string)
	ss, ok3 := values["s"].(string)
	if !ok1 || !ok2 || !ok3 {
		return Recorded{}, errors.New("entry lacks fields v, s, d")
	}
	v, err := strconv.ParseUint(vs, 10, 64)
	if err != nil || v == 0 {
		return Recorded{}, fmt.Errorf("bad version %q", vs)
	}
	seq, err := strconv.ParseUint(ss, 10, 64)
	if err != nil {
		return Recorded{}, fmt.Errorf("bad seq %q", ss)
	}
	raw := []byte(d)
	ev := new(mpimv1.Event)
	if err := proto.Unmarshal(raw, ev); err != nil {
		return Recorded{}, err
	}
	if len(ev.GetId()) != 16 || ev.GetAggregate() == "" {
		return Recorded{}, errors.New("envelope without id or aggregate")
	}
	if ev.GetPayload() == nil {
		return Recorded{}, errors.New("envelope of an unknown event type")
	}
	ev.Version, ev.Seq = v, seq
	return Recorded{Event: ev, Raw: raw, decoded: new(decodedOnce)}, nil
}

func (s *Store) checkPartition(p int) error {
	if p < 0 || p >= s.cfg.Partitions {
		return domain.Errorf(domain.EInvalid, "eventstore: partition %d out of range 0..%d", p, s.cfg.Partitions-1)
	}
	return nil
}

// ReadPartition returns up to limit events of partition p after position
// after (exclusive), in append order. An empty result means the reader is at
// the head. See DecodeError for entries that cannot be decoded.
func (s *Store) ReadPartition(ctx context.Context, p int, after Position, limit int) ([]Recorded, error) {
	if err := s.checkPartition(p); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, domain.Errorf(domain.EInvalid, "eventstore: read limit must be positive")
	}
	msgs, err := s.rdb.XRangeN(ctx, s.keys.log(p), "("+after.String(), "+", int64(limit)).Result()
	if err != nil {
		return nil, fmt.Errorf("eventstore: reading partition %d: %w", p, err)
	}
	return decode(p, msgs)
}

// Tail is ReadPartition that blocks up to block (at least 1ms) for events
// after position after when there are none yet. It reads from an explicit
// position, never "$", so nothing appended between two calls is missed.
// It returns no events and no error when the block time passes. With
// Durability.WaitReplicas it returns events only once that many replicas
// have them (see confirmReplicated), and an EUnavailable error when they
// do not within WaitTimeout.
func (s *Store) Tail(ctx context.Context, p int, after Position, limit int, block time.Duration) ([]Recorded, error) {
	if err := s.checkPartition(p); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, domain.Errorf(domain.EInvalid, "eventstore: read limit must be positive")
	}
	block = max(block, time.Millisecond)
	streams, err := s.rdb.XRead(ctx, &redis.XReadArgs{
		Streams: []string{s.keys.log(p), after.String()},
		Count:   int64(limit),
		Block:   block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("eventstore: tailing partition %d: %w", p, err)
	}
	if len(streams) == 0 || len(streams[0].Messages) == 0 {
		return nil, nil
	}
	msgs := streams[0].Messages
	last, err := ParsePosition(msgs[len(msgs)-1].ID)
	if err != nil {
		return nil, fmt.Errorf("eventstore: tailing partition %d: %w", p, err)
	}
	if err := s.confirmReplicated(ctx, p, last); err != nil {
		return nil, err
	}
	return decode(p, msgs)
}

// ReadAggregate returns every event of a KeepHistory aggregate in version
// order, read atomically: the last event's version is the version an append
// must expect to succeed. An aggregate without events returns none.
func (s *Store) ReadAggregate(ctx context.Context, partitionKey, aggregate string) ([]Recorded, error) {
	p := s.keys.partitionOf(partitionKey)
	msgs, err := s.rdb.XRange(ctx, s.keys.history(p, aggregate), "-", "+").Result()
	if err != nil {
		return nil, fmt.Errorf("eventstore: reading aggregate %s: %w", aggregate, err)
	}
	return decode(p, msgs)
}

// Version returns an aggregate's current version and last message seq.
func (s *Store) Version(ctx context.Context, partitionKey, aggregate string) (version, seq uint64, err error) {
	version, seq, err = s.head(ctx, s.keys.partitionOf(partitionKey), aggregate)
	if err != nil {
		return 0, 0, fmt.Errorf("eventstore: reading head of %s: %w", aggregate, err)
	}
	return version, seq, nil
}

// Cell returns the cell of message seq in a conversation aggregate, or an
// ENotFound domain error.
func (s *Store) Cell(ctx context.Context, partitionKey, aggregate string, seq uint64) ([]byte, error) {
	p := s.keys.partitionOf(partitionKey)
	v, err := s.rdb.HGet(ctx, s.keys.cells(p, aggregate), strconv.FormatUint(seq, 10)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, domain.Errorf(domain.ENotFound, "eventstore: no message %d in %s", seq, aggregate)
	}
	if err != nil {
		return nil, fmt.Errorf("eventstore: reading cell %d of %s: %w", seq, aggregate, err)
	}
	return v, nil
}

// PartitionInfo describes one partition stream.
type PartitionInfo struct {
	Partition   int
	Length      int64
	First, Last Position
}

// Info returns the length and first/last positions of partition p.
func (s *Store) Info(ctx context.Context, p int) (PartitionInfo, error) {
	if err := s.checkPartition(p); err != nil {
		return PartitionInfo{}, err
	}
	info := PartitionInfo{Partition: p}
	key := s.keys.log(p)
	pipe := s.rdb.Pipeline()
	n := pipe.XLen(ctx, key)
	first := pipe.XRangeN(ctx, key, "-", "+", 1)
	last := pipe.XRevRangeN(ctx, key, "+", "-", 1)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return info, fmt.Errorf("eventstore: partition %d info: %w", p, err)
	}
	info.Length = n.Val()
	if m := first.Val(); len(m) == 1 {
		info.First, _ = ParsePosition(m[0].ID)
	}
	if m := last.Val(); len(m) == 1 {
		info.Last, _ = ParsePosition(m[0].ID)
	}
	return info, nil
}
