package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/connect"
	"github.com/mpim/mpim/internal/inbox"
	"github.com/mpim/mpim/internal/testsvc"
	"github.com/mpim/mpim/projectors/push"
	"github.com/mpim/mpim/projectors/redisckpt"
	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/mpim/mpim/push/webhook"
	"github.com/mpim/mpim/query"
	"github.com/redis/go-redis/v9"
)

// TestFaultPushProjectorKill: the projector process, running the push
// projector against a slow local webhook receiver, is killed with SIGKILL
// while calls are in flight (mid-batch: their batches are not settled, so
// the checkpoints stand before them), and a new projector process is
// started. Users offline with push tokens, a user online on one device and
// offline on another, and users online on every device are sent a bounded
// number of messages, each recipient from one sender (so each recipient's
// notifications come from one partition, in log order). The audit (see
// pushKillAudit) finds every notification the log calls for delivered at
// least once, every call that repeats a key an exact repeat of the first
// call with that key, and no call naming an online device.
//
//	go test -race -count=1 -run TestFaultPushProjectorKill -v ./cmd/mpimd
func TestFaultPushProjectorKill(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef"
	recv := startPushReceiver(t, secret) // closed after the processes end
	rt := testsvc.Redis(t)
	// Every process gets the push flags, as from a shared configuration;
	// only the projector runs the push projector.
	fc := startFaultCluster(t, rt.Addr, rt.Prefix, []string{"gw-a", "gw-b"},
		"--push-webhook-url", recv.srv.URL, "--push-webhook-secret-file", secretFile(t, secret+"\n", 0o600), "--push-window", "50ms")
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: rt.Addr})
	t.Cleanup(func() { rdb.Close() })
	ckpt := redisckpt.New(rdb, rt.Prefix, push.Name)
	// The push projector starts at the log's head of a partition when it
	// first claims it: a message before that would never be pushed.
	waitUntil(t, "the push projector claimed every partition", func() bool {
		for p := range fc.partitions {
			if started, err := ckpt.Started(ctx, p); err != nil || !started {
				return false
			}
		}
		return true
	})

	pu := setupPushUsers(t, fc, rdb, rt.Prefix)
	const perRecipient = 25
	st := &sendStats{}
	tctx, stopTraffic := context.WithTimeout(fc.ctx, 2*time.Minute)
	defer stopTraffic()
	done := make(chan error, len(pu.senders))
	for si, s := range pu.senders {
		go func() {
			var to []*e2eUser
			for i, r := range pu.recipients {
				if i%len(pu.senders) == si {
					to = append(to, r)
				}
			}
			for n := range perRecipient {
				for _, r := range to {
					if _, err := s.send(tctx, toUser(r, fmt.Sprintf("%s-%s-%d", s.user.name, r.name, n)), []*e2eUser{s.user, r}, st); err != nil {
						done <- err
						return
					}
					time.Sleep(10 * time.Millisecond) // spreads the sends over a few batches
				}
			}
			done <- nil
		}()
	}

	// The kill lands while the receiver holds a call: that call's batch
	// is not settled.
	const before = 15
	waitUntil(t, fmt.Sprintf("the receiver took %d calls and holds one", before), func() bool {
		s := recv.snapshot()
		return len(s.calls) >= before && s.inFlight > 0
	})
	fc.faults.refanout.Store(true) // the inbox projector is cut off mid-batch too
	fc.projector.kill(t)
	waitUntil(t, "the receiver answered or lost every call of the killed projector", func() bool { return recv.snapshot().inFlight == 0 })
	atKill := recv.snapshot()
	fc.projector = fc.startProjector(t, "p1")
	fc.waitReady(t, fc.projector)

	for range pu.senders {
		if err := <-done; err != nil {
			t.Fatalf("traffic: %v", err)
		}
	}
	store := openLog(t, rt.Addr, rt.Prefix, fc.partitions)
	waitUntil(t, "the push projector's checkpoint at the end of every partition", func() bool {
		for p := range fc.partitions {
			info, err := store.Info(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			pos, err := ckpt.Checkpoint(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			if pos.Compare(info.Last) < 0 {
				return false
			}
		}
		return true
	})
	checkAlive(t, fc.projector, fc.gateways[0], fc.gateways[1])

	a := pu.audit(t, fc, recv.snapshot(), atKill)
	t.Logf("%d messages acked; %v", st.acked, a)
	if !a.ok() {
		t.Fatalf("push audit failed: %v", a)
	}
}

// pushReceiver is a webhook endpoint that records every call it read in
// full, then answers 200 after 50..200 ms, or not at all when the caller
// goes away first.
type pushReceiver struct {
	srv    *httptest.Server
	secret []byte

	mu       sync.Mutex
	calls    []pushCall
	inFlight int // calls read, not yet answered or cut off
	cutOff   int // calls whose caller went away before the answer
}

// pushCall is one call the receiver read.
type pushCall struct {
	key    string // the Idempotency-Key header
	p      webhook.Payload
	signed bool // signed with the secret, and a payload
}

// pushReceiverState is a copy of what the receiver recorded.
type pushReceiverState struct {
	calls            []pushCall
	inFlight, cutOff int
}

func startPushReceiver(t *testing.T, secret string) *pushReceiver {
	rv := &pushReceiver{secret: []byte(secret)}
	rv.srv = httptest.NewServer(http.HandlerFunc(rv.serve))
	t.Cleanup(rv.srv.Close)
	return rv
}

func (rv *pushReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return // the caller went away mid-body: nothing taken
	}
	ts, _ := strconv.ParseInt(r.Header.Get(webhook.HeaderTimestamp), 10, 64)
	c := pushCall{key: r.Header.Get(webhook.HeaderIdempotency), signed: webhook.Verify(rv.secret, ts, body, r.Header.Get(webhook.HeaderSignature))}
	if err := json.Unmarshal(body, &c.p); err != nil {
		c.signed = false
	}
	rv.mu.Lock()
	rv.calls = append(rv.calls, c)
	rv.inFlight++
	rv.mu.Unlock()
	delay := 50*time.Millisecond + rand.N(150*time.Millisecond)
	select {
	case <-time.After(delay):
		w.WriteHeader(http.StatusOK)
		rv.mu.Lock()
		rv.inFlight--
		rv.mu.Unlock()
	case <-r.Context().Done():
		rv.mu.Lock()
		rv.inFlight--
		rv.cutOff++
		rv.mu.Unlock()
	}
}

