package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/projectors"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"google.golang.org/protobuf/proto"
)

// applyFailedPrefix starts the quarantine reason of an event the runner set
// aside because applying it kept failing (projectors.Quarantiner).
const applyFailedPrefix = "apply failed: "

var (
	_ projectors.Quarantiner = (*ReadModel)(nil)
	_ projectors.Quarantiner = (*Archiver)(nil)
)

// quarantinedEntry is the quarantine row of the only entry of b, set aside
// because of cause. An event's raw bytes are its whole envelope, version and
// seq included (the stream keeps those apart), so that it can be re-applied
// after the log was trimmed.
func quarantinedEntry(b *projectors.Batch, cause error) (quarantined, string, error) {
	reason := applyFailedPrefix + cause.Error()
	switch {
	case len(b.Events) == 1 && len(b.Skipped) == 0:
		r := &b.Events[0]
		raw := r.Raw
		if r.Event != nil {
			var err error
			if raw, err = proto.Marshal(r.Event); err != nil {
				raw = r.Raw
			}
		}
		agg := r.Event.GetAggregate()
		if agg == "" {
			agg = aggregateOfRaw(r.Raw)
		}
		return quarantined{pos: r.Position, reason: reason, raw: raw}, agg, nil
	case len(b.Events) == 0 && len(b.Skipped) == 1:
		de := b.Skipped[0]
		return quarantined{pos: de.Position, reason: reason, raw: de.Raw}, aggregateOfRaw(de.Raw), nil
	}
	return quarantined{}, "", fmt.Errorf("mysql: quarantine of a batch of %d entries, want 1", len(b.Events)+len(b.Skipped))
}

// Quarantine records the batch's only entry in the quarantine table under
// "mysql" with cause as the reason and moves the checkpoint from b.After to
// b.To, in one transaction with Apply's checks (projectors.Quarantiner). The
// entry's aggregate version moves past it, as for an undecodable entry, so
// the aggregate's later events apply.
func (m *ReadModel) Quarantine(ctx context.Context, b *projectors.Batch, cause error) error {
	q, agg, err := quarantinedEntry(b, cause)
	if err != nil {
		return err
	}
	err = m.whenUnpaused(ctx, func(tx *sql.Tx) error {
		if err := begin(ctx, tx, m.ckpt, b); err != nil {
			return err
		}
		a := newApplier(m, tx, b.Partition)
		a.wantAggregate(agg)
		if err := a.load(ctx); err != nil {
			return err
		}
		a.skipVersion(agg)
		a.quarantined = append(a.quarantined, q)
		if err := a.write(ctx); err != nil {
			return err
		}
		return m.ckpt.advance(ctx, tx, b.Partition, b.To)
	})
	if err != nil {
		return err
	}
	m.cfg.Logger.Warn("event quarantined", "projector", ReadModelName, "partition", b.Partition,
		"position", q.pos.String(), "reason", q.reason)
	return nil
}

// Quarantine records the batch's only entry in the quarantine table under
// "archive" and moves the checkpoint, as Apply does for entries it cannot
// archive (projectors.Quarantiner); ReadArchive returns it as a
// *eventstore.DecodeError.
func (a *Archiver) Quarantine(ctx context.Context, b *projectors.Batch, cause error) error {
	q, _, err := quarantinedEntry(b, cause)
	if err != nil {
		return err
	}
	return inTx(ctx, a.db, func(tx *sql.Tx) error {
		if err := begin(ctx, tx, a.ckpt, b); err != nil {
			return err
		}
		if err := writeQuarantine(ctx, tx, ArchiveName, b.Partition, []quarantined{q}, a.cfg.MaxRowsPerStatement); err != nil {
			return err
		}
		return a.ckpt.advance(ctx, tx, b.Partition, b.To)
	})
}

// ListQuarantine returns the quarantine records of projector (every
// projector's if it is empty) in db, by projector, partition and position,
// at most limit of them.
func ListQuarantine(ctx context.Context, db *sql.DB, projector string, limit int) ([]projectors.QuarantineRecord, error) {
	q := "SELECT projector, partition_no, pos_ms, pos_seq, reason, raw, quarantined_at FROM " + tQuarantine
	var args []any
	if projector != "" {
		q += " WHERE projector = ?"
		args = append(args, projector)
	}
	q += " ORDER BY projector, partition_no, pos_ms, pos_seq LIMIT ?"
	args = append(args, limit)
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("mysql: reading quarantine: %w", err)
	}
	defer rows.Close()
	var out []projectors.QuarantineRecord
	for rows.Next() {
		var r projectors.QuarantineRecord
		if err := rows.Scan(&r.Projector, &r.Partition, &r.Position.Ms, &r.Position.Seq, &r.Reason, &r.Raw, &r.At); err != nil {
			return nil, fmt.Errorf("mysql: reading quarantine: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mysql: reading quarantine: %w", err)
	}
	return out, nil
}

// ErrNotQuarantined is returned when no quarantine record is at the given
// projector, partition and position.
var ErrNotQuarantined = errors.New("mysql: no such quarantined entry")

// DropQuarantine deletes the quarantine record of projector at partition p
// and position pos; ErrNotQuarantined if there is none.
func DropQuarantine(ctx context.Context, db *sql.DB, projector string, p int, pos eventstore.Position) error {
	return inTx(ctx, db, func(tx *sql.Tx) error { return dropQuarantine(ctx, tx, projector, p, pos) })
}

