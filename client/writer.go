package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"

	"github.com/coder/websocket"
	"github.com/mpim/mpim/internal/corknet"
)

// Several frames per write. A Conn has at most one writer at a time: the
// caller of Send that found no write in progress. A frame sent while
// another is being written is queued (at most maxQueued frames, or
// maxQueuedBytes) and the writer writes it after its own, before it
// returns: it corks the socket (corknet.Conn), writes every frame queued
// meanwhile and uncorks, so that they leave in one write system call, in
// the order they were queued. A frame never waits for a timer: the writer
// flushes before it stops writing, so an idle connection has nothing
// buffered.

const (
	maxQueued      = 256     // frames queued behind a write in progress
	maxQueuedBytes = 1 << 20 // their bytes
	maxCorked      = 1 << 20 // a corked write flushes beyond this
)

// outFrame is a frame waiting for the writer.
type outFrame struct {
	typ  websocket.MessageType
	data []byte
}

// writeQueue is the state of a Conn's writes; its zero value is ready.
type writeQueue struct {
	mu      sync.Mutex
	writing bool       // a caller is writing; others queue
	queue   []outFrame // in send order; guarded by mu
	bytes   int        // of queue
	spare   []outFrame // the writer's last batch, reused
	room    chan struct{}
	waiting int // callers waiting for room; guarded by mu
}

// send writes data as one message: at once when no write is in progress,
// else by queueing it behind the one in progress (whose writer writes it
// before returning; a failure then ends the connection). owned says the
// caller gives data up; otherwise it is copied when queued.
func (c *Conn) send(ctx context.Context, typ websocket.MessageType, data []byte, owned bool) error {
	q := &c.wq
	for {
		q.mu.Lock()
		if !q.writing {
			q.writing = true
			q.mu.Unlock()
			return c.writeAll(ctx, outFrame{typ: typ, data: data})
		}
		if len(q.queue) < maxQueued && q.bytes+len(data) <= maxQueuedBytes {
			if !owned {
				data = append([]byte(nil), data...)
			}
			q.queue = append(q.queue, outFrame{typ: typ, data: data})
			q.bytes += len(data)
			q.mu.Unlock()
			return nil
		}
		if q.room == nil {
			q.room = make(chan struct{})
		}
		room := q.room
		q.waiting++
		q.mu.Unlock()
		select {
		case <-room:
		case <-c.done:
			q.mu.Lock()
			q.waiting--
			q.mu.Unlock()
			return fmt.Errorf("client: connection ended: %w", c.err)
		case <-ctx.Done():
			q.mu.Lock()
			q.waiting--
			q.mu.Unlock()
			return ctx.Err()
		}
		q.mu.Lock()
		q.waiting--
		q.mu.Unlock()
	}
}

// writeAll writes first and then, corked, every frame queued meanwhile,
// until the queue is empty; the caller set wq.writing. A failed write of
// a queued frame ends the connection: its sender was told it was sent.
func (c *Conn) writeAll(ctx context.Context, first outFrame) error {
	q := &c.wq
	err := c.ws.Write(ctx, first.typ, first.data)
	for {
		q.mu.Lock()
		batch := q.queue
		if len(batch) == 0 || err != nil {
			q.queue, q.bytes = q.queue[:0], 0
			q.writing = false
			c.wakeWaiters()
			q.mu.Unlock()
			if err != nil && len(batch) > 0 {
				c.ws.CloseNow() // the queued frames are lost with the connection
			}
			return err
		}
		q.queue, q.bytes = q.spare[:0], 0
		c.wakeWaiters()
		q.mu.Unlock()
		if werr := c.writeCorked(ctx, batch); werr != nil {
			c.ws.CloseNow()
		}
		clear(batch)
		q.mu.Lock()
		q.spare = batch[:0]
		q.mu.Unlock()
	}
}

// wakeWaiters lets the callers waiting for room queue again. The caller
// holds wq.mu.
func (c *Conn) wakeWaiters() {
	q := &c.wq
	if q.waiting > 0 && q.room != nil {
		close(q.room)
		q.room = nil
	}
}

// writeCorked writes the frames of batch in one write system call where
// the socket allows it.
func (c *Conn) writeCorked(ctx context.Context, batch []outFrame) error {
	if c.cork != nil {
		c.cork.Cork()
	}
	var err error
	for _, f := range batch {
		if err = c.ws.Write(ctx, f.typ, f.data); err != nil {
			break
		}
	}
	if c.cork != nil {
		if ferr := c.cork.Uncork(); err == nil {
			err = ferr
		}
	}
	return err
}

// corkingClient returns an HTTP client for one WebSocket handshake whose
// connections are corknet.Conns; dialed receives each. Close its idle
// connections (those of a failed handshake) after the handshake.
func corkingClient(dialed func(*corknet.Conn)) (*http.Client, error) {
	base, ok := http.DefaultTransport.(*http.Transport)
	if !ok {
		return nil, errors.New("client: http.DefaultTransport is not an *http.Transport")
	}
	t := base.Clone()
	var d net.Dialer
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		cc := corknet.New(nc, maxCorked)
		dialed(cc)
		return cc, nil
	}
	return &http.Client{Transport: t}, nil
}
