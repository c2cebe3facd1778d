package main

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// serveLimited serves a 200 "ok" handler with the HTTP limits of the
// default configuration, tweaked, and returns its address.
func serveLimited(t *testing.T, tweak func(*httpLimits)) string {
	t.Helper()
	m := &Main{Stdout: io.Discard, Stderr: io.Discard}
	if err := m.ParseFlags("gateway", nil); err != nil {
		t.Fatal(err)
	}
	lim := m.Config.httpLimits()
	tweak(&lim)
	ln, err := listen("127.0.0.1:0", "gateway", lim, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	srv := newHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }),
		lim, slog.New(slog.DiscardHandler))
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// A request with 200 KiB of headers is answered 431; one with a few KiB is
// served.
func TestHTTPLargeHeadersAreRefused(t *testing.T) {
	addr := serveLimited(t, func(*httpLimits) {})
	for _, tc := range []struct {
		size int
		want int
	}{{4 << 10, http.StatusOK}, {200 << 10, http.StatusRequestHeaderFieldsTooLarge}} {
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		req.Header.Set("X-Big", strings.Repeat("x", tc.size))
		resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Fatalf("%d bytes of headers: status %d, want %d", tc.size, resp.StatusCode, tc.want)
		}
	}
}

// An idle keep-alive connection is closed by the server after the idle
// timeout.
func TestHTTPIdleKeepAliveIsClosed(t *testing.T) {
	addr := serveLimited(t, func(l *httpLimits) { l.idleTimeout = 200 * time.Millisecond })
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c.SetReadDeadline(time.Now().Add(time.Minute))
	if _, err := r.ReadByte(); !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("the idle keep-alive connection is still open")
		}
		t.Fatalf("read after idling: %v", err)
	}
}
