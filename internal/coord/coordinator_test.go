package coord

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mpim/mpim/projectors"
)

var _ projectors.Coordinator = (*ZooKeeper)(nil)

// tracker is the work of every member of a test: it records who owns each
// partition and checks that no partition is owned twice at any moment and
// that tokens strictly increase.
type tracker struct {
	mu     sync.Mutex
	owner  map[int]string
	token  map[int]uint64
	causes map[string][]error // why each member's work contexts ended
	errs   []string
}

func newTracker() *tracker {
	return &tracker{owner: map[int]string{}, token: map[int]uint64{}, causes: map[string][]error{}}
}

func (tr *tracker) work(member string) func(context.Context, int, uint64) error {
	return func(ctx context.Context, p int, token uint64) error {
		tr.mu.Lock()
		if o, ok := tr.owner[p]; ok {
			tr.errs = append(tr.errs, fmt.Sprintf("partition %d owned by %s and %s at once", p, o, member))
		}
		if token <= tr.token[p] {
			tr.errs = append(tr.errs, fmt.Sprintf("partition %d: %s got token %d after token %d", p, member, token, tr.token[p]))
		}
		tr.owner[p], tr.token[p] = member, token
		tr.mu.Unlock()

		<-ctx.Done()

		tr.mu.Lock()
		if tr.owner[p] == member {
			delete(tr.owner, p)
		}
		tr.causes[member] = append(tr.causes[member], context.Cause(ctx))
		tr.mu.Unlock()
		return nil
	}
}

// counts returns how many partitions each member owns.
func (tr *tracker) counts() map[string]int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := map[string]int{}
	for _, m := range tr.owner {
		n[m]++
	}
	return n
}

func (tr *tracker) String() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var b strings.Builder
	for _, p := range slices.Sorted(maps.Keys(tr.owner)) {
		fmt.Fprintf(&b, "%d:%s ", p, tr.owner[p])
	}
	return fmt.Sprintf("owners {%s} violations %v", strings.TrimSpace(b.String()), tr.errs)
}

// split reports whether the members own exactly the given numbers of
// partitions (and nobody else owns any).
func (tr *tracker) split(want map[string]int) func() bool {
	return func() bool { return maps.Equal(tr.counts(), want) }
}

func (tr *tracker) check(t *testing.T) {
	t.Helper()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, e := range tr.errs {
		t.Error(e)
	}
}

// running is a Run in a goroutine.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

func start(z *ZooKeeper, name string, partitions int, work func(context.Context, int, uint64) error) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- z.Run(ctx, name, partitions, work) }()
	return r
}

// stop cancels the Run and waits for it to return.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
		return nil
	}
}

func TestRunSplitsPartitionsAndMovesThem(t *testing.T) {
	env := newEnv(t)
	tr := newTracker()
	cutB := &cutter{}
	za := env.coordinator(t, "a", nil)
	zb := env.coordinator(t, "b", cutB)
	zc := env.coordinator(t, "c", nil)
	ra := start(za, "views", 16, tr.work("a"))
	rb := start(zb, "views", 16, tr.work("b"))
	rc := start(zc, "views", 16, tr.work("c"))
	defer tr.check(t)

	eventually(t, 30*time.Second, "split 6/5/5 over three members", func() bool {
		n := tr.counts()
		return n["a"]+n["b"]+n["c"] == 16 && len(n) == 3 && min(n["a"], n["b"], n["c"]) == 5
	}, tr.String)

	t.Run("a member that stops hands its partitions over", func(t *testing.T) {
		if err := rc.stop(t); err != nil {
			t.Fatalf("Run returned %v after its context was cancelled, want nil", err)
		}
		if n := tr.counts()["c"]; n != 0 {
			t.Fatalf("c still runs %d partitions after Run returned", n)
		}
		members, _, err := env.conn(t).Children(env.root + "/projectors/views/members")
		if err != nil || len(members) != 2 {
			t.Fatalf("members after c left: %v, %v; want 2", members, err)
		}
		eventually(t, 30*time.Second, "split 8/8 between a and b", tr.split(map[string]int{"a": 8, "b": 8}), tr.String)
	})

	t.Run("a member whose session is lost stops at once and its partitions move after the session timeout", func(t *testing.T) {
		tr.mu.Lock()
		before := len(tr.causes["b"])
		tr.mu.Unlock()
		cutB.set(true)
		eventually(t, 3*testSessionTimeout, "b stopped while cut off", func() bool { return tr.counts()["b"] == 0 }, tr.String)
		eventually(t, 30*time.Second, "all 16 partitions on a", tr.split(map[string]int{"a": 16}), tr.String)
		tr.mu.Lock()
		causes := slices.Clone(tr.causes["b"][before:])
		tr.mu.Unlock()
		if len(causes) != 8 {
			t.Errorf("b's work contexts ended %d times, want 8", len(causes))
		}
		for _, c := range causes {
			if !errors.Is(c, ErrSessionLost) {
				t.Errorf("b's work context ended with cause %v, want ErrSessionLost", c)
			}
		}
		cutB.set(false)
		eventually(t, 30*time.Second, "split 8/8 again after b reconnects", tr.split(map[string]int{"a": 8, "b": 8}), tr.String)
	})

	t.Run("runs end cleanly", func(t *testing.T) {
		for _, r := range []*running{ra, rb} {
			if err := r.stop(t); err != nil {
				t.Errorf("Run returned %v, want nil", err)
			}
		}
		if n := tr.counts(); len(n) != 0 {
			t.Errorf("work still running after Run returned: %v", n)
		}
		c := env.conn(t)
		for _, dir := range []string{"members", "owners"} {
			left, _, err := c.Children(env.root + "/projectors/views/" + dir)
			if err != nil || len(left) != 0 {
				t.Errorf("%s after every Run returned: %v, %v; want none", dir, left, err)
			}
		}
	})
}

