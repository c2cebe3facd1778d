package domain

import "maps"

// UserSnapshot is the state of a User at Version, in exported fields so that
// it can be stored outside the log. It is a cache: the log stays the truth,
// and a snapshot is only used together with the events after Version.
type UserSnapshot struct {
	Version      uint64
	Username     string
	PasswordHash string
	DisplayName  string
	AvatarURL    string
	Devices      map[DeviceID]string // device -> platform
}

// Snapshot returns u's state; the zero UserSnapshot for an unregistered
// user. It shares nothing with u.
func (u *User) Snapshot() UserSnapshot {
	if !u.registered {
		return UserSnapshot{}
	}
	return UserSnapshot{Version: u.version, Username: u.username, PasswordHash: u.passwordHash,
		DisplayName: u.displayName, AvatarURL: u.avatarURL, Devices: maps.Clone(u.devices)}
}

// RestoreUser returns user id at snap's state with events, the events after
// snap.Version read from the log, applied. A zero snap is an unregistered
// user, so RestoreUser(id, UserSnapshot{}, events) is RebuildUser(id,
// events). It returns EInvalid for a malformed id and as RebuildUser does.
func RestoreUser(id UserID, snap UserSnapshot, events []Event) (*User, error) {
	if err := checkUser("user", id); err != nil {
		return nil, err
	}
	u := &User{id: id}
	if snap.Version > 0 {
		u.version, u.registered = snap.Version, true
		u.username, u.passwordHash, u.displayName, u.avatarURL = snap.Username, snap.PasswordHash, snap.DisplayName, snap.AvatarURL
		u.devices = maps.Clone(snap.Devices)
		if u.devices == nil {
			u.devices = make(map[DeviceID]string)
		}
	}
	if err := applyAll(u, events); err != nil {
		return nil, err
	}
	return u, nil
}
