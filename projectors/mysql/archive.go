package mysql

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/projectors"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"google.golang.org/protobuf/proto"
)

// undecodablePrefix starts the quarantine reason of an undecodable entry;
// the rest is the decoding error.
const undecodablePrefix = "undecodable entry: "

// ArchiveName is the name of the archiver projector; its checkpoints are
// the projector_checkpoints rows of that name, its quarantined entries the
// quarantine rows of that name.
const ArchiveName = "archive"

// ArchiverConfig configures an Archiver. The zero value of each field takes
// the default documented next to it.
type ArchiverConfig struct {
	// Logger receives a notice for every quarantined entry (default: none).
	Logger *slog.Logger
	// MaxRowsPerStatement bounds the rows of one multi-row insert (default
	// 1000); inserts are also cut at about 4 MiB of payload.
	MaxRowsPerStatement int
	// SegmentEvents bounds the entries of one archive segment (default
	// 1000, at most 100000).
	SegmentEvents int
	// SegmentBytes bounds the body of one archive segment (default 1 MiB,
	// 1 KiB..4 MiB); an entry larger than that gets a segment of its own.
	SegmentBytes int
	// Linger is how long a runner lets a partition's events gather before
	// it archives a batch that is not full (projectors.Lingering; default
	// DefaultArchiveLinger, negative: none).
	Linger time.Duration
}

// Validate reports every problem of the configuration at once.
func (c ArchiverConfig) Validate() error {
	var errs []error
	if c.MaxRowsPerStatement < 1 || c.MaxRowsPerStatement > 10_000 {
		errs = append(errs, fmt.Errorf("mysql: max rows per statement must be 1..10000, got %d", c.MaxRowsPerStatement))
	}
	if c.SegmentEvents < 1 || c.SegmentEvents > maxSegmentEvents {
		errs = append(errs, fmt.Errorf("mysql: archive segment events must be 1..%d, got %d", maxSegmentEvents, c.SegmentEvents))
	}
	if c.SegmentBytes < minSegmentBytes || c.SegmentBytes > maxSegmentBytes {
		errs = append(errs, fmt.Errorf("mysql: archive segment bytes must be %d..%d, got %d", minSegmentBytes, maxSegmentBytes, c.SegmentBytes))
	}
	return errors.Join(errs...)
}

// Archiver is the archiver projector ("archive"): it copies every entry of
// the log into event_archive_segments, one row per batch (segments bounded
// by ArchiverConfig.SegmentEvents and SegmentBytes), each entry with its
// position, version, seq and the envelope bytes as the stream stores them,
// so the log can be trimmed below its checkpoint and replays can read it
// back (ReadArchive). Like ReadModel, each Apply is one transaction that
// inserts the batch's segments and moves the checkpoint with a
// compare-and-set on position and fencing token, so every entry is archived
// exactly once, at its position.
//
// Entries that cannot be decoded, or lack the envelope fields (id,
// aggregate, version, payload), are recorded in quarantine under "archive"
// instead; ReadArchive returns them as *eventstore.DecodeError where they
// sit, as the event store does. The archive is a copy of the log: an event
// the log holds twice (at two positions) is archived twice, as a reader of
// the stream would see it.
//
// An Archiver is safe for concurrent use by one goroutine per partition.
type Archiver struct {
	db    *sql.DB
	cfg   ArchiverConfig
	ckpt  checkpoints
	stmts *stmtCache
}

var (
	_ projectors.Projector    = (*Archiver)(nil)
	_ projectors.Checkpointer = (*Archiver)(nil)
	_ projectors.Lingering    = (*Archiver)(nil)
)

