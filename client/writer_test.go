package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// echoless is a WebSocket server that records the binary messages it
// reads, in order; got waits for n of them.
type echoless struct {
	mu   sync.Mutex
	msgs []string
	more chan struct{}
}

func startRecorder(t *testing.T) (*echoless, string) {
	t.Helper()
	rec := &echoless{more: make(chan struct{}, 1)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"mpim.v1.proto"}})
		if err != nil {
			return
		}
		defer ws.CloseNow()
		for {
			_, data, err := ws.Read(r.Context())
			if err != nil {
				return
			}
			rec.mu.Lock()
			rec.msgs = append(rec.msgs, string(data))
			rec.mu.Unlock()
			select {
			case rec.more <- struct{}{}:
			default:
			}
		}
	}))
	t.Cleanup(srv.Close)
	return rec, "ws" + strings.TrimPrefix(srv.URL, "http")
}

func (e *echoless) got(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		e.mu.Lock()
		if len(e.msgs) >= n {
			out := append([]string(nil), e.msgs...)
			e.mu.Unlock()
			return out
		}
		e.mu.Unlock()
		select {
		case <-e.more:
		case <-deadline:
			t.Fatalf("the server read %d messages, want %d", len(e.msgs), n)
		}
	}
}

func dialRecorder(t *testing.T, url string) *Conn {
	t.Helper()
	c, err := Dial(context.Background(), url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	if c.cork == nil {
		t.Fatal("the connection is not corkable: its handshake did not dial through corkingClient")
	}
	return c
}

// Frames sent while a write is in progress leave together, after it, in
// one write system call and in the order they were sent.
func TestFramesQueuedBehindAWriteLeaveInOneWrite(t *testing.T) {
	rec, url := startRecorder(t)
	c := dialRecorder(t, url)
	ctx := context.Background()

	c.wq.mu.Lock()
	c.wq.writing = true // a write is in progress: sends queue behind it
	c.wq.mu.Unlock()
	for _, m := range []string{"1", "2", "3", "4", "5"} {
		if err := c.SendRaw(ctx, true, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	before := c.cork.Writes()
	if err := c.writeAll(ctx, outFrame{typ: websocket.MessageBinary, data: []byte("0")}); err != nil {
		t.Fatal(err)
	}
	if w := c.cork.Writes() - before; w != 2 {
		t.Errorf("6 frames took %d write calls, want 2 (the writer's own, then the 5 queued in one)", w)
	}
	if got := strings.Join(rec.got(t, 6), ","); got != "0,1,2,3,4,5" {
		t.Errorf("the server read %s, want 0,1,2,3,4,5", got)
	}
}

// A frame sent on an idle connection is written before Send returns:
// nothing is held back waiting for company.
func TestALoneFrameIsWrittenAtOnce(t *testing.T) {
	rec, url := startRecorder(t)
	c := dialRecorder(t, url)
	before := c.cork.Writes()
	if err := c.SendRaw(context.Background(), true, []byte("alone")); err != nil {
		t.Fatal(err)
	}
	if w := c.cork.Writes() - before; w != 1 {
		t.Errorf("a lone frame took %d write calls before Send returned, want 1", w)
	}
	if held := c.cork.Gathered(); held != 0 {
		t.Errorf("%d bytes held back after Send returned", held)
	}
	if got := rec.got(t, 1); got[0] != "alone" {
		t.Errorf("the server read %q", got[0])
	}
}

// Concurrent senders: every frame arrives once, each sender's in its own
// order.
func TestConcurrentSendsKeepEachSendersOrder(t *testing.T) {
	rec, url := startRecorder(t)
	c := dialRecorder(t, url)
	const senders, each = 8, 200
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for i := range each {
				if err := c.SendRaw(context.Background(), true, []byte{byte('a' + s), byte(i)}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	next := make([]int, senders)
	for _, m := range rec.got(t, senders*each) {
		s, i := int(m[0]-'a'), int(m[1])
		if i != next[s] {
			t.Fatalf("sender %d: frame %d arrived when %d was due", s, i, next[s])
		}
		next[s]++
	}
}

// The queue behind a write is bounded: a sender beyond it waits for room
// until its context ends.
func TestAFullQueueMakesTheSenderWait(t *testing.T) {
	_, url := startRecorder(t)
	c := dialRecorder(t, url)
	c.wq.mu.Lock()
	c.wq.writing = true // a write that does not end
	c.wq.mu.Unlock()
	for range maxQueued {
		if err := c.SendRaw(context.Background(), true, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := c.SendRaw(ctx, true, []byte("one too many")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a send beyond the queue's bound returned %v, want it to wait until its context ended", err)
	}
	c.wq.mu.Lock()
	n := len(c.wq.queue)
	c.wq.mu.Unlock()
	if n != maxQueued {
		t.Fatalf("queue holds %d frames, want the bound %d", n, maxQueued)
	}
}
