package domain

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRelationshipDecide(t *testing.T) {
	a, b, c := uid(1), uid(2), uid(3)
	requested := FriendRequested{From: a, To: b, Message: "hi"}
	friends := []Event{requested, FriendRequestAccepted{From: a, By: b}}
	bBlocksA := UserBlocked{Blocker: b, Blocked: a}
	aBlocksB := UserBlocked{Blocker: a, Blocked: b}
	tests := []struct {
		name    string
		history []Event
		cmd     RelationshipCommand
		want    []Event
		code    Code
	}{
		{"request is sent", nil, RequestFriend{From: a, To: b, Message: "hi"}, []Event{requested}, ""},
		{"request from either side is sent", nil, RequestFriend{From: b, To: a}, []Event{FriendRequested{From: b, To: a}}, ""},
		{"duplicate request from the same side exists", []Event{requested}, RequestFriend{From: a, To: b}, nil, EExists},
		{"crossing request accepts the pending one", []Event{requested}, RequestFriend{From: b, To: a}, []Event{FriendRequestAccepted{From: a, By: b}}, ""},
		{"request between friends exists", friends, RequestFriend{From: b, To: a}, nil, EExists},
		{"request to a blocker is blocked", []Event{bBlocksA}, RequestFriend{From: a, To: b}, nil, EBlocked},
		{"request from a blocker is blocked", []Event{bBlocksA}, RequestFriend{From: b, To: a}, nil, EBlocked},
		{"request from an outsider is forbidden", nil, RequestFriend{From: c, To: b}, nil, EForbidden},
		{"request to an outsider is forbidden", nil, RequestFriend{From: a, To: c}, nil, EForbidden},
		{"request to oneself is invalid", nil, RequestFriend{From: a, To: a}, nil, EInvalid},
		{"request with a huge message is too large", nil, RequestFriend{From: a, To: b, Message: strings.Repeat("x", 16<<10+1)}, nil, ETooLarge},
		{"request with invalid UTF-8 is invalid", nil, RequestFriend{From: a, To: b, Message: "\xff"}, nil, EInvalid},

		{"recipient accepts", []Event{requested}, AcceptFriend{By: b}, []Event{FriendRequestAccepted{From: a, By: b}}, ""},
		{"second accept has no request", friends, AcceptFriend{By: b}, nil, ENoRequest},
		{"accept without request has no request", nil, AcceptFriend{By: b}, nil, ENoRequest},
		{"requester cannot accept", []Event{requested}, AcceptFriend{By: a}, nil, EForbidden},
		{"outsider cannot accept", []Event{requested}, AcceptFriend{By: c}, nil, EForbidden},
		{"accept after decline has no request", []Event{requested, FriendRequestDeclined{From: a, By: b}}, AcceptFriend{By: b}, nil, ENoRequest},
		{"accept after block has no request", []Event{requested, bBlocksA}, AcceptFriend{By: b}, nil, ENoRequest},

		{"recipient declines", []Event{requested}, DeclineFriend{By: b}, []Event{FriendRequestDeclined{From: a, By: b, At: t0}}, ""},
		{"requester cannot decline", []Event{requested}, DeclineFriend{By: a}, nil, EForbidden},
		{"decline without request has no request", nil, DeclineFriend{By: b}, nil, ENoRequest},

		{"either friend removes", friends, RemoveFriend{By: a}, []Event{FriendRemoved{By: a, Other: b}}, ""},
		{"removing a non-friend is not found", []Event{requested}, RemoveFriend{By: a}, nil, ENotFound},
		{"outsider cannot remove", friends, RemoveFriend{By: c}, nil, EForbidden},

		{"block is one event even between friends", friends, Block{By: b}, []Event{bBlocksA}, ""},
		{"blocking back is allowed", []Event{bBlocksA}, Block{By: a}, []Event{aBlocksB}, ""},
		{"blocking twice exists", []Event{bBlocksA}, Block{By: b}, nil, EExists},
		{"outsider cannot block", nil, Block{By: c}, nil, EForbidden},
		{"blocker unblocks", []Event{bBlocksA}, Unblock{By: b}, []Event{UserUnblocked{Blocker: b, Blocked: a}}, ""},
		{"unblocking without a block is not found", nil, Unblock{By: b}, nil, ENotFound},
		{"the blocked cannot unblock", []Event{bBlocksA}, Unblock{By: a}, nil, ENotFound},

		{"nil command is invalid", nil, nil, nil, EInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := RebuildRelationship(b, a, tt.history)
			wantCode(t, err, "")
			fresh, _ := RebuildRelationship(a, b, tt.history)
			got, err := r.Decide(tt.cmd, t0, DefaultPolicy())
			wantCode(t, err, tt.code)
			wantUnchanged(t, r, fresh)
			wantEvents(t, got, tt.want)
			mustApply(t, r, got...)
		})
	}
}

