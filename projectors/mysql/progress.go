package mysql

import (
	"context"
	"fmt"

	"github.com/mpim/mpim/eventstore"
)

// streamInfo is what estimate asks the log for, if it can tell
// (*eventstore.Store can).
type streamInfo interface {
	Info(ctx context.Context, p int) (eventstore.PartitionInfo, error)
}

// estimate returns about how many entries the rebuild reads from the shadow
// checkpoints on: the archive's rows after them (from the table statistics
// when every partition starts at zero, else counted along the primary key)
// plus, per partition, the stream entries the archive does not hold yet.
func (rb *rebuild) estimate(ctx context.Context) (int64, error) {
	fromZero := true
	for _, pos := range rb.pos {
		fromZero = fromZero && pos.IsZero()
	}
	var total int64
	if fromZero {
		var rows int64
		err := rb.conn.QueryRowContext(ctx, "SELECT COALESCE(MAX(table_rows), 0) FROM information_schema.tables"+
			" WHERE table_schema = DATABASE() AND table_name = 'event_archive'").Scan(&rows)
		if err != nil {
			return 0, fmt.Errorf("mysql: rebuild: estimating the archive's size: %w", err)
		}
		var segs int64
		err = rb.conn.QueryRowContext(ctx, "SELECT COALESCE(SUM(events), 0) FROM event_archive_segments").Scan(&segs)
		if err != nil {
			return 0, fmt.Errorf("mysql: rebuild: estimating the archive's size: %w", err)
		}
		total = rows + segs
	}
	info, _ := rb.src.(streamInfo)
	for p, pos := range rb.pos {
		if !fromZero {
			n, err := rb.archiveCount(ctx, p, pos, ">")
			if err != nil {
				return 0, err
			}
			total += n
		}
		if info == nil {
			continue
		}
		in, err := info.Info(ctx, p)
		if err != nil {
			return 0, fmt.Errorf("mysql: rebuild: estimating the stream's size: %w", err)
		}
		if in.Length == 0 {
			continue
		}
		archived, err := rb.archiveCount(ctx, p, in.First, ">=")
		if err != nil {
			return 0, err
		}
		total += max(0, in.Length-archived)
	}
	return total, nil
}

// archiveCount counts partition p's archived entries after pos (op ">") or
// at and after it (">="), about: a segment that holds pos counts whole.
func (rb *rebuild) archiveCount(ctx context.Context, p int, pos eventstore.Position, op string) (int64, error) {
	var n int64
	err := rb.conn.QueryRowContext(ctx, "SELECT (SELECT COUNT(*) FROM event_archive WHERE partition_no = ? AND (pos_ms > ? OR (pos_ms = ? AND pos_seq "+op+" ?)))"+
		" + (SELECT COALESCE(SUM(events), 0) FROM event_archive_segments WHERE partition_no = ? AND (last_ms > ? OR (last_ms = ? AND last_seq "+op+" ?)))",
		p, pos.Ms, pos.Ms, pos.Seq, p, pos.Ms, pos.Ms, pos.Seq).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("mysql: rebuild: counting partition %d's archive: %w", p, err)
	}
	return n, nil
}
