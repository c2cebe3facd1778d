package main

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// The traffic of the fault tests (fault_test.go): senders that write to
// their conversations in turn until stopped, every few sends dropping their
// connection right after writing.

// faultSender is a device and the conversations it writes to in turn.
type faultSender struct {
	d      *e2eDevice
	routes []faultRoute
}

type faultRoute struct {
	to      *e2eUser // nil: the group
	members []*e2eUser
}

// faultTraffic runs senders continuously until stopped.
type faultTraffic struct {
	t       *testing.T
	sent    ledger
	st      sendStats
	mu      sync.Mutex
	acked   []int
	stop    chan struct{}
	errs    chan error
	abort   context.CancelFunc
	n       int
	stopped bool
	// dropping: every dropEvery-th send of each sender drops its
	// connection right after writing its frame (sendDropped), so that
	// idempotent retries happen in every run, not only when a fault
	// catches a send in flight (at most one per sender).
	dropping atomic.Bool
	senders  []faultSender
}

// dropEvery is how often a fault sender drops its connection after a send
// (while faultTraffic.dropping): a few times per phase of 20 sends.
const dropEvery = 6

// setupUsers registers four users with a phone each (and a laptop for the
// first), split over the gateways, a group of all four, and returns the
// senders: direct conversations and the group.
func (fc *faultCluster) setupUsers(t *testing.T) ([]*e2eDevice, []faultSender, string) {
	t.Helper()
	var users []*e2eUser
	var devs []*e2eDevice
	for i, name := range []string{"fay", "finn", "gus", "gia"} {
		gw := fc.gateways[i%len(fc.gateways)]
		enc := []frame.Encoding{frame.Proto, frame.JSON}[i%2]
		u := fc.register(t, gw, name)
		users = append(users, u)
		devs = append(devs, fc.login(t, u, "phone", gw, enc))
	}
	devs = append(devs, fc.login(t, users[0], "laptop", fc.gateways[len(fc.gateways)-1], frame.JSON))
	var ids []string
	for _, u := range users[1:] {
		ids = append(ids, u.id)
	}
	g := devs[0].call(t, &mpimv1.ClientFrame_CreateGroup{CreateGroup: &mpimv1.CreateGroupRequest{Name: "fault", MemberIds: ids}}).GetCreateGroup()
	waitUntil(t, "every device acknowledged the group's creation", func() bool {
		for _, d := range devs {
			if !d.allAcked() {
				return false
			}
		}
		return true
	})
	direct := func(a, b *e2eUser) faultRoute { return faultRoute{to: b, members: []*e2eUser{a, b}} }
	group := faultRoute{members: users}
	fay, finn, gus, gia := users[0], users[1], users[2], users[3]
	return devs, []faultSender{
		{devs[0], []faultRoute{direct(fay, gus), direct(fay, finn), group}},
		{devs[1], []faultRoute{direct(finn, gia), direct(finn, fay), group}},
		{devs[2], []faultRoute{direct(gus, fay), group}},
		{devs[3], []faultRoute{direct(gia, finn), group}},
		{devs[4], []faultRoute{direct(fay, gia)}}, // fay's laptop
	}, g.GetGroupId()
}

// request is sender s's n-th send: to its conversations in turn (gid is
// the group's id), with a client message id of its own.
func (s faultSender) request(n int, gid string) (*mpimv1.SendRequest, []*e2eUser) {
	r := s.routes[n%len(s.routes)]
	id := fmt.Sprintf("%s-%s-%d", s.d.user.name, s.d.id, n)
	if r.to != nil {
		return toUser(r.to, id), r.members
	}
	return toGroup(gid, id), r.members
}

