package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/coder/websocket"
	"github.com/mpim/mpim/gateway/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"google.golang.org/protobuf/proto"
)

// conn is one binary-protobuf WebSocket connection to a gateway. Responses
// are handed to the callback registered with their request, everything else
// to onFrame; both run on the connection's reader goroutine, in the order the
// frames arrived. Writes are safe for concurrent use.
type conn struct {
	ws     *websocket.Conn
	nextID atomic.Uint64

	mu      sync.Mutex // guards pending
	pending map[uint64]func(*mpimv1.Response)

	onFrame func(*mpimv1.ServerFrame) // set before start
	done    chan struct{}
	err     error // set before done is closed
}

func dial(ctx context.Context, url string) (*conn, error) {
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{frame.SubprotocolProto}})
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(1 << 20)
	return &conn{ws: ws, pending: map[uint64]func(*mpimv1.Response){}, done: make(chan struct{})}, nil
}

func (c *conn) start() { go c.read() }

func (c *conn) read() {
	defer close(c.done)
	for {
		_, data, err := c.ws.Read(context.Background())
		if err != nil {
			c.err = err
			return
		}
		f := &mpimv1.ServerFrame{}
		if err := proto.Unmarshal(data, f); err != nil {
			c.err = fmt.Errorf("undecodable server frame: %w", err)
			c.ws.Close(websocket.StatusProtocolError, "undecodable frame")
			return
		}
		if r := f.GetResponse(); r != nil {
			c.mu.Lock()
			cb := c.pending[r.GetId()]
			delete(c.pending, r.GetId())
			c.mu.Unlock()
			if cb != nil {
				cb(r)
				continue
			}
		}
		if c.onFrame != nil {
			c.onFrame(f)
		}
	}
}

// async sends f with a fresh id; cb gets its response on the reader goroutine.
func (c *conn) async(ctx context.Context, f *mpimv1.ClientFrame, cb func(*mpimv1.Response)) error {
	id := c.nextID.Add(1)
	f.Id = id
	c.mu.Lock()
	c.pending[id] = cb
	c.mu.Unlock()
	data, err := proto.Marshal(f)
	if err == nil {
		err = c.ws.Write(ctx, websocket.MessageBinary, data)
	}
	if err != nil {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}
	return err
}

// call sends f and waits for its response.
func (c *conn) call(ctx context.Context, f *mpimv1.ClientFrame) (*mpimv1.Response, error) {
	ch := make(chan *mpimv1.Response, 1)
	if err := c.async(ctx, f, func(r *mpimv1.Response) { ch <- r }); err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		if e := r.GetError(); e != nil {
			return r, fmt.Errorf("%s: %s", e.GetCode(), e.GetMessage())
		}
		return r, nil
	case <-c.done:
		return nil, fmt.Errorf("connection ended: %w", c.err)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *conn) close() {
	c.ws.Close(websocket.StatusNormalClosure, "bye")
	<-c.done
}

// dispatch asks a dispatcher for a gateway and returns its WebSocket URL.
func dispatch(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct{ ID, Addr, Error string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", fmt.Errorf("dispatch: %s: %w", resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("dispatch: %s: %s", resp.Status, out.Error)
	}
	ws := "ws://" + out.Addr + "/ws"
	if err := loopbackURL(ws, "ws"); err != nil {
		return "", fmt.Errorf("dispatch answered %w", err)
	}
	return ws, nil
}
