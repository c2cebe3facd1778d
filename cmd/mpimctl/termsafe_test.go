package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestChatOutputEscapesControlCharacters checks that a line printed by the
// chat client shows C0 and C1 controls, DEL, bidi controls and stray bytes
// as visible escapes, and keeps newlines, tabs and other scripts.
func TestChatOutputEscapesControlCharacters(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain text, Zoë, 小明 👩‍💻", "plain text, Zoë, 小明 👩‍💻"},
		{"two\nlines\tand a tab", "two\nlines\tand a tab"},
		{"\x1b[2J\x1b]0;pwned\x07clear", `\x1b[2J\x1b]0;pwned\x07clear`},
		{"bell\a back\b cr\r nul\x00", `bell\x07 back\x08 cr\x0d nul\x00`},
		{"del\x7f", `del\x7f`},
		{"csi\u009b31m c1\u0085", `csi\u009b31m c1\u0085`},
		{"user\u202egnp.exe \u2066iso\u2069 \u202amark\u200f", `user\u202egnp.exe \u2066iso\u2069 \u202amark\u200f`},
		{"raw csi byte \x9b31m", `raw csi byte \x9b31m`},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		c := &chat{out: &out}
		c.printf("[%s] %s: %s", "12:00", "mallory", tt.in)
		want := "[12:00] mallory: " + tt.want + "\n"
		if out.String() != want {
			t.Errorf("printed %q\nwant    %q", out.String(), want)
		}
		if strings.ContainsAny(out.String(), "\x1b\x07\x7f\u009b\u202e") {
			t.Errorf("raw control character printed: %q", out.String())
		}
	}
}
