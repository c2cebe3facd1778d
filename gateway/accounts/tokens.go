package accounts

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

// Identity is who a token or a login authenticates.
type Identity struct {
	User   domain.UserID
	Device domain.DeviceID
	// Expiry is when the token stops resuming the session.
	Expiry time.Time
	token  tokenHash
}

// issue creates a token for the device of user and returns it with its
// identity.
func (t *tokens) issue(ctx context.Context, user domain.UserID, device domain.DeviceID) (string, Identity, error) {
	raw := make([]byte, tokenBytes)
	if _, err := rand.Read(raw); err != nil {
		return "", Identity{}, domain.Errorf(domain.EInternal, "gateway: token: %w", err)
	}
	now := t.now().UTC().Truncate(time.Millisecond)
	id := Identity{User: user, Device: device, token: sha256.Sum256(raw), Expiry: now.Add(t.ttl)}
	_, err := t.db.ExecContext(ctx,
		"INSERT INTO auth_tokens (token_hash, user_id, device_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
		id.token[:], string(user), string(device), now, id.Expiry)
	if err != nil {
		return "", Identity{}, domain.Errorf(domain.EUnavailable, "gateway: storing a token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(raw), id, nil
}

// resolve returns the identity of a token. A token that is malformed,
// unknown, revoked or expired is an EUnauthorized error; all look alike to
// the client.
func (t *tokens) resolve(ctx context.Context, token string) (Identity, error) {
	denied := domain.Errorf(domain.EUnauthorized, "gateway: the token is invalid or expired; log in again")
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) != tokenBytes {
		return Identity{}, denied
	}
	id := Identity{token: sha256.Sum256(raw)}
	var user, device string
	var revoked sql.NullTime
	err = t.db.QueryRowContext(ctx,
		"SELECT user_id, device_id, expires_at, revoked_at FROM auth_tokens WHERE token_hash = ?", id.token[:]).
		Scan(&user, &device, &id.Expiry, &revoked)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return Identity{}, denied
	case err != nil:
		return Identity{}, domain.Errorf(domain.EUnavailable, "gateway: reading a token: %w", err)
	case revoked.Valid || !t.now().Before(id.Expiry):
		return Identity{}, denied
	}
	id.User, id.Device = domain.UserID(user), domain.DeviceID(device)
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
// device's session, whichever login it came from) and returns how many
// were live; revoking twice is harmless.
func (t *tokens) revokeDevice(ctx context.Context, user domain.UserID, device domain.DeviceID) (int64, error) {
	res, err := t.db.ExecContext(ctx, "UPDATE auth_tokens SET revoked_at = ? WHERE user_id = ? AND device_id = ? AND revoked_at IS NULL",
		t.now().UTC().Truncate(time.Millisecond), string(user), string(device))
	if err != nil {
		return 0, domain.Errorf(domain.EUnavailable, "gateway: revoking a token: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, domain.Errorf(domain.EUnavailable, "gateway: revoking a token: %w", err)
	}
	return n, nil
}

// revokeOthers ends every token of user's devices other than keep and
// returns those devices (each once).
func (t *tokens) revokeOthers(ctx context.Context, user domain.UserID, keep domain.DeviceID) ([]domain.DeviceID, error) {
	now := t.now().UTC().Truncate(time.Millisecond)
	fail := func(err error) ([]domain.DeviceID, error) {
		return nil, domain.Errorf(domain.EUnavailable, "gateway: revoking tokens: %w", err)
	}
	_, err := t.db.ExecContext(ctx, "UPDATE auth_tokens SET revoked_at = ? WHERE user_id = ? AND device_id <> ? AND revoked_at IS NULL",
		now, string(user), string(keep))
	if err != nil {
		return fail(err)
	}
	// The rows this revocation marked (a concurrent one in the same
	// millisecond may add its own devices: ending them twice is harmless).
	rows, err := t.db.QueryContext(ctx, "SELECT DISTINCT device_id FROM auth_tokens WHERE user_id = ? AND device_id <> ? AND revoked_at = ?",
		string(user), string(keep), now)
	if err != nil {
		return fail(err)
	}
	defer rows.Close()
	var out []domain.DeviceID
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			return fail(err)
		}
		out = append(out, domain.DeviceID(d))
	}
	if err := rows.Err(); err != nil {
		return fail(err)
	}
	return out, nil
}
