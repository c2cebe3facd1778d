package gateway

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"sync"
)

// corkConn is the connection under a WebSocket: while corked, what the
// WebSocket library writes (one write per frame, as it flushes every
// message) is gathered, and uncork sends it in one write. The session's
// writer corks around a batch of queued frames, so a burst of pushes to one
// client costs one system call instead of one per frame.
//
// Every write holds mu, so a frame the library writes from another
// goroutine (a pong, a close) while the writer uncorks is neither
// interleaved with the gathered bytes nor sent before them. Close does not
// take mu: closing the connection ends a write stuck on a client that does
// not read.
type corkConn struct {
	net.Conn
	mu     sync.Mutex
	corked bool
	buf    []byte
}

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.corked {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// cork starts gathering writes.
func (c *corkConn) cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// uncork sends what was gathered and stops gathering.
func (c *corkConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	if cap(c.buf) > 64<<10 {
		c.buf = nil // let a burst's buffer go
	} else {
		c.buf = c.buf[:0]
	}
	return err
}

// corkingWriter is the ResponseWriter handed to websocket.Accept: its
// Hijack wraps the connection in a corkConn, which it keeps.
type corkingWriter struct {
	http.ResponseWriter
	conn *corkConn
}

func (w *corkingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("gateway: the ResponseWriter cannot be hijacked")
	}
	nc, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.conn = &corkConn{Conn: nc}
	// The library writes through brw.Writer, which it points at the
	// returned connection; reads go on through brw.Reader.
	brw.Writer.Reset(w.conn)
	return w.conn, brw, nil
}

// Unwrap gives http.ResponseController the original writer.
func (w *corkingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
