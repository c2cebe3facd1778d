package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/connect"
	"github.com/mpim/mpim/internal/testsvc"
	"github.com/oklog/ulid/v2"
)

// The analytics consumer test: a tap group (`mpimctl tap --group`
// processes) reads the log of a deployment that trims every second under
// chat traffic, while `mpimctl export --mysql` runs; then the tap consumer
// is killed for tapOutage while traffic and trims go on. One deployment
// keeps the default tap retention (24h), longer than the outage: the
// group's output equals the archive event by event, and so does the
// export's. The other runs with --tap-max-age 1m: the group is cut loose,
// the restarted tap fails with the range it lost, that range is exactly
// what the trim removed after the group's last read, and --accept-loss
// reads on. The two run in parallel.

// tapOutage is how long the tap consumer is down: the 3 minutes of the
// outage that lost events before taps held back trimming.
const tapOutage = 3 * time.Minute

const tapGroup = "analytics"

func TestAnalyticsTapThroughTrimsAndOutages(t *testing.T) {
	ctl := buildCtl(t)
	t.Run("within-retention", func(t *testing.T) {
		t.Parallel()
		testTapOutage(t, ctl, false)
	})
	t.Run("beyond-retention", func(t *testing.T) {
		t.Parallel()
		testTapOutage(t, ctl, true)
	})
}

// tapLine is one JSON line of tap or export: partition, position and the
// event id (a top-level ULID "event_id", or the event's base64 "id").
type tapLine struct {
	Partition int    `json:"partition"`
	Position  string `json:"position"`
	EventID   string `json:"event_id"`
	Event     struct {
		ID string `json:"id"`
	} `json:"event"`
}

// id returns the line's event id as a ULID string.
func (l tapLine) id() (string, error) {
	if l.EventID != "" {
		u, err := ulid.ParseStrict(l.EventID)
		return u.String(), err
	}
	b, err := base64.StdEncoding.DecodeString(l.Event.ID)
	if err != nil || len(b) != 16 {
		return "", fmt.Errorf("event id %q: %v", l.Event.ID, err)
	}
	return ulid.ULID(b).String(), nil
}

// tapEntry is an entry as the audit compares it.
type tapEntry struct {
	pos eventstore.Position
	id  string
}

// readTapLines parses the JSON lines of the files, by partition in file
// order.
func readTapLines(t *testing.T, files ...string) map[int][]tapEntry {
	t.Helper()
	out := map[int][]tapEntry{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var l tapLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Fatalf("%s: a line that is not a tap JSON line: %v\n%s", f, err, sc.Bytes())
			}
			pos, err := eventstore.ParsePosition(l.Position)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			id, err := l.id()
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			out[l.Partition] = append(out[l.Partition], tapEntry{pos, id})
		}
	}
	return out
}

// archived returns every partition as Redis had it: the archive below the
// stream, then the stream.
func archived(t *testing.T, db *sql.DB, store *eventstore.Store, partitions int) map[int][]tapEntry {
	t.Helper()
	out := map[int][]tapEntry{}
	for p := range partitions {
		recs, err := readTrimmedPartition(context.Background(), db, store, p)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			out[p] = append(out[p], tapEntry{r.Position, ulid.ULID(r.Event.GetId()).String()})
		}
	}
	return out
}

