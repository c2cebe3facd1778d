package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"sync"
	"sync/atomic"

	"github.com/coder/websocket"
	"github.com/mpim/mpim/internal/corknet"
	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"google.golang.org/protobuf/proto"
)

// Options configure Dial. The zero value dials in protobuf with the
// defaults below.
type Options struct {
	// Encoding is the protocol encoding (default frame.Proto).
	Encoding frame.Encoding
	// Header is sent with the WebSocket handshake.
	Header http.Header
	// Subprotocols overrides the offered subprotocols (default: the
	// encoding's; an empty non-nil slice offers none).
	Subprotocols []string
	// Buffer is how many frames that are not awaited responses are queued
	// for Next before the reader stops reading (default 4096). Unused with
	// OnFrame.
	Buffer int
	// ReadLimit bounds one server message in bytes (default 64 MiB).
	ReadLimit int64
	// OnFrame, when set, receives every frame that is not an awaited
	// response, on the reader goroutine and in arrival order, instead of
	// Next. It must not block for long: the connection is not read
	// meanwhile. It may send (Go, Send) but must not wait for a response.
	OnFrame func(*mpimv1.ServerFrame)
}

// Conn is one connection to a gateway. It is safe for concurrent use.
type Conn struct {
	ws      *websocket.Conn
	enc     frame.Encoding
	nextID  atomic.Uint64
	onFrame func(*mpimv1.ServerFrame)
	frames  chan *mpimv1.ServerFrame // nil with onFrame

	done chan struct{}
	err  error // why the connection ended; set before done is closed

	mu      sync.Mutex // guards pending
	pending map[uint64]func(*mpimv1.Response)

	wq   writeQueue    // see writer.go
	cork *corknet.Conn // the socket, when the handshake dialed it (nil otherwise)
}

// Dial connects to a gateway's WebSocket URL (ws://host:port/ws) and starts
// reading. The context bounds the handshake only.
func Dial(ctx context.Context, url string, opts *Options) (*Conn, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Encoding == 0 {
		o.Encoding = frame.Proto
	}
	if o.Buffer <= 0 {
		o.Buffer = 4096
	}
	if o.ReadLimit <= 0 {
		o.ReadLimit = 64 << 20
	}
	protos := o.Subprotocols
	if protos == nil {
		protos = []string{o.Encoding.String()}
	}
	var cork *corknet.Conn
	hc, err := corkingClient(func(cc *corknet.Conn) { cork = cc })
	if err != nil {
		return nil, err
	}
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: protos, HTTPHeader: o.Header, HTTPClient: hc}) //nolint:bodyclose // the library closes the handshake's response body
	hc.CloseIdleConnections()
	if err != nil {
		return nil, fmt.Errorf("client: dial %s: %w", url, err)
	}
	ws.SetReadLimit(o.ReadLimit)
	c := &Conn{ws: ws, enc: o.Encoding, onFrame: o.OnFrame, done: make(chan struct{}),
		pending: make(map[uint64]func(*mpimv1.Response)), cork: cork}
	if c.onFrame == nil {
		c.frames = make(chan *mpimv1.ServerFrame, o.Buffer)
	}
	go c.read()
	return c, nil
}

// WebSocket returns the underlying connection, to send raw messages or to
// close it with a status of one's choice.
func (c *Conn) WebSocket() *websocket.Conn { return c.ws }

// Encoding returns the connection's encoding.
func (c *Conn) Encoding() frame.Encoding { return c.enc }

func (c *Conn) read() {
	defer close(c.done)
	for {
		typ, data, err := c.ws.Read(context.Background())
		if err != nil {
			c.err = closeError(err)
			return
		}
		f := &mpimv1.ServerFrame{}
		if err := c.enc.DecodeServer(typ == websocket.MessageBinary, data, f); err != nil {
			c.err = fmt.Errorf("client: undecodable server frame: %w", err)
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
			continue
		}
		c.frames <- f
	}
}

// Go sends f with a fresh request id (set in f) and returns once it is
// written; cb, if not nil, receives the response on the reader goroutine
// and must not block. A response that never comes (the connection ended)
// never reaches cb: watch Done.
func (c *Conn) Go(ctx context.Context, f *mpimv1.ClientFrame, cb func(*mpimv1.Response)) error {
	f.Id = c.nextID.Add(1)
	if cb == nil {
		cb = ignore
	}
	c.mu.Lock()
	c.pending[f.Id] = cb
	c.mu.Unlock()
	err := c.Send(ctx, f)
	if err != nil {
		c.forget(f.Id)
	}
	return err
}

func ignore(*mpimv1.Response) {}