func dropQuarantine(ctx context.Context, tx *sql.Tx, projector string, p int, pos eventstore.Position) error {
	res, err := tx.ExecContext(ctx, "DELETE FROM "+tQuarantine+" WHERE projector = ? AND partition_no = ? AND pos_ms = ? AND pos_seq = ?",
		projector, p, pos.Ms, pos.Seq)
	if err != nil {
		return fmt.Errorf("mysql: dropping quarantined entry: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: %s partition %d position %s", ErrNotQuarantined, projector, p, pos)
	}
	return nil
}

// quarantinedEvent reads and locks the quarantine record of projector at p
// and pos and decodes its event.
func quarantinedEvent(ctx context.Context, tx *sql.Tx, projector string, p int, pos eventstore.Position) (eventstore.Recorded, error) {
	var raw []byte
	err := tx.QueryRowContext(ctx, "SELECT raw FROM "+tQuarantine+" WHERE projector = ? AND partition_no = ? AND pos_ms = ? AND pos_seq = ? FOR UPDATE",
		projector, p, pos.Ms, pos.Seq).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return eventstore.Recorded{}, fmt.Errorf("%w: %s partition %d position %s", ErrNotQuarantined, projector, p, pos)
	}
	if err != nil {
		return eventstore.Recorded{}, fmt.Errorf("mysql: reading quarantined entry: %w", err)
	}
	var env mpimv1.Event
	if err := proto.Unmarshal(raw, &env); err != nil || env.GetVersion() == 0 {
		return eventstore.Recorded{}, fmt.Errorf("mysql: quarantined entry %s partition %d position %s has no complete envelope to re-apply (undecodable entries can only be dropped)", projector, p, pos)
	}
	return eventstore.Recorded{Partition: p, Position: pos, Event: &env, Raw: raw}, nil
}

// Reapply applies the quarantined event of partition p at pos to the read
// model again (after a fix) and removes its quarantine record, in one
// transaction; the checkpoint does not move. The event lands after the
// partition's later events: its aggregate's version is not checked or
// changed, and a change a later event superseded (an older edit of a
// message) has no effect. If the read model would quarantine it again, or
// applying it fails, nothing changes and the reason is returned.
func (m *ReadModel) Reapply(ctx context.Context, p int, pos eventstore.Position) error {
	return m.whenUnpaused(ctx, func(tx *sql.Tx) error {
		rec, err := quarantinedEvent(ctx, tx, ReadModelName, p, pos)
		if err != nil {
			return err
		}
		items := decodeBatch(&projectors.Batch{Partition: p, Events: []eventstore.Recorded{rec}})
		a := newApplier(m, tx, p)
		a.reapply = true
		if err := a.run(ctx, items, nil); err != nil {
			return err
		}
		if len(a.quarantined) > 0 {
			return fmt.Errorf("mysql: re-applying %s: %s", pos, a.quarantined[0].reason)
		}
		return dropQuarantine(ctx, tx, ReadModelName, p, pos)
	})
}

// Reapply archives the quarantined event of partition p at pos (after a
// fix) and removes its quarantine record, in one transaction.
func (a *Archiver) Reapply(ctx context.Context, p int, pos eventstore.Position) error {
	return inTx(ctx, a.db, func(tx *sql.Tx) error {
		rec, err := quarantinedEvent(ctx, tx, ArchiveName, p, pos)
		if err != nil {
			return err
		}
		rec.Raw = nil // archived as the stream stores it, without version and seq
		rows, bad := archiveRows(&projectors.Batch{Partition: p, Events: []eventstore.Recorded{rec}})
		if len(bad) > 0 {
			return fmt.Errorf("mysql: re-applying %s: %s", pos, bad[0].reason)
		}
		r := rows[0]
		if _, err := tx.ExecContext(ctx, "INSERT INTO event_archive (partition_no, pos_ms, pos_seq, event_id, aggregate, version, seq, event_type, occurred_at, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
			p, r.pos.Ms, r.pos.Seq, r.id, r.aggregate, r.version, r.seq, r.eventType, r.occurredAt, r.payload); err != nil {
			return fmt.Errorf("mysql: archiving re-applied %s: %w", pos, err)
		}
		return dropQuarantine(ctx, tx, ArchiveName, p, pos)
	})
}

// versions returns the versions of the loaded aggregate rows (users, groups,
// conversations), by id.
func (a *applier) versions() map[string]uint64 {
	out := make(map[string]uint64)
	for id, u := range a.users {
		if u != nil {
			out[id] = u.version
		}
	}
	for id, g := range a.groups {
		if g != nil {
			out[id] = g.version
		}
	}
	for id, c := range a.convs {
		if c != nil {
			out[id] = c.version
		}
	}
	return out
}

// restoreVersions puts back the versions versions returned, so a re-applied
// event leaves its aggregate's version where the log's later events put it.
func (a *applier) restoreVersions(vs map[string]uint64) {
	for id, u := range a.users {
		if v, ok := vs[id]; ok && u != nil {
			u.version = v
		}
	}
	for id, g := range a.groups {
		if v, ok := vs[id]; ok && g != nil {
			g.version = v
		}
	}
	for id, c := range a.convs {
		if v, ok := vs[id]; ok && c != nil {
			c.version = v
		}
	}
}