// compareOutput checks that got holds each entry of want exactly (the same
// event id at each position, duplicates allowed: a consumer killed after
// printing and before acknowledging gets the entry again) and nothing else.
func compareOutput(t *testing.T, what string, got, want map[int][]tapEntry) {
	t.Helper()
	var missing, foreign, dups, total int
	for p, entries := range want {
		seen := map[eventstore.Position]string{}
		for _, e := range got[p] {
			if id, ok := seen[e.pos]; ok {
				dups++
				if id != e.id {
					t.Errorf("%s: partition %d position %s under two event ids %s and %s", what, p, e.pos, id, e.id)
				}
			}
			seen[e.pos] = e.id
		}
		for _, e := range entries {
			total++
			id, ok := seen[e.pos]
			switch {
			case !ok:
				if missing++; missing <= 5 {
					t.Errorf("%s: partition %d position %s (event %s) is missing", what, p, e.pos, e.id)
				}
			case id != e.id:
				t.Errorf("%s: partition %d position %s is event %s, the archive has %s", what, p, e.pos, id, e.id)
			}
			delete(seen, e.pos)
		}
		for pos, id := range seen {
			if foreign++; foreign <= 5 {
				t.Errorf("%s: partition %d position %s (event %s) is not in the log", what, p, pos, id)
			}
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok && len(got[p]) > 0 {
			t.Errorf("%s: %d entries of partition %d, which the log does not have", what, len(got[p]), p)
		}
	}
	t.Logf("%s: %d log entries compared, %d missing, %d foreign, %d delivered twice", what, total, missing, foreign, dups)
}

// ctlProc is a running mpimctl whose stdout goes to a file.
type ctlProc struct {
	cmd    *exec.Cmd
	out    string
	stderr bytes.Buffer
	exited chan struct{}
	err    error
}

func (fc *faultCluster) ctlArgs(cmd string, args ...string) []string {
	return append([]string{cmd, "--redis-addr", fc.redisAddr, "--prefix", fc.prefix, "--partitions", e2ePartitions, "--mysql", fc.dsn}, args...)
}

func startCtl(t *testing.T, ctl, out string, args ...string) *ctlProc {
	t.Helper()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	c := &ctlProc{cmd: exec.Command(ctl, args...), out: out, exited: make(chan struct{})}
	c.cmd.Stdout, c.cmd.Stderr = f, &c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		c.err = c.cmd.Wait()
		f.Close()
		close(c.exited)
	}()
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		<-c.exited
	})
	return c
}

func (c *ctlProc) kill() {
	c.cmd.Process.Kill()
	<-c.exited
}

func (c *ctlProc) running() bool {
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

// pacedTraffic sends from every sender in turn, every 250ms each, until
// stop is closed, and returns the acknowledged sends on done.
func pacedTraffic(t *testing.T, ctx context.Context, senders []faultSender, gid string, stop <-chan struct{}) <-chan []sentMsg {
	done := make(chan []sentMsg, 1)
	var l ledger
	var st sendStats
	errs := make(chan error, len(senders))
	for _, s := range senders {
		go func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					errs <- nil
					return
				case <-time.After(250 * time.Millisecond): // the pace of the traffic, not a wait
				}
				req, members := s.request(n, gid)
				m, err := s.d.send(ctx, req, members, &st)
				if err != nil {
					errs <- err
					return
				}
				l.add(m)
			}
		}()
	}
	go func() {
		for range senders {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
		done <- l.all()
	}()
	return done
}

// groupCaughtUp reports whether the tap group has every entry of every
// partition delivered and acknowledged.
func groupCaughtUp(store *eventstore.Store) bool {
	ctx := context.Background()
	for p := range store.Partitions() {
		info, err := store.Info(ctx, p)
		if err != nil {
			return false
		}
		groups, err := store.TapGroups(ctx, p)
		if err != nil || len(groups) != 1 || groups[0].Pending != 0 || groups[0].LastDelivered.Compare(info.Last) < 0 {
			return false
		}
	}
	return true
}

var lostRE = regexp.MustCompile(`lost events of partition (\d+) from (\d+-\d+) to (\d+-\d+)`)

