package config_test

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/internal/config"
)

type settings struct {
	addr    string
	n       int
	wait    time.Duration
	list    config.List
	cfgPath string
}

func flags() (*flag.FlagSet, *settings) {
	s := &settings{}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&s.addr, "redis-addr", "127.0.0.1:6379", "")
	fs.IntVar(&s.n, "partitions", 16, "")
	fs.DurationVar(&s.wait, "wait", time.Second, "")
	fs.Var(&s.list, "projectors", "")
	fs.StringVar(&s.cfgPath, "config", "", "")
	return fs, s
}

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// writeFile writes a configuration file for a test.
func writeFile(tb testing.TB, path, data string) {
	tb.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		tb.Fatal(err)
	}
}

func TestLayersOverrideInOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.json")
	writeFile(t, path, `{"redis-addr": "file:1", "partitions": 8, "wait": "3s", "projectors": ["a", "b"]}`)
	fs, s := flags()
	err := config.Load(fs, []string{"--config", path, "--wait", "5s"}, "MPIM", "config",
		env(map[string]string{"MPIM_PARTITIONS": "4", "MPIM_WAIT": "9s"}))
	if err != nil {
		t.Fatal(err)
	}
	if s.addr != "file:1" || s.n != 4 || s.wait != 5*time.Second || s.list.String() != "a,b" {
		t.Fatalf("got %+v", s)
	}
}

func TestConfigPathFromEnvironment(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.json")
	writeFile(t, path, `{"partitions": 2}`)
	fs, s := flags()
	if err := config.Load(fs, nil, "MPIM", "config", env(map[string]string{"MPIM_CONFIG": path})); err != nil || s.n != 2 {
		t.Fatalf("n=%d err=%v", s.n, err)
	}
}

func TestBadValuesAreAllReported(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.json")
	writeFile(t, path, `{"nope": 1, "wait": "soon"}`)
	fs, _ := flags()
	err := config.Load(fs, []string{"--config", path}, "MPIM", "config", env(map[string]string{"MPIM_PARTITIONS": "many"}))
	if err == nil {
		t.Fatal("bad values accepted")
	}
	for _, want := range []string{`unknown setting "nope"`, "wait", "MPIM_PARTITIONS"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	fs, _ = flags()
	if err := config.Load(fs, []string{"--config", filepath.Join(t.TempDir(), "missing.json")}, "MPIM", "config", env(nil)); err == nil {
		t.Fatal("missing file accepted")
	}
	fs, _ = flags()
	writeFile(t, path, `not json`)
	if err := config.Load(fs, []string{"--config", path}, "MPIM", "config", env(nil)); err == nil {
		t.Fatal("malformed file accepted")
	}
	fs, _ = flags()
	if err := config.Load(fs, []string{"--no-such-flag"}, "MPIM", "config", env(nil)); err == nil {
		t.Fatal("unknown flag accepted")
	}
}

// refusing is a flag value that refuses every value with errRefused.
type refusing struct{}

var errRefused = errors.New("refused")

func (refusing) String() string     { return "" }
func (refusing) Set(s string) error { return fmt.Errorf("value %q: %w", s, errRefused) }

func TestBadValueErrorsKeepTheirCause(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.json")
	writeFile(t, path, `{"from-file": "x"}`)
	for _, name := range []string{"from-file", "from-env"} {
		t.Run(name, func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			fs.String("config", "", "")
			fs.Var(refusing{}, name, "")
			err := config.Load(fs, []string{"--config", path}, "MPIM", "config", env(map[string]string{"MPIM_FROM_ENV": "y"}))
			if !errors.Is(err, errRefused) {
				t.Errorf("error %v does not wrap the value's error", err)
			}
		})
	}
}