func TestWorkThatEndsWhileAssignedIsRestartedWithANewToken(t *testing.T) {
	env := newEnv(t)
	z := env.coordinator(t, "solo", nil)
	type call struct {
		token uint64
	}
	var mu sync.Mutex
	var calls []call
	r := start(z, "restarts", 1, func(ctx context.Context, p int, token uint64) error {
		mu.Lock()
		calls = append(calls, call{token})
		n := len(calls)
		mu.Unlock()
		switch n {
		case 1:
			return errors.New("boom")
		case 2:
			return nil // returned early, without an error
		}
		<-ctx.Done()
		return nil
	})
	eventually(t, 30*time.Second, "work started three times", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(calls) >= 3
	}, func() string { return fmt.Sprint(calls) })
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 3 {
		t.Errorf("work called %d times, want 3", len(calls))
	}
	for i := 1; i < len(calls); i++ {
		if calls[i].token <= calls[i-1].token {
			t.Errorf("token %d after token %d: want strictly increasing", calls[i].token, calls[i-1].token)
		}
	}
}

func TestSessionLossCancelsWorkWithoutWaitingForReconnection(t *testing.T) {
	env := newEnv(t)
	cut := &cutter{}
	z := env.coordinator(t, "solo", cut)
	started := make(chan uint64, 10)
	ended := make(chan error, 10)
	r := start(z, "stale", 1, func(ctx context.Context, p int, token uint64) error {
		started <- token
		<-ctx.Done()
		ended <- context.Cause(ctx)
		return nil
	})
	var first uint64
	select {
	case first = <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("work never started")
	}
	cut.set(true)
	select {
	case cause := <-ended:
		if !errors.Is(cause, ErrSessionLost) {
			t.Errorf("work context ended with cause %v, want ErrSessionLost", cause)
		}
	case <-time.After(30 * time.Second): // a hang detector: the client cannot learn of an expiry while cut off
		t.Fatal("work context not cancelled while the connection is down")
	}
	select {
	case err := <-r.done:
		t.Fatalf("Run returned %v on session loss; it should wait for a new session", err)
	default:
	}
	cut.set(false)
	select {
	case second := <-started:
		if second <= first {
			t.Errorf("token %d in the new session after %d: want greater", second, first)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("work not restarted after reconnecting")
	}
	// Whether the session expired or resumed, the nodes of the abandoned
	// membership are gone: one member, one owner.
	c := env.conn(t)
	nodes := func(dir string) func() bool {
		return func() bool {
			children, _, err := c.Children(env.root + "/projectors/stale/" + dir)
			return err == nil && len(children) == 1
		}
	}
	eventually(t, 10*time.Second, "one member node", nodes("members"), func() string { return "" })
	eventually(t, 10*time.Second, "one owner node", nodes("owners"), func() string { return "" })
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}

func TestCloseStopsRuns(t *testing.T) {
	env := newEnv(t)
	z := env.coordinator(t, "solo", nil)
	causes := make(chan error, 4)
	started := make(chan struct{}, 4)
	r := start(z, "closing", 2, func(ctx context.Context, p int, token uint64) error {
		started <- struct{}{}
		<-ctx.Done()
		causes <- context.Cause(ctx)
		return nil
	})
	for range 2 {
		select {
		case <-started:
		case <-time.After(30 * time.Second):
			t.Fatal("work never started")
		}
	}
	z.Close()
	if err := <-r.done; !errors.Is(err, ErrClosed) {
		t.Errorf("Run returned %v after Close, want ErrClosed", err)
	}
	for range 2 {
		if c := <-causes; !errors.Is(c, ErrClosed) {
			t.Errorf("work context ended with cause %v, want ErrClosed", c)
		}
	}
	if err := z.Run(context.Background(), "closing", 2, func(context.Context, int, uint64) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close returned %v, want ErrClosed", err)
	}
}

func TestRunRejectsBadArguments(t *testing.T) {
	env := newEnv(t)
	z := env.coordinator(t, "solo", nil)
	work := func(context.Context, int, uint64) error { return nil }
	for _, c := range []struct {
		name       string
		partitions int
		work       func(context.Context, int, uint64) error
	}{
		{"", 1, work},
		{"a/b", 1, work},
		{"ok", 0, work},
		{"ok", 1, nil},
	} {
		if err := z.Run(context.Background(), c.name, c.partitions, c.work); err == nil {
			t.Errorf("Run(%q, %d, work nil: %v) accepted", c.name, c.partitions, c.work == nil)
		}
	}
}

func TestAssignmentIsRoundRobinOverMembersInJoinOrder(t *testing.T) {
	members := sortMembers([]string{
		"_c_ffff-m-0000000010", "_c_aaaa-m-0000000002", "stray", "_c_0000-m-0000000007",
	})
	want := []string{"_c_aaaa-m-0000000002", "_c_0000-m-0000000007", "_c_ffff-m-0000000010", "stray"}
	if !slices.Equal(members, want) {
		t.Errorf("sorted %v, want %v", members, want)
	}
	owners := make([]int, 10)
	for i := range 3 {
		for p, mine := range assignment(10, i, 3) {
			if mine {
				owners[p]++
				if p%3 != i {
					t.Errorf("partition %d assigned to member %d", p, i)
				}
			}
		}
	}
	for p, n := range owners {
		if n != 1 {
			t.Errorf("partition %d assigned %d times", p, n)
		}
	}
}
