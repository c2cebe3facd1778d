package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/connect"
	"github.com/mpim/mpim/internal/readmodel"
	"github.com/mpim/mpim/projectors"
	pmysql "github.com/mpim/mpim/projectors/mysql"
	"github.com/mpim/mpim/projectors/redisckpt"
	"github.com/redis/go-redis/v9"
)

// The deep read-model audit of the process-level tests: once every
// projector has caught up with the log, every acknowledged send is checked
// in every model the projectors write, not just counted:
//
//   - mysql: the messages row of each acked send has its event id, seq,
//     sender and client message id; each conversation holds seqs 1..n and
//     nothing else; conversations and every member's user_conversations row
//     end at the conversation's last seq;
//   - archive: event_archive holds each event of the log exactly once, at its
//     partition and position, each aggregate's versions 1..n without a gap,
//     and each acked send as the MessageSent it was acked as;
//   - quarantine: empty for every projector (each entry is listed with its
//     reason in the test log, and counts as a problem);
//   - cache: the profile, group and membership keys of every user and group
//     involved agree with MySQL;
//   - inbox: every member's inbox holds each acked send of the conversation
//     with its seq, first occurrences in seq order (entries are at least
//     once: duplicates are counted and reported, not failed).
//
// The log itself is audited by auditLog (fault_test.go), delivery to
// devices by audit (e2e_audit_test.go).

// rmTarget is where a deployment's models live.
type rmTarget struct {
	redisAddr, prefix, dsn string
	partitions             int
}

// readModelAudit is what the deep audit found.
type readModelAudit struct {
	rows          int64 // messages rows
	archived      int   // event_archive rows
	logEntries    int   // entries in the log streams
	inboxChecked  int   // (acked send, member) pairs looked up in inboxes
	inboxDups     int   // inbox entries repeating an event id (at least once)
	cacheChecked  int   // cache keys compared with MySQL
	quarantined   []string
	problems      int
	details       []string
	caughtUpAfter time.Duration
}

func (a *readModelAudit) problem(format string, args ...any) {
	a.problems++
	if len(a.details) < 20 {
		a.details = append(a.details, fmt.Sprintf(format, args...))
	}
}

func (a readModelAudit) ok() bool { return a.problems == 0 }

func (a readModelAudit) String() string {
	return fmt.Sprintf("read models (caught up %.1fs after the audit began): %d messages rows, %d archived events for %d log entries, "+
		"%d (send, member) inbox lookups with %d duplicate entries, %d cache keys compared, %d quarantined; %d problems%s",
		a.caughtUpAfter.Seconds(), a.rows, a.archived, a.logEntries, a.inboxChecked, a.inboxDups, a.cacheChecked, len(a.quarantined),
		a.problems, strings.Join(append([]string{""}, a.details...), "\n\t"))
}

// auditReadModels runs the deep audit of fc's models against sent, logs it
// and fails t on any problem. It returns the messages rows (for logAudits).
func (fc *faultCluster) auditReadModels(t *testing.T, sent []sentMsg) int64 {
	t.Helper()
	a := auditReadModelsAt(t, rmTarget{redisAddr: fc.redisAddr, prefix: fc.prefix, dsn: fc.dsn, partitions: fc.partitions}, sent)
	t.Logf("%v", a)
	if !a.ok() {
		t.Errorf("read model audit failed: %v", a)
	}
	return a.rows
}

// rmConns are the connections of one audit.
type rmConns struct {
	ctx   context.Context
	rdb   redis.UniversalClient
	store *eventstore.Store
	db    *sql.DB
	tg    rmTarget
}

