package accounts

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	_ "embed"
	"encoding/base64"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/mpim/mpim/domain"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/argon2"
)

// Password limits. The upper bound keeps a hash request cheap to receive.
const (
	minPasswordBytes = 8
	maxPasswordBytes = 1024
)

// passwords hashes and verifies passwords with argon2id, at most
// MaxConcurrentHashes at a time, logins first. It is safe for concurrent use.
type passwords struct {
	params Argon2Params
	queue  *hashQueue
	// hashes counts argon2id computations by operation (hash, verify).
	hashes *prometheus.CounterVec
	// dummy is a hash verified when a login names an unknown user, so that
	// the answer takes as long as for a known one.
	dummy string
}

// newPasswords returns the hasher; hashes, if not nil, counts each argon2id
// computation under the label op ("hash" or "verify").
func newPasswords(p Argon2Params, concurrency int, hashes *prometheus.CounterVec) (*passwords, error) {
	if hashes == nil {
		hashes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "unregistered"}, []string{"op"})
	}
	pw := &passwords{params: p, queue: newHashQueue(concurrency), hashes: hashes}
	d, err := pw.hash(context.Background(), rand.Text())
	if err != nil {
		return nil, err
	}
	pw.dummy = d
	return pw, nil
}

//go:embed common-passwords.txt
var commonPasswordsText string

// commonPasswords is the set of common-passwords.txt, in lower case.
var commonPasswords = func() map[string]bool {
	m := make(map[string]bool)
	for _, l := range strings.Split(commonPasswordsText, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			m[strings.ToLower(l)] = true
		}
	}
	return m
}()

// CheckPassword returns an EInvalid error unless pw is acceptable for a new
// account: 8 to 1024 bytes of UTF-8, not only white space, and not one of
// the most common passwords (common-passwords.txt, in any case).
func CheckPassword(pw string) error {
	switch {
	case len(pw) < minPasswordBytes:
		return domain.Errorf(domain.EInvalid, "gateway: the password must have at least %d bytes", minPasswordBytes)
	case len(pw) > maxPasswordBytes:
		return domain.Errorf(domain.ETooLarge, "gateway: the password must have at most %d bytes", maxPasswordBytes)
	case !utf8.ValidString(pw):
		return domain.Errorf(domain.EInvalid, "gateway: the password is not valid UTF-8")
	case strings.TrimFunc(pw, unicode.IsSpace) == "":
		return domain.Errorf(domain.EInvalid, "gateway: the password must not be only white space")
	case commonPasswords[strings.ToLower(strings.TrimSpace(pw))]:
		return domain.Errorf(domain.EInvalid, "gateway: the password is one of the most common ones; choose another")
	}
	return nil
}

// hash returns the PHC string of an argon2id hash of pw with a fresh salt:
// $argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash> (unpadded
// standard base64). It waits for a hashing slot behind every waiting login.
func (p *passwords) hash(ctx context.Context, pw string) (string, error) {
	salt := make([]byte, p.params.SaltBytes)
	if _, err := rand.Read(salt); err != nil {
		return "", domain.Errorf(domain.EInternal, "gateway: salt: %w", err)
	}
	if err := p.queue.acquire(ctx, priorityRegister); err != nil {
		return "", err
	}
	defer p.queue.release()
	p.hashes.WithLabelValues("hash").Inc()
	a := p.params
	key := argon2.IDKey([]byte(pw), salt, a.Time, a.MemoryKiB, a.Threads, a.KeyBytes)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, a.MemoryKiB, a.Time, a.Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// verify reports whether pw matches the PHC string phc, comparing in
// constant time. A hash it cannot parse is an EInternal error. It waits for
// a hashing slot before any waiting registration.
func (p *passwords) verify(ctx context.Context, phc, pw string) (bool, error) {
	h, err := parsePHC(phc)
	if err != nil {
		return false, err
	}
	if err := p.queue.acquire(ctx, priorityLogin); err != nil {
		return false, err
	}
	defer p.queue.release()
	p.hashes.WithLabelValues("verify").Inc()
	key := argon2.IDKey([]byte(pw), h.salt, h.time, h.memory, h.threads, uint32(len(h.key)))
	return subtle.ConstantTimeCompare(key, h.key) == 1, nil
}

type phcHash struct {
	time, memory uint32
	threads      uint8
	salt, key    []byte
}

// parsePHC parses an argon2id PHC string. The parameters are bounded so a
// corrupt stored hash cannot make a login allocate without limit.
func parsePHC(s string) (phcHash, error) {
	var h phcHash
	bad := func(why string) (phcHash, error) {
		return h, domain.Errorf(domain.EInternal, "gateway: stored password hash: %s", why)
	}
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return bad("not an argon2id PHC string")
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return bad("unsupported version")
	}
	var threads uint32
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &h.memory, &h.time, &threads); err != nil {
		return bad("malformed parameters")
	}
	if h.time < 1 || h.time > 64 || threads < 1 || threads > 255 || h.memory < 8*threads || h.memory > 4<<20 {
		return bad("parameters out of range")
	}
	h.threads = uint8(threads)
	var err error
	if h.salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(h.salt) < 8 {
		return bad("malformed salt")
	}
	if h.key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(h.key) < 16 || len(h.key) > 64 {
		return bad("malformed hash")
	}
	return h, nil
}