func startFaultTraffic(t *testing.T, ctx context.Context, senders []faultSender, gid string) *faultTraffic {
	ctx, abort := context.WithCancel(ctx)
	tr := &faultTraffic{t: t, acked: make([]int, len(senders)), stop: make(chan struct{}), errs: make(chan error, len(senders)), abort: abort, n: len(senders), senders: senders}
	for i, s := range senders {
		go func() {
			for n := 0; ; n++ {
				select {
				case <-tr.stop:
					tr.errs <- nil
					return
				default:
				}
				req, members := s.request(n, gid)
				send := s.d.send
				if n%dropEvery == dropEvery-1 && tr.dropping.Load() {
					send = s.d.sendDropped
				}
				m, err := send(ctx, req, members, &tr.st)
				if err != nil {
					tr.errs <- err
					return
				}
				tr.sent.add(m)
				tr.mu.Lock()
				tr.acked[i]++
				tr.mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	tr.dropping.Store(true)
	t.Cleanup(func() {
		if !tr.stopped {
			tr.finish(true)
		}
	})
	return tr
}

// pauseDrops stops the connection drops and waits until every sender has
// finished the send it was in, so that no device is reconnecting (a
// resume reads MySQL: the MariaDB outage needs none).
func (tr *faultTraffic) pauseDrops() {
	tr.t.Helper()
	tr.dropping.Store(false)
	tr.waitEach("every sender acked a send without a drop", tr.snapshot(), 2)
}

// snapshot returns each sender's acknowledged sends so far.
func (tr *faultTraffic) snapshot() []int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]int(nil), tr.acked...)
}

// waitEach waits until every sender has at least base[i]+n sends acked.
// On a timeout it names the senders behind and the error that stopped
// any of them (a sender stops on an answer it does not retry).
func (tr *faultTraffic) waitEach(what string, base []int, n int) {
	tr.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		now := tr.snapshot()
		var behind []string
		for i := range now {
			if now[i] < base[i]+n {
				d := tr.senders[i].d
				d.mu.Lock()
				why := cmp.Or(d.lastRetry, "never retried")
				d.mu.Unlock()
				behind = append(behind, fmt.Sprintf("%s at %d of %d (last retry: %s)", d, now[i]-base[i], n, why))
			}
		}
		if len(behind) == 0 {
			return
		}
		if time.Now().After(deadline) {
			tr.t.Fatalf("timed out waiting for %s: %s; %s", what, strings.Join(behind, ", "), tr.stoppedSenders())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stoppedSenders describes the senders that ended with an error so far,
// keeping the errors for finish.
func (tr *faultTraffic) stoppedSenders() string {
	var errs []error
	for {
		select {
		case err := <-tr.errs:
			errs = append(errs, err)
			continue
		default:
		}
		break
	}
	for _, err := range errs {
		tr.errs <- err
	}
	var msgs []string
	for _, err := range errs {
		if err != nil {
			msgs = append(msgs, err.Error())
		}
	}
	if len(msgs) == 0 {
		return "no sender stopped with an error (each is still retrying or waiting)"
	}
	return "stopped: " + strings.Join(msgs, "; ")
}

// finish stops the senders: each finishes the send it is in (retrying until
// acknowledged) unless failing.
func (tr *faultTraffic) finish(failing bool) {
	tr.stopped = true
	close(tr.stop)
	if failing {
		tr.abort()
	}
	for range tr.n {
		if err := <-tr.errs; err != nil && !failing {
			tr.t.Error(err)
		}
	}
	tr.abort()
	if !failing {
		// Checked once the test's audits ran: they say what a broken
		// idempotency check appended twice.
		tr.t.Cleanup(tr.wantIdempotentRetries)
	}
}

// wantIdempotentRetries fails the test unless sends dropped their
// connection after being written and at least one retry of those was
// answered from the idempotency record (the audits check that none was
// appended twice).
func (tr *faultTraffic) wantIdempotentRetries() {
	tr.t.Helper()
	var dropped, dups int
	tr.st.count(func(s *sendStats) { dropped, dups = s.dropped, s.dropDups })
	tr.t.Logf("%d sends dropped their connection right after being written; %d of their retries answered as duplicates", dropped, dups)
	if dropped == 0 || dups == 0 {
		tr.t.Errorf("the idempotent-retry path did not run: %d sends dropped after being written, %d retries answered as duplicates; want both > 0", dropped, dups)
	}
}
