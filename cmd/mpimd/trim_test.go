package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/internal/connect"
	"github.com/mpim/mpim/internal/readmodel"
	"github.com/mpim/mpim/internal/testsvc"
)

// Traffic with trimming on, then `mpimctl replay mysql` while the processes
// keep running. By the replay the trim loop has cut every partition stream
// down to its last entry, so the replay must read the rest from the
// archive (event_archive). The rebuilt read model holds every acknowledged
// message (conversation, seq, event id) and equals, table by table, the
// live model it replaced.
//
//	go test -race -count=1 -run TestFaultReplayAfterTrim -v ./cmd/mpimd
func TestFaultReplayAfterTrimRebuildsEverything(t *testing.T) {
	began := time.Now()
	rt := testsvc.Redis(t)
	fc := startFaultCluster(t, rt.Addr, rt.Prefix, []string{"gw-a", "gw-b"})
	ctl := buildCtl(t)
	devs, senders, gid := fc.setupUsers(t)
	tr := startFaultTraffic(t, fc.ctx, senders, gid)
	tr.waitEach("traffic with trimming on", make([]int, len(senders)), 20)
	// The trim keeps up with the traffic.
	at := streamTrimNow(t, rt.Addr, rt.Prefix, fc.partitions)
	t.Logf("under traffic: %v; then %v", at, waitTrimmedThrough(t, rt.Addr, rt.Prefix, fc.partitions, at))
	tr.finish(false)
	if t.Failed() {
		t.FailNow()
	}
	sent := tr.sent.all()
	la := fc.auditLog(t, sent)
	rows := fc.auditReadModels(t, sent)
	final := waitDelivered(t, "every acknowledged send", sent, devs)
	logAudits(t, la, rows, final, began)
	wantAuditsOK(t, la, len(sent), final)

	// Every projector has processed every entry once each stream is down to
	// its last entry (the trim keeps the lowest checkpoint's entry).
	trim := waitStreamsTrimmedToLast(t, rt.Addr, rt.Prefix, fc.partitions)
	t.Logf("before the replay: %v", trim)
	db, err := connect.MySQL(context.Background(), fc.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	live := dumpReadModel(t, db)

	replayed := time.Now()
	cmd := exec.Command(ctl, "replay", "--redis-addr", rt.Addr, "--prefix", rt.Prefix, "--partitions", e2ePartitions,
		"--mysql", fc.dsn, "mysql")
	out, err := runBounded(cmd, 2*time.Minute)
	if err != nil || !bytes.Contains(out, []byte("swapped")) {
		t.Fatalf("mpimctl replay mysql: %v\n%s", err, out)
	}
	t.Logf("mpimctl replay mysql took %.1fs", time.Since(replayed).Seconds())

	missing := missingMessages(t, db, sent)
	if len(missing) > 0 {
		t.Errorf("after the replay %d of %d acknowledged messages are missing from the read model, e.g. %v",
			len(missing), len(sent), missing[:min(5, len(missing))])
	}
	rebuilt := dumpReadModel(t, db)
	for _, table := range readmodel.Tables() {
		if !slices.Equal(live[table], rebuilt[table]) {
			t.Errorf("table %s: %d rows before the replay, %d after; first differences: %v", table,
				len(live[table]), len(rebuilt[table]), firstDifferences(live[table], rebuilt[table], 3))
		}
	}
	t.Logf("replay after trim: %d acknowledged messages, %d read-model rows in %d tables rebuilt alike; %.1fs in all",
		len(sent), countRows(rebuilt), len(rebuilt), time.Since(began).Seconds())
}

// buildCtl builds mpimctl into a temporary directory.
func buildCtl(t *testing.T) string {
	t.Helper()
	return testsvc.BuildPackage(t, "mpimctl", "../mpimctl")
}

// runBounded runs cmd and returns its combined output; it is killed after
// limit.
func runBounded(cmd *exec.Cmd, limit time.Duration) ([]byte, error) {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	timer := time.AfterFunc(limit, func() { cmd.Process.Kill() })
	defer timer.Stop()
	err := cmd.Wait()
	return out.Bytes(), err
}

// waitStreamsTrimmedToLast waits until no partition stream holds more than
// its last entry: every projector has processed everything and the trim
// loop removed the rest.
func waitStreamsTrimmedToLast(t *testing.T, redisAddr, prefix string, partitions int) streamTrim {
	t.Helper()
	rdb := auditRedis(t, redisAddr)
	var st streamTrim
	waitUntil(t, "every partition stream trimmed down to its last entry", func() bool {
		var err error
		st, err = readStreamTrim(context.Background(), rdb, prefix, partitions)
		return err == nil && st.length <= int64(partitions) && st.trimmed() > 0
	})
	return st
}

// missingMessages returns the acknowledged sends that have no messages row
// with their conversation, seq and event id.
func missingMessages(t *testing.T, db *sql.DB, sent []sentMsg) []string {
	t.Helper()
	type row struct {
		conv string
		seq  uint64
	}
	have := map[row]string{}
	rs, err := db.Query("SELECT conversation_id, seq, event_id FROM messages")
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	for rs.Next() {
		var r row
		var id []byte
		if err := rs.Scan(&r.conv, &r.seq, &id); err != nil {
			t.Fatal(err)
		}
		have[r] = string(id)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	var missing []string
	for _, m := range sent {
		if id, ok := have[row{m.key.conv, m.seq}]; !ok || id != m.eventID {
			missing = append(missing, m.key.clientMsgID)
		}
	}
	return missing
}

// dumpReadModel returns every read-model table's rows as sorted text lines.
func dumpReadModel(t *testing.T, db *sql.DB) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, table := range readmodel.Tables() {
		out[table] = dumpRows(t, db, table)
	}
	return out
}

// dumpRows returns the rows of table as sorted text lines.
func dumpRows(t *testing.T, db *sql.DB, table string) []string {
	t.Helper()
	rs, err := db.Query("SELECT * FROM " + table)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	cols, err := rs.Columns()
	if err != nil {
		t.Fatal(err)
	}
	vals := make([]sql.RawBytes, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var out []string
	for rs.Next() {
		if err := rs.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		var sb strings.Builder
		for i, c := range cols {
			if vals[i] == nil {
				fmt.Fprintf(&sb, "%s=NULL ", c)
			} else {
				fmt.Fprintf(&sb, "%s=%q ", c, vals[i])
			}
		}
		out = append(out, sb.String())
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// firstDifferences returns up to n rows that are in only one of a and b
// (each way), cut to 200 bytes.
func firstDifferences(a, b []string, n int) []string {
	var out []string
	only := func(what string, x, y []string) {
		shown := 0
		for _, r := range x {
			if shown < n && !slices.Contains(y, r) {
				out = append(out, what+r[:min(len(r), 200)])
				shown++
			}
		}
	}
	only("only before: ", a, b)
	only("only after: ", b, a)
	return out
}

func countRows(m map[string][]string) int {
	n := 0
	for _, rows := range m {
		n += len(rows)
	}
	return n
}
