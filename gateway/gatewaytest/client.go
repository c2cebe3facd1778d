// Package gatewaytest is a client of the mpim client protocol for tests and
// tools: it dials a gateway over WebSocket in either encoding, matches
// responses to requests, and hands out everything else the server sends
// (pushes, signals, sync requests, goaways) in order.
package gatewaytest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"sync"
	"sync/atomic"

	"github.com/coder/websocket"
	"github.com/mpim/mpim/gateway/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// Client is one connection to a gateway. It is safe for concurrent use.
type Client struct {
	conn   *websocket.Conn
	enc    frame.Encoding
	nextID atomic.Uint64

	frames chan *mpimv1.ServerFrame
	done   chan struct{}
	err    error // why the connection ended; set before done is closed

	mu      sync.Mutex // guards pending
	pending map[uint64]chan *mpimv1.Response
}

// Options configure Dial.
type Options struct {
	// Buffer is how many unsolicited frames (and responses nobody waits
	// for) are kept before the client stops reading (default 4096).
	Buffer int
	// Header is sent with the WebSocket handshake.
	Header http.Header
	// Subprotocols overrides the offered subprotocols (default: the
	// encoding's).
	Subprotocols []string
}

// Dial connects to the gateway's WebSocket URL (ws://host/ws) with enc.
func Dial(ctx context.Context, url string, enc frame.Encoding, opts *Options) (*Client, error) {
	if opts == nil {
		opts = &Options{}
	}
	if opts.Buffer == 0 {
		opts.Buffer = 4096
	}
	protos := opts.Subprotocols
	if protos == nil {
		protos = []string{enc.String()}
	}
	conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: protos, HTTPHeader: opts.Header})
	if err != nil {
		return nil, err
	}
	conn.SetReadLimit(64 << 20)
	c := &Client{conn: conn, enc: enc, frames: make(chan *mpimv1.ServerFrame, opts.Buffer),
		done: make(chan struct{}), pending: make(map[uint64]chan *mpimv1.Response)}
	go c.read()
	return c, nil
}

// Conn returns the underlying connection, to send raw messages.
func (c *Client) Conn() *websocket.Conn { return c.conn }

func (c *Client) read() {
	defer close(c.done)
	for {
		typ, data, err := c.conn.Read(context.Background())
		if err != nil {
			c.err = err
			return
		}
		f := &mpimv1.ServerFrame{}
		if err := c.enc.DecodeServer(typ == websocket.MessageBinary, data, f); err != nil {
			c.err = fmt.Errorf("gatewaytest: undecodable server frame: %w", err)
			c.conn.Close(websocket.StatusProtocolError, "undecodable frame")
			return
		}
		if r := f.GetResponse(); r != nil {
			c.mu.Lock()
			ch := c.pending[r.GetId()]
			delete(c.pending, r.GetId())
			c.mu.Unlock()
			if ch != nil {
				ch <- r
				continue
			}
		}
		c.frames <- f
	}
}

// Do sends f (with its id as set) and waits for its response.
func (c *Client) Do(ctx context.Context, f *mpimv1.ClientFrame) (*mpimv1.Response, error) {
	ch := make(chan *mpimv1.Response, 1)
	c.mu.Lock()
	c.pending[f.GetId()] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, f.GetId())
		c.mu.Unlock()
	}()
	if err := c.Send(ctx, f); err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		return r, nil
	case <-c.done:
		return nil, fmt.Errorf("gatewaytest: connection ended: %w", c.err)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Call sends a request (a *mpimv1.ClientFrame_X oneof wrapper, such as
// &mpimv1.ClientFrame_Ping{Ping: &mpimv1.PingRequest{}}) with a fresh id and
// waits for its response.
func (c *Client) Call(ctx context.Context, request any) (*mpimv1.Response, error) {
	f := &mpimv1.ClientFrame{Id: c.nextID.Add(1)}
	field := reflect.ValueOf(f).Elem().FieldByName("Request")
	v := reflect.ValueOf(request)
	if !v.IsValid() || !v.Type().AssignableTo(field.Type()) {
		return nil, fmt.Errorf("gatewaytest: %T is not a ClientFrame request", request)
	}
	field.Set(v)
	return c.Do(ctx, f)
}

// Send sends a frame without waiting for anything.
func (c *Client) Send(ctx context.Context, f *mpimv1.ClientFrame) error {
	data, err := c.enc.EncodeClient(f)
	if err != nil {
		return err
	}
	return c.SendRaw(ctx, c.enc.Binary(), data)
}

// SendRaw sends one message as is, binary or text.
func (c *Client) SendRaw(ctx context.Context, binary bool, data []byte) error {
	typ := websocket.MessageText
	if binary {
		typ = websocket.MessageBinary
	}
	return c.conn.Write(ctx, typ, data)
}

// Next returns the next frame that is not the response to a pending
// request: a push, signal, sync request, goaway, or a response nobody waits
// for (such as the answer to an undecodable frame).
func (c *Client) Next(ctx context.Context) (*mpimv1.ServerFrame, error) {
	select {
	case f := <-c.frames:
		return f, nil
	default:
	}
	select {
	case f := <-c.frames:
		return f, nil
	case <-c.done:
		select {
		case f := <-c.frames:
			return f, nil
		default:
		}
		return nil, fmt.Errorf("gatewaytest: connection ended: %w", c.err)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Done is closed when the connection has ended; Err then says why.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended (a websocket.CloseError when the
// server closed it with a status), or nil while it is open.
func (c *Client) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// CloseStatus returns the close status the connection ended with, or -1.
func (c *Client) CloseStatus() (websocket.StatusCode, string) {
	var ce websocket.CloseError
	if errors.As(c.Err(), &ce) {
		return ce.Code, ce.Reason
	}
	return -1, ""
}

// Close closes the connection normally (1000).
func (c *Client) Close() error {
	err := c.conn.Close(websocket.StatusNormalClosure, "bye")
	<-c.done
	return err
}
