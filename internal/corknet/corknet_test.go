package corknet

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// reads sends each read of b (net.Pipe: each Write of the other end) on the
// channel it returns, closed when b fails.
func reads(b net.Conn) <-chan string {
	got := make(chan string, 8)
	go func() {
		buf := make([]byte, 64)
		for {
			n, err := b.Read(buf)
			if err != nil {
				close(got)
				return
			}
			got <- string(buf[:n])
		}
	}()
	return got
}

func TestCorkGathersWritesIntoOne(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := New(a, 0)
	got := reads(b)

	c.Cork()
	for _, s := range []string{"one,", "two,", "three"} {
		if n, err := c.Write([]byte(s)); err != nil || n != len(s) {
			t.Fatalf("corked write: %d, %v", n, err)
		}
	}
	// Nothing was sent while corked: net.Pipe's Write returns only once
	// the reader has read it all, so a corked write that went through
	// would be the first read below, not the three at once.
	if err := c.Uncork(); err != nil {
		t.Fatal(err)
	}
	// net.Pipe delivers each Write as it was written: one read, all three.
	if p := <-got; p != "one,two,three" {
		t.Fatalf("uncork sent %q, want the three writes at once", p)
	}
	// Uncorked, writes go straight through; uncorking again sends nothing.
	if _, err := c.Write([]byte("four")); err != nil {
		t.Fatal(err)
	}
	if p := <-got; p != "four" {
		t.Fatalf("uncorked write sent %q", p)
	}
	if err := c.Uncork(); err != nil {
		t.Fatal(err)
	}
}

func TestCorkedWriteFailsOnceClosed(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	w := &writeStarted{Conn: a, started: make(chan struct{}, 1)}
	c := New(w, 0)
	c.Cork()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	// Nobody reads b: the uncork blocks until Close ends it. Close comes
	// once the uncork's write to the connection has begun.
	done := make(chan error, 1)
	go func() { done <- c.Uncork() }()
	select {
	case <-w.started:
	case <-time.After(time.Minute): // a hang detector, not a bound on speed
		t.Fatal("the uncork did not write")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil || errors.Is(err, io.EOF) {
			t.Fatalf("uncork on a closed connection: %v, want an error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a blocked uncork")
	}
}

// writeStarted is a net.Conn that tells on started when a Write begins.
type writeStarted struct {
	net.Conn
	started chan struct{}
}

func (w *writeStarted) Write(p []byte) (int, error) {
	select {
	case w.started <- struct{}{}:
	default:
	}
	return w.Conn.Write(p)
}

// Beyond the bound, a corked write sends what was gathered and then itself,
// in order, and gathering goes on after.
func TestCorkedWritesBeyondTheBoundGoOutInOrder(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := New(a, 8)
	got := reads(b)
	c.Cork()
	for _, s := range []string{"abc", "defg", "hijkl", "m"} {
		if n, err := c.Write([]byte(s)); err != nil || n != len(s) {
			t.Fatalf("corked write: %d, %v", n, err)
		}
	}
	if g := c.Gathered(); g != 1 {
		t.Fatalf("%d bytes gathered, want 1 (m)", g)
	}
	if err := c.Uncork(); err != nil {
		t.Fatal(err)
	}
	var sent []string
	for range 3 {
		sent = append(sent, <-got)
	}
	if s := strings.Join(sent, "|"); s != "abcdefg|hijkl|m" {
		t.Fatalf("sent %s, want abcdefg|hijkl|m (the 7 gathered, the write over the bound, then the rest)", s)
	}
	if w := c.Writes(); w != 3 {
		t.Fatalf("%d writes on the connection, want 3", w)
	}
}
