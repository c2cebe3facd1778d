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

// TestPprofIsOffUnlessAskedFor checks that /debug/pprof/ answers 404 by
// default and only --pprof serves it; the command line, which may hold a
// secret, is never served.
func TestPprofIsOffUnlessAskedFor(t *testing.T) {
	get := func(t *testing.T, o *opsServer, path string) int {
		t.Helper()
		resp, err := http.Get("http://" + o.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	lg := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, on := range []bool{false, true} {
		o, err := newOpsServer("127.0.0.1:0", testHTTPLimits(t), prometheus.NewRegistry(), nil, on, lg)
		if err != nil {
			t.Fatal(err)
		}
		want := http.StatusNotFound
		if on {
			want = http.StatusOK
		}
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/heap", "/debug/pprof/symbol"} {
			if got := get(t, o, path); got != want {
				t.Errorf("pprof %v: GET %s = %d, want %d", on, path, got, want)
			}
		}
		if got := get(t, o, "/debug/pprof/cmdline"); got != http.StatusNotFound {
			t.Errorf("pprof %v: GET /debug/pprof/cmdline = %d, want 404", on, got)
		}
		if got := get(t, o, "/healthz"); got != http.StatusOK {
			t.Errorf("pprof %v: GET /healthz = %d", on, got)
		}
		o.Close()
	}

	m := &Main{Stdout: io.Discard, Stderr: io.Discard}
	if err := m.ParseFlags("projector", nil); err != nil || m.Config.Pprof {
		t.Fatalf("default: pprof %v, %v", m.Config.Pprof, err)
	}
	t.Setenv("MPIM_PPROF", "true")
	m = &Main{Stdout: io.Discard, Stderr: io.Discard}
	if err := m.ParseFlags("projector", nil); err != nil || !m.Config.Pprof {
		t.Fatalf("MPIM_PPROF=true: pprof %v, %v", m.Config.Pprof, err)
	}
	t.Setenv("MPIM_PPROF", "maybe")
	m = &Main{Stdout: io.Discard, Stderr: io.Discard}
	if err := m.ParseFlags("projector", nil); err == nil {
		t.Fatal("MPIM_PPROF=maybe accepted")
	}
}

// testHTTPLimits are the HTTP limits of the default configuration.
func testHTTPLimits(t *testing.T) httpLimits {
	t.Helper()
	m := &Main{Stdout: io.Discard, Stderr: io.Discard}
	if err := m.ParseFlags("gateway", nil); err != nil {
		t.Fatal(err)
	}
	return m.Config.httpLimits()
}