func (c *Conn) forget(id uint64) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// Do sends f with the id it has and waits for the response with that id.
// An error response is a response, not an error: see Request.
func (c *Conn) Do(ctx context.Context, f *mpimv1.ClientFrame) (*mpimv1.Response, error) {
	ch := make(chan *mpimv1.Response, 1)
	c.mu.Lock()
	c.pending[f.GetId()] = func(r *mpimv1.Response) { ch <- r }
	c.mu.Unlock()
	defer c.forget(f.GetId())
	if err := c.Send(ctx, f); err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		return r, nil
	case <-c.done:
		return nil, fmt.Errorf("client: connection ended: %w", c.err)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Call sends a request with a fresh id and waits for its response. The
// request is a ClientFrame oneof wrapper, such as
// &mpimv1.ClientFrame_Ping{Ping: &mpimv1.PingRequest{}}. An error response
// is a response, not an error: see Request.
func (c *Conn) Call(ctx context.Context, request any) (*mpimv1.Response, error) {
	f, err := newFrame(request)
	if err != nil {
		return nil, err
	}
	f.Id = c.nextID.Add(1)
	return c.Do(ctx, f)
}

// Request is Call that also returns an error response as a
// *ResponseError (with the response).
func (c *Conn) Request(ctx context.Context, request any) (*mpimv1.Response, error) {
	r, err := c.Call(ctx, request)
	if err != nil {
		return nil, err
	}
	return r, ResponseErr(r)
}

// newFrame wraps a request in a ClientFrame.
func newFrame(request any) (*mpimv1.ClientFrame, error) {
	f := &mpimv1.ClientFrame{}
	field := reflect.ValueOf(f).Elem().FieldByName("Request")
	v := reflect.ValueOf(request)
	if !v.IsValid() || !v.Type().AssignableTo(field.Type()) {
		return nil, fmt.Errorf("client: %T is not a ClientFrame request", request)
	}
	field.Set(v)
	return f, nil
}

// Send sends a frame as it is, without waiting for anything. It returns
// once the frame is written, or queued behind a write in progress that
// writes it before it returns (see SendRaw).
func (c *Conn) Send(ctx context.Context, f *mpimv1.ClientFrame) error {
	data, err := c.enc.EncodeClient(f)
	if err != nil {
		return err
	}
	return c.send(ctx, messageType(c.enc.Binary()), data, true)
}

// SendRaw sends one message as it is, binary or text. Messages sent while
// another is being written are queued, in order, and leave with it, in
// one write system call where possible: SendRaw then returns before its
// message is written, and a failure to write it ends the connection
// (Done). The queue is bounded (256 messages, 1 MiB): beyond it, SendRaw
// waits for room until ctx ends. data may be reused once SendRaw returns.
func (c *Conn) SendRaw(ctx context.Context, binary bool, data []byte) error {
	return c.send(ctx, messageType(binary), data, false)
}

func messageType(binary bool) websocket.MessageType {
	if binary {
		return websocket.MessageBinary
	}
	return websocket.MessageText
}

// Next returns the next frame that is not an awaited response: a push,
// signal, sync request, goaway, or a response nobody waits for (such as the
// answer to an undecodable frame). Frames queued before the connection
// ended are returned before the error. With Options.OnFrame set, Next only
// waits for the end.
func (c *Conn) Next(ctx context.Context) (*mpimv1.ServerFrame, error) {
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
		return nil, fmt.Errorf("client: connection ended: %w", c.err)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Done is closed when the connection has ended; Err then says why.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended (a *CloseError when the server
// closed it with a status), or nil while it is open.
func (c *Conn) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// CloseStatus returns the close status the connection ended with, or -1.
func (c *Conn) CloseStatus() (websocket.StatusCode, string) {
	var ce *CloseError
	if errors.As(c.Err(), &ce) {
		return ce.Code, ce.Reason
	}
	return -1, ""
}

// Close closes the connection normally (1000) and waits for the reader.
func (c *Conn) Close() error {
	err := c.ws.Close(websocket.StatusNormalClosure, "bye")
	<-c.done
	return err
}

// CloseNow closes the connection without a close handshake.
func (c *Conn) CloseNow() error { return c.ws.CloseNow() }

// Register registers a user; it needs no login.
func (c *Conn) Register(ctx context.Context, req *mpimv1.RegisterRequest) (*mpimv1.RegisterResult, error) {
	r, err := c.Request(ctx, &mpimv1.ClientFrame_Register{Register: req})
	return r.GetRegister(), err
}

// Login authenticates the connection as a device of a user.
func (c *Conn) Login(ctx context.Context, req *mpimv1.LoginRequest) (*mpimv1.SessionResult, error) {
	r, err := c.Request(ctx, &mpimv1.ClientFrame_Login{Login: req})
	return r.GetLogin(), err
}

// Resume authenticates the connection with a token from an earlier login;
// the server then delivers from the device's last acknowledged push.
func (c *Conn) Resume(ctx context.Context, token string) (*mpimv1.SessionResult, error) {
	r, err := c.Request(ctx, &mpimv1.ClientFrame_Resume{Resume: &mpimv1.ResumeRequest{Token: token}})
	return r.GetResume(), err
}

// Ack acknowledges the push with inboxID, and every push before it, and
// waits for the answer.
func (c *Conn) Ack(ctx context.Context, inboxID string) error {
	_, err := c.Request(ctx, ackRequest(inboxID))
	return err
}

func ackRequest(inboxID string) *mpimv1.ClientFrame_Ack {
	return &mpimv1.ClientFrame_Ack{Ack: &mpimv1.AckRequest{InboxId: inboxID}}
}

// PushEvent returns the event of a push: decoded by the server in JSON, or
// decoded here from the envelope in protobuf.
func PushEvent(p *mpimv1.Push) (*mpimv1.Event, error) {
	if ev := p.GetEvent(); ev != nil {
		return ev, nil
	}
	ev := &mpimv1.Event{}
	if err := proto.Unmarshal(p.GetEnvelope(), ev); err != nil {
		return nil, fmt.Errorf("client: undecodable push %s: %w", p.GetInboxId(), err)
	}
	return ev, nil
}
