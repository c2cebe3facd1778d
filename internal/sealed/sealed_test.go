package sealed

import (
	"encoding/base64"
	"strings"
	"testing"
)

const (
	keyA = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	keyB = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100"
)

const hash = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"

func mustParse(t *testing.T, text string) *Keys {
	t.Helper()
	k, err := Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealRoundTripHidesThePlaintext(t *testing.T) {
	k := mustParse(t, keyA+"\n")
	s, err := k.Seal("u/1", hash)
	if err != nil {
		t.Fatal(err)
	}
	if !IsSealed(s) || !strings.HasPrefix(s, Prefix+k.IDs()[0]+":") || strings.Contains(s, "argon2") || len(s) > MaxSealedBytes {
		t.Fatalf("sealed value %q: want %s<key id>:<base64url> without the plaintext, at most %d bytes", s, Prefix, MaxSealedBytes)
	}
	if again, _ := k.Seal("u/1", hash); again == s {
		t.Fatal("two seals of one value are equal: the nonce is not random")
	}
	got, err := k.Open("u/1", s)
	if err != nil || got != hash {
		t.Fatalf("Open = %q, %v; want the hash", got, err)
	}
	if _, err := k.Open("u/1", hash); err != ErrNotSealed {
		t.Fatalf("Open of a plaintext hash = %v, want ErrNotSealed", err)
	}
}

func TestOpenRefusesWrongKeyTamperingAndOtherOwners(t *testing.T) {
	a, b := mustParse(t, keyA), mustParse(t, keyB)
	s, err := a.Seal("u/1", hash)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Open("u/1", s); err == nil || !strings.Contains(err.Error(), "not configured") || !strings.Contains(err.Error(), a.IDs()[0]) {
		t.Fatalf("Open under another key = %v, want an error naming the missing key id %s", err, a.IDs()[0])
	}
	if _, err := a.Open("u/2", s); err == nil || !strings.Contains(err.Error(), "another owner") {
		t.Fatalf("Open of u/1's value for u/2 = %v, want a refusal", err)
	}
	i := strings.LastIndex(s, ":") + 1
	box, _ := base64.RawURLEncoding.DecodeString(s[i:])
	box[len(box)-20] ^= 1
	tampered := s[:i] + base64.RawURLEncoding.EncodeToString(box)
	if _, err := a.Open("u/1", tampered); err == nil || !strings.Contains(err.Error(), "altered") {
		t.Fatalf("Open of a tampered value = %v, want a refusal", err)
	}
	for _, bad := range []string{Prefix, Prefix + "abcd", Prefix + a.IDs()[0] + ":!!", Prefix + a.IDs()[0] + ":AAAA"} {
		if _, err := a.Open("u/1", bad); err == nil || !strings.Contains(err.Error(), "malformed") {
			t.Errorf("Open(%q) = %v, want malformed", bad, err)
		}
	}
}

func TestRotationOldKeySecondStillOpens(t *testing.T) {
	old := mustParse(t, keyA)
	s, err := old.Seal("u/1", hash)
	if err != nil {
		t.Fatal(err)
	}
	rotated := mustParse(t, "# new key first\n"+keyB+"\n\n"+keyA+"\n")
	if got, err := rotated.Open("u/1", s); err != nil || got != hash {
		t.Fatalf("Open with the old key second = %q, %v", got, err)
	}
	s2, err := rotated.Seal("u/1", hash)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s2, Prefix+rotated.IDs()[0]+":") || rotated.IDs()[0] == old.IDs()[0] {
		t.Fatalf("after rotation %q is not sealed with the first key %s", s2, rotated.IDs()[0])
	}
	if _, err := old.Open("u/1", s2); err == nil {
		t.Fatal("the old key alone opened a value sealed with the new key")
	}
}

func TestParseRefusesBadKeyText(t *testing.T) {
	raw, _ := base64.StdEncoding.DecodeString(base64.StdEncoding.EncodeToString(make([]byte, 32)))
	for _, text := range []string{base64.StdEncoding.EncodeToString(raw), base64.RawURLEncoding.EncodeToString(raw), "  " + keyA + "  \r\n"} {
		if _, err := Parse(text); err != nil {
			t.Errorf("Parse(%q): %v", text, err)
		}
	}
	for text, want := range map[string]string{
		"":                            "no key",
		"\n# only a comment\n":        "no key",
		keyA[:62]:                     "line 1: 62 hex digits",
		keyA + "\n" + "!!" + keyA[2:]: "line 2: neither hex nor base64",
		base64.StdEncoding.EncodeToString(make([]byte, 16)): "base64 of 16 bytes",
		keyA + "\n" + keyA: "given twice",
	} {
		if _, err := Parse(text); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want an error with %q", text, err, want)
		}
	}
	if _, err := mustParse(t, keyA).Seal("u/1", strings.Repeat("x", 400)); err == nil || !strings.Contains(err.Error(), "more than 512") {
		t.Errorf("sealing a 400-byte secret = %v, want a refusal over 512 bytes", err)
	}
}
