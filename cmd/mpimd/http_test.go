package main

import (
	"io"
	"log/slog"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

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
		o, err := newOpsServer("127.0.0.1:0", prometheus.NewRegistry(), nil, on, lg)
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
