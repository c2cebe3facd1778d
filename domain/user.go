package domain

import (
	"cmp"
	"slices"
	"time"
)

// User is the account aggregate "u/<ulid>": registration, profile, password
// hash and the devices with a session.
type User struct {
	id           UserID
	version      uint64
	registered   bool
	username     string
	passwordHash string
	displayName  string
	avatarURL    string
	devices      map[DeviceID]string // device -> platform
}

// Device is a device with a session.
type Device struct {
	ID       DeviceID
	Platform string
}

// UserCommand is a command for the User aggregate: RegisterUser,
// UpdateProfile, ChangePassword, LogIn, LogOut, LogOutOthers,
// RegisterPushToken or RemovePushToken.
type UserCommand interface{ userCommand() }

// RegisterUser creates the account. The caller appends the resulting
// UserRegistered together with the UsernameClaimed of the same name.
type RegisterUser struct {
	User         UserID
	Username     string // normalised by Decide
	PasswordHash string // PHC string of a real KDF
	DisplayName  string
}

// UpdateProfile replaces the display name and the avatar URL (empty: none).
type UpdateProfile struct {
	DisplayName string
	AvatarURL   string
}

// ChangePassword replaces the password hash.
type ChangePassword struct {
	PasswordHash string
}

// LogIn starts a session on a device; logging in again replaces the platform.
type LogIn struct {
	Device   DeviceID
	Platform string
}

// LogOut ends the session of a device.
type LogOut struct {
	Device DeviceID
}

// LogOutOthers ends the session of every device but Keep (the device that
// asks; it may be empty).
type LogOutOthers struct {
	Keep DeviceID
}

func (RegisterUser) userCommand()   {}
func (UpdateProfile) userCommand()  {}
func (ChangePassword) userCommand() {}
func (LogIn) userCommand()          {}
func (LogOut) userCommand()         {}
func (LogOutOthers) userCommand()   {}

// NewUser returns the unregistered aggregate of id. It returns an EInvalid
// error for a malformed id.
func NewUser(id UserID) (*User, error) {
	if err := checkUser("user", id); err != nil {
		return nil, err
	}
	return &User{id: id}, nil
}

// RebuildUser replays the events of user id, as read from the log. It trusts
// the log: it only fails, with EInvalid, on an event that does not belong to
// this aggregate.
func RebuildUser(id UserID, events []Event) (*User, error) {
	u := &User{id: id}
	if err := applyAll(u, events); err != nil {
		return nil, err
	}
	return u, nil
}

// ID returns the user's id.
func (u *User) ID() UserID { return u.id }

// AggregateID returns "u/<ulid>".
func (u *User) AggregateID() string { return string(u.id) }

// PartitionKey returns the key that picks the aggregate's partition: its id.
func (u *User) PartitionKey() string { return string(u.id) }

// Version returns the number of events applied.
func (u *User) Version() uint64 { return u.version }

// Registered reports whether the user has registered.
func (u *User) Registered() bool { return u.registered }

// Username returns the normalised username.
func (u *User) Username() string { return u.username }

// PasswordHash returns the password hash.
func (u *User) PasswordHash() string { return u.passwordHash }

// DisplayName returns the display name.
func (u *User) DisplayName() string { return u.displayName }

// AvatarURL returns the avatar URL, empty if none.
func (u *User) AvatarURL() string { return u.avatarURL }

// Devices returns the devices with a session, sorted by id.
func (u *User) Devices() []Device {
	ds := make([]Device, 0, len(u.devices))
	for id, platform := range u.devices {
		ds = append(ds, Device{ID: id, Platform: platform})
	}
	slices.SortFunc(ds, func(a, b Device) int { return cmp.Compare(a.ID, b.ID) })
	return ds
}

