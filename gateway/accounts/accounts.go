package accounts

import (
	"context"
	"database/sql"
	"errors"
	"slices"

	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/sealed"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// CodeBadCredentials is the error code of a failed login or password
// check: wrong username or password, whichever it was.
const CodeBadCredentials domain.Code = "bad_credentials"

// errBadCredentials is the one answer to every failed login, so a client
// cannot tell an unknown username from a wrong password.
var errBadCredentials = domain.Errorf(CodeBadCredentials, "gateway: wrong username or password")

// Service registers users and opens and closes their sessions: passwords
// are hashed here and only the hash, sealed with the deployment's password
// key and bound to its user, reaches the domain; logins issue tokens that
// resume sessions on any gateway. It is safe for concurrent use.
type Service struct {
	cmd      *command.Service
	pw       *passwords
	keys     *sealed.Keys
	tokens   *tokens
	throttle *loginThrottle
}

// New returns a Service that records accounts through cmd, keeps tokens in
// db's auth_tokens (db must scan DATETIME into time.Time, parseTime=true)
// and counts login attempts in rdb. hashes, if not nil, counts each
// argon2id computation under the label op ("hash" or "verify"). cfg must
// be valid (gateway.Config.Validate checks these settings).
func New(cfg Config, cmd *command.Service, db *sql.DB, rdb redis.UniversalClient, hashes *prometheus.CounterVec) (*Service, error) {
	if cfg.Now == nil {
		return nil, errors.New("accounts: Config.Now is required")
	}
	if cfg.PasswordKeys == nil {
		return nil, errors.New("accounts: Config.PasswordKeys is required: password hashes are sealed before they enter the log")
	}
	pw, err := newPasswords(cfg.Argon2, cfg.MaxConcurrentHashes, hashes)
	if err != nil {
		return nil, err
	}
	return &Service{cmd: cmd, pw: pw, keys: cfg.PasswordKeys, tokens: &tokens{db: db, ttl: cfg.TokenTTL, now: cfg.Now},
		throttle: &loginThrottle{rdb: rdb, prefix: cfg.Prefix, window: cfg.LoginFailureWindow,
			perUser: cfg.LoginFailuresPerUser, perAddr: cfg.LoginFailuresPerAddr, hashesPerAddr: cfg.PasswordAttemptsPerAddr,
			now: cfg.DelayClock}}, nil
}

// Register creates an account for a client at addr (the connection's
// remote address) and returns its id and normalized username. The cheap
// checks come first: the password's rules, the address's password
// attempts (rate_limited) and whether the name is free (exists), so that
// only a registration that can succeed waits for a hashing slot, behind
// every waiting login.
func (a *Service) Register(ctx context.Context, username, password, displayName, addr string) (domain.UserID, string, error) {
	name, err := a.cmd.Policy().NormalizeUsername(username)
	if err != nil {
		return "", "", err
	}
	if err := CheckPassword(password); err != nil {
		return "", "", err
	}
	if err := a.throttle.hashAttempt(ctx, addr); err != nil {
		return "", "", err
	}
	if _, err := a.cmd.LookupUsername(ctx, name); err == nil {
		return "", "", domain.Errorf(domain.EExists, "gateway: username %q is taken", name)
	} else if domain.ErrorCode(err) != domain.ENotFound {
		return "", "", err
	}
	hash, err := a.pw.hash(ctx, password)
	if err != nil {
		return "", "", err
	}
	id, err := a.cmd.RegisterSealed(ctx, name, func(user domain.UserID) (string, error) { return a.seal(user, hash) }, displayName, "")
	if err != nil {
		return "", "", err
	}
	return id, name, nil
}

// Login is what a successful login returns.
type Login struct {
	// Identity is who the token authenticates.
	Identity Identity
	// Token resumes the session (Resume) until it expires or is revoked.
	Token string
	// User is the logged-in user.
	User *domain.User
}

// Login checks a username and password, records the device's login (on
// platform) and issues a token. It takes as long for an unknown username
// as for a wrong password, and fails alike for both (CodeBadCredentials).
//
// Before any password is checked the attempt passes the throttle (see
// loginThrottle): the address's password attempts, then the failures of
// the username from this address (addr, the connection's remote address)
// and of the address, where the attempt is counted as a failure until it
// succeeds. Over a limit the login is refused with rate_limited and the
// wait.
func (a *Service) Login(ctx context.Context, username, password string, device domain.DeviceID, platform, addr string) (Login, error) {
	name := throttleName(a.cmd.Policy(), username)
	if err := a.throttle.hashAttempt(ctx, addr); err != nil {
		return Login{}, err
	}
	if err := a.throttle.attempt(ctx, name, addr); err != nil {
		return Login{}, err
	}
	if len(password) > maxPasswordBytes {
		return Login{}, errBadCredentials
	}
	id, err := a.cmd.LookupUsername(ctx, username)
	if c := domain.ErrorCode(err); c == domain.ENotFound || c == domain.EInvalid {
		if _, err := a.pw.verify(ctx, a.pw.dummy, password); err != nil {
			return Login{}, err
		}
		return Login{}, errBadCredentials
	} else if err != nil {
		return Login{}, err
	}
	user, err := a.cmd.User(ctx, id)
	if err != nil {
		return Login{}, err
	}
	if err := a.checkPassword(ctx, name, addr, user, password); err != nil {
		return Login{}, err
	}
	if _, err := a.cmd.UpdateUser(ctx, command.Actor{User: id, Device: device}, domain.LogIn{Device: device, Platform: platform}); err != nil {
		return Login{}, err
	}
	token, ident, err := a.tokens.issue(ctx, id, device)
	if err != nil {
		return Login{}, err
	}
	return Login{Identity: ident, Token: token, User: user}, nil
}

// checkPassword verifies password against user's hash for an attempt that
// passed the throttle as name from addr, and gives the attempt back when it
// matches; otherwise it fails with errBadCredentials (the attempt stays a
// failure).
func (a *Service) checkPassword(ctx context.Context, name, addr string, user *domain.User, password string) error {
	hash, err := a.open(user.ID(), user.PasswordHash())
	if err != nil {
		return err
	}
	ok, err := a.pw.verify(ctx, hash, password)
	if err != nil {
		return err
	}
	if !ok {
		return errBadCredentials
	}
	return a.throttle.succeeded(ctx, name, addr)
}

// Resume returns the identity of a token. A token that is malformed,
// unknown, revoked or expired is an EUnauthorized error; all look alike.
func (a *Service) Resume(ctx context.Context, token string) (Identity, error) {
	return a.tokens.resolve(ctx, token)
}

// Logout revokes the tokens of the actor's device and records the device's
// logout. A device whose session already ended (on another connection) is
// not an error.
func (a *Service) Logout(ctx context.Context, me command.Actor) error {
	if _, err := a.tokens.revokeDevice(ctx, me.User, me.Device); err != nil {
		return err
	}
	_, err := a.cmd.UpdateUser(ctx, me, domain.LogOut{Device: me.Device})
	if errors.Is(err, domain.ErrNotFound) {
		err = nil // the device's session was already ended (on another connection)
	}
	return err
}

// ChangePassword checks the actor's current password and records the hash
// of the new one (hashed as at registration); the caller then logs out the
// actor's other devices (LogOutOthers). The check passes the login
// throttle as a login of the actor's username from addr does (the
// address's password attempts, the failures of the username there): a
// wrong current password is CodeBadCredentials and counts as a failed
// login, and over a limit the request is rate_limited, so a stolen session
// cannot guess the password faster than logins could. A new password that
// registration would refuse is invalid (too_large if too long).
func (a *Service) ChangePassword(ctx context.Context, me command.Actor, addr, oldPassword, newPassword string) error {
	if err := CheckPassword(newPassword); err != nil {
		return err
	}
	user, err := a.cmd.User(ctx, me.User)
	if err != nil {
		return err
	}
	name := throttleName(a.cmd.Policy(), user.Username())
	if err := a.throttle.hashAttempt(ctx, addr); err != nil {
		return err
	}
	if err := a.throttle.attempt(ctx, name, addr); err != nil {
		return err
	}
	if len(oldPassword) > maxPasswordBytes {
		return errBadCredentials
	}
	if err := a.checkPassword(ctx, name, addr, user, oldPassword); err != nil {
		return err
	}
	hash, err := a.pw.hash(ctx, newPassword)
	if err != nil {
		return err
	}
	if hash, err = a.seal(me.User, hash); err != nil {
		return err
	}
	_, err = a.cmd.UpdateUser(ctx, me, domain.ChangePassword{PasswordHash: hash})
	return err
}

// seal seals user's password hash with the deployment's key.
func (a *Service) seal(user domain.UserID, hash string) (string, error) {
	s, err := a.keys.Seal(string(user), hash)
	if err != nil {
		return "", domain.Errorf(domain.EInternal, "gateway: %w", err)
	}
	return s, nil
}

// open returns user's password hash from the log: sealed values are opened
// with the deployment's keys; a hash in the clear (written before hashes
// were sealed) is returned as it is. A value that does not open (its key is
// not configured, it was altered or copied from another user) is an
// internal error, not a wrong password.
func (a *Service) open(user domain.UserID, stored string) (string, error) {
	hash, err := a.keys.Open(string(user), stored)
	if errors.Is(err, sealed.ErrNotSealed) {
		return stored, nil
	}
	if err != nil {
		return "", domain.Errorf(domain.EInternal, "gateway: password hash of %s: %w", user, err)
	}
	return hash, nil
}

// LogOutOthers logs out every device of the actor's user but the actor's
// own: the tokens of those devices are revoked and each device with a
// session in the log gets DeviceLoggedOut. It returns the devices ended
// (each once), whose live connections the caller closes.
func (a *Service) LogOutOthers(ctx context.Context, me command.Actor) ([]domain.DeviceID, error) {
	revoked, err := a.tokens.revokeOthers(ctx, me.User, me.Device)
	if err != nil {
		return nil, err
	}
	user, err := a.cmd.User(ctx, me.User)
	if err != nil {
		return nil, err
	}
	ended := revoked
	for _, dev := range user.Devices() {
		if dev.ID != me.Device && !slices.Contains(ended, dev.ID) {
			ended = append(ended, dev.ID)
		}
	}
	if _, err := a.cmd.UpdateUser(ctx, me, domain.LogOutOthers{Keep: me.Device}); err != nil {
		return nil, err
	}
	return ended, nil
}

// LogOutDevice logs out one other device of the actor's user: its tokens
// are revoked and its session in the log ends; the caller closes its live
// connections. An empty or malformed device id is invalid, the actor's own
// device too (Logout ends it); a device with neither a session nor a token
// is not_found.
func (a *Service) LogOutDevice(ctx context.Context, me command.Actor, device domain.DeviceID) error {
	if !validDevice(device) {
		return domain.Errorf(domain.EInvalid, "gateway: invalid device id %q", device)
	}
	if device == me.Device {
		return domain.Errorf(domain.EInvalid, "gateway: %q is this connection's device; log it out with logout", device)
	}
	n, err := a.tokens.revokeDevice(ctx, me.User, device)
	if err != nil {
		return err
	}
	_, err = a.cmd.UpdateUser(ctx, me, domain.LogOut{Device: device})
	if errors.Is(err, domain.ErrNotFound) && n > 0 {
		err = nil // tokens without a session in the log (it ended elsewhere)
	}
	return err
}

// PruneTokens deletes tokens that expired, at most max, in statements of
// at most 1000 rows, and returns how many it deleted (also when it fails
// part way). Tokens that are revoked but not yet expired stay until they
// expire (a revoked token is refused either way).
func (a *Service) PruneTokens(ctx context.Context, max int) (int, error) {
	return a.tokens.prune(ctx, max)
}

// validDevice reports whether id is a device id a login accepts: 1 to 64
// printable ASCII bytes, no space.
func validDevice(id domain.DeviceID) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}