// NewArchiver returns the archiver writing to db, whose schema must be
// migrated. db should come from connect.MySQL.
func NewArchiver(db *sql.DB, cfg ArchiverConfig) (*Archiver, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.MaxRowsPerStatement = cmp.Or(cfg.MaxRowsPerStatement, defaultMaxRows)
	cfg.SegmentEvents = cmp.Or(cfg.SegmentEvents, defaultSegmentEvents)
	cfg.SegmentBytes = cmp.Or(cfg.SegmentBytes, defaultSegmentBytes)
	if cfg.Linger == 0 {
		cfg.Linger = DefaultArchiveLinger
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if db == nil {
		return nil, errors.New("mysql: archiver needs a database")
	}
	return &Archiver{db: db, cfg: cfg, ckpt: &namedCheckpoints{projector: ArchiveName}, stmts: newStmtCache(db)}, nil
}

// Close releases the archiver's prepared statements. It must not be called
// while an Apply is in flight; the Archiver is unusable afterwards.
func (a *Archiver) Close() error { return a.stmts.close() }

// Name returns "archive".
func (a *Archiver) Name() string { return ArchiveName }

// Linger returns ArchiverConfig.Linger (projectors.Lingering).
func (a *Archiver) Linger() time.Duration { return a.cfg.Linger }

// Claim records token as partition p's fencing token and returns the
// checkpoint to resume after; see ReadModel.Claim.
func (a *Archiver) Claim(ctx context.Context, p int, token uint64) (eventstore.Position, error) {
	var pos eventstore.Position
	err := inTx(ctx, a.db, func(tx *sql.Tx) error {
		var err error
		pos, err = claim(ctx, tx, a.ckpt, p, token)
		return err
	})
	return pos, err
}

// Checkpoint returns partition p's checkpoint without claiming it (see
// ArchiveHead), for trimming the log.
func (a *Archiver) Checkpoint(ctx context.Context, p int) (eventstore.Position, error) {
	return ArchiveHead(ctx, a.db, p)
}

// archived is one archived entry: an event_archive row, or an entry of a
// segment.
type archived struct {
	pos        eventstore.Position
	id         []byte
	aggregate  string
	version    uint64
	seq        uint64
	eventType  string
	occurredAt time.Time
	payload    []byte
}

// Apply archives the batch and moves the checkpoint from b.After to b.To in
// one transaction, with the errors of ReadModel.Apply.
func (a *Archiver) Apply(ctx context.Context, b *projectors.Batch) error {
	if b == nil {
		return errors.New("mysql: nil batch")
	}
	rows, bad := archiveRows(b)
	segs := segments(rows, a.cfg.SegmentEvents, a.cfg.SegmentBytes)
	err := inTx(ctx, a.db, func(tx *sql.Tx) error {
		if err := begin(ctx, tx, a.ckpt, b); err != nil {
			return err
		}
		w := newMultiRow("INSERT INTO event_archive_segments (partition_no, last_ms, last_seq, first_ms, first_seq, events, checksum, body) VALUES ",
			"", 8, a.cfg.MaxRowsPerStatement, a.stmts)
		for i := range segs {
			s := &segs[i]
			if err := w.add(ctx, tx, b.Partition, s.last.Ms, s.last.Seq, s.first.Ms, s.first.Seq, s.events, s.checksum(), s.body); err != nil {
				return err
			}
		}
		if err := w.flush(ctx, tx); err != nil {
			return err
		}
		if err := writeQuarantine(ctx, tx, ArchiveName, b.Partition, bad, a.cfg.MaxRowsPerStatement); err != nil {
			return err
		}
		return a.ckpt.advance(ctx, tx, b.Partition, b.To)
	})
	if err != nil {
		return err
	}
	for _, q := range bad {
		a.cfg.Logger.Warn("entry quarantined", "projector", ArchiveName, "partition", b.Partition, "position", q.pos.String(), "reason", q.reason)
	}
	return nil
}

// archiveRows turns the batch into archive rows, and entries that cannot be
// archived (b.Skipped, and events without the envelope fields the archive
// needs) into quarantine rows.
func archiveRows(b *projectors.Batch) ([]archived, []quarantined) {
	rows := make([]archived, 0, len(b.Events))
	var bad []quarantined
	for i := range b.Events {
		r := &b.Events[i]
		ev := r.Event
		typ := eventType(ev)
		switch {
		case ev == nil || len(ev.GetId()) != 16 || ev.GetAggregate() == "" || len(ev.GetAggregate()) > 255 || ev.GetVersion() == 0 || typ == "":
			bad = append(bad, quarantined{pos: r.Position, reason: "envelope lacks an id, aggregate, version or payload", raw: r.Raw})
			continue
		}
		payload := r.Raw
		if payload == nil {
			// Not read from the stream: store the envelope as the stream would,
			// without the version and seq the append script assigns.
			c := proto.CloneOf(ev)
			c.Version, c.Seq = 0, 0
			var err error
			if payload, err = proto.Marshal(c); err != nil {
				bad = append(bad, quarantined{pos: r.Position, reason: "envelope cannot be encoded: " + err.Error()})
				continue
			}
		}
		rows = append(rows, archived{
			pos: r.Position, id: ev.GetId(), aggregate: ev.GetAggregate(), version: ev.GetVersion(), seq: ev.GetSeq(),
			eventType: typ, occurredAt: time.UnixMilli(ev.GetOccurredAtMs()).UTC(), payload: payload,
		})
	}
	for _, de := range b.Skipped {
		bad = append(bad, quarantined{pos: de.Position, reason: undecodablePrefix + de.Err.Error(), raw: de.Raw})
	}
	return rows, bad
}

// eventType returns the name of the envelope's payload message
// ("MessageSent"), or "" if it has none.
func eventType(ev *mpimv1.Event) string {
	if ev == nil {
		return ""
	}
	m := ev.ProtoReflect()
	fd := m.WhichOneof(m.Descriptor().Oneofs().ByName("payload"))
	if fd == nil || fd.Message() == nil {
		return ""
	}
	return string(fd.Message().Name())
}

// writeQuarantine records entries set aside by projector in partition p.
func writeQuarantine(ctx context.Context, tx *sql.Tx, projector string, p int, qs []quarantined, maxRows int) error {
	if len(qs) == 0 {
		return nil
	}
	w := newMultiRow("INSERT INTO "+tQuarantine+" (projector, partition_no, pos_ms, pos_seq, reason, raw, quarantined_at) VALUES ",
		" ON DUPLICATE KEY UPDATE reason = VALUES(reason)", 7, maxRows, nil)
	now := time.Now().UTC()
	for _, q := range qs {
		raw := q.raw
		if raw == nil {
			raw = []byte{}
		}
		if err := w.add(ctx, tx, projector, p, q.pos.Ms, q.pos.Seq, truncateRunes(q.reason, 1024), raw, now); err != nil {
			return err
		}
	}
	return w.flush(ctx, tx)
}

// ReadArchive returns up to limit archived entries of partition p after
// position after (exclusive), in log order, like eventstore's ReadPartition:
// each event as the stream gave it (envelope decoded from the stored bytes,
// version and seq filled in, Raw the stored bytes). It merges the segments
// (event_archive_segments) with the rows of event_archive (archived before
// segments, or re-applied from quarantine). An entry the archiver
// quarantined ends the result: ReadArchive returns the events before it with
// a *eventstore.DecodeError for it, so a reader can skip it (read again after
// its position). A segment that does not decode fails the read with an error
// wrapping ErrMalformedSegment. An empty result means the archive holds
// nothing after after; see ArchiveHead for how far it is complete.
func ReadArchive(ctx context.Context, db *sql.DB, p int, after eventstore.Position, limit int) ([]eventstore.Recorded, error) {
	if limit <= 0 {
		return nil, errors.New("mysql: read limit must be positive")
	}
	rows, stop, err := readArchiveRows(ctx, db, p, after, limit)
	if err != nil {
		return nil, err
	}
	segs, err := readSegments(ctx, db, p, after, limit)
	if err != nil {
		return nil, err
	}
	// Each list is complete up to its limit-th entry (or its end), so the
	// first limit of the merge are.
	out := mergeRecorded(rows, segs, limit)
	// Quarantined entries interleave by position.
	var q struct {
		pos    eventstore.Position
		reason string
		raw    []byte
	}
	err = db.QueryRowContext(ctx, "SELECT pos_ms, pos_seq, reason, raw FROM "+tQuarantine+" WHERE projector = ? AND partition_no = ?"+archiveRange,
		ArchiveName, p, after.Ms, after.Ms, after.Seq, 1).Scan(&q.pos.Ms, &q.pos.Seq, &q.reason, &q.raw)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return nil, fmt.Errorf("mysql: reading archive quarantine of partition %d: %w", p, err)
	case stop == nil || q.pos.Compare(stop.Position) < 0:
		stop = &eventstore.DecodeError{Partition: p, Position: q.pos, Raw: q.raw, Err: errors.New(strings.TrimPrefix(q.reason, undecodablePrefix))}
	}
	if stop == nil {
		return out, nil
	}
	i, _ := slices.BinarySearchFunc(out, stop.Position, func(r eventstore.Recorded, pos eventstore.Position) int { return r.Position.Compare(pos) })
	if i == len(out) && len(out) == limit {
		return out, nil // the quarantined entry comes after this page
	}
	return out[:i], stop
}

