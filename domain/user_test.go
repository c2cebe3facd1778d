package domain

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

const hash = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"

func TestUserDecide(t *testing.T) {
	me := uid(1)
	registered := []Event{UserRegistered{User: me, Username: "alice", PasswordHash: hash, DisplayName: "Alice"}}
	loggedIn := append(registered[:1:1], DeviceLoggedIn{Device: "phone-1", Platform: "ios"})
	tests := []struct {
		name    string
		history []Event
		cmd     UserCommand
		want    []Event
		code    Code
	}{
		{"fresh user registers", nil, RegisterUser{User: me, Username: "Alice", PasswordHash: hash, DisplayName: " Alice "}, registered, ""},
		{"registered user cannot register again", registered, RegisterUser{User: me, Username: "alice", PasswordHash: hash}, nil, EExists},
		{"registering another user is invalid", nil, RegisterUser{User: uid(2), Username: "alice", PasswordHash: hash}, nil, EInvalid},
		{"bad username is invalid", nil, RegisterUser{User: me, Username: "a", PasswordHash: hash}, nil, EInvalid},
		{"plain password is invalid", nil, RegisterUser{User: me, Username: "alice", PasswordHash: "hunter2"}, nil, EInvalid},
		{"long display name is too large", nil, RegisterUser{User: me, Username: "alice", PasswordHash: hash, DisplayName: strings.Repeat("x", 65)}, nil, ETooLarge},
		{"control characters in display name are invalid", nil, RegisterUser{User: me, Username: "alice", PasswordHash: hash, DisplayName: "a\nb"}, nil, EInvalid},

		{"profile update on unregistered user is not found", nil, UpdateProfile{DisplayName: "A"}, nil, ENotFound},
		{"password change on unregistered user is not found", nil, ChangePassword{PasswordHash: hash}, nil, ENotFound},
		{"log in on unregistered user is not found", nil, LogIn{Device: "d"}, nil, ENotFound},
		{"log out on unregistered user is not found", nil, LogOut{Device: "d"}, nil, ENotFound},

		{"profile updates", registered, UpdateProfile{DisplayName: "Al", AvatarURL: "https://cdn.example/a.png"}, []Event{ProfileUpdated{DisplayName: "Al", AvatarURL: "https://cdn.example/a.png"}}, ""},
		{"profile clears avatar", registered, UpdateProfile{DisplayName: "Al"}, []Event{ProfileUpdated{DisplayName: "Al"}}, ""},
		{"non-http avatar is invalid", registered, UpdateProfile{AvatarURL: "javascript:alert(1)"}, nil, EInvalid},
		{"relative avatar is invalid", registered, UpdateProfile{AvatarURL: "/a.png"}, nil, EInvalid},
		{"avatar with credentials is invalid", registered, UpdateProfile{AvatarURL: "https://u:p@cdn.example/a.png"}, nil, EInvalid},
		{"huge avatar URL is too large", registered, UpdateProfile{AvatarURL: "https://cdn.example/" + strings.Repeat("a", 2048)}, nil, ETooLarge},
		{"long display name update is too large", registered, UpdateProfile{DisplayName: strings.Repeat("é", 33)}, nil, ETooLarge},

		{"password changes", registered, ChangePassword{PasswordHash: "$2b$10$abc"}, []Event{PasswordChanged{PasswordHash: "$2b$10$abc"}}, ""},
		{"empty password hash is invalid", registered, ChangePassword{}, nil, EInvalid},
		{"sealed password hash changes", registered, ChangePassword{PasswordHash: "sealed:v1:0a1b2c3d:AbC-_9"}, []Event{PasswordChanged{PasswordHash: "sealed:v1:0a1b2c3d:AbC-_9"}}, ""},
		{"sealed hash without key id is invalid", registered, ChangePassword{PasswordHash: "sealed:v1::AbC"}, nil, EInvalid},
		{"sealed hash without body is invalid", registered, ChangePassword{PasswordHash: "sealed:v1:0a1b2c3d"}, nil, EInvalid},
		{"sealed hash with an empty body is invalid", registered, ChangePassword{PasswordHash: "sealed:v1:0a1b2c3d:"}, nil, EInvalid},
		{"sealed hash outside base64url is invalid", registered, ChangePassword{PasswordHash: "sealed:v1:0a1b2c3d:Ab+/="}, nil, EInvalid},
		{"sealed hash over 512 bytes is too large", registered, ChangePassword{PasswordHash: "sealed:v1:0a1b2c3d:" + strings.Repeat("A", 494)}, nil, ETooLarge},
		{"sealed hash of 512 bytes changes", registered, ChangePassword{PasswordHash: "sealed:v1:0a1b2c3d:" + strings.Repeat("A", 493)},
			[]Event{PasswordChanged{PasswordHash: "sealed:v1:0a1b2c3d:" + strings.Repeat("A", 493)}}, ""},

		{"device logs in", registered, LogIn{Device: "phone-1", Platform: "ios"}, []Event{DeviceLoggedIn{Device: "phone-1", Platform: "ios"}}, ""},
		{"device logs in again", loggedIn, LogIn{Device: "phone-1", Platform: "android"}, []Event{DeviceLoggedIn{Device: "phone-1", Platform: "android"}}, ""},
		{"empty device is invalid", registered, LogIn{}, nil, EInvalid},
		{"device with spaces is invalid", registered, LogIn{Device: "my phone"}, nil, EInvalid},
		{"bad platform is invalid", registered, LogIn{Device: "d", Platform: "i o s"}, nil, EInvalid},
		{"logged-in device logs out", loggedIn, LogOut{Device: "phone-1"}, []Event{DeviceLoggedOut{Device: "phone-1"}}, ""},
		{"unknown device log out is not found", loggedIn, LogOut{Device: "phone-2"}, nil, ENotFound},
		{"other devices log out, the asking one stays", append(slices.Clone(loggedIn), DeviceLoggedIn{Device: "web-1"}, DeviceLoggedIn{Device: "a-tab"}),
			LogOutOthers{Keep: "phone-1"}, []Event{DeviceLoggedOut{Device: "a-tab"}, DeviceLoggedOut{Device: "web-1"}}, ""},
		{"no other device: nothing to log out", loggedIn, LogOutOthers{Keep: "phone-1"}, nil, ""},
		{"log out others on unregistered user is not found", nil, LogOutOthers{Keep: "d"}, nil, ENotFound},

		{"nil command on registered user is invalid", registered, nil, nil, EInvalid},
		{"pointer command is invalid", registered, &LogOut{Device: "phone-1"}, nil, EInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			decideCase(t, func(h []Event) (*User, error) { return RebuildUser(me, h) }, tt.history, tt.cmd, DefaultPolicy(), tt.code, tt.want)
		})
	}
}

