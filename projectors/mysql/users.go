package mysql

import (
	"cmp"
	"context"
	"database/sql"

	"github.com/mpim/mpim/domain"
)

// userRow is a users row: the user aggregate's state.
type userRow struct {
	username, displayName, avatarURL, passwordHash string
	created, updated                               ms
	version                                        uint64
	dirty                                          bool
}

// devKey identifies a user_devices row.
type devKey struct{ user, device string }

// deviceRow is a user_devices row.
type deviceRow struct {
	platform             string
	lastLogin, loggedOut ms
	push                 domain.PushToken // zero: no push token
	dirty                bool
}

func (a *applier) loadUsers(ctx context.Context) error {
	var ids [][]any
	for id := range a.users {
		ids = append(ids, []any{id})
	}
	if len(ids) > 0 {
		err := a.queryKeys(ctx, ids,
			inList("SELECT user_id, username, display_name, avatar_url, password_hash, created_at, updated_at, version FROM "+a.t.users+" WHERE user_id"),
			func(rows *sql.Rows) error {
				var id string
				u := &userRow{}
				if err := rows.Scan(&id, &u.username, &u.displayName, &u.avatarURL, &u.passwordHash, u.created.scan(), u.updated.scan(), &u.version); err != nil {
					return err
				}
				a.users[id] = u
				a.usernames[u.username] = id
				return nil
			})
		if err != nil {
			return err
		}
	}
	var names [][]any
	for name, owner := range a.usernames {
		if owner == "" {
			names = append(names, []any{name})
		}
	}
	if len(names) == 0 {
		return nil
	}
	return a.queryKeys(ctx, names, inList("SELECT username, user_id FROM "+a.t.users+" WHERE username"),
		func(rows *sql.Rows) error {
			var name, id string
			if err := rows.Scan(&name, &id); err != nil {
				return err
			}
			a.usernames[name] = id
			return nil
		})
}

func (a *applier) loadDevices(ctx context.Context) error {
	if len(a.devices) == 0 {
		return nil
	}
	keys := keyTuples(a.devices, func(k devKey) []any { return []any{k.user, k.device} })
	return a.queryKeys(ctx, keys,
		orList("SELECT user_id, device_id, platform, last_login_at, logged_out_at, push_platform, push_token, push_app_id FROM "+a.t.devices+" WHERE", "user_id", "device_id"),
		func(rows *sql.Rows) error {
			var k devKey
			d := &deviceRow{}
			if err := rows.Scan(&k.user, &k.device, &d.platform, d.lastLogin.scan(), d.loggedOut.scan(),
				&d.push.Platform, &d.push.Token, &d.push.AppID); err != nil {
				return err
			}
			a.devices[k] = d
			return nil
		})
}

