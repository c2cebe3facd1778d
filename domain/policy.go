package domain

import (
	"errors"
	"strings"
	"time"
)

// Policy holds the windows and limits the deciders enforce. Deciders assume
// the policy passed Validate; start from DefaultPolicy and change what differs.
type Policy struct {
	RecallWindow     time.Duration // how long after sending the sender may recall a message
	EditWindow       time.Duration // how long after sending the sender may edit a message
	MaxGroupMembers  int           // members of one group, owner included
	MaxTextBytes     int           // a message's text plus its attachment's strings; a friend request's message
	MaxNameBytes     int           // a display name or a group name
	MaxUsernameBytes int           // a username (see NormalizeUsername)
	MaxMute          time.Duration // how far ahead of now a timed mute may end
}

// minUsernameBytes is the shortest username.
const minUsernameBytes = 3

// maxMute bounds Policy.MaxMute: a mute's end must stay far inside the range
// of times (bounds.go) whatever the clock says.
const maxMute = 100 * 365 * 24 * time.Hour

// DefaultPolicy returns the policy mpim runs with unless configured otherwise:
// recall within 2 minutes, edit within 24 hours, 500 members a group, 16 KiB of
// text, 64-byte names, 32-byte usernames and timed mutes of up to a year
// (365 days).
func DefaultPolicy() Policy {
	return Policy{
		RecallWindow:     2 * time.Minute,
		EditWindow:       24 * time.Hour,
		MaxGroupMembers:  500,
		MaxTextBytes:     16 << 10,
		MaxNameBytes:     64,
		MaxUsernameBytes: 32,
		MaxMute:          365 * 24 * time.Hour,
	}
}

// Validate returns nil if the policy is usable, or every problem at once
// joined with errors.Join, each an EInvalid *Error.
func (p Policy) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, Errorf(EInvalid, "domain: policy: "+format, args...))
		}
	}
	check(p.RecallWindow > 0, "RecallWindow %v is not positive", p.RecallWindow)
	check(p.EditWindow > 0, "EditWindow %v is not positive", p.EditWindow)
	check(p.MaxGroupMembers >= 2, "MaxGroupMembers %d is below 2", p.MaxGroupMembers)
	check(p.MaxTextBytes > 0, "MaxTextBytes %d is not positive", p.MaxTextBytes)
	check(p.MaxNameBytes > 0, "MaxNameBytes %d is not positive", p.MaxNameBytes)
	check(p.MaxMute > 0 && p.MaxMute <= maxMute, "MaxMute %v is not in (0, %v]", p.MaxMute, maxMute)
	check(p.MaxUsernameBytes >= minUsernameBytes, "MaxUsernameBytes %d is below %d", p.MaxUsernameBytes, minUsernameBytes)
	return errors.Join(errs...)
}

// NormalizeUsername returns the canonical form of a username under
// DefaultPolicy: see Policy.NormalizeUsername.
func NormalizeUsername(s string) (string, error) {
	return DefaultPolicy().NormalizeUsername(s)
}

// NormalizeUsername returns the canonical form of a username: s without
// surrounding spaces, with ASCII letters lower-cased. The result has
// 3..MaxUsernameBytes bytes of [a-z0-9_.-] and starts with a letter or digit;
// otherwise NormalizeUsername returns an EInvalid error. Only ASCII is
// accepted, so no two spellings that look alike normalise differently or
// collide through Unicode case folding (the Kelvin sign is not a "k").
func (p Policy) NormalizeUsername(s string) (string, error) {
	return normalizeUsername(s, p.MaxUsernameBytes)
}

func normalizeUsername(s string, max int) (string, error) {
	s = strings.TrimSpace(s)
	if len(s) < minUsernameBytes || len(s) > max {
		return "", Errorf(EInvalid, "domain: username %q is not %d to %d bytes long", s, minUsernameBytes, max)
	}
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
			b[i] = c
		}
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case i > 0 && (c == '_' || c == '.' || c == '-'):
		default:
			return "", Errorf(EInvalid, "domain: username %q may hold only a-z, 0-9, '_', '.' and '-', and must start with a letter or digit", s)
		}
	}
	return string(b), nil
}
