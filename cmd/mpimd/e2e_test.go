package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// The acceptance tests of the gateway: real mpimd processes (one projector,
// two gateways, ZooKeeper, Redis, MariaDB) and clients over WebSocket that
// behave like apps (see e2e_harness_test.go). Each test is bounded in time
// and in the number of messages, and asserts no timing.

// runAll runs the jobs concurrently and fails the test with the first
// error.
func runAll(t *testing.T, jobs ...func() error) {
	t.Helper()
	errs := make(chan error, len(jobs))
	for _, job := range jobs {
		go func() { errs <- job() }()
	}
	for range jobs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// sendN returns a job that sends n messages from d, the i-th to
// target(i), recording each acknowledged send in l.
func sendN(ctx context.Context, d *e2eDevice, n int, l *ledger, st *sendStats, target func(i int) (*mpimv1.SendRequest, []*e2eUser)) func() error {
	return func() error {
		for i := range n {
			req, to := target(i)
			m, err := d.send(ctx, req, to, st)
			if err != nil {
				return err
			}
			l.add(m)
		}
		return nil
	}
}

// notFrom returns the events shown but the messages u sent.
func notFrom(shown []shownEvent, u *e2eUser) []shownEvent {
	return slices.DeleteFunc(shown, func(s shownEvent) bool { return s.msg.sender == u.id })
}

// eventTypes returns the types of the non-message events shown.
func eventTypes(shown []shownEvent) []string {
	var out []string
	for _, s := range shown {
		if s.typ != "MessageSent" {
			out = append(out, s.typ)
		}
	}
	return out
}

func messagesShown(shown []shownEvent) int {
	n := 0
	for _, s := range shown {
		if s.typ == "MessageSent" {
			n++
		}
	}
	return n
}

// Users on different gateways chat 1:1 and in a group. Every device of
// every member is pushed every message and acknowledges it, but the
// sending device, which shows it from its send's answer and is never
// pushed it; a user's second device, logged in on the other gateway,
// shows the same timeline event for event (what the user sent aside: each
// device shows its own sends first); acknowledgements survive a
// resume on the other gateway. The dispatcher of either gateway hands out
// one of the two.
func TestE2EChatReachesEveryDeviceOnBothGateways(t *testing.T) { testE2EChat(t, startE2ECluster(t)) }

// The same chat against `mpimd all` on its embedded stand-ins.
func TestEmbeddedE2EChat(t *testing.T) { testE2EChat(t, startEmbeddedCluster(t)) }

// testE2EChat runs the chat on cl and returns its acknowledged sends.
func testE2EChat(t *testing.T, cl *e2eCluster) []sentMsg {
	began := time.Now()
	gwA, gwB := cl.gateways[0], cl.gateways[1]

	names := map[string]string{gwA.addr: gwA.name, gwB.addr: gwB.name}
	for _, g := range cl.gateways {
		for range 3 {
			a, err := dispatch(g.addr)
			if err != nil || names[a.Addr] != a.ID {
				t.Fatalf("GET http://%s/dispatch: %+v, %v; want one of %v", g.addr, a, err, names)
			}
		}
	}

	alice, bob, carol := cl.register(t, gwA, "alice"), cl.register(t, gwB, "bob"), cl.register(t, gwB, "carol")
	aliceA := cl.login(t, alice, "phone", gwA, frame.Proto)
	bobB := cl.login(t, bob, "phone", gwB, frame.JSON)
	bobA := cl.login(t, bob, "laptop", gwA, frame.Proto) // the same user's other device, on the other gateway
	carolB := cl.login(t, carol, "phone", gwB, frame.JSON)
	devs := []*e2eDevice{aliceA, bobB, bobA, carolB}

	ctx := cl.ctx
	var sent ledger
	var st sendStats
	const direct, inGroup = 20, 10
	pair := []*e2eUser{alice, bob}
	runAll(t,
		sendN(ctx, aliceA, direct, &sent, &st, func(i int) (*mpimv1.SendRequest, []*e2eUser) {
			return toUser(bob, fmt.Sprintf("alice-d%d", i)), pair
		}),
		sendN(ctx, bobB, direct, &sent, &st, func(i int) (*mpimv1.SendRequest, []*e2eUser) {
			return toUser(alice, fmt.Sprintf("bob-d%d", i)), pair
		}),
	)

	// A group: alice creates it open with bob, bob adds carol (in a closed
	// group only admins add), all three write.
	g := aliceA.call(t, &mpimv1.ClientFrame_CreateGroup{CreateGroup: &mpimv1.CreateGroupRequest{Name: "e2e", MemberIds: []string{bob.id}, Open: true}}).GetCreateGroup()
	bobB.call(t, &mpimv1.ClientFrame_AddMember{AddMember: &mpimv1.AddMemberRequest{GroupId: g.GetGroupId(), UserId: carol.id}})
	members := []*e2eUser{alice, bob, carol}
	var jobs []func() error
	for _, d := range []*e2eDevice{aliceA, bobA, carolB} {
		jobs = append(jobs, sendN(ctx, d, inGroup, &sent, &st, func(i int) (*mpimv1.SendRequest, []*e2eUser) {
			return toGroup(g.GetGroupId(), fmt.Sprintf("%s-g%d", d.user.name, i)), members
		}))
	}
	runAll(t, jobs...)

	a := waitDelivered(t, "the chat", sent.all(), devs)
	waitUntil(t, "every device acknowledged its last push", func() bool {
		for _, d := range devs {
			if !d.allAcked() {
				return false
			}
		}
		return true
	})
	if !a.ok() || a.checked != 2*direct*3+3*inGroup*4 {
		t.Fatalf("chat: %v", a)
	}
	for _, d := range devs {
		want := []string{"GroupCreated", "MemberAdded"}
		if d.user == carol {
			want = want[1:] // carol joined after the creation
		}
		if got := eventTypes(d.shown()); !slices.Equal(got, want) {
			t.Errorf("%s shows group events %v, want %v", d, got, want)
		}
	}
	phone, laptop := notFrom(bobB.shown(), bob), notFrom(bobA.shown(), bob)
	if !slices.EqualFunc(phone, laptop, func(x, y shownEvent) bool { return x.eventID == y.eventID && x.seq == y.seq }) {
		for i := range min(len(phone), len(laptop)) {
			if phone[i].eventID != laptop[i].eventID {
				t.Fatalf("bob's devices differ at event %d of %d/%d: %+v on %s, %+v on %s", i, len(phone), len(laptop), phone[i], gwB.name, laptop[i], gwA.name)
			}
		}
		t.Fatalf("bob's devices show %d and %d events", len(phone), len(laptop))
	}

	// The acknowledgements are stored: bob's laptop resumes on the other
	// gateway and is pushed only what is sent next.
	before := bobA.snapshot().pushes
	bobA.goOffline()
	bobA.goOnline(t, gwB)
	m, err := aliceA.send(ctx, toUser(bob, "alice-after-resume"), pair, &st)
	if err != nil {
		t.Fatal(err)
	}
	sent.add(m)
	waitDelivered(t, "the message after the resume", []sentMsg{m}, []*e2eDevice{bobA})
	if after := bobA.snapshot().pushes; after != before+1 {
		t.Errorf("bob's laptop was pushed %d events after resuming, want only the new message", after-before)
	}
	final := waitDelivered(t, "every send after the resume", sent.all(), devs)
	if !final.ok() {
		t.Fatalf("after the resume: %v", final)
	}
	t.Logf("%d sends acked (%d rate limited); %v; bob's two devices show the same %d events; %.1fs in all",
		st.acked, st.rateLimited, final, len(phone), time.Since(began).Seconds())
	return sent.all()
}

// A user whose devices are all offline (each acknowledged once, so each has
// a cursor) receives 1,000 messages from several senders, in direct
// conversations and a group. Resumed, each device is pushed all of them,
// each conversation in seq order, each message once; messages sent after
// that arrive live without a gap.
func TestE2EOfflineDevicesCatchUpInOrder(t *testing.T) { testE2EOfflineCatchUp(t, startE2ECluster(t)) }

// The same catch-up against `mpimd all` on its embedded stand-ins.
func TestEmbeddedE2EOfflineCatchUp(t *testing.T) { testE2EOfflineCatchUp(t, startEmbeddedCluster(t)) }

// testE2EOfflineCatchUp runs the catch-up on cl and returns its
// acknowledged sends.
func testE2EOfflineCatchUp(t *testing.T, cl *e2eCluster) []sentMsg {
	began := time.Now()
	gwA, gwB := cl.gateways[0], cl.gateways[1]

	zoe := cl.register(t, gwA, "zoe")
	phone := cl.login(t, zoe, "phone", gwA, frame.Proto)
	tablet := cl.login(t, zoe, "tablet", gwB, frame.JSON)
	const senders = 5
	var senderDevs []*e2eDevice
	members := []*e2eUser{zoe}
	for i := range senders {
		gw, enc := cl.gateways[i%2], []frame.Encoding{frame.Proto, frame.JSON}[i%2]
		u := cl.register(t, gw, fmt.Sprintf("sender%d", i))
		senderDevs = append(senderDevs, cl.login(t, u, "phone", gw, enc))
		members = append(members, u)
	}
	var ids []string
	for _, u := range members[2:] {
		ids = append(ids, u.id)
	}
	ids = append(ids, zoe.id)
	g := senderDevs[0].call(t, &mpimv1.ClientFrame_CreateGroup{CreateGroup: &mpimv1.CreateGroupRequest{Name: "offline", MemberIds: ids}}).GetCreateGroup()
	// zoe's devices are pushed the group's creation and acknowledge it.
	waitUntil(t, "zoe's devices acknowledged the group's creation", func() bool { return phone.allAcked() && tablet.allAcked() })
	phone.goOffline()
	tablet.goOffline()

	ctx := cl.ctx
	var backlog ledger
	var st sendStats
	const total = 1000
	// target alternates between the direct conversation with zoe and the
	// group.
	target := func(d *e2eDevice, tag string) func(i int) (*mpimv1.SendRequest, []*e2eUser) {
		return func(i int) (*mpimv1.SendRequest, []*e2eUser) {
			id := fmt.Sprintf("%s-%s%d", d.user.name, tag, i)
			if i%2 == 0 {
				return toUser(zoe, id), []*e2eUser{zoe, d.user}
			}
			return toGroup(g.GetGroupId(), id), members
		}
	}
	var jobs []func() error
	for _, d := range senderDevs {
		jobs = append(jobs, sendN(ctx, d, total/senders, &backlog, &st, target(d, "offline")))
	}
	sending := time.Now()
	runAll(t, jobs...)
	sendTime := time.Since(sending)
	offline := backlog.all()
	if len(offline) != total {
		t.Fatalf("%d sends acked, want %d", len(offline), total)
	}
	// The senders show their own messages from the answers and are pushed
	// each other's group messages; once they are, so are zoe's inbox
	// entries of those (the projector writes them in the same batch). The
	// direct ones may still be on their way: the catch-up waits for them.
	waitDelivered(t, "the senders' copies", offline, senderDevs)

	resuming := time.Now()
	phone.goOnline(t, gwB) // each device on the other gateway than before
	tablet.goOnline(t, gwA)
	caughtUp := waitDelivered(t, "the offline backlog", offline, []*e2eDevice{phone, tablet})
	catchUp := time.Since(resuming)
	if !caughtUp.ok() {
		t.Fatalf("catch-up: %v", caughtUp)
	}
	for _, d := range []*e2eDevice{phone, tablet} {
		if n := messagesShown(d.shown()); n != total {
			t.Errorf("%s shows %d messages after catching up, want %d", d, n, total)
		}
	}

	// Live messages continue each conversation without a gap.
	jobs = jobs[:0]
	var live ledger
	for _, d := range senderDevs {
		jobs = append(jobs, sendN(ctx, d, 10, &live, &st, target(d, "live")))
	}
	runAll(t, jobs...)
	all := append(offline, live.all()...)
	final := waitDelivered(t, "the live messages", all, append([]*e2eDevice{phone, tablet}, senderDevs...))
	if !final.ok() {
		t.Fatalf("after going live: %v", final)
	}
	for _, d := range []*e2eDevice{phone, tablet} {
		s := d.snapshot()
		if n := messagesShown(d.shown()); n != len(all) {
			t.Errorf("%s shows %d messages, want %d", d, n, len(all))
		}
		if s.syncs != 1 {
			t.Errorf("%s got %d sync_required, want only the one of its first login (it resumed with a cursor)", d, s.syncs)
		}
		t.Logf("%s: %d pushes, %d duplicates before de-duplication (%d marked resend)", d, s.pushes, s.dupPushes, s.resends)
	}
	t.Logf("%d messages sent to offline zoe by %d senders in %.1fs (%d rate limited); both devices caught up in %.1fs; then %d live; %v; %.1fs in all",
		total, senders, sendTime.Seconds(), st.rateLimited, catchUp.Seconds(), len(live.all()), final, time.Since(began).Seconds())
	return all
}

// Clients of gateway A send continuously, to users on both gateways,
// retrying unacknowledged sends with the same client message id; gateway A
// is killed with SIGKILL; its clients resume on gateway B and go on. Every
// acknowledged send is then shown exactly once, in seq order, on every
// device of every member of its conversation.
func TestE2EGatewayKillLosesNoAcknowledgedSend(t *testing.T) {
	began := time.Now()
	cl := startE2ECluster(t)
	gwA, gwB := cl.gateways[0], cl.gateways[1]

	var users []*e2eUser
	var devs []*e2eDevice
	for i, name := range []string{"ann", "amos", "ben", "bea"} {
		gw, enc := gwA, frame.Proto
		if i >= 2 {
			gw = gwB
		}
		if i%2 == 1 {
			enc = frame.JSON
		}
		u := cl.register(t, gw, name)
		users = append(users, u)
		devs = append(devs, cl.login(t, u, "phone", gw, enc))
	}
	ann, amos, ben, bea := users[0], users[1], users[2], users[3]
	g := devs[2].call(t, &mpimv1.ClientFrame_CreateGroup{CreateGroup: &mpimv1.CreateGroupRequest{Name: "kill", MemberIds: []string{ann.id, amos.id, bea.id}}}).GetCreateGroup()
	waitUntil(t, "every device acknowledged the group's creation", func() bool {
		for _, d := range devs {
			if !d.allAcked() {
				return false
			}
		}
		return true
	})

	type route struct {
		to      *e2eUser // nil: the group
		members []*e2eUser
	}
	direct := func(a, b *e2eUser) route { return route{to: b, members: []*e2eUser{a, b}} }
	group := route{members: users}
	// ann and amos are on gateway A; ben and bea, on B, write to them.
	senders := []struct {
		d      *e2eDevice
		routes []route
	}{
		{devs[0], []route{direct(ann, ben), direct(ann, amos), group}},
		{devs[1], []route{direct(amos, bea), direct(amos, ann), group}},
		{devs[2], []route{direct(ben, ann), group}},
		{devs[3], []route{direct(bea, amos)}},
	}
	// Senders finish the send they are in when stopped; ctx aborts them
	// only when the test fails.
	ctx, abort := context.WithCancel(cl.ctx)
	defer abort()
	var sent ledger
	var st sendStats
	var mu sync.Mutex // guards acked
	acked := make([]int, len(senders))
	stop := make(chan struct{})
	errs := make(chan error, len(senders))
	for i, s := range senders {
		go func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					errs <- nil
					return
				default:
				}
				r := s.routes[n%len(s.routes)]
				id := fmt.Sprintf("%s-%d", s.d.user.name, n)
				req := toGroup(g.GetGroupId(), id)
				if r.to != nil {
					req = toUser(r.to, id)
				}
				m, err := s.d.send(ctx, req, r.members, &st)
				if err != nil {
					errs <- err
					return
				}
				sent.add(m)
				mu.Lock()
				acked[i]++
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	ackedOf := func(i int) int {
		mu.Lock()
		defer mu.Unlock()
		return acked[i]
	}
	stopped := false
	stopSenders := func(failing bool) {
		stopped = true
		close(stop)
		if failing {
			abort()
		}
		for range senders {
			if err := <-errs; err != nil && !failing {
				t.Error(err)
			}
		}
	}
	defer func() {
		if !stopped {
			stopSenders(true)
		}
	}()

	const each = 25
	waitUntil(t, "traffic before the kill", func() bool { return ackedOf(0) >= each && ackedOf(1) >= each })
	atKill := []int{ackedOf(0), ackedOf(1), ackedOf(2) + ackedOf(3)}
	gwA.kill(t)
	killed := time.Now()
	waitUntil(t, "gateway A's clients sending through gateway B", func() bool {
		return ackedOf(0) >= atKill[0]+each && ackedOf(1) >= atKill[1]+each && devs[0].gateway() == gwB.addr && devs[1].gateway() == gwB.addr
	})
	resumed := time.Since(killed)
	stopSenders(false)
	if t.Failed() {
		t.FailNow()
	}

	final := waitDelivered(t, "every acknowledged send", sent.all(), devs)
	t.Logf("gateway A killed after %v sends acked by its clients (%d by B's clients); its clients went on through B within %.1fs; "+
		"%d sends acked in all, %d sends retried with their client message id (%d answered as duplicates: appended before the kill), %d rate limited; %v; %.1fs in all",
		atKill[:2], atKill[2], resumed.Seconds(), st.acked, st.retries, st.duplicates, st.rateLimited, final, time.Since(began).Seconds())
	if !final.ok() {
		t.Fatalf("delivery across the kill: %v", final)
	}
	if !cl.projector.alive() || !gwB.alive() {
		t.Fatalf("projector alive %v, gateway B alive %v", cl.projector.alive(), gwB.alive())
	}
}