func (rv *pushReceiver) snapshot() pushReceiverState {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return pushReceiverState{calls: slices.Clone(rv.calls), inFlight: rv.inFlight, cutOff: rv.cutOff}
}

// pushUsers are the users of TestFaultPushProjectorKill.
type pushUsers struct {
	senders    []*e2eDevice // online, no token
	recipients []*e2eUser   // each sent to by one sender
	offline    map[domain.UserID][]domain.DeviceID
	online     map[domain.UserID][]domain.DeviceID
}

// setupPushUsers registers three senders and the recipients: nine offline
// on their one device, two offline on their phone and online on their
// tablet, two online on their one device, every recipient's device with a
// push token. It returns once the cache model holds every token (the push
// projector reads them there), the offline devices have no live route and
// the online ones have.
func setupPushUsers(t *testing.T, fc *faultCluster, rdb *redis.Client, prefix string) *pushUsers {
	t.Helper()
	pu := &pushUsers{offline: map[domain.UserID][]domain.DeviceID{}, online: map[domain.UserID][]domain.DeviceID{}}
	gw := func(i int) *mpimdProc { return fc.gateways[i%len(fc.gateways)] }
	for i, name := range []string{"sam", "sue", "sid"} {
		pu.senders = append(pu.senders, fc.login(t, fc.register(t, gw(i), name), "laptop", gw(i), frame.Proto))
	}
	token := func(d *e2eDevice, platform string) {
		d.call(t, &mpimv1.ClientFrame_RegisterPushToken{RegisterPushToken: &mpimv1.RegisterPushTokenRequest{
			Platform: platform, Token: "tok-" + d.user.name + "-" + d.id}})
	}
	var goOff []*e2eDevice
	for i := range 13 {
		name, devices, offline := fmt.Sprintf("off%d", i), []string{"phone"}, 1
		switch {
		case i >= 11:
			name, offline = fmt.Sprintf("on%d", i-11), 0
		case i >= 9:
			name, devices = fmt.Sprintf("mix%d", i-9), []string{"phone", "tablet"}
		}
		u := fc.register(t, gw(i), name)
		pu.recipients = append(pu.recipients, u)
		for j, dev := range devices {
			d := fc.login(t, u, dev, gw(i+j), []frame.Encoding{frame.Proto, frame.JSON}[j])
			token(d, []string{"apns", "fcm"}[j])
			if j < offline {
				pu.offline[domain.UserID(u.id)] = append(pu.offline[domain.UserID(u.id)], domain.DeviceID(dev))
				goOff = append(goOff, d)
			} else {
				pu.online[domain.UserID(u.id)] = append(pu.online[domain.UserID(u.id)], domain.DeviceID(dev))
			}
		}
	}
	db, err := connect.MySQL(context.Background(), fc.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	dir, err := query.New(db, rdb, query.Config{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	waitUntil(t, "every push token in the cache model", func() bool {
		users := make([]domain.UserID, len(pu.recipients))
		for i, u := range pu.recipients {
			users[i] = domain.UserID(u.id)
		}
		targets, err := dir.PushTargets(ctx, users)
		if err != nil {
			t.Fatal(err)
		}
		for i, u := range users {
			if len(targets[i]) != len(pu.offline[u])+len(pu.online[u]) {
				return false
			}
		}
		return true
	})
	for _, d := range goOff {
		d.goOffline()
	}
	keys := inbox.NewKeys(prefix)
	live := func(u domain.UserID, dev domain.DeviceID) bool {
		s, err := rdb.HGet(ctx, keys.Presence(u), string(dev)).Result()
		if errors.Is(err, redis.Nil) {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		r, err := inbox.DecodeRoute(s)
		return err == nil && r.Live(time.Now())
	}
	waitUntil(t, "offline devices without a live route, online ones with one", func() bool {
		for want, devs := range map[bool]map[domain.UserID][]domain.DeviceID{false: pu.offline, true: pu.online} {
			for u, ds := range devs {
				for _, d := range ds {
					if live(u, d) != want {
						return false
					}
				}
			}
		}
		return true
	})
	return pu
}

// pushKillAudit is what TestFaultPushProjectorKill found. A notification
// is one message to one recipient with an offline device; a call carries
// the count notifications of its user that end at its eventId (each
// recipient's notifications come from one partition, and the sender
// collapses a user's notifications in order), so the audit knows which
// notifications each call delivered.
type pushKillAudit struct {
	expected     int // notifications the log calls for
	calls        int // calls the receiver read
	callsAtKill  int // of them, before the kill
	cutOff       int // calls in flight at the kill, whose answer never reached the killed process
	delivered    int // notifications delivered at least once
	newAfterKill int // notifications first delivered by the new projector
	lost         int // notifications never delivered
	// Duplicates: repeatedCalls repeat a key already seen (each must be an
	// exact repeat of the first call with that key); sameKey counts the
	// notifications they carried again, newKey those a call carried again
	// beside notifications never delivered before (after the restart the
	// replayed batch may collapse further: a new key, so that a relay that
	// drops repeated keys still gets the new ones).
	repeatedCalls, sameKey, newKey int
	online                         int // calls naming a device that was online
	bad                            int // calls unsigned, malformed, or carrying something not called for
	details                        []string
}

func (a *pushKillAudit) problem(format string, args ...any) {
	if len(a.details) < 10 {
		a.details = append(a.details, fmt.Sprintf(format, args...))
	}
}

func (a pushKillAudit) ok() bool {
	return a.lost == 0 && a.online == 0 && a.bad == 0 && a.cutOff > 0 && a.newAfterKill > 0 && a.delivered == a.expected
}

func (a pushKillAudit) String() string {
	return fmt.Sprintf("push: %d notifications called for, %d calls (%d before the kill, %d of them cut off by it); %d notifications delivered, %d first by the new projector, %d lost; "+
		"duplicates: %d calls repeated a key (%d notifications again under their first key), %d notifications again under a new key beside new ones; "+
		"%d calls naming an online device, %d bad calls%s",
		a.expected, a.calls, a.callsAtKill, a.cutOff, a.delivered, a.newAfterKill, a.lost, a.repeatedCalls, a.sameKey, a.newKey,
		a.online, a.bad, strings.Join(append([]string{""}, a.details...), "\n\t"))
}

// audit reads the log and checks the calls of st against it (see
// pushKillAudit); atKill is what the receiver had once the killed process
// was gone.
func (pu *pushUsers) audit(t *testing.T, fc *faultCluster, st, atKill pushReceiverState) pushKillAudit {
	t.Helper()
	ctx := context.Background()
	store := openLog(t, fc.redisAddr, fc.prefix, fc.partitions)
	archive, err := connect.MySQL(ctx, fc.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer archive.Close()
	// Each user's notifications, in log order.
	seqOf := map[domain.UserID][]string{}
	index := map[string]int{}
	for p := range fc.partitions {
		recs, err := readTrimmedPartition(ctx, archive, store, p)
		if err != nil {
			t.Fatalf("reading partition %d: %v", p, err)
		}
		for _, r := range recs {
			m := r.Event.GetMessageSent()
			if m == nil {
				continue
			}
			x, y, ok := domain.ConversationID(m.GetConversationId()).Members()
			to := x
			if to == domain.UserID(m.GetSenderId()) {
				to = y
			}
			if !ok || pu.offline[to] == nil {
				continue
			}
			id := push.EventID(p, r.Position, to)
			index[id] = len(seqOf[to])
			seqOf[to] = append(seqOf[to], id)
		}
	}
	a := pushKillAudit{expected: len(index), calls: len(st.calls), callsAtKill: len(atKill.calls), cutOff: atKill.cutOff}
	firstKey := map[string]string{} // notification -> key of its first delivery
	byKey := map[string]pushCall{}  // key -> its first call
	for i, c := range st.calls {
		p := c.p
		for _, d := range p.Devices {
			if slices.Contains(pu.online[p.User], d.ID) {
				a.online++
				a.problem("call %d (%s) names %s/%s, which was online", i, c.key, p.User, d.ID)
			}
		}
		var ids []domain.DeviceID
		for _, d := range p.Devices {
			ids = append(ids, d.ID)
		}
		j, known := index[p.EventID]
		switch {
		case !c.signed || c.key != p.EventID:
			a.bad++
			a.problem("call %d: signed %v, key %q, eventId %q", i, c.signed, c.key, p.EventID)
			continue
		case !known || p.Count < 1 || j+1 < p.Count:
			a.bad++
			a.problem("call %d (%s, count %d): not a run of notifications the log calls for", i, c.key, p.Count)
			continue
		case !slices.Equal(ids, pu.offline[p.User]):
			a.bad++
			a.problem("call %d (%s) names devices %v, want the offline ones %v", i, c.key, ids, pu.offline[p.User])
		}
		first, repeated := byKey[c.key]
		if repeated {
			a.repeatedCalls++
			if first.p.Count != p.Count || first.p.User != p.User || first.p.Seq != p.Seq {
				a.bad++
				a.problem("call %d repeats key %s with count %d, seq %d; its first call had count %d, seq %d", i, c.key, p.Count, p.Seq, first.p.Count, first.p.Seq)
			}
		} else {
			byKey[c.key] = c
		}
		fresh := 0
		for _, n := range seqOf[p.User][j+1-p.Count : j+1] {
			switch k, seen := firstKey[n]; {
			case !seen:
				firstKey[n] = c.key
				fresh++
				if i >= a.callsAtKill {
					a.newAfterKill++
				}
			case k == c.key:
				a.sameKey++
			default:
				a.newKey++
			}
		}
		if fresh == 0 && !repeated {
			a.bad++
			a.problem("call %d (%s, count %d) carries only notifications delivered before, under a new key", i, c.key, p.Count)
		}
	}
	a.delivered = len(firstKey)
	for u, seq := range seqOf {
		for _, n := range seq {
			if _, ok := firstKey[n]; !ok {
				a.lost++
				a.problem("%s: notification %s never delivered", u, n)
			}
		}
	}
	if a.cutOff == 0 {
		a.problem("no call was in flight at the kill: it did not land mid-batch")
	}
	return a
}
