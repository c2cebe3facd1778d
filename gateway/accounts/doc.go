// Package accounts registers users and opens and closes their sessions for
// the gateway: password hashing, login tokens and login throttling. The
// gateway translates frames into its calls; nothing here knows the client
// protocol.
//
// What it promises:
//
//   - Passwords are hashed with argon2id into PHC strings; only the hash
//     reaches the domain (command.Service). A new password must be 8 to
//     1024 bytes of UTF-8, not only white space, and not one of the most
//     common passwords (common-passwords.txt, in any case). At most
//     Config.MaxConcurrentHashes hashes run at once; a login waiting for a
//     slot is served before any waiting registration.
//   - A login takes as long for an unknown username as for a wrong
//     password and fails with the same error (CodeBadCredentials).
//   - A login issues a random 32-byte token. Only its SHA-256 is kept, in
//     MySQL's auth_tokens (written by gateways alone), so a leaked table
//     resumes no session. A token resumes its session on any gateway until
//     it expires (Config.TokenTTL) or its device logs out; a logout, a
//     password change or logging out other devices revokes the tokens of
//     the devices it ends, and every refused token (malformed, unknown,
//     revoked, expired) looks alike to the client. Expired tokens are
//     deleted by PruneTokens in bounded statements.
//   - Password guessing is throttled in Redis, so every gateway of a
//     deployment sees the same counts, per client address as
//     internal/clientaddr keys it (IPv6 by /64): failed logins per
//     username and address delay further attempts from that address only,
//     failed logins per address are capped over every username, and
//     password attempts (logins, registrations and password changes) per
//     address and minute are capped before they wait for a hashing slot.
//     An attempt is counted before its password is checked and given back
//     when it succeeds, so parallel attempts cannot exceed the limits. A
//     throttled request fails with domain.ERateLimited and the advised wait
//     (domain.Error.RetryAfter).
//
// A Service is safe for concurrent use.
package accounts