// auditReadModelsAt waits until every projector caught up with the log and
// audits every model (see the file comment).
func auditReadModelsAt(t *testing.T, tg rmTarget, sent []sentMsg) readModelAudit {
	t.Helper()
	ctx := context.Background()
	c := rmConns{ctx: ctx, tg: tg, rdb: auditRedis(t, tg.redisAddr)}
	var err error
	if c.store, err = eventstore.Open(ctx, c.rdb, eventstore.Config{Prefix: tg.prefix, Partitions: tg.partitions}); err != nil {
		t.Fatal(err)
	}
	defer c.store.Close()
	if c.db, err = connect.MySQL(ctx, tg.dsn); err != nil {
		t.Fatal(err)
	}
	defer c.db.Close()

	var a readModelAudit
	began := time.Now()
	c.waitCaughtUp(t)
	a.caughtUpAfter = time.Since(began)
	logged := c.readLog(t)
	a.logEntries = len(logged)
	byID := make(map[string]sentMsg, len(sent))
	for _, m := range sent {
		byID[m.eventID] = m
	}
	c.auditMessages(t, &a, sent, byID)
	c.auditArchive(t, &a, logged, sent)
	c.auditQuarantine(t, &a)
	c.auditCache(t, &a, sent)
	c.auditInboxes(t, &a, sent, byID)
	return a
}

// checkpointers returns the checkpoints of every projector mpimd runs.
func (c rmConns) checkpointers(t *testing.T) []projectors.Checkpointer {
	t.Helper()
	arch, err := pmysql.NewArchiver(c.db, pmysql.ArchiverConfig{})
	if err != nil {
		t.Fatal(err)
	}
	rm, err := pmysql.NewReadModel(c.db, pmysql.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { arch.Close(); rm.Close() })
	return []projectors.Checkpointer{arch, rm, redisckpt.New(c.rdb, c.tg.prefix, "cache"), redisckpt.New(c.rdb, c.tg.prefix, "inbox")}
}

// waitCaughtUp waits until every projector's checkpoint of every partition
// is the partition's last entry.
func (c rmConns) waitCaughtUp(t *testing.T) {
	t.Helper()
	cps := c.checkpointers(t)
	names := []string{"archive", "mysql", "cache", "inbox"}
	last := -1
	waitUntil(t, "every projector at the end of every partition", func() bool {
		var behind []string
		for p := range c.tg.partitions {
			info, err := c.store.Info(c.ctx, p)
			if err != nil {
				behind = append(behind, fmt.Sprintf("p%d: %v", p, err))
				continue
			}
			for i, cp := range cps {
				pos, err := cp.Checkpoint(c.ctx, p)
				if err != nil || pos != info.Last {
					behind = append(behind, fmt.Sprintf("%s p%d at %s of %s (%v)", names[i], p, pos, info.Last, err))
				}
			}
		}
		// Logged when the number of lagging checkpoints changes, shortened.
		if len(behind) != last && len(behind) > 0 {
			last = len(behind)
			t.Logf("%d checkpoints behind the log: %s", len(behind), strings.Join(behind[:min(3, len(behind))], ", "))
		}
		return len(behind) == 0
	})
}

// loggedEntry is one entry of the log as the archive audit compares it.
type loggedEntry struct {
	partition int
	pos       eventstore.Position
	id        string
	aggregate string
	version   uint64
}

// readLog reads every partition of the log from its first entry.
func (c rmConns) readLog(t *testing.T) []loggedEntry {
	t.Helper()
	var out []loggedEntry
	eachEntry(t, c.store, c.store.Partitions(), func(_ int, r eventstore.Recorded) {
		out = append(out, loggedEntry{partition: r.Partition, pos: r.Position, id: string(r.Event.GetId()), aggregate: r.Event.GetAggregate(), version: r.Event.GetVersion()})
	})
	return out
}