func testTapOutage(t *testing.T, ctl string, beyond bool) {
	ctx := context.Background()
	rt := testsvc.Redis(t)
	var extra []string
	if beyond {
		extra = []string{"--tap-max-age", "1m"}
	}
	fc := startFaultCluster(t, rt.Addr, rt.Prefix, []string{"gw-a"}, extra...)
	store := openLog(t, fc.redisAddr, fc.prefix, fc.partitions)
	db, err := connect.MySQL(ctx, fc.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	dir := t.TempDir()
	tapArgs := fc.ctlArgs("tap", "--group", tapGroup, "--consumer", "c1")
	// The group is created before the first event: it must see every one.
	tap1 := startCtl(t, ctl, filepath.Join(dir, "tap1.ndjson"), tapArgs...)
	waitUntil(t, "the tap group on every partition", func() bool {
		for p := range fc.partitions {
			if g, err := store.TapGroups(ctx, p); err != nil || len(g) != 1 {
				return false
			}
		}
		return true
	})
	_, senders, gid := fc.setupUsers(t)
	stop := make(chan struct{})
	sentc := pacedTraffic(t, fc.ctx, senders, gid, stop)
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
	}()
	// Before the outage the consumer reads through trims: 300 entries
	// trimmed, 300 printed.
	var before streamTrim
	waitUntil(t, "300 log entries trimmed and printed by the tap consumer", func() bool {
		before = streamTrimNow(t, fc.redisAddr, fc.prefix, fc.partitions)
		data, err := os.ReadFile(tap1.out)
		return err == nil && bytes.Count(data, []byte("\n")) >= 300 && before.trimmed() >= 300 && tap1.running()
	})
	tap1.kill()
	killed := time.Now()
	t.Logf("tap consumer killed after the trim removed %s", before)

	// The outage itself: real minutes of traffic and trims every second;
	// a minute into it, an export runs alongside.
	time.Sleep(time.Minute)
	var export *ctlProc
	if !beyond {
		export = startCtl(t, ctl, filepath.Join(dir, "export.ndjson"), fc.ctlArgs("export")...)
	}
	time.Sleep(tapOutage - time.Minute)
	if export != nil {
		<-export.exited
		if export.err != nil {
			t.Errorf("mpimctl export: %v\n%s", export.err, export.stderr.String())
		}
	}
	groups, err := store.TapGroups(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after the %s outage: %s; partition 0 group: %+v", time.Since(killed).Round(time.Second), streamTrimNow(t, fc.redisAddr, fc.prefix, fc.partitions), groups)

	projLog := func() string {
		b, _ := os.ReadFile(filepath.Join(fc.logDir, "projector-p0.log"))
		return string(b)
	}
	tap2 := startCtl(t, ctl, filepath.Join(dir, "tap2.ndjson"), tapArgs...)
	if !beyond {
		waitUntil(t, "the restarted tap to catch up with the traffic", func() bool { return groupCaughtUp(store) })
		close(stop)
		sent := <-sentc
		waitStreamsTrimmedToLast(t, fc.redisAddr, fc.prefix, fc.partitions)
		waitUntil(t, "the restarted tap to read the last entries", func() bool { return groupCaughtUp(store) })
		tap2.kill()
		want := archived(t, db, store, fc.partitions)
		compareOutput(t, "tap group output (before and after the outage)", readTapLines(t, tap1.out, tap2.out), want)
		if export != nil {
			got := readTapLines(t, export.out)
			for p, entries := range got {
				last := entries[len(entries)-1].pos
				n := 0
				for n < len(want[p]) && want[p][n].pos.Compare(last) <= 0 {
					n++
				}
				want[p] = want[p][:n]
			}
			compareOutput(t, "export during the outage (up to its last entry per partition)", got, want)
		}
		if strings.Contains(projLog(), "tap group cut loose") {
			t.Errorf("a group within the retention was cut loose:\n%s", projLog())
		}
		la := fc.auditLog(t, sent)
		if !la.ok(len(sent)) {
			t.Errorf("log audit: %s", la)
		}
		return
	}

	select {
	case <-tap2.exited:
	case <-time.After(2 * time.Minute): // a hang detector: it fails at its first read
		tap2.kill() // before its stderr is read
		t.Fatalf("the tap of a group cut loose is still running after 2 minutes; stderr:\n%s", tap2.stderr.String())
	}
	msg := tap2.stderr.String()
	m := lostRE.FindStringSubmatch(msg)
	if tap2.err == nil || m == nil {
		t.Fatalf("the tap of a group cut loose: exit %v, want a failure saying which events it lost; stderr:\n%s", tap2.err, msg)
	}
	t.Logf("restarted tap failed (%v): %s", tap2.err, strings.TrimSpace(msg))
	if !strings.Contains(projLog(), "tap group cut loose") || !strings.Contains(projLog(), "group="+tapGroup) {
		t.Errorf("the projector logged no ERROR line for the cut:\n%s", projLog())
	}
	close(stop)
	<-sentc
	waitStreamsTrimmedToLast(t, fc.redisAddr, fc.prefix, fc.partitions)
	before1 := readTapLines(t, tap1.out)
	// The markers and the streams are read until they agree: an entry
	// appended after the traffic (a device's own event) is trimmed, and its
	// trim extends the markers, between two reads.
	var cuts []eventstore.TapCut
	var problems []string
	for try := 0; try == 0 || len(problems) > 0 && try < 30; try++ {
		if try > 0 {
			time.Sleep(time.Second) // poll interval of the retries
		}
		if cuts, err = store.TapCuts(ctx, tapGroup); err != nil || len(cuts) == 0 {
			t.Fatalf("cut markers %+v, %v", cuts, err)
		}
		problems = checkCuts(t, store, cuts, before1, archived(t, db, store, fc.partitions))
	}
	for _, p := range problems {
		t.Error(p)
	}
	reportedTo, _ := eventstore.ParsePosition(m[3])
	reported := false
	for _, c := range cuts {
		// The trims after the tap's failure extend the marker's To.
		reported = reported || (fmt.Sprint(c.Partition) == m[1] && c.From.String() == m[2] && reportedTo.Compare(c.To) <= 0)
	}
	if !reported {
		t.Errorf("the tap reported %s..%s of partition %s, which no cut marker holds: %+v", m[2], m[3], m[1], cuts)
	}
	// Accepting the loss: the tap reads on from the stream's first entry.
	out, err := runBounded(exec.Command(ctl, fc.ctlArgs("tap", "--group", tapGroup, "--consumer", "c1", "--accept-loss", "--limit", "1")...), 2*time.Minute)
	if err != nil || !strings.Contains(string(out), "accepted the loss of partition") {
		t.Errorf("tap --accept-loss: %v\n%s", err, out)
	}
	if left, err := store.TapCuts(ctx, tapGroup); err != nil || len(left) != 0 {
		t.Errorf("cut markers after --accept-loss: %+v, %v", left, err)
	}
}

// checkCuts says where the cut markers differ from what the trim removed
// after the group's last read: every entry below From was printed before
// the outage, From..To are archived entries, and the next one is the
// stream's first.
func checkCuts(t *testing.T, store *eventstore.Store, cuts []eventstore.TapCut, printedBefore, want map[int][]tapEntry) []string {
	t.Helper()
	var problems []string
	for _, c := range cuts {
		p := c.Partition
		info, err := store.Info(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		printed := map[eventstore.Position]bool{}
		for _, e := range printedBefore[p] {
			printed[e.pos] = true
		}
		var in int
		var next eventstore.Position
		for _, e := range want[p] {
			switch {
			case e.pos.Compare(c.From) < 0 && !printed[e.pos]:
				problems = append(problems, fmt.Sprintf("partition %d: %s below the reported loss %s..%s was never printed: lost silently", p, e.pos, c.From, c.To))
			case e.pos.Compare(c.From) >= 0 && e.pos.Compare(c.To) <= 0:
				in++
			case e.pos.Compare(c.To) > 0 && next.IsZero():
				next = e.pos
			}
		}
		if in == 0 || next != info.First {
			problems = append(problems, fmt.Sprintf("partition %d: lost %s..%s holds %d archived entries, the next is %s, the stream starts at %s", p, c.From, c.To, in, next, info.First))
		}
		t.Logf("partition %d: the group lost %d entries %s..%s", p, in, c.From, c.To)
	}
	return problems
}