func TestUserLifecycle(t *testing.T) {
	me := uid(7)
	u, err := NewUser(me)
	wantCode(t, err, "")
	events := run[UserCommand](t, u, t0,
		RegisterUser{User: me, Username: "Carol", PasswordHash: hash, DisplayName: "Carol"},
		LogIn{Device: "web-1", Platform: "web"},
		LogIn{Device: "phone-1", Platform: "ios"},
		UpdateProfile{DisplayName: "Caz", AvatarURL: "http://img.example/c.jpg"},
		ChangePassword{PasswordHash: "$2b$12$new"},
		LogOut{Device: "web-1"},
	)
	t.Run("state follows the events", func(t *testing.T) {
		if !u.Registered() || u.ID() != me || u.AggregateID() != string(me) || u.PartitionKey() != string(me) {
			t.Fatalf("identity: %+v", u)
		}
		if u.Username() != "carol" || u.DisplayName() != "Caz" || u.AvatarURL() != "http://img.example/c.jpg" || u.PasswordHash() != "$2b$12$new" {
			t.Fatalf("profile: %+v", u)
		}
		if want := []Device{{ID: "phone-1", Platform: "ios"}}; !reflect.DeepEqual(u.Devices(), want) {
			t.Fatalf("Devices() = %v, want %v", u.Devices(), want)
		}
	})
	t.Run("rebuild equals step by step", func(t *testing.T) {
		r, err := RebuildUser(me, events)
		wantCode(t, err, "")
		if !reflect.DeepEqual(r, u) {
			t.Fatalf("rebuilt %+v, stepped %+v", r, u)
		}
	})
	t.Run("devices are sorted", func(t *testing.T) {
		r, _ := RebuildUser(me, append(events[:1:1], DeviceLoggedIn{Device: "b"}, DeviceLoggedIn{Device: "a"}))
		if ds := r.Devices(); len(ds) != 2 || ds[0].ID != "a" || ds[1].ID != "b" {
			t.Fatalf("Devices() = %v", ds)
		}
	})
}

func TestUserApplyRejectsForeignEvents(t *testing.T) {
	me := uid(1)
	reg := UserRegistered{User: me, Username: "alice", PasswordHash: hash}
	tests := []struct {
		name    string
		history []Event
		e       Event
	}{
		{"event before registration", nil, ProfileUpdated{DisplayName: "x"}},
		{"another user's registration", nil, UserRegistered{User: uid(2)}},
		{"a second registration", []Event{reg}, reg},
		{"a group event", []Event{reg}, MemberJoined{User: me}},
		{"nil", []Event{reg}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantRejected(t, func(h []Event) (*User, error) { return RebuildUser(me, h) }, tt.history, tt.e)
		})
	}
	t.Run("new rejects a malformed id", func(t *testing.T) {
		_, err := NewUser("u/nope")
		wantCode(t, err, EInvalid)
	})
}

func TestUserSnapshotRestoresTheSameState(t *testing.T) {
	me := uid(1)
	history := []Event{
		UserRegistered{User: me, Username: "alice", PasswordHash: hash, DisplayName: "Alice"},
		DeviceLoggedIn{Device: "phone", Platform: "ios"},
		ProfileUpdated{DisplayName: "Al", AvatarURL: "https://cdn.example/a.png"},
		DeviceLoggedIn{Device: "laptop", Platform: "web"},
		PasswordChanged{PasswordHash: "$2b$10$abc"},
		DeviceLoggedOut{Device: "phone"},
	}
	full, err := RebuildUser(me, history)
	if err != nil {
		t.Fatal(err)
	}
	for cut := range len(history) + 1 {
		head, _ := RebuildUser(me, history[:cut])
		got, err := RestoreUser(me, head.Snapshot(), history[cut:])
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		if !reflect.DeepEqual(got.Snapshot(), full.Snapshot()) || got.Version() != full.Version() {
			t.Fatalf("cut at %d: restored %+v, want %+v", cut, got.Snapshot(), full.Snapshot())
		}
	}
	if _, err := RestoreUser(me, UserSnapshot{}, history[1:]); err == nil {
		t.Fatal("events before registration accepted")
	}
}