// applyUser applies an event of a user aggregate ("u/<ulid>"). The row is
// created by UserRegistered (version 1); every later event must carry the
// row's next version. Events of users without a row are quarantined.
func (a *applier) applyUser(it *item) error {
	id, v, t := it.meta.Aggregate, it.meta.Version, a.at()
	if !domain.UserID(id).Valid() {
		return a.quarantine("%s is not a user aggregate", id)
	}
	u := a.users[id]
	if u == nil {
		reg, ok := it.ev.(domain.UserRegistered)
		switch {
		case !ok:
			return a.quarantine("unknown user %s", id)
		case v != 1:
			return a.quarantine("registration of %s at version %d", id, v)
		case string(reg.User) != id:
			return a.quarantine("user aggregate %s registers %s", id, reg.User)
		case reg.Username == "" || !fitsBytes(reg.Username, 128) || !fitsText(reg.DisplayName, 255) || !fitsBytes(reg.PasswordHash, 512):
			return a.quarantine("registration of %s has a malformed username, display name or password hash", id)
		}
		if owner := a.usernames[reg.Username]; owner != "" && owner != id {
			return a.quarantine("username %q of %s is taken by %s", reg.Username, id, owner)
		}
		a.users[id] = &userRow{username: reg.Username, displayName: reg.DisplayName, passwordHash: reg.PasswordHash,
			created: t, updated: t, version: 1, dirty: true}
		a.usernames[reg.Username] = id
		return nil
	}
	if err := a.follow("user", id, u.version, v); err != nil {
		return err
	}
	u.version, u.dirty = v, true
	switch e := it.ev.(type) {
	case domain.UserRegistered:
		return a.quarantine("user %s is already registered", id)
	case domain.ProfileUpdated:
		if !fitsText(e.DisplayName, 255) || !fitsText(e.AvatarURL, 2048) {
			return a.quarantine("profile of %s does not fit its columns", id)
		}
		u.displayName, u.avatarURL = e.DisplayName, e.AvatarURL
	case domain.PasswordChanged:
		if !fitsBytes(e.PasswordHash, 512) {
			return a.quarantine("password hash of %s does not fit its column", id)
		}
		u.passwordHash = e.PasswordHash
	case domain.DeviceLoggedIn:
		if e.Device == "" || !fitsBytes(string(e.Device), 64) || !fitsText(e.Platform, 64) {
			return a.quarantine("device %q of %s does not fit its columns", e.Device, id)
		}
		k := devKey{id, string(e.Device)}
		var push domain.PushToken
		if d := a.devices[k]; d != nil && d.loggedOut == nullTime {
			push = d.push // a login on a logged-in device keeps its token
		}
		a.devices[k] = &deviceRow{platform: e.Platform, lastLogin: t, loggedOut: nullTime, push: push, dirty: true}
	case domain.DeviceLoggedOut:
		d := a.devices[devKey{id, string(e.Device)}]
		if d == nil || d.loggedOut != nullTime {
			return a.quarantine("device %q of %s is not logged in", e.Device, id)
		}
		d.loggedOut, d.push, d.dirty = t, domain.PushToken{}, true
	case domain.PushTokenRegistered:
		d := a.devices[devKey{id, string(e.Device)}]
		if d == nil || d.loggedOut != nullTime {
			return a.quarantine("push token of device %q of %s, which is not logged in", e.Device, id)
		}
		if e.PushToken.Check() != nil {
			return a.quarantine("push token of device %q of %s is malformed", e.Device, id)
		}
		d.push, d.dirty = e.PushToken, true
	case domain.PushTokenRemoved:
		if d := a.devices[devKey{id, string(e.Device)}]; d != nil && d.push != (domain.PushToken{}) {
			d.push, d.dirty = domain.PushToken{}, true
		}
	}
	u.updated = t
	return nil
}

func (a *applier) writeUsers(ctx context.Context) error {
	w := a.multi("INSERT INTO "+a.t.users+" (user_id, username, display_name, avatar_url, password_hash, created_at, updated_at, version) VALUES ",
		" ON DUPLICATE KEY UPDATE display_name = VALUES(display_name), avatar_url = VALUES(avatar_url),"+
			" password_hash = VALUES(password_hash), updated_at = VALUES(updated_at), version = VALUES(version)", 8)
	for _, id := range sortedKeys(a.users, cmpString) {
		u := a.users[id]
		if u == nil || !u.dirty {
			continue
		}
		if err := w.add(ctx, a.tx, id, u.username, u.displayName, u.avatarURL, u.passwordHash, u.created.sql(), u.updated.sql(), u.version); err != nil {
			return err
		}
	}
	return w.flush(ctx, a.tx)
}

func (a *applier) writeDevices(ctx context.Context) error {
	w := a.multi("INSERT INTO "+a.t.devices+" (user_id, device_id, platform, last_login_at, logged_out_at, push_platform, push_token, push_app_id) VALUES ",
		" ON DUPLICATE KEY UPDATE platform = VALUES(platform), last_login_at = VALUES(last_login_at), logged_out_at = VALUES(logged_out_at),"+
			" push_platform = VALUES(push_platform), push_token = VALUES(push_token), push_app_id = VALUES(push_app_id)", 8)
	return writeRows(ctx, a.tx, w, a.devices, func(x, y devKey) int {
		return cmp.Or(cmp.Compare(x.user, y.user), cmp.Compare(x.device, y.device))
	}, func(k devKey, d *deviceRow) []any {
		if d == nil || !d.dirty {
			return nil
		}
		return []any{k.user, k.device, d.platform, d.lastLogin.sql(), d.loggedOut.sql(), string(d.push.Platform), d.push.Token, d.push.AppID}
	})
}
