package domain

import (
	"fmt"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits that are part of the data model rather than of the policy.
const (
	maxURLBytes          = 2048
	maxDeviceBytes       = 64
	maxPlatformBytes     = 32
	maxPasswordHashBytes = 512
	maxClientMsgIDBytes  = 64
)

// checkUser returns an EInvalid error unless u is a well-formed user id.
func checkUser(field string, u UserID) error {
	if !u.Valid() {
		return Errorf(EInvalid, "domain: %s: invalid user id %q", field, u)
	}
	return nil
}

// cleanName trims s and checks that it is one line of valid UTF-8 without
// control characters or bidi embeddings, overrides and isolates (EInvalid), at
// most max bytes (ETooLarge), not made only of invisible characters (EInvalid)
// and, if required, not empty (EInvalid). An override would let a name
// display reversed text after it ("user\u202Egnp.exe"), and a name of
// zero-width characters looks empty or like another member.
func cleanName(field, s string, max int, required bool) (string, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "" && required:
		return "", Errorf(EInvalid, "domain: %s is empty", field)
	case len(s) > max:
		return "", Errorf(ETooLarge, "domain: %s is longer than %d bytes", field, max)
	case !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl):
		return "", Errorf(EInvalid, "domain: %s has invalid characters", field)
	case strings.ContainsFunc(s, bidiControl):
		return "", Errorf(EInvalid, "domain: %s has a bidi embedding, override or isolate character", field)
	case s != "" && !strings.ContainsFunc(s, func(r rune) bool { return !invisible(r) }):
		return "", Errorf(EInvalid, "domain: %s has only invisible characters", field)
	}
	return s, nil
}

// bidiControl reports whether r is a bidi embedding or override
// (U+202A..U+202E) or isolate (U+2066..U+2069), which reorder the text that
// follows them. The marks (U+200E, U+200F, U+061C) only affect neighbours and
// are allowed.
func bidiControl(r rune) bool {
	return (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069)
}

// invisible reports whether r draws nothing: white space, format characters
// (zero-width space, joiners, word joiner, byte order mark, soft hyphen, bidi
// marks), variation selectors and the blank fillers (Hangul fillers, the
// blank Braille pattern).
func invisible(r rune) bool {
	switch r {
	case 0x115F, 0x1160, 0x3164, 0xFFA0, 0x2800:
		return true
	}
	return unicode.IsSpace(r) || unicode.Is(unicode.Cf, r) || unicode.Is(unicode.Variation_Selector, r)
}

// checkText checks free text: valid UTF-8 (EInvalid), at most max bytes
// (ETooLarge).
func checkText(field, s string, max int) error {
	if len(s) > max {
		return Errorf(ETooLarge, "domain: %s is longer than %d bytes", field, max)
	}
	if !utf8.ValidString(s) {
		return Errorf(EInvalid, "domain: %s is not valid UTF-8", field)
	}
	return nil
}

// printable reports whether s is 1..max bytes of printable ASCII without
// spaces.
func printable(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// checkURL returns an EInvalid error unless s is an absolute http or https URL
// with a host and no credentials, or empty and not required; ETooLarge if it is
// longer than maxURLBytes.
func checkURL(field, s string, required bool) error {
	if s == "" {
		if required {
			return Errorf(EInvalid, "domain: %s is missing", field)
		}
		return nil
	}
	if len(s) > maxURLBytes {
		return Errorf(ETooLarge, "domain: %s is longer than %d bytes", field, maxURLBytes)
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		strings.ContainsFunc(s, unicode.IsSpace) {
		return Errorf(EInvalid, "domain: %s %q is not an http(s) URL", field, s)
	}
	return nil
}

// checkDevice returns an EInvalid error unless d is 1..64 bytes of printable
// ASCII without spaces.
func checkDevice(d DeviceID) error {
	if !printable(string(d), maxDeviceBytes) {
		return Errorf(EInvalid, "domain: invalid device id %q", d)
	}
	return nil
}

// sealedPrefix starts a password hash sealed with the deployment key
// ("sealed:v1:<key id>:<base64url>"; the gateway seals and opens it).
const sealedPrefix = "sealed:v1:"

// checkPasswordHash returns an EInvalid error unless h looks like a sealed
// password hash ("sealed:v1:<key id>:<base64url>") or, as in logs written
// before hashes were sealed, the PHC or modular-crypt string of a KDF
// ("$argon2id$...", "$2b$..."); ETooLarge over maxPasswordHashBytes. Domain
// never sees a password, only its (sealed) hash.
func checkPasswordHash(h string) error {
	if len(h) > maxPasswordHashBytes {
		return Errorf(ETooLarge, "domain: password hash is longer than %d bytes", maxPasswordHashBytes)
	}
	if rest, ok := strings.CutPrefix(h, sealedPrefix); ok {
		id, body, ok := strings.Cut(rest, ":")
		if !ok || id == "" || body == "" || strings.ContainsFunc(body, notBase64URL) || strings.ContainsFunc(id, notBase64URL) {
			return Errorf(EInvalid, "domain: sealed password hash is not %s<key id>:<base64url>", sealedPrefix)
		}
		return nil
	}
	if !strings.HasPrefix(h, "$") || !printable(h, maxPasswordHashBytes) {
		return Errorf(EInvalid, "domain: password hash is neither sealed nor a PHC string")
	}
	return nil
}

// notBase64URL reports whether r is outside the unpadded base64url alphabet.
func notBase64URL(r rune) bool {
	return !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_')
}

// applyAll applies events in order, stopping at the first error, which it
// returns with the event's position.
func applyAll(a interface{ Apply(Event) error }, events []Event) error {
	for i, e := range events {
		if err := a.Apply(e); err != nil {
			return fmt.Errorf("%w (event %d of %d)", err, i+1, len(events))
		}
	}
	return nil
}

// foreign is the error Apply returns for an event that does not belong to the
// aggregate.
func foreign(aggregate string, e Event) error {
	if e == nil {
		return Errorf(EInvalid, "domain: %s: nil event", aggregate)
	}
	return Errorf(EInvalid, "domain: %s: %s does not belong here", aggregate, e.EventType())
}

// unknownCommand is the error Decide returns for a nil command or a command
// passed by pointer.
func unknownCommand(aggregate string, cmd any) error {
	return Errorf(EInvalid, "domain: %s: unknown command %T", aggregate, cmd)
}
