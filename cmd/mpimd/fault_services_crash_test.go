package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/connect"
	mysqlproj "github.com/mpim/mpim/projectors/mysql"
)

// What the crash tests of fault_services_test.go need beyond the servers:
// a way to make a MariaDB kill land in the middle of a read-model
// transaction, and the audit of the MySQL projections against the log.

// blockReadModelBatch makes the next read-model batch stop in the middle of
// its transaction, so that a kill of the server interrupts it: it locks
// every row and gap of user_conversations (which only the read-model
// projector writes, after a batch's conversations and messages rows) in a
// transaction of its own, waits until another transaction that has
// already modified rows waits for that lock, and then until the redo log on
// disk holds those modifications. The lock is held until the server is
// killed (or the test ends).
func blockReadModelBatch(t *testing.T, dsn string) {
	t.Helper()
	ctx := context.Background()
	db, err := connect.MySQL(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	holder, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		holder.Close()
		db.Close()
	})
	var self int64
	var rows int
	err = holder.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&self)
	if err == nil {
		_, err = holder.ExecContext(ctx, "BEGIN")
	}
	if err == nil {
		err = holder.QueryRowContext(ctx, "SELECT COUNT(*) FROM user_conversations FOR UPDATE").Scan(&rows)
	}
	if err != nil {
		t.Fatalf("locking user_conversations: %v", err)
	}
	// InnoDB refreshes what information_schema.innodb_trx shows only when
	// it was last read over 100 ms before (CACHE_MIN_IDLE_TIME_US): polled
	// faster, it shows the same snapshot forever.
	waitUntil(t, "a read-model transaction that wrote rows to wait for the lock on user_conversations", func() bool {
		time.Sleep(150 * time.Millisecond)
		var n int
		err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.innodb_trx "+
			"WHERE trx_state = 'LOCK WAIT' AND trx_rows_modified > 0 AND trx_mysql_thread_id <> ?", self).Scan(&n)
		return err == nil && n > 0
	})
	// The blocked transaction's changes are in InnoDB's log buffer; with
	// innodb_flush_log_at_trx_commit=1 the next commit (or the flush every
	// second) writes them to the redo log. Once they are there, recovery
	// must find the transaction and roll it back, which its log says; before,
	// a kill just loses them unseen.
	lsn := func(name string) uint64 {
		var v uint64
		var ignored string
		if err := db.QueryRowContext(ctx, "SHOW GLOBAL STATUS LIKE ?", name).Scan(&ignored, &v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return v
	}
	written := lsn("Innodb_lsn_current")
	waitUntil(t, "the redo log flushed past the blocked transaction's changes", func() bool {
		return lsn("Innodb_lsn_flushed") >= written
	})
}

// loggedCount returns how many times s occurs in the log of p.
func loggedCount(t *testing.T, p *mpimdProc, s string) int {
	t.Helper()
	out, err := os.ReadFile(p.log)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(out, []byte(s))
}

// logView is what the projection audit needs of the log: every entry's
// event id (hex) by partition and position, the last position of each
// partition, each message's event id by conversation and seq, and each
// aggregate's last version.
type logView struct {
	entries  map[archiveKey]string
	tails    []eventstore.Position
	messages map[msgSeq]string
	versions map[string]uint64
}

type archiveKey struct {
	partition int
	pos       eventstore.Position
}

type msgSeq struct {
	conv string
	seq  uint64
}

func readLogView(t *testing.T, redisAddr, prefix string, partitions int) logView {
	t.Helper()
	v := logView{entries: map[archiveKey]string{}, tails: make([]eventstore.Position, partitions),
		messages: map[msgSeq]string{}, versions: map[string]uint64{}}
	eachEntry(t, openLog(t, redisAddr, prefix, partitions), partitions, func(p int, r eventstore.Recorded) {
		v.tails[p] = r.Position
		v.entries[archiveKey{p, r.Position}] = fmt.Sprintf("%x", r.Event.GetId())
		v.versions[r.Event.GetAggregate()] = max(v.versions[r.Event.GetAggregate()], r.Event.GetVersion())
		if m := r.Event.GetMessageSent(); m != nil {
			v.messages[msgSeq{m.GetConversationId(), r.Event.GetSeq()}] = fmt.Sprintf("%x", r.Event.GetId())
		}
	})
	return v
}

// projectionAudit is how the MySQL projections compare with the log.
type projectionAudit struct {
	archived, messages, conversations int
	problems                          int
	details                           []string
}

func (a *projectionAudit) problem(format string, args ...any) {
	a.problems++
	if len(a.details) < 10 {
		a.details = append(a.details, fmt.Sprintf(format, args...))
	}
}

func (a projectionAudit) String() string {
	s := fmt.Sprintf("projections: checkpoints at the log's ends; %d archived entries, %d messages rows, %d conversations rows; %d problems",
		a.archived, a.messages, a.conversations, a.problems)
	for _, d := range a.details {
		s += "\n\t" + d
	}
	return s
}