// archiveRange selects the positions after one, in order, up to a limit.
const archiveRange = " AND (pos_ms > ? OR (pos_ms = ? AND pos_seq > ?)) ORDER BY pos_ms, pos_seq LIMIT ?"

// readArchiveRows returns up to limit event_archive rows of partition p
// after position after; a row whose envelope does not decode ends them and
// is returned as stop.
func readArchiveRows(ctx context.Context, db *sql.DB, p int, after eventstore.Position, limit int) (out []eventstore.Recorded, stop *eventstore.DecodeError, err error) {
	rows, err := db.QueryContext(ctx, "SELECT pos_ms, pos_seq, version, seq, payload FROM event_archive WHERE partition_no = ?"+archiveRange,
		p, after.Ms, after.Ms, after.Seq, limit)
	if err != nil {
		return nil, nil, fmt.Errorf("mysql: reading archive partition %d: %w", p, err)
	}
	defer rows.Close()
	for rows.Next() {
		r := eventstore.Recorded{Partition: p}
		var version, seq uint64
		if err := rows.Scan(&r.Position.Ms, &r.Position.Seq, &version, &seq, &r.Raw); err != nil {
			return nil, nil, fmt.Errorf("mysql: reading archive partition %d: %w", p, err)
		}
		ev := new(mpimv1.Event)
		if err := proto.Unmarshal(r.Raw, ev); err != nil {
			return out, &eventstore.DecodeError{Partition: p, Position: r.Position, Raw: r.Raw, Err: err}, nil
		}
		ev.Version, ev.Seq = version, seq
		r.Event = ev
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("mysql: reading archive partition %d: %w", p, err)
	}
	return out, nil, nil
}

