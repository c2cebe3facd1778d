package gateway

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"errors"
	"time"

	"github.com/mpim/mpim/domain"
)

// tokenBytes is the size of a login token before encoding.
const tokenBytes = 32

// tokenHash is the SHA-256 of a token: the only form the server keeps.
type tokenHash [sha256.Size]byte

// tokens issues, resolves and revokes login tokens in MySQL's auth_tokens
// (written only by gateways). The pool must scan DATETIME columns into
// time.Time (parseTime=true). It is safe for concurrent use.
type tokens struct {
	db  *sql.DB
	ttl time.Duration
	now func() time.Time
}

// identity is who a token or a login authenticates.
type identity struct {
	user   domain.UserID
	device domain.DeviceID
	token  tokenHash
	expiry time.Time
}

// issue creates a token for the device of user and returns it with its
// identity.
func (t *tokens) issue(ctx context.Context, user domain.UserID, device domain.DeviceID) (string, identity, error) {
	raw := make([]byte, tokenBytes)
	if _, err := rand.Read(raw); err != nil {
		return "", identity{}, domain.Errorf(domain.EInternal, "gateway: token: %w", err)
	}
	now := t.now().UTC().Truncate(time.Millisecond)
	id := identity{user: user, device: device, token: sha256.Sum256(raw), expiry: now.Add(t.ttl)}
	_, err := t.db.ExecContext(ctx,
		"INSERT INTO auth_tokens (token_hash, user_id, device_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
		id.token[:], string(user), string(device), now, id.expiry)
	if err != nil {
		return "", identity{}, domain.Errorf(domain.EUnavailable, "gateway: storing a token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(raw), id, nil
}

// resolve returns the identity of a token. A token that is malformed,
// unknown, revoked or expired is an EUnauthorized error; all look alike to
// the client.
func (t *tokens) resolve(ctx context.Context, token string) (identity, error) {
	denied := domain.Errorf(domain.EUnauthorized, "gateway: the token is invalid or expired; log in again")
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) != tokenBytes {
		return identity{}, denied
	}
	id := identity{token: sha256.Sum256(raw)}
	var user, device string
	var revoked sql.NullTime
	err = t.db.QueryRowContext(ctx,
		"SELECT user_id, device_id, expires_at, revoked_at FROM auth_tokens WHERE token_hash = ?", id.token[:]).
		Scan(&user, &device, &id.expiry, &revoked)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return identity{}, denied
	case err != nil:
		return identity{}, domain.Errorf(domain.EUnavailable, "gateway: reading a token: %w", err)
	case revoked.Valid || !t.now().Before(id.expiry):
		return identity{}, denied
	}
	id.user, id.device = domain.UserID(user), domain.DeviceID(device)
	return id, nil
}

// pruneStatementRows bounds the rows one DELETE of prune removes.
const pruneStatementRows = 1000

// prune deletes tokens that expired before now, at most max, in statements
// of at most pruneStatementRows rows, and returns how many it deleted. It
// stops early when a statement finds fewer rows than it may delete. Tokens
// that are revoked but not yet expired stay until they expire (a revoked
// token is refused either way).
func (t *tokens) prune(ctx context.Context, max int) (int, error) {
	cutoff := t.now().UTC().Truncate(time.Millisecond)
	deleted := 0
	for deleted < max {
		n := min(pruneStatementRows, max-deleted)
		res, err := t.db.ExecContext(ctx, "DELETE FROM auth_tokens WHERE expires_at < ? LIMIT ?", cutoff, n)
		if err != nil {
			return deleted, domain.Errorf(domain.EUnavailable, "gateway: pruning tokens: %w", err)
		}
		got, err := res.RowsAffected()
		if err != nil {
			return deleted, domain.Errorf(domain.EUnavailable, "gateway: pruning tokens: %w", err)
		}
		deleted += int(got)
		if int(got) < n {
			break
		}
	}
	return deleted, nil
}

// revokeDevice ends every token of a user's device (a logout ends the
// device's session, whichever login it came from); revoking twice is
// harmless.
func (t *tokens) revokeDevice(ctx context.Context, user domain.UserID, device domain.DeviceID) error {
	_, err := t.db.ExecContext(ctx, "UPDATE auth_tokens SET revoked_at = ? WHERE user_id = ? AND device_id = ? AND revoked_at IS NULL",
		t.now().UTC().Truncate(time.Millisecond), string(user), string(device))
	if err != nil {
		return domain.Errorf(domain.EUnavailable, "gateway: revoking a token: %w", err)
	}
	return nil
}
