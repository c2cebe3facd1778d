package gateway_test

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mpim/mpim/gateway"
	"github.com/mpim/mpim/gateway/gatewaytest"
	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// pushEnvelope is a MessageSent event of text bytes, as a delivery carries it.
func pushEnvelope(t *testing.T, text int) []byte {
	t.Helper()
	b, err := protoMarshal(&mpimv1.Event{Id: make([]byte, 16), Aggregate: "d/x", Version: 1, Seq: 1,
		Payload: &mpimv1.Event_MessageSent{MessageSent: &mpimv1.MessageSent{ConversationId: "d/x", Text: string(make([]byte, text))}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Pushers on several goroutines: the writer gathers what piles up into
// one write per batch (small and big frames), and every pusher's frames
// arrive, each once, in its order.
func TestWriterKeepsOrderOfConcurrentPushes(t *testing.T) {
	gatewaytest.Encodings(t, func(t *testing.T, enc frame.Encoding) {
		e := gatewaytest.New(t)
		u := e.Login(t, enc, "olga")
		dev := e.Hub.Device(t, u.ID, u.Device)
		small, big := pushEnvelope(t, 100), pushEnvelope(t, 40<<10)
		const pushers, each = 4, 200 // 800 frames: within the send queue's 1024
		var wg sync.WaitGroup
		errs := make(chan error, pushers)
		for g := range pushers {
			wg.Go(func() {
				for i := range each {
					env := small
					if i%50 == 49 {
						env = big
					}
					d := gateway.Delivery{InboxID: strconv.Itoa(g+1) + "-" + strconv.Itoa(i), Type: "MessageSent", Envelope: env}
					if err := dev.Sink.Push(d); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		next := make([]int, pushers+1)
		for range pushers * each {
			f, err := u.Conn.Next(gatewaytest.Ctx(t))
			if err != nil {
				t.Fatalf("after %v frames: %v", next, err)
			}
			g, i, ok := splitInboxID(f.GetPush().GetInboxId())
			if !ok || g < 1 || g > pushers {
				t.Fatalf("frame %v", f)
			}
			if i != next[g] {
				t.Fatalf("pusher %d: frame %d arrived when %d was next", g, i, next[g])
			}
			next[g]++
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		gatewaytest.Ping(t, u.Conn)
	})
}

func splitInboxID(id string) (g, i int, ok bool) {
	for k := range len(id) {
		if id[k] == '-' {
			a, err1 := strconv.Atoi(id[:k])
			b, err2 := strconv.Atoi(id[k+1:])
			return a, b, err1 == nil && err2 == nil
		}
	}
	return 0, 0, false
}

// A frame alone in the queue leaves at once, before, between and after
// bursts: the writer sends what it gathered at the end of each batch, with
// no timer and without waiting for more frames.
func TestWriterSendsALoneFrameAtOnce(t *testing.T) {
	e := gatewaytest.New(t)
	u := e.Login(t, frame.Proto, "pia")
	dev := e.Hub.Device(t, u.ID, u.Device)
	env := pushEnvelope(t, 100)
	n := 0
	push := func(k int) {
		for range k {
			n++
			if err := dev.Sink.Push(gateway.Delivery{InboxID: "1-" + strconv.Itoa(n), Type: "MessageSent", Envelope: env}); err != nil {
				t.Fatal(err)
			}
		}
	}
	read := func(k int) {
		for j := n - k + 1; j <= n; j++ {
			f, err := u.Conn.Next(gatewaytest.Ctx(t)) // a hang detector: a held frame never comes
			if err != nil {
				t.Fatalf("waiting for push 1-%d: %v", j, err)
			}
			if got := f.GetPush().GetInboxId(); got != "1-"+strconv.Itoa(j) {
				t.Fatalf("got %q, want push 1-%d", got, j)
			}
		}
	}
	for _, k := range []int{1, 300, 1, 2, 1} {
		push(k)
		read(k)
	}
}

// A client that stops reading while its queue stays within the bounds is
// cut off by the write timeout, gathered frames included: the write of
// what the writer gathered is bounded as any write. (The reader may see
// the closed connection before the writer records its failure, so the
// disconnect's reason is not asserted.)
func TestWriterCutsOffAReaderThatStopsByTheWriteTimeout(t *testing.T) {
	e := gatewaytest.New(t, func(c *gateway.Config, _ *gateway.Deps) {
		c.WriteTimeout = 500 * time.Millisecond
		c.SendQueue = 4096
		c.OutboxBytes, c.OutboxHardBytes = 256<<20, 512<<20 // the write timeout, not the queue, must trip
	})
	dev := stalledDevice(t, e, "rita")
	envelope := make([]byte, 64<<10)
	// 3000 × 64 KiB: far more than the socket buffers of both ends hold.
	for i := range 3000 {
		if err := dev.Sink.Push(gateway.Delivery{InboxID: "1-" + strconv.Itoa(i), Type: "MessageSent", Envelope: envelope}); err != nil {
			break // the connection was cut off
		}
	}
	gatewaytest.Eventually(t, "the stalled client's detach", func() bool { d, _, _ := dev.State(); return d })
	if _, clean, _ := dev.State(); clean {
		t.Fatal("a stalled client was detached cleanly")
	}
	if n := gatewaytest.CounterValue(t, e.Registry, "mpim_gateway_slow_client_disconnects_total", "", ""); n != 0 {
		t.Fatalf("slow client disconnects = %v, want 0 (the queue stayed within its bounds)", n)
	}
}

// stalledDevice logs name in on a connection that stops reading after its
// first frame and returns the device's attachment.
func stalledDevice(t *testing.T, e *gatewaytest.Env, name string) *gatewaytest.FakeDevice {
	c, err := gatewaytest.Dial(gatewaytest.Ctx(t), e.URL, frame.Proto, &gatewaytest.Options{Buffer: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	gatewaytest.OK(t, c, &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: name, Password: "password-" + name}})
	id := gatewaytest.OK(t, c, gatewaytest.LoginReq(name, "password-"+name, "d1")).GetLogin().GetUserId()
	return e.Hub.Device(t, id, "d1")
}
