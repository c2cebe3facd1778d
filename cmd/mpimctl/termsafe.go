package main

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// termSafe returns s with every character that a terminal would act on
// instead of print written visibly as a Go escape: C0 controls except
// newline and tab ("\x1b" for ESC, so a message cannot move the cursor,
// clear the screen, set the window title or hide text), DEL ("\x7f"), C1
// controls ("\u009b", CSI on some terminals), bidi embeddings, overrides,
// isolates and marks ("\u202e": they reorder the rest of the line), and bytes
// that are not UTF-8 ("\x9b"). Everything else, other scripts and emoji
// included, is kept.
func termSafe(s string) string {
	if !strings.ContainsFunc(s, needsEscape) && utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r < 0x80 && needsEscape(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case needsEscape(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// needsEscape reports whether termSafe writes r as an escape.
func needsEscape(r rune) bool {
	switch {
	case r == '\n' || r == '\t':
		return false
	case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f):
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f, r == 0x061c:
		return true
	}
	return false
}
