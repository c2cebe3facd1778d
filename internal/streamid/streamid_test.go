package streamid_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/mpim/mpim/internal/streamid"
)

func TestParse(t *testing.T) {
	const max = "18446744073709551615"
	valid := map[string]streamid.ID{
		"0-0":             {},
		"0-1":             {Seq: 1},
		"1700000000000-3": {Ms: 1700000000000, Seq: 3},
		max + "-" + max:   {Ms: 1<<64 - 1, Seq: 1<<64 - 1},
		"007-01":          {Ms: 7, Seq: 1}, // leading zeros are decimal still
	}
	for s, want := range valid {
		t.Run("accepts "+s, func(t *testing.T) {
			got, err := streamid.Parse(s)
			if err != nil || got != want {
				t.Fatalf("Parse(%q) = %v, %v; want %v", s, got, err, want)
			}
		})
	}
	invalid := map[string]string{
		"":                       "want",
		"0":                      "want",
		"-":                      "ms part",
		"1-":                     "seq part",
		"-1":                     "ms part",
		"-1-2":                   "ms part",
		"1--2":                   "seq part",
		"1-2-3":                  "seq part",
		"12":                     "want",
		"abc":                    "want",
		"a-1":                    "ms part",
		"1-b":                    "seq part",
		"+1-2":                   "ms part",
		"1-+2":                   "seq part",
		" 1-2":                   "ms part",
		"1-2 ":                   "seq part",
		"1 -2":                   "ms part",
		"1_0-2":                  "ms part",
		"0x1-2":                  "ms part",
		"18446744073709551616-0": "out of range",
		"0-" + max + "0":         "out of range",
	}
	for s, reason := range invalid {
		t.Run("rejects "+strconv.Quote(s), func(t *testing.T) {
			got, err := streamid.Parse(s)
			if err == nil {
				t.Fatalf("Parse(%q) = %v, nil; want an error", s, got)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "streamid: invalid stream entry id "+strconv.Quote(s)) || !strings.Contains(msg, reason) {
				t.Errorf("Parse(%q) error %q; want it to quote the id and say %q", s, msg, reason)
			}
			if got != (streamid.ID{}) {
				t.Errorf("Parse(%q) = %v with its error; want the zero ID", s, got)
			}
		})
	}
}

func TestStringRoundTrips(t *testing.T) {
	for _, id := range []streamid.ID{{}, {Seq: 1}, {Ms: 1700000000000, Seq: 3}, {Ms: 1<<64 - 1, Seq: 1<<64 - 1}} {
		s := id.String()
		if got, err := streamid.Parse(s); err != nil || got != id {
			t.Errorf("Parse(%v.String() = %q) = %v, %v", id, s, got, err)
		}
		if b := id.AppendTo([]byte("x")); string(b) != "x"+s {
			t.Errorf("AppendTo = %q; want %q", b, "x"+s)
		}
	}
	if s := (streamid.ID{}).String(); s != "0-0" {
		t.Errorf("zero ID is %q; want 0-0", s)
	}
}

func TestOrder(t *testing.T) {
	ordered := []streamid.ID{{}, {Seq: 1}, {Seq: 2}, {Ms: 1}, {Ms: 1, Seq: 1<<64 - 1}, {Ms: 2}, {Ms: 1<<64 - 1, Seq: 1<<64 - 1}}
	for i, a := range ordered {
		for j, b := range ordered {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := a.Compare(b); got != want {
				t.Errorf("%v.Compare(%v) = %d; want %d", a, b, got, want)
			}
			if got := a.After(b); got != (want > 0) {
				t.Errorf("%v.After(%v) = %v", a, b, got)
			}
		}
		if a.IsZero() != (i == 0) {
			t.Errorf("%v.IsZero() = %v", a, a.IsZero())
		}
	}
}

func TestAllocations(t *testing.T) {
	s := "1700000000000-3"
	id := streamid.ID{Ms: 1700000000000, Seq: 3}
	if n := testing.AllocsPerRun(100, func() { _, _ = streamid.Parse(s) }); n != 0 {
		t.Errorf("Parse allocates %v times; want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = id.String() }); n > 1 {
		t.Errorf("String allocates %v times; want at most 1", n)
	}
	buf := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() { _ = id.AppendTo(buf[:0]) }); n != 0 {
		t.Errorf("AppendTo allocates %v times; want 0", n)
	}
}