// mergeRecorded merges two lists in log order and keeps the first limit.
func mergeRecorded(a, b []eventstore.Recorded, limit int) []eventstore.Recorded {
	if len(a) == 0 && len(b) <= limit {
		return b
	}
	out := make([]eventstore.Recorded, 0, min(limit, len(a)+len(b)))
	for len(out) < limit && (len(a) > 0 || len(b) > 0) {
		if len(b) == 0 || (len(a) > 0 && a[0].Position.Compare(b[0].Position) < 0) {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return out
}

// ArchiveHead returns the archiver's checkpoint of partition p: every entry
// of the partition up to it is in the archive (or its quarantine), and the
// log may be trimmed below it. The zero Position means nothing is archived.
func ArchiveHead(ctx context.Context, db *sql.DB, p int) (eventstore.Position, error) {
	var text string
	err := db.QueryRowContext(ctx, "SELECT position FROM projector_checkpoints WHERE projector = ? AND partition_no = ?", ArchiveName, p).Scan(&text)
	if errors.Is(err, sql.ErrNoRows) {
		return eventstore.Position{}, nil
	}
	if err != nil {
		return eventstore.Position{}, fmt.Errorf("mysql: reading archive head of partition %d: %w", p, err)
	}
	return eventstore.ParsePosition(text)
}
