package main

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/command/commandtest"
	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/connect"
	"github.com/mpim/mpim/internal/readmodel"
	"github.com/mpim/mpim/internal/testsvc"
	"github.com/mpim/mpim/projectors"
	"github.com/mpim/mpim/projectors/mysql"
	"github.com/mpim/mpim/schema"
)

// replayWorld is a log with a known history for the replay tests: ann,
// ben and cid, the direct conversation of ann and ben and the group "crew"
// of the three. Ben writes every message, one at a time, so a
// conversation's seq n carries the text msgText(conv, n).
type replayWorld struct {
	env      *commandtest.Env
	ann, ben command.Actor
	direct   domain.ConversationID
	group    domain.ConversationID
	mu       sync.Mutex
	sent     map[domain.ConversationID]uint64 // last seq written
}

const (
	worldPartitions = 4
	groupName       = "crew"
)

func newReplayWorld(t *testing.T) *replayWorld {
	t.Helper()
	env := commandtest.New(t, commandtest.Options{Partitions: worldPartitions})
	w := &replayWorld{env: env, sent: map[domain.ConversationID]uint64{}}
	w.ann = commandtest.Register(t, env.Svc, "ann", "Ann")
	w.ben = commandtest.Register(t, env.Svc, "ben", "Ben")
	cid := commandtest.Register(t, env.Svc, "cid", "Cid")
	g, _, err := env.Svc.CreateGroup(context.Background(), w.ann, groupName, []domain.UserID{w.ben.User, cid.User}, false)
	if err != nil {
		t.Fatal(err)
	}
	w.direct = domain.DirectConversation(w.ann.User, w.ben.User)
	w.group = domain.GroupConversation(g)
	return w
}

func msgText(conv domain.ConversationID, seq uint64) string {
	return fmt.Sprintf("%s #%d", conv, seq)
}

// send has ben write n more messages to conv.
func (w *replayWorld) send(t *testing.T, conv domain.ConversationID, n int) {
	t.Helper()
	for range n {
		if err := w.sendOne(conv); err != nil {
			t.Fatal(err)
		}
	}
}

// sendOne has ben write the next message to conv.
func (w *replayWorld) sendOne(conv domain.ConversationID) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	next := w.sent[conv] + 1
	s, err := w.env.Svc.Send(context.Background(), w.ben, domain.SendMessage{Conversation: conv, Kind: domain.KindText, Text: msgText(conv, next)})
	if err != nil {
		return err
	}
	if s.Seq != next {
		return fmt.Errorf("message to %s got seq %d, want %d", conv, s.Seq, next)
	}
	w.sent[conv] = next
	return nil
}

// lastSent returns the seq of conv's last message written.
func (w *replayWorld) lastSent(conv domain.ConversationID) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sent[conv]
}

// flags address the world's log and the read model at dsn.
func (w *replayWorld) flags(dsn string) []string {
	return []string{"--redis-addr", w.env.Addr, "--prefix", w.env.Prefix,
		"--partitions", fmt.Sprint(worldPartitions), "--mysql", dsn}
}