// auditProjections waits until the checkpoints of the read model and of the
// archive are both at the end of every partition of the log, then checks
// that what they cover was applied exactly once: the archive holds every
// entry at its position and nothing else, the messages table every
// MessageSent with its event id and nothing else, and each conversation row
// the version of the conversation's last event (an event skipped or
// applied twice shows there). A checkpoint committed apart from its rows
// leaves a gap or a double here.
func auditProjections(t *testing.T, redisAddr, prefix string, partitions int, dsn string) projectionAudit {
	t.Helper()
	lv := readLogView(t, redisAddr, prefix, partitions)
	ctx := context.Background()
	db, err := connect.MySQL(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var lag string
	waitUntil(t, "the read model's and the archive's checkpoints to reach the log's ends", func() bool {
		lag = checkpointLag(ctx, db, lv.tails)
		return lag == ""
	})
	var a projectionAudit
	a.archived = auditRows(ctx, t, db, &a, "event_archive", "SELECT partition_no, pos_ms, pos_seq, event_id FROM event_archive",
		func(rs *sql.Rows) (any, string, error) {
			var k archiveKey
			var id []byte
			err := rs.Scan(&k.partition, &k.pos.Ms, &k.pos.Seq, &id)
			return k, fmt.Sprintf("%x", id), err
		}, toAny(lv.entries))
	a.messages = auditRows(ctx, t, db, &a, "messages", "SELECT conversation_id, seq, event_id FROM messages",
		func(rs *sql.Rows) (any, string, error) {
			var k msgSeq
			var id []byte
			err := rs.Scan(&k.conv, &k.seq, &id)
			return k, fmt.Sprintf("%x", id), err
		}, toAny(lv.messages))
	convs := map[string]string{}
	for k := range lv.messages {
		convs[k.conv] = fmt.Sprint(lv.versions[k.conv])
	}
	a.conversations = auditRows(ctx, t, db, &a, "conversations", "SELECT conversation_id, version FROM conversations",
		func(rs *sql.Rows) (any, string, error) {
			var conv string
			var version uint64
			err := rs.Scan(&conv, &version)
			return conv, fmt.Sprint(version), err
		}, toAny(convs))
	return a
}

// checkpointLag returns how the stored checkpoints differ from tails, the
// last position of each partition ("" once none does).
func checkpointLag(ctx context.Context, db *sql.DB, tails []eventstore.Position) string {
	stored := map[string]map[int]eventstore.Position{mysqlproj.ReadModelName: {}, mysqlproj.ArchiveName: {}}
	rs, err := db.QueryContext(ctx, "SELECT partition_no, pos_ms, pos_seq FROM read_model_checkpoints")
	if err != nil {
		return err.Error()
	}
	for rs.Next() {
		var p int
		var pos eventstore.Position
		if err := rs.Scan(&p, &pos.Ms, &pos.Seq); err != nil {
			rs.Close()
			return err.Error()
		}
		stored[mysqlproj.ReadModelName][p] = pos
	}
	rs.Close()
	rs, err = db.QueryContext(ctx, "SELECT partition_no, position FROM projector_checkpoints WHERE projector = ?", mysqlproj.ArchiveName)
	if err != nil {
		return err.Error()
	}
	for rs.Next() {
		var p int
		var text string
		if err := rs.Scan(&p, &text); err != nil {
			rs.Close()
			return err.Error()
		}
		pos, err := eventstore.ParsePosition(text)
		if err != nil {
			rs.Close()
			return err.Error()
		}
		stored[mysqlproj.ArchiveName][p] = pos
	}
	rs.Close()
	for name, byPartition := range stored {
		for p, tail := range tails {
			if got := byPartition[p]; got != tail {
				return fmt.Sprintf("%s checkpoint of partition %d is %s, the log ends at %s", name, p, got, tail)
			}
		}
	}
	return ""
}

func toAny[K comparable](m map[K]string) map[any]string {
	out := make(map[any]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// auditRows compares the rows of query, each a key and a value read by
// scan, with want: every wanted key once with its value, no other key. It
// returns how many rows there were.
func auditRows(ctx context.Context, t *testing.T, db *sql.DB, a *projectionAudit, table, query string,
	scan func(*sql.Rows) (any, string, error), want map[any]string) int {
	t.Helper()
	rs, err := db.QueryContext(ctx, query)
	if err != nil {
		t.Fatalf("auditing %s: %v", table, err)
	}
	defer rs.Close()
	seen := map[any]bool{}
	n := 0
	for rs.Next() {
		k, v, err := scan(rs)
		if err != nil {
			t.Fatalf("auditing %s: %v", table, err)
		}
		n++
		w, ok := want[k]
		switch {
		case !ok:
			a.problem("%s: row %v is not in the log", table, k)
		case seen[k]:
			a.problem("%s: row %v twice", table, k)
		case v != w:
			a.problem("%s: row %v holds %s, the log %s", table, k, v, w)
		}
		seen[k] = true
	}
	if err := rs.Err(); err != nil {
		t.Fatalf("auditing %s: %v", table, err)
	}
	for k := range want {
		if !seen[k] {
			a.problem("%s: %v of the log has no row", table, k)
		}
	}
	return n
}
