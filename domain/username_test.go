package domain

import (
	"reflect"
	"testing"
)

func TestUsernameClaimedOnce(t *testing.T) {
	claimed := []Event{UsernameClaimed{Username: "alice", User: uid(1)}}
	tests := []struct {
		name    string
		history []Event
		cmd     UsernameCommand
		want    []Event
		code    Code
	}{
		{"free name is claimed", nil, ClaimUsername{Username: "alice", User: uid(1)}, claimed, ""},
		{"name is normalised before claiming", nil, ClaimUsername{Username: " Alice ", User: uid(1)}, claimed, ""},
		{"taken name is refused", claimed, ClaimUsername{Username: "alice", User: uid(2)}, nil, EExists},
		{"taken name is refused to its owner too", claimed, ClaimUsername{Username: "alice", User: uid(1)}, nil, EExists},
		{"another name is invalid here", nil, ClaimUsername{Username: "bob", User: uid(1)}, nil, EInvalid},
		{"malformed user is invalid", nil, ClaimUsername{Username: "alice", User: "alice"}, nil, EInvalid},
		{"malformed name is invalid", nil, ClaimUsername{Username: "a!", User: uid(1)}, nil, EInvalid},
		{"nil command is invalid", nil, nil, nil, EInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, _ := RebuildUsername("alice", tt.history)
			fresh, _ := RebuildUsername("alice", tt.history)
			got, err := n.Decide(tt.cmd, t0, DefaultPolicy())
			wantCode(t, err, tt.code)
			wantUnchanged(t, n, fresh)
			wantEvents(t, got, tt.want)
			mustApply(t, n, got...)
			owner, ok := n.Owner()
			if claimed := len(tt.history)+len(got) > 0; ok != claimed || ok && owner != uid(1) {
				t.Fatalf("Owner() = %v, %v", owner, ok)
			}
		})
	}
}

func TestUsernameAggregate(t *testing.T) {
	t.Run("new accepts a normalised name", func(t *testing.T) {
		n, err := NewUsername("alice")
		wantCode(t, err, "")
		if n.Name() != "alice" || n.AggregateID() != "n/alice" || n.PartitionKey() != "n/alice" || n.Version() != 0 {
			t.Fatalf("got %+v", n)
		}
		if _, ok := n.Owner(); ok {
			t.Fatal("fresh name has an owner")
		}
	})
	for _, name := range []string{"Alice", " alice", "al", "-alice", ""} {
		t.Run("new rejects "+name, func(t *testing.T) {
			_, err := NewUsername(name)
			wantCode(t, err, EInvalid)
		})
	}
	t.Run("rebuild equals step by step", func(t *testing.T) {
		n, _ := NewUsername("alice")
		events := run[UsernameCommand](t, n, t0, ClaimUsername{Username: "alice", User: uid(1)})
		r, err := RebuildUsername("alice", events)
		wantCode(t, err, "")
		if !reflect.DeepEqual(n, r) {
			t.Fatalf("rebuilt %+v, stepped %+v", r, n)
		}
	})
	rejects := []struct {
		name string
		e    Event
	}{
		{"another name", UsernameClaimed{Username: "bob", User: uid(1)}},
		{"another aggregate's event", UserRegistered{User: uid(1)}},
		{"nil", nil},
	}
	for _, tt := range rejects {
		t.Run("apply rejects "+tt.name, func(t *testing.T) {
			n, _ := NewUsername("alice")
			wantCode(t, n.Apply(tt.e), EInvalid)
			if n.Version() != 0 {
				t.Fatal("version moved")
			}
		})
	}
	t.Run("rebuild rejects a second claim", func(t *testing.T) {
		c := UsernameClaimed{Username: "alice", User: uid(1)}
		_, err := RebuildUsername("alice", []Event{c, c})
		wantCode(t, err, EInvalid)
	})
}