// query runs q and calls scan for each row; an error fails t.
func (c rmConns) query(t *testing.T, q string, scan func(*sql.Rows) error, args ...any) {
	t.Helper()
	rows, err := c.db.QueryContext(c.ctx, q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// auditMessages checks the messages, conversations and user_conversations
// tables against the acked sends.
func (c rmConns) auditMessages(t *testing.T, a *readModelAudit, sent []sentMsg, byID map[string]sentMsg) {
	t.Helper()
	type row struct {
		conv, sender, client string
		seq                  uint64
	}
	rows := map[string]row{}
	seqs := map[string][]uint64{}
	c.query(t, "SELECT conversation_id, seq, event_id, sender_id, client_msg_id FROM "+readmodel.Messages, func(rs *sql.Rows) error {
		var r row
		var id []byte
		err := rs.Scan(&r.conv, &r.seq, &id, &r.sender, &r.client)
		a.rows++
		if _, ok := byID[string(id)]; !ok {
			a.problem("mysql: %s seq %d (client id %s) was never acked", r.conv, r.seq, r.client)
		}
		rows[string(id)] = r
		seqs[r.conv] = append(seqs[r.conv], r.seq)
		return err
	})
	for _, m := range sent {
		r, ok := rows[m.eventID]
		switch {
		case !ok:
			a.problem("mysql: %s (%s seq %d) acked, no messages row has its event id", m.key.clientMsgID, m.key.conv, m.seq)
		case r.conv != m.key.conv || r.seq != m.seq || r.sender != m.key.sender || r.client != m.key.clientMsgID:
			a.problem("mysql: %s acked as %s seq %d from %s, row is %s seq %d from %s client id %s",
				m.key.clientMsgID, m.key.conv, m.seq, m.key.sender, r.conv, r.seq, r.sender, r.client)
		}
	}
	lastSeq := map[string]uint64{}
	for conv, s := range seqs {
		slices.Sort(s)
		if s[0] != 1 || s[len(s)-1] != uint64(len(s)) {
			a.problem("mysql: %s holds %d messages with seqs %d..%d", conv, len(s), s[0], s[len(s)-1])
		}
		lastSeq[conv] = s[len(s)-1]
	}
	c.query(t, "SELECT conversation_id, last_seq FROM "+readmodel.Conversations, func(rs *sql.Rows) error {
		var conv string
		var last uint64
		err := rs.Scan(&conv, &last)
		if want, ok := lastSeq[conv]; ok && last != want {
			a.problem("mysql: conversations says %s ends at seq %d, its messages at %d", conv, last, want)
		}
		return err
	})
	listed := map[[2]string]uint64{}
	c.query(t, "SELECT user_id, conversation_id, last_seq FROM "+readmodel.UserConversations, func(rs *sql.Rows) error {
		var u, conv string
		var last uint64
		err := rs.Scan(&u, &conv, &last)
		listed[[2]string{u, conv}] = last
		return err
	})
	for conv, want := range lastSeq {
		for _, u := range membersOf(sent, conv) {
			if got, ok := listed[[2]string{u, conv}]; !ok || got != want {
				a.problem("mysql: %s's list has %s at seq %d (listed %v), the conversation ends at %d", u, conv, got, ok, want)
			}
		}
	}
}

// membersOf returns the ids of the members of conv as the acked sends name
// them.
func membersOf(sent []sentMsg, conv string) []string {
	for _, m := range sent {
		if m.key.conv == conv {
			var ids []string
			for _, u := range m.to {
				ids = append(ids, u.id)
			}
			return ids
		}
	}
	return nil
}

// auditArchive checks the archive (as ReadArchive reads it back) against
// the log and the acked sends.
func (c rmConns) auditArchive(t *testing.T, a *readModelAudit, logged []loggedEntry, sent []sentMsg) {
	t.Helper()
	type row struct {
		loggedEntry
		seq  uint64
		typ  string
		seen bool
	}
	byID := map[string]*row{}
	versions := map[string][]uint64{}
	for p := range c.store.Partitions() {
		var after eventstore.Position
		for range 1_000_000 {
			recs, err := pmysql.ReadArchive(c.ctx, c.db, p, after, 1000)
			var de *eventstore.DecodeError
			if err != nil && !errors.As(err, &de) {
				t.Fatalf("reading the archive of partition %d: %v", p, err)
			}
			for _, rec := range recs {
				ev := rec.Event
				r := &row{loggedEntry: loggedEntry{partition: p, pos: rec.Position, id: string(ev.GetId()), aggregate: ev.GetAggregate(), version: ev.GetVersion()},
					seq: ev.GetSeq()}
				if m := ev.ProtoReflect(); m.WhichOneof(m.Descriptor().Oneofs().ByName("payload")) != nil {
					r.typ = string(m.WhichOneof(m.Descriptor().Oneofs().ByName("payload")).Message().Name())
				}
				a.archived++
				if byID[r.id] != nil {
					a.problem("archive: event %x archived twice (p%d %s and p%d %s)", r.id, byID[r.id].partition, byID[r.id].pos, r.partition, r.pos)
				}
				byID[r.id] = r
				versions[r.aggregate] = append(versions[r.aggregate], r.version)
				after = rec.Position
			}
			if de != nil {
				after = de.Position
				continue
			}
			if len(recs) == 0 {
				break
			}
		}
	}
	for agg, vs := range versions {
		slices.Sort(vs)
		if vs[0] != 1 || vs[len(vs)-1] != uint64(len(vs)) {
			a.problem("archive: %s archived %d times with versions %d..%d", agg, len(vs), vs[0], vs[len(vs)-1])
		}
	}
	first := map[int]eventstore.Position{} // each partition's first entry in the stream
	for _, e := range logged {
		if _, ok := first[e.partition]; !ok {
			first[e.partition] = e.pos
		}
		r := byID[e.id]
		switch {
		case r == nil:
			a.problem("archive: p%d %s (%s v%d) is in the log, not archived", e.partition, e.pos, e.aggregate, e.version)
			continue
		case r.partition != e.partition || r.pos != e.pos || r.aggregate != e.aggregate || r.version != e.version:
			a.problem("archive: p%d %s (%s v%d) archived as p%d %s (%s v%d)", e.partition, e.pos, e.aggregate, e.version, r.partition, r.pos, r.aggregate, r.version)
		}
		r.seen = true
	}
	for _, r := range byID {
		// An archived event no longer in the stream was trimmed: it lies
		// before the partition's first entry.
		if f, ok := first[r.partition]; !r.seen && ok && r.pos.Compare(f) >= 0 {
			a.problem("archive: p%d %s (%s v%d) archived, not in the log", r.partition, r.pos, r.aggregate, r.version)
		}
	}
	for _, m := range sent {
		r := byID[m.eventID]
		switch {
		case r == nil:
			a.problem("archive: %s (%s seq %d) acked, not archived", m.key.clientMsgID, m.key.conv, m.seq)
		case r.typ != "MessageSent" || r.aggregate != m.key.conv || r.seq != m.seq:
			a.problem("archive: %s acked as %s seq %d, archived as %s %s seq %d", m.key.clientMsgID, m.key.conv, m.seq, r.typ, r.aggregate, r.seq)
		}
	}
}

// auditQuarantine lists every quarantined entry of every projector (the
// MySQL table and the Redis streams mpimctl quarantine reads) in the test
// log; each is a problem.
func (c rmConns) auditQuarantine(t *testing.T, a *readModelAudit) {
	t.Helper()
	recs, err := pmysql.ListQuarantine(c.ctx, c.db, "", 10_000)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"cache", "inbox"} {
		msgs, err := c.rdb.XRange(c.ctx, c.tg.prefix+"quarantine:"+name, "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			r := projectors.QuarantineRecord{Projector: name, Reason: fmt.Sprint(m.Values["reason"])}
			fmt.Sscan(fmt.Sprint(m.Values["partition"]), &r.Partition)
			r.Position, _ = eventstore.ParsePosition(fmt.Sprint(m.Values["position"]))
			if raw, ok := m.Values["raw"].(string); ok {
				r.Raw = []byte(raw)
			}
			recs = append(recs, r)
		}
	}
	for _, r := range recs {
		info := projectors.DescribeRaw(r.Raw)
		line := fmt.Sprintf("%s p%d %s %s %s %s: %s", r.Projector, r.Partition, r.Position, info.Type, info.Aggregate, info.EventID, r.Reason)
		a.quarantined = append(a.quarantined, line)
		t.Logf("quarantined: %s", line)
		a.problem("quarantine: %s", line)
	}
}
