// Package corknet holds back a connection's writes and sends them together:
// between Cork and Uncork, writes are gathered (up to a bound, beyond which
// what was gathered and the write go out at once, in order) and Uncork sends
// them in one write. A WebSocket library writes each frame as it flushes it;
// corked around a batch of frames, a burst costs one system call instead of
// one per frame. The gateway corks under its sessions, the client under its
// connection.
//
// Every write holds the Conn's lock, so a frame written from another
// goroutine (a pong, a close) while the writer uncorks is neither
// interleaved with the gathered bytes nor sent before them. Close does not
// take it: closing the connection ends a write stuck on a peer that does not
// read.
package corknet

import (
	"net"
	"sync"
	"sync/atomic"
)

// DefaultMaxGathered is the bound on gathered bytes when New is given none.
const DefaultMaxGathered = 1 << 20

// keepBuffer is the largest gathering buffer kept between bursts.
const keepBuffer = 64 << 10

// Conn is a net.Conn whose writes can be corked.
type Conn struct {
	net.Conn
	max    int
	mu     sync.Mutex
	corked bool
	buf    []byte
	writes atomic.Int64 // write calls on the underlying connection
}

// New wraps nc; maxGathered bounds the bytes gathered while corked (0 or
// less: DefaultMaxGathered).
func New(nc net.Conn, maxGathered int) *Conn {
	if maxGathered <= 0 {
		maxGathered = DefaultMaxGathered
	}
	return &Conn{Conn: nc, max: maxGathered}
}

// Write gathers p while corked (within the bound), else sends what was
// gathered and then p.
func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.corked && len(c.buf)+len(p) <= c.max {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	if err := c.flushLocked(); err != nil {
		return 0, err
	}
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// Cork starts gathering writes.
func (c *Conn) Cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// Uncork sends what was gathered, in one write, and stops gathering.
func (c *Conn) Uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	return c.flushLocked()
}

// Writes is the number of write calls made on the underlying connection.
func (c *Conn) Writes() int64 { return c.writes.Load() }

// Gathered is the number of bytes gathered and not yet sent.
func (c *Conn) Gathered() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.buf)
}

func (c *Conn) flushLocked() error {
	if len(c.buf) == 0 {
		return nil
	}
	c.writes.Add(1)
	_, err := c.Conn.Write(c.buf)
	if cap(c.buf) > keepBuffer {
		c.buf = nil // do not keep a large burst's buffer
	} else {
		c.buf = c.buf[:0]
	}
	return err
}
