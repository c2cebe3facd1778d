package main

import (
	"strings"
	"testing"
)

// The test-only halt switch refuses what it cannot honour, and is off
// when unset.
func TestParseHalt(t *testing.T) {
	if h, err := parseHalt(""); h != nil || err != nil {
		t.Fatalf("parseHalt(\"\") = %v, %v; want off", h, err)
	}
	h, err := parseHalt("rename:0:/tmp/x")
	if err != nil || h.phase != "rename" || h.events != 0 || h.file != "/tmp/x" {
		t.Fatalf("parseHalt(rename:0:/tmp/x) = %+v, %v", h, err)
	}
	for spec, want := range map[string]string{
		"build":            "want PHASE:EVENTS:FILE",
		"build:10":         "want PHASE:EVENTS:FILE",
		":10:/tmp/x":       "want PHASE:EVENTS:FILE",
		"build:10:":        "want PHASE:EVENTS:FILE",
		"bulid:10:/tmp/x":  "unknown phase",
		"build:ten:/tmp/x": "EVENTS must be a count",
		"build:-1:/tmp/x":  "EVENTS must be a count",
	} {
		if _, err := parseHalt(spec); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseHalt(%q) = %v, want an error saying %q", spec, err, want)
		}
	}
}
