package domain

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestPolicyValidate(t *testing.T) {
	t.Run("default policy is valid", func(t *testing.T) {
		if err := DefaultPolicy().Validate(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("zero policy reports every problem", func(t *testing.T) {
		err := Policy{}.Validate()
		wantCode(t, err, EInvalid)
		var joined interface{ Unwrap() []error }
		if !errors.As(err, &joined) || len(joined.Unwrap()) != 7 {
			t.Fatalf("want 7 joined errors, got %v", err)
		}
		for _, field := range []string{"RecallWindow", "EditWindow", "MaxGroupMembers", "MaxTextBytes", "MaxNameBytes", "MaxUsernameBytes", "MaxMute"} {
			if !strings.Contains(err.Error(), field) {
				t.Errorf("error does not mention %s: %v", field, err)
			}
		}
	})
	t.Run("one bad field reports one problem", func(t *testing.T) {
		p := DefaultPolicy()
		p.EditWindow = -time.Second
		err := p.Validate()
		if !errors.Is(err, ErrInvalid) || strings.Count(err.Error(), "domain: policy:") != 1 {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestNormalizeUsername(t *testing.T) {
	tests := []struct {
		name, in, want string
		code           Code
	}{
		{"lower-cases", "Alice_01", "alice_01", ""},
		{"trims spaces", "  bob.smith-2 ", "bob.smith-2", ""},
		{"accepts a leading digit", "9lives", "9lives", ""},
		{"accepts the minimum length", "abc", "abc", ""},
		{"accepts the maximum length", strings.Repeat("a", 32), strings.Repeat("a", 32), ""},
		{"rejects too short", "ab", "", EInvalid},
		{"rejects too long", strings.Repeat("a", 33), "", EInvalid},
		{"rejects a leading dot", ".abc", "", EInvalid},
		{"rejects a leading underscore", "_abc", "", EInvalid},
		{"rejects inner spaces", "a bc", "", EInvalid},
		{"rejects other punctuation", "ab@c", "", EInvalid},
		{"rejects non-ASCII", "jürgen", "", EInvalid},
		{"rejects the Kelvin sign", "\u212Aelly", "", EInvalid},
		{"rejects invalid UTF-8", "ab\xffc", "", EInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizeUsername(tt.in)
			wantCode(t, err, tt.code)
			if got != tt.want {
				t.Fatalf("NormalizeUsername(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
	t.Run("policy limit applies", func(t *testing.T) {
		p := DefaultPolicy()
		p.MaxUsernameBytes = 5
		_, err := p.NormalizeUsername("abcdef")
		wantCode(t, err, EInvalid)
	})
}
