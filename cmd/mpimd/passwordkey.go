package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/mpim/mpim/internal/sealed"
)

// noPasswordKey is the error of a gateway on real servers started without
// a password key.
var noPasswordKey = errors.New("no password key: gateways seal password hashes before they enter the log. " +
	"Create a key once, keep it with the deployment's secrets and give every gateway the same file: " +
	"(umask 077; openssl rand -hex 32 > /etc/mpim/password.key), then --password-key-file /etc/mpim/password.key " +
	"(or MPIM_PASSWORD_KEY_FILE, MPIM_PASSWORD_KEY or the config file); see docs/deployment.md")

// loadPasswordKeys reads the keys of --password-key-file or
// --password-key (one of them); neither is nil keys and no error. A file
// readable by other users is refused: the key opens every password hash
// of the log.
func (c *Config) loadPasswordKeys() (*sealed.Keys, error) {
	switch {
	case c.PasswordKeyFile != "" && c.PasswordKey != "":
		return nil, errors.New("password-key-file and password-key are both set: give one")
	case c.PasswordKey != "":
		keys, err := sealed.Parse(c.PasswordKey)
		if err != nil {
			return nil, fmt.Errorf("password-key: %w", err)
		}
		return keys, nil
	case c.PasswordKeyFile == "":
		return nil, nil
	}
	fi, err := os.Stat(c.PasswordKeyFile)
	if err != nil {
		return nil, fmt.Errorf("password-key-file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("password-key-file %s: mode %04o lets other users read it; chmod 600 it", c.PasswordKeyFile, fi.Mode().Perm())
	}
	text, err := os.ReadFile(c.PasswordKeyFile)
	if err != nil {
		return nil, fmt.Errorf("password-key-file: %w", err)
	}
	keys, err := sealed.Parse(string(text))
	if err != nil {
		return nil, fmt.Errorf("password-key-file %s: %w", c.PasswordKeyFile, err)
	}
	return keys, nil
}

// passwordKeys returns the gateway's password keys: the configured ones;
// without any, on the embedded Redis a key made for this process (its data
// dies with it), otherwise noPasswordKey.
func (c *Config) passwordKeys(embeddedRedis bool, lg *slog.Logger) (*sealed.Keys, error) {
	keys, err := c.loadPasswordKeys()
	if err != nil || keys != nil {
		return keys, err
	}
	if !embeddedRedis {
		return nil, noPasswordKey
	}
	keys, _, err = sealed.Generate()
	if err != nil {
		return nil, err
	}
	lg.Warn("embedded mode: password hashes are sealed with a key made for this process, lost with it like the data", "key-id", keys.IDs()[0])
	return keys, nil
}