// modelDB creates a fresh, migrated read-model database.
func modelDB(t *testing.T) (string, *sql.DB) {
	t.Helper()
	dsn := testsvc.MySQL(t)
	db, err := connect.MySQL(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := schema.Migrate(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	return dsn, db
}

// gated is a projector that applies only while its gate is open: holding
// the write lock keeps the live model where it is (its runner waits,
// holding no database lock) while the log grows.
type gated struct {
	projectors.Projector
	gate sync.RWMutex
}

func (g *gated) Apply(ctx context.Context, b *projectors.Batch) error {
	g.gate.RLock()
	defer g.gate.RUnlock()
	return g.Projector.Apply(ctx, b)
}

// liveProjector is the live MySQL read-model projector of one database,
// running in the background as mpimd runs it (without lingering).
type liveProjector struct {
	rm     *mysql.ReadModel
	proj   *gated
	cancel context.CancelFunc
	done   chan error
}

func startLive(t *testing.T, store *eventstore.Store, db *sql.DB) *liveProjector {
	t.Helper()
	rm, err := mysql.NewReadModel(db, mysql.Config{PausePoll: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	lp := &liveProjector{rm: rm, proj: &gated{Projector: rm}, done: make(chan error, 1)}
	r, err := projectors.NewRunner(store, &projectors.Static{}, lp.proj, projectors.RunnerConfig{
		BatchSize: 50, Block: 20 * time.Millisecond, RetryBackoff: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	lp.cancel = cancel
	go func() { lp.done <- r.Run(ctx) }()
	t.Cleanup(func() { lp.stop(t) })
	return lp
}

// stop ends the projector (again: a no-op) and closes its statements.
func (lp *liveProjector) stop(t *testing.T) {
	t.Helper()
	if lp.cancel == nil {
		return
	}
	lp.cancel()
	lp.cancel = nil
	if err := <-lp.done; err != nil {
		t.Errorf("live projector: %v", err)
	}
	lp.rm.Close()
}

// waitCaughtUp waits until the live model's checkpoints reach the log's
// heads (bounded: a projector stuck longer fails the test).
func (lp *liveProjector) waitCaughtUp(t *testing.T, store *eventstore.Store) {
	t.Helper()
	testsvc.Eventually(t, 90*time.Second, "the live read model to catch up with the log", func() bool {
		ck, err := lp.rm.Checkpoints(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for p := range store.Partitions() {
			info, err := store.Info(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			if ck[p].Compare(info.Last) < 0 {
				return false
			}
		}
		return true
	})
}

// countRows returns the rows of the read model's tables, each name with
// suffix, summed; missing tables count -1 each.
func countRows(t *testing.T, db *sql.DB, suffix string) (rows, missing int) {
	t.Helper()
	for _, tb := range readmodel.Tables() {
		var n int
		err := db.QueryRow("SELECT COUNT(*) FROM " + tb + suffix).Scan(&n)
		if err != nil && strings.Contains(err.Error(), "doesn't exist") {
			missing++
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		rows += n
	}
	return rows, missing
}

// leftoverTables lists the tables a rebuild leaves behind.
func leftoverTables(t *testing.T, db *sql.DB) []string {
	t.Helper()
	rows, err := db.Query("SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()" +
		" AND (table_name LIKE '%\\_\\_rebuild' OR table_name LIKE '%\\_\\_old') ORDER BY table_name")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// modelChecksums returns CHECKSUM TABLE of every read-model table and the
// read model's quarantine rows: equal for two databases whose models hold
// the same rows (the tables share their DDL).
func modelChecksums(t *testing.T, db *sql.DB) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, tb := range readmodel.Tables() {
		var name string
		var sum sql.NullInt64
		if err := db.QueryRow("CHECKSUM TABLE "+tb).Scan(&name, &sum); err != nil {
			t.Fatal(err)
		}
		out[tb] = sum.Int64
	}
	var q int64
	if err := db.QueryRow("SELECT COUNT(*) FROM quarantine WHERE projector = ?", mysql.ReadModelName).Scan(&q); err != nil {
		t.Fatal(err)
	}
	out["quarantine rows"] = q
	return out
}

// sameModelAs fails t unless db's read model holds the rows of ref's.
func sameModelAs(t *testing.T, what string, db, ref *sql.DB) {
	t.Helper()
	got, want := modelChecksums(t, db), modelChecksums(t, ref)
	for tb, w := range want {
		if got[tb] != w {
			t.Errorf("%s: table %s differs from a clean projection of the log (checksum %d, want %d)", what, tb, got[tb], w)
		}
	}
}

// referenceModel projects the whole log into a fresh database with the
// live projector's code, for comparison.
func referenceModel(t *testing.T, store *eventstore.Store) *sql.DB {
	t.Helper()
	_, db := modelDB(t)
	lp := startLive(t, store, db)
	lp.waitCaughtUp(t, store)
	lp.stop(t)
	return db
}
