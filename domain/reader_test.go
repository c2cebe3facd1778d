package domain

import "testing"

func TestDecideReader(t *testing.T) {
	a, b := uid(1), uid(2)
	direct := DirectConversation(a, b)
	groupConv := GroupConversation(g1)
	tests := []struct {
		name string
		user UserID
		conv ConversationID
		seq  uint64
		last uint64
		code Code
	}{
		{"pair member marks a direct conversation", a, direct, 5, 9, ""},
		{"other pair member marks a direct conversation", b, direct, 1, 9, ""},
		{"user marks a group conversation", member, groupConv, 9, 9, ""},
		{"outsider cannot mark a direct conversation", uid(3), direct, 5, 9, EForbidden},
		{"zero seq is invalid", a, direct, 0, 9, EInvalid},
		{"seq beyond the last seq is invalid", a, direct, 10, 9, EInvalid},
		{"seq in a conversation without messages is invalid", a, direct, 1, 0, EInvalid},
		{"seq 2^64-1 is invalid", a, direct, 1<<64 - 1, 1<<64 - 1, EInvalid},
		{"seq beyond MaxSeq is invalid", a, direct, MaxSeq + 1, MaxSeq + 1, EInvalid},
		{"malformed user is invalid", "bob", direct, 5, 9, EInvalid},
		{"malformed conversation is invalid", a, "c/nope", 5, 9, EInvalid},
		{"empty conversation is invalid", a, "", 5, 9, EInvalid},
	}
	for _, tt := range tests {
		t.Run("mark read: "+tt.name, func(t *testing.T) {
			got, err := DecideMarkRead(MarkRead{User: tt.user, Conversation: tt.conv, Seq: tt.seq}, tt.last)
			wantCode(t, err, tt.code)
			if err == nil {
				wantEvents(t, got, []Event{ConversationRead{User: tt.user, Conversation: tt.conv, Seq: tt.seq}})
			}
		})
		t.Run("delete for me: "+tt.name, func(t *testing.T) {
			got, err := DecideDeleteForMe(DeleteForMe{User: tt.user, Conversation: tt.conv, Seq: tt.seq}, tt.last)
			wantCode(t, err, tt.code)
			if err == nil {
				wantEvents(t, got, []Event{MessageDeletedForMe{User: tt.user, Conversation: tt.conv, Seq: tt.seq}})
			}
		})
	}
}

func TestConversationIDValid(t *testing.T) {
	a, b := uid(1), uid(2)
	tests := []struct {
		name string
		id   ConversationID
		want bool
	}{
		{"direct from either order is valid", DirectConversation(b, a), true},
		{"group is valid", GroupConversation(g1), true},
		{"reversed pair is invalid", ConversationID("d/" + b.ULID() + "." + a.ULID()), false},
		{"pair with itself is invalid", ConversationID("d/" + a.ULID() + "." + a.ULID()), false},
		{"three users are invalid", ConversationID("d/" + a.ULID() + "." + b.ULID() + "." + uid(3).ULID()), false},
		{"malformed group is invalid", "c/xyz", false},
		{"unknown prefix is invalid", ConversationID("x/" + a.ULID()), false},
		{"empty is invalid", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.id.Valid(); got != tt.want {
				t.Fatalf("%q.Valid() = %v", tt.id, got)
			}
		})
	}
}