func TestRelationshipState(t *testing.T) {
	a, b := uid(1), uid(2)
	type state struct {
		friends          bool
		pending          UserID
		aBlocks, bBlocks bool
		aMsg, bMsg       Code // CanMessage codes
	}
	tests := []struct {
		name string
		cmds []RelationshipCommand
		want state
	}{
		{"strangers may message", nil, state{}},
		{"request is pending", []RelationshipCommand{RequestFriend{From: a, To: b}}, state{pending: a}},
		{"accepted request makes friends", []RelationshipCommand{RequestFriend{From: a, To: b}, AcceptFriend{By: b}}, state{friends: true}},
		{"crossing requests make friends", []RelationshipCommand{RequestFriend{From: a, To: b}, RequestFriend{From: b, To: a}}, state{friends: true}},
		{"declined request is gone", []RelationshipCommand{RequestFriend{From: a, To: b}, DeclineFriend{By: b}}, state{}},
		{"removed friend is no friend", []RelationshipCommand{RequestFriend{From: a, To: b}, AcceptFriend{By: b}, RemoveFriend{By: b}}, state{}},
		{"blocked user cannot message the blocker, nor the blocker them", []RelationshipCommand{Block{By: b}}, state{bBlocks: true, aMsg: EBlocked, bMsg: EBlocked}},
		{"block ends friendship", []RelationshipCommand{RequestFriend{From: a, To: b}, AcceptFriend{By: b}, Block{By: a}}, state{aBlocks: true, aMsg: EBlocked, bMsg: EBlocked}},
		{"block drops a pending request", []RelationshipCommand{RequestFriend{From: a, To: b}, Block{By: b}}, state{bBlocks: true, aMsg: EBlocked, bMsg: EBlocked}},
		{"block drops one's own pending request", []RelationshipCommand{RequestFriend{From: a, To: b}, Block{By: a}}, state{aBlocks: true, aMsg: EBlocked, bMsg: EBlocked}},
		{"unblock restores messaging but not friendship", []RelationshipCommand{RequestFriend{From: a, To: b}, AcceptFriend{By: b}, Block{By: b}, Unblock{By: b}}, state{}},
		{"one unblock of two blocks still blocks", []RelationshipCommand{Block{By: a}, Block{By: b}, Unblock{By: a}}, state{bBlocks: true, aMsg: EBlocked, bMsg: EBlocked}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewRelationship(a, b)
			wantCode(t, err, "")
			events := run(t, r, t0, tt.cmds...)
			pending, _ := r.PendingFrom()
			got := state{r.Friends(), pending, r.Blocked(a), r.Blocked(b), ErrorCode(r.CanMessage(a)), ErrorCode(r.CanMessage(b))}
			if got != tt.want {
				t.Fatalf("state = %+v, want %+v", got, tt.want)
			}
			rebuilt, err := RebuildRelationship(b, a, events)
			wantCode(t, err, "")
			if !reflect.DeepEqual(rebuilt, r) {
				t.Fatalf("rebuilt %+v, stepped %+v", rebuilt, r)
			}
		})
	}
	t.Run("outsider may not message", func(t *testing.T) {
		r, _ := NewRelationship(a, b)
		wantCode(t, r.CanMessage(uid(3)), EForbidden)
		if r.Blocked(uid(3)) {
			t.Fatal("outsider blocks")
		}
	})
}

