// Package sealed encrypts secrets before they enter the event log: a value
// is sealed with AES-256-GCM under a deployment key and bound to the user it
// belongs to, so the log, its archive, exports, taps and dead letters hold
// only ciphertext.
//
// A sealed value is text: "sealed:v1:<key id>:<base64url(nonce|ciphertext)>",
// where the key id is the first 8 hex digits of a hash of the key. Several
// keys may be configured for rotation: the first seals, every one opens.
package sealed

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Prefix starts every sealed value (the domain checks the same text).
const Prefix = "sealed:v1:"

// KeyBytes is the length of a key: AES-256.
const KeyBytes = 32

// MaxSealedBytes is the longest sealed value Seal makes: the bound the
// domain and the users table put on a password hash.
const MaxSealedBytes = 512

// maxKeys bounds the keys one configuration holds.
const maxKeys = 16

// ErrNotSealed is the error of Open for a value that is not sealed.
var ErrNotSealed = errors.New("sealed: value is not sealed")

// Keys are a deployment's keys: the first seals, all open. A Keys is safe
// for concurrent use.
type Keys struct {
	keys []key
}

type key struct {
	id   string
	aead cipher.AEAD
}

// Parse reads keys from text: one key a line, 32 bytes each written as 64
// hex digits or as base64 (standard or URL alphabet, padded or not). Blank
// lines and lines starting with '#' are skipped. The first key seals.
// Empty text, a key of another length, text that is neither hex nor
// base64 and a key given twice are errors that name the line.
func Parse(text string) (*Keys, error) {
	var raws [][]byte
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		raw, err := decodeKey(line)
		if err != nil {
			return nil, fmt.Errorf("sealed: key on line %d: %w", i+1, err)
		}
		raws = append(raws, raw)
	}
	if len(raws) == 0 {
		return nil, errors.New("sealed: no key (want one key a line, 32 random bytes as 64 hex digits: openssl rand -hex 32)")
	}
	if len(raws) > maxKeys {
		return nil, fmt.Errorf("sealed: %d keys, at most %d", len(raws), maxKeys)
	}
	return New(raws...)
}

// New returns the keys raws (each KeyBytes long); the first seals.
func New(raws ...[]byte) (*Keys, error) {
	if len(raws) == 0 {
		return nil, errors.New("sealed: no key")
	}
	k := &Keys{}
	for i, raw := range raws {
		if len(raw) != KeyBytes {
			return nil, fmt.Errorf("sealed: key %d is %d bytes, want %d", i+1, len(raw), KeyBytes)
		}
		block, err := aes.NewCipher(raw)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		id := keyID(raw)
		for _, o := range k.keys {
			if o.id == id {
				return nil, fmt.Errorf("sealed: key %d is given twice (key id %s)", i+1, id)
			}
		}
		k.keys = append(k.keys, key{id: id, aead: aead})
	}
	return k, nil
}

// Generate returns a random key and its text (64 hex digits), for a
// process whose data does not outlive it.
func Generate() (*Keys, string, error) {
	raw := make([]byte, KeyBytes)
	if _, err := rand.Read(raw); err != nil {
		return nil, "", err
	}
	k, err := New(raw)
	return k, hex.EncodeToString(raw), err
}

// decodeKey reads one key: 64 hex digits or base64 of 32 bytes.
func decodeKey(s string) ([]byte, error) {
	if raw, err := hex.DecodeString(s); err == nil {
		if len(raw) != KeyBytes {
			return nil, fmt.Errorf("%d hex digits, want %d", len(s), 2*KeyBytes)
		}
		return raw, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if raw, err := enc.DecodeString(s); err == nil {
			if len(raw) != KeyBytes {
				return nil, fmt.Errorf("base64 of %d bytes, want %d", len(raw), KeyBytes)
			}
			return raw, nil
		}
	}
	return nil, fmt.Errorf("neither hex nor base64 (want 32 random bytes as 64 hex digits: openssl rand -hex 32)")
}

// keyID is the short public name of a key.
func keyID(raw []byte) string {
	sum := sha256.Sum256(append([]byte("mpim sealed key id\x00"), raw...))
	return hex.EncodeToString(sum[:4])
}

// IDs returns the key ids, the sealing key's first.
func (k *Keys) IDs() []string {
	ids := make([]string, len(k.keys))
	for i, x := range k.keys {
		ids[i] = x.id
	}
	return ids
}

// additional binds a sealed value to its owner.
func additional(owner string) []byte { return []byte("mpim sealed v1\x00" + owner) }

// Seal encrypts plaintext for owner with the first key. It fails if the
// sealed value would be longer than MaxSealedBytes.
func (k *Keys) Seal(owner, plaintext string) (string, error) {
	x := k.keys[0]
	nonce := make([]byte, x.aead.NonceSize(), x.aead.NonceSize()+len(plaintext)+x.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	box := x.aead.Seal(nonce, nonce, []byte(plaintext), additional(owner))
	out := Prefix + x.id + ":" + base64.RawURLEncoding.EncodeToString(box)
	if len(out) > MaxSealedBytes {
		return "", fmt.Errorf("sealed: a %d-byte secret seals to %d bytes, more than %d", len(plaintext), len(out), MaxSealedBytes)
	}
	return out, nil
}

// IsSealed reports whether s has the form of a sealed value.
func IsSealed(s string) bool { return strings.HasPrefix(s, Prefix) }

// Open decrypts a value sealed for owner. A value that is not sealed is
// ErrNotSealed; one sealed with a key that is not configured, one that was
// altered and one sealed for another owner are errors.
func (k *Keys) Open(owner, value string) (string, error) {
	rest, ok := strings.CutPrefix(value, Prefix)
	if !ok {
		return "", ErrNotSealed
	}
	id, body, ok := strings.Cut(rest, ":")
	if !ok {
		return "", errors.New("sealed: malformed value (no key id)")
	}
	box, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		return "", fmt.Errorf("sealed: malformed value: %w", err)
	}
	for _, x := range k.keys {
		if x.id != id {
			continue
		}
		if len(box) < x.aead.NonceSize()+x.aead.Overhead() {
			return "", errors.New("sealed: malformed value (too short)")
		}
		n := x.aead.NonceSize()
		plain, err := x.aead.Open(nil, box[:n], box[n:], additional(owner))
		if err != nil {
			return "", fmt.Errorf("sealed: value under key %s does not open for %q: altered, or sealed for another owner", id, owner)
		}
		return string(plain), nil
	}
	return "", fmt.Errorf("sealed: value sealed with key %s, which is not configured (configured: %s); was the key file replaced instead of the new key added before the old one?",
		id, strings.Join(k.IDs(), ", "))
}
