package accounts

import (
	"time"

	"github.com/mpim/mpim/internal/sealed"
)

// Config holds the settings of a Service; gateway.Config documents each,
// fills its defaults and validates it.
type Config struct {
	// Prefix is the deployment's Redis key prefix, under which the login
	// throttle counts.
	Prefix string
	// TokenTTL is the lifetime of a login token.
	TokenTTL time.Duration
	// Argon2 are the parameters of new password hashes.
	Argon2 Argon2Params
	// MaxConcurrentHashes bounds the password hashes computed at once.
	MaxConcurrentHashes int
	// LoginFailureWindow is how long a failed login counts.
	LoginFailureWindow time.Duration
	// LoginFailuresPerUser is how many failed logins one username may have
	// from one client address before further attempts from there wait.
	LoginFailuresPerUser int
	// LoginFailuresPerAddr caps the failed logins of one client address
	// over every username (-1: not limited).
	LoginFailuresPerAddr int
	// PasswordAttemptsPerAddr caps the logins, registrations and password
	// changes one client address may start per minute (-1: not limited).
	PasswordAttemptsPerAddr int
	// PasswordKeys seal the password hashes before they enter the log and
	// open them at login (required; see gateway.Config.PasswordKeys).
	PasswordKeys *sealed.Keys
	// Now is the clock.
	Now func() time.Time
	// DelayClock, if not nil, is the clock of the login delays in place
	// of Redis's (see gateway.Config.LoginDelayClock).
	DelayClock func() time.Time
}

// Argon2Params are the parameters of argon2id password hashes.
type Argon2Params struct {
	Time      uint32 // passes (default 2)
	MemoryKiB uint32 // memory in KiB (default 19 MiB = 19456)
	Threads   uint8  // lanes (default 1)
	SaltBytes uint32 // salt length (default 16)
	KeyBytes  uint32 // hash length (default 32)
}