func TestRelationshipIdentity(t *testing.T) {
	a, b := uid(1), uid(2)
	r, err := NewRelationship(b, a)
	wantCode(t, err, "")
	if x, y := r.Users(); x != a || y != b {
		t.Fatalf("Users() = %v, %v", x, y)
	}
	if r.AggregateID() != RelationshipID(a, b) || r.PartitionKey() != PairKey(b, a) || r.Conversation() != DirectConversation(b, a) {
		t.Fatalf("ids: %s %s %s", r.AggregateID(), r.PartitionKey(), r.Conversation())
	}
	if r.PartitionKey() != r.Conversation().PartitionKey() {
		t.Fatal("relationship and direct conversation do not share a partition key")
	}
	for name, pair := range map[string][2]UserID{"same user": {a, a}, "malformed first": {"x", b}, "malformed second": {a, "u/x"}} {
		t.Run("new rejects "+name, func(t *testing.T) {
			_, err := NewRelationship(pair[0], pair[1])
			wantCode(t, err, EInvalid)
		})
	}
}

func TestRelationshipApplyRejectsForeignEvents(t *testing.T) {
	a, b, c := uid(1), uid(2), uid(3)
	for _, e := range []Event{
		FriendRequested{From: a, To: c},
		FriendRequested{From: a, To: a},
		FriendRequestAccepted{From: c, By: b},
		FriendRequestDeclined{From: a, By: c},
		FriendRemoved{By: c, Other: a},
		UserBlocked{Blocker: c, Blocked: a},
		UserBlocked{Blocker: a, Blocked: a},
		UserUnblocked{Blocker: a, Blocked: c},
		MemberJoined{User: a},
		nil,
	} {
		name := "nil"
		if e != nil {
			name = e.EventType()
		}
		t.Run("rejects "+name, func(t *testing.T) {
			r, _ := NewRelationship(a, b)
			wantCode(t, r.Apply(e), EInvalid)
			if r.Version() != 0 {
				t.Fatal("version moved")
			}
			_, err := RebuildRelationship(a, b, []Event{e})
			wantCode(t, err, EInvalid)
		})
	}
}

func TestFriendRequestCooldown(t *testing.T) {
	a, b := uid(1), uid(2)
	requested := FriendRequested{From: a, To: b, Message: "hi"}
	declined := func(at time.Time) Event { return FriendRequestDeclined{From: a, By: b, At: at} }
	ask := RequestFriend{From: a, To: b}
	decide := func(t *testing.T, history []Event, now time.Time) ([]Event, error) {
		t.Helper()
		r, err := RebuildRelationship(a, b, history)
		wantCode(t, err, "")
		return r.Decide(ask, now, DefaultPolicy())
	}
	t.Run("asking again within the cooldown is rate limited with the wait", func(t *testing.T) {
		_, err := decide(t, []Event{requested, declined(t0)}, t0.Add(time.Hour))
		wantCode(t, err, ERateLimited)
		var e *Error
		if !errors.As(err, &e) || e.RetryAfter != FriendRequestCooldown-time.Hour {
			t.Fatalf("error %v: want RetryAfter %v", err, FriendRequestCooldown-time.Hour)
		}
	})
	t.Run("asking again after the cooldown is allowed", func(t *testing.T) {
		_, err := decide(t, []Event{requested, declined(t0)}, t0.Add(FriendRequestCooldown))
		wantCode(t, err, "")
	})
	t.Run("the cooldown doubles with each decline in a row", func(t *testing.T) {
		t1 := t0.Add(FriendRequestCooldown)
		h := []Event{requested, declined(t0), requested, declined(t1)}
		_, err := decide(t, h, t1.Add(FriendRequestCooldown))
		wantCode(t, err, ERateLimited)
		_, err = decide(t, h, t1.Add(2*FriendRequestCooldown))
		wantCode(t, err, "")
	})
	t.Run("the cooldown is capped", func(t *testing.T) {
		var h []Event
		at := t0
		for range 12 {
			h = append(h, requested, declined(at))
			at = at.Add(MaxFriendRequestCooldown)
		}
		last := at.Add(-MaxFriendRequestCooldown)
		_, err := decide(t, h, last.Add(MaxFriendRequestCooldown))
		wantCode(t, err, "")
	})
	t.Run("the other user may still ask", func(t *testing.T) {
		r, _ := RebuildRelationship(a, b, []Event{requested, declined(t0)})
		_, err := r.Decide(RequestFriend{From: b, To: a}, t0.Add(time.Minute), DefaultPolicy())
		wantCode(t, err, "")
	})
	t.Run("a decline recorded without a time starts no cooldown", func(t *testing.T) {
		_, err := decide(t, []Event{requested, FriendRequestDeclined{From: a, By: b}}, t0)
		wantCode(t, err, "")
	})
}