// Decide returns the events that carry out cmd. RegisterUser returns EExists
// on a registered user and EInvalid for a command naming another user; every
// other command returns ENotFound on an unregistered user, and LogOut returns
// ENotFound for a device without a session; LogOutOthers returns no events
// when no other device has one. Malformed fields give EInvalid,
// overlong ones ETooLarge. RegisterPushToken and RemovePushToken return
// ENotFound for a device without a session, and RegisterPushToken the
// EInvalid of PushToken.Check.
func (u *User) Decide(cmd UserCommand, now time.Time, p Policy) ([]Event, error) {
	if c, ok := cmd.(RegisterUser); ok {
		return u.decideRegister(c, p)
	}
	if !u.registered {
		return nil, Errorf(ENotFound, "domain: user %s not found", u.id)
	}
	switch c := cmd.(type) {
	case UpdateProfile:
		name, err := cleanName("display name", c.DisplayName, p.MaxNameBytes, false)
		if err != nil {
			return nil, err
		}
		if err := checkURL("avatar URL", c.AvatarURL, false); err != nil {
			return nil, err
		}
		return []Event{ProfileUpdated{DisplayName: name, AvatarURL: c.AvatarURL}}, nil
	case ChangePassword:
		if err := checkPasswordHash(c.PasswordHash); err != nil {
			return nil, err
		}
		return []Event{PasswordChanged{PasswordHash: c.PasswordHash}}, nil
	case LogIn:
		if err := checkDevice(c.Device); err != nil {
			return nil, err
		}
		if c.Platform != "" && !printable(c.Platform, maxPlatformBytes) {
			return nil, Errorf(EInvalid, "domain: invalid platform %q", c.Platform)
		}
		return []Event{DeviceLoggedIn{Device: c.Device, Platform: c.Platform}}, nil
	case LogOut:
		if _, ok := u.devices[c.Device]; !ok {
			return nil, Errorf(ENotFound, "domain: device %q of %s is not logged in", c.Device, u.id)
		}
		return []Event{DeviceLoggedOut{Device: c.Device}}, nil
	case LogOutOthers:
		var events []Event
		for _, d := range u.Devices() {
			if d.ID != c.Keep {
				events = append(events, DeviceLoggedOut{Device: d.ID})
			}
		}
		return events, nil
	case RegisterPushToken, RemovePushToken:
		return u.decidePush(c)
	}
	return nil, unknownCommand(u.AggregateID(), cmd)
}

func (u *User) decideRegister(c RegisterUser, p Policy) ([]Event, error) {
	if c.User != u.id {
		return nil, Errorf(EInvalid, "domain: %s: command registers %q", u.id, c.User)
	}
	if u.registered {
		return nil, Errorf(EExists, "domain: user %s is already registered", u.id)
	}
	username, err := p.NormalizeUsername(c.Username)
	if err != nil {
		return nil, err
	}
	if err := checkPasswordHash(c.PasswordHash); err != nil {
		return nil, err
	}
	name, err := cleanName("display name", c.DisplayName, p.MaxNameBytes, false)
	if err != nil {
		return nil, err
	}
	return []Event{UserRegistered{User: u.id, Username: username, PasswordHash: c.PasswordHash, DisplayName: name}}, nil
}

// Apply applies one event. It returns an EInvalid error for an event of
// another aggregate kind, a UserRegistered of another user or a second one,
// and any event before UserRegistered.
func (u *User) Apply(e Event) error {
	if r, ok := e.(UserRegistered); ok {
		if u.registered || r.User != u.id {
			return foreign(u.AggregateID(), e)
		}
		u.registered = true
		u.username, u.passwordHash, u.displayName = r.Username, r.PasswordHash, r.DisplayName
		u.devices = make(map[DeviceID]string)
		u.version++
		return nil
	}
	if !u.registered {
		return foreign(u.AggregateID(), e)
	}
	switch e := e.(type) {
	case ProfileUpdated:
		u.displayName, u.avatarURL = e.DisplayName, e.AvatarURL
	case PasswordChanged:
		u.passwordHash = e.PasswordHash
	case DeviceLoggedIn:
		u.devices[e.Device] = e.Platform
	case DeviceLoggedOut:
		delete(u.devices, e.Device)
	case PushTokenRegistered, PushTokenRemoved:
		// Tokens are not part of the aggregate's state (decidePush).
	default:
		return foreign(u.AggregateID(), e)
	}
	u.version++
	return nil
}
