package domain

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDecideSend(t *testing.T) {
	a, b := uid(1), uid(2)
	direct := DirectConversation(b, a)
	groupConv := GroupConversation(g1)
	open, _ := NewRelationship(a, b)
	bBlocksA, _ := RebuildRelationship(a, b, []Event{UserBlocked{Blocker: b, Blocked: a}})
	other, _ := NewRelationship(a, uid(3))
	team, _ := RebuildGroup(g1, teamHistory(false))
	missing, _ := NewGroup(g1)
	now := time.Date(2025, 3, 1, 13, 0, 0, 123456789, time.FixedZone("CET", 3600))
	sentAt := time.Date(2025, 3, 1, 12, 0, 0, 123000000, time.UTC)
	img := &Attachment{URL: "https://cdn.example/p.jpg", Mime: "image/jpeg", Size: 1000, Width: 10, Height: 20, Meta: map[string]string{"blurhash": "LKO2"}}
	text := func(conv ConversationID, sender UserID, s string) SendMessage {
		return SendMessage{Conversation: conv, Sender: sender, Device: "phone-1", ClientMsgID: "c-1", Kind: KindText, Text: s}
	}
	sent := func(cmd SendMessage) []Event {
		return []Event{MessageSent{Conversation: cmd.Conversation, Sender: cmd.Sender, Device: cmd.Device, ClientMsgID: cmd.ClientMsgID,
			Kind: cmd.Kind, Text: cmd.Text, Attachment: cmd.Attachment, SentAt: sentAt}}
	}
	withAtt := func(kind MessageKind, s string, att *Attachment) SendMessage {
		c := text(direct, a, s)
		c.Kind, c.Attachment = kind, att
		return c
	}
	tests := []struct {
		name  string
		cmd   SendMessage
		rel   *Relationship
		group *Group
		code  Code
	}{
		{name: "stranger sends a direct text", rel: open, cmd: text(direct, a, "hello")},
		{name: "other side replies", rel: open, cmd: text(direct, b, "hey")},
		{name: "sender without device or client id sends", rel: open, cmd: SendMessage{Conversation: direct, Sender: a, Kind: KindText, Text: "x"}},
		{name: "image with caption is sent", rel: open, cmd: withAtt(KindImage, "look", img)},
		{name: "file without caption is sent", rel: open, cmd: withAtt(KindFile, "", &Attachment{URL: "http://files.example/a.pdf", Name: "a.pdf"})},
		{name: "custom text is sent", rel: open, cmd: withAtt(KindCustom, `{"card":1}`, nil)},
		{name: "custom payload without URL is sent", rel: open, cmd: withAtt(KindCustom, "", &Attachment{Meta: map[string]string{"k": "v"}})},
		{name: "text at the size limit is sent", rel: open, cmd: text(direct, a, strings.Repeat("x", 16<<10))},
		{name: "member posts to the group", group: team, cmd: text(groupConv, member, "hi all")},

		{name: "outsider cannot send to a pair", rel: open, cmd: text(direct, uid(3), "x"), code: EForbidden},
		{name: "blocked user cannot message the blocker", rel: bBlocksA, cmd: text(direct, a, "x"), code: EBlocked},
		{name: "blocker cannot message the blocked user", rel: bBlocksA, cmd: text(direct, b, "x"), code: EBlocked},
		{name: "missing relationship is internal", cmd: text(direct, a, "x"), code: EInternal},
		{name: "another pair's relationship is internal", rel: other, cmd: text(direct, a, "x"), code: EInternal},
		{name: "non-member cannot post to the group", group: team, cmd: text(groupConv, outsider, "x"), code: ENotMember},
		{name: "muted member cannot post to the group", group: team, cmd: text(groupConv, muted, "x"), code: EMuted},
		{name: "post to a missing group is not found", group: missing, cmd: text(groupConv, member, "x"), code: ENotFound},
		{name: "missing group is internal", rel: open, cmd: text(groupConv, member, "x"), code: EInternal},

		{name: "reversed direct id is invalid", rel: open, cmd: text(ConversationID("d/"+b.ULID()+"."+a.ULID()), a, "x"), code: EInvalid},
		{name: "malformed conversation is invalid", rel: open, cmd: text("x/1", a, "x"), code: EInvalid},
		{name: "malformed sender is invalid", rel: open, cmd: text(direct, "alice", "x"), code: EInvalid},
		{name: "device with spaces is invalid", rel: open, cmd: SendMessage{Conversation: direct, Sender: a, Device: "a b", Kind: KindText, Text: "x"}, code: EInvalid},
		{name: "long client id is invalid", rel: open, cmd: SendMessage{Conversation: direct, Sender: a, ClientMsgID: strings.Repeat("c", 65), Kind: KindText, Text: "x"}, code: EInvalid},
		{name: "empty text is invalid", rel: open, cmd: text(direct, a, ""), code: EInvalid},
		{name: "blank text is invalid", rel: open, cmd: text(direct, a, " \n\t"), code: EInvalid},
		{name: "invalid UTF-8 is invalid", rel: open, cmd: text(direct, a, "a\xffb"), code: EInvalid},
		{name: "text over the limit is too large", rel: open, cmd: text(direct, a, strings.Repeat("x", 16<<10+1)), code: ETooLarge},
		{name: "text with an attachment is invalid", rel: open, cmd: withAtt(KindText, "x", img), code: EInvalid},
		{name: "image without attachment is invalid", rel: open, cmd: withAtt(KindImage, "x", nil), code: EInvalid},
		{name: "image without URL is invalid", rel: open, cmd: withAtt(KindImage, "", &Attachment{Mime: "image/png"}), code: EInvalid},
		{name: "file with an ftp URL is invalid", rel: open, cmd: withAtt(KindFile, "", &Attachment{URL: "ftp://x/y"}), code: EInvalid},
		{name: "custom with a data URL is invalid", rel: open, cmd: withAtt(KindCustom, "", &Attachment{URL: "data:,x"}), code: EInvalid},
		{name: "empty custom is invalid", rel: open, cmd: withAtt(KindCustom, "", nil), code: EInvalid},
		{name: "unknown kind is invalid", rel: open, cmd: withAtt(MessageKind(0), "x", nil), code: EInvalid},
		{name: "negative size is invalid", rel: open, cmd: withAtt(KindFile, "", &Attachment{URL: "https://x/y", Size: -1}), code: EInvalid},
		{name: "empty metadata key is invalid", rel: open, cmd: withAtt(KindFile, "", &Attachment{URL: "https://x/y", Meta: map[string]string{"": "v"}}), code: EInvalid},
		{name: "metadata over the limit is too large", rel: open, cmd: withAtt(KindFile, "", &Attachment{URL: "https://x/y", Meta: map[string]string{"k": strings.Repeat("v", 16<<10)}}), code: ETooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var want []Event
			if tt.code == "" {
				want = sent(tt.cmd)
			}
			got, err := DecideSend(tt.cmd, now, DefaultPolicy(), tt.rel, tt.group)
			wantCode(t, err, tt.code)
			wantEvents(t, got, want)
		})
	}
	t.Run("decided message shares nothing with the command", func(t *testing.T) {
		att := &Attachment{URL: "https://x/y", Meta: map[string]string{"k": "v"}}
		got, err := DecideSend(withAtt(KindFile, "", att), now, DefaultPolicy(), open, nil)
		wantCode(t, err, "")
		att.URL, att.Meta["k"] = "changed", "changed"
		if m := got[0].(MessageSent); m.Attachment.URL != "https://x/y" || m.Attachment.Meta["k"] != "v" {
			t.Fatalf("attachment aliased: %+v", m.Attachment)
		}
	})
	t.Run("deciding leaves relationship and group unchanged", func(t *testing.T) {
		freshRel, _ := NewRelationship(a, b)
		freshTeam, _ := RebuildGroup(g1, teamHistory(false))
		wantUnchanged(t, open, freshRel)
		wantUnchanged(t, team, freshTeam)
	})
}

func TestDecideRecall(t *testing.T) {
	a, b := uid(1), uid(2)
	direct := DirectConversation(a, b)
	groupConv := GroupConversation(g1)
	team, _ := RebuildGroup(g1, teamHistory(false))
	byA := MessageState{Sender: a, SentAt: t0}
	byMember := MessageState{Sender: member, SentAt: t0}
	byMuted := MessageState{Sender: muted, SentAt: t0}
	window := DefaultPolicy().RecallWindow
	late := t0.Add(window + time.Millisecond)
	recalled := func(seq uint64, by UserID, s MessageState) []Event {
		return []Event{MessageRecalled{Seq: seq, By: by, Sender: s.Sender, SentAt: s.SentAt}}
	}
	tests := []struct {
		name  string
		cmd   RecallMessage
		state MessageState
		now   time.Time
		group *Group
		want  []Event
		code  Code
	}{
		{"sender recalls within the window", RecallMessage{direct, 7, a}, byA, t0.Add(time.Second), nil, recalled(7, a, byA), ""},
		{"sender recalls at the end of the window", RecallMessage{direct, 7, a}, byA, t0.Add(window), nil, recalled(7, a, byA), ""},
		{"sender cannot recall after the window", RecallMessage{direct, 7, a}, byA, late, nil, nil, EWindowPassed},
		{"other side cannot recall", RecallMessage{direct, 7, b}, byA, t0, nil, nil, EForbidden},
		{"outsider cannot recall", RecallMessage{direct, 7, uid(3)}, byA, t0, nil, nil, EForbidden},
		{"second recall exists", RecallMessage{direct, 7, a}, MessageState{Sender: a, SentAt: t0, Recalled: true}, t0, nil, nil, EExists},
		{"missing message is not found", RecallMessage{direct, 7, a}, MessageState{}, t0, nil, nil, ENotFound},
		{"zero seq is invalid", RecallMessage{direct, 0, a}, byA, t0, nil, nil, EInvalid},
		{"seq 2^64-1 is invalid", RecallMessage{direct, 1<<64 - 1, a}, byA, t0, nil, nil, EInvalid},
		{"malformed conversation is invalid", RecallMessage{"d/x", 7, a}, byA, t0, nil, nil, EInvalid},

		{"group sender recalls within the window", RecallMessage{groupConv, 3, member}, byMember, t0, team, recalled(3, member, byMember), ""},
		{"muted sender still recalls", RecallMessage{groupConv, 3, muted}, byMuted, t0, team, recalled(3, muted, byMuted), ""},
		{"group sender cannot recall after the window", RecallMessage{groupConv, 3, member}, byMember, late, team, nil, EWindowPassed},
		{"admin recalls anyone's message at any time", RecallMessage{groupConv, 3, admin}, byMember, t0.AddDate(1, 0, 0), team, recalled(3, admin, byMember), ""},
		{"owner recalls anyone's message at any time", RecallMessage{groupConv, 3, owner}, byMember, late, team, recalled(3, owner, byMember), ""},
		{"admin cannot recall the owner's message", RecallMessage{groupConv, 3, admin}, MessageState{Sender: owner, SentAt: t0}, t0, team, nil, EForbidden},
		{"admin cannot recall another admin's message", RecallMessage{groupConv, 3, admin}, MessageState{Sender: admin2, SentAt: t0}, t0, team, nil, EForbidden},
		{"admin recalls their own message at any time", RecallMessage{groupConv, 3, admin}, MessageState{Sender: admin, SentAt: t0}, late, team, recalled(3, admin, MessageState{Sender: admin, SentAt: t0}), ""},
		{"admin recalls a former member's message", RecallMessage{groupConv, 3, admin}, MessageState{Sender: outsider, SentAt: t0}, late, team, recalled(3, admin, MessageState{Sender: outsider, SentAt: t0}), ""},
		{"owner recalls an admin's message", RecallMessage{groupConv, 3, owner}, MessageState{Sender: admin, SentAt: t0}, late, team, recalled(3, owner, MessageState{Sender: admin, SentAt: t0}), ""},
		{"member cannot recall another's message", RecallMessage{groupConv, 3, member2}, byMember, t0, team, nil, EForbidden},
		{"non-member cannot recall", RecallMessage{groupConv, 3, outsider}, MessageState{Sender: outsider, SentAt: t0}, t0, team, nil, ENotMember},
		{"admin cannot recall twice", RecallMessage{groupConv, 3, admin}, MessageState{Sender: member, SentAt: t0, Recalled: true}, t0, team, nil, EExists},
		{"missing group is internal", RecallMessage{groupConv, 3, member}, byMember, t0, nil, nil, EInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecideRecall(tt.cmd, tt.state, tt.now, DefaultPolicy(), tt.group)
			s, ok := wantDecided(t, tt.state, got, err, tt.want, tt.code)
			if !ok {
				return
			}
			if !s.Recalled || s.Sender != tt.state.Sender || s.Edits != tt.state.Edits {
				t.Fatalf("state after recall = %+v", s)
			}
		})
	}
	t.Run("blocked sender still recalls in a direct conversation", func(t *testing.T) {
		// DecideRecall takes no relationship: blocks do not stop a withdrawal.
		_, err := DecideRecall(RecallMessage{direct, 7, a}, byA, t0, DefaultPolicy(), nil)
		wantCode(t, err, "")
	})
}

func TestDecideEdit(t *testing.T) {
	a, b := uid(1), uid(2)
	direct := DirectConversation(a, b)
	groupConv := GroupConversation(g1)
	rel, _ := NewRelationship(a, b)
	aBlocked, _ := RebuildRelationship(a, b, []Event{UserBlocked{Blocker: b, Blocked: a}})
	team, _ := RebuildGroup(g1, teamHistory(false))
	byA := MessageState{Sender: a, SentAt: t0, Edits: 2}
	window := DefaultPolicy().EditWindow
	edited := []Event{MessageEdited{Seq: 7, By: a, Text: "fixed"}}
	tests := []struct {
		name  string
		cmd   EditMessage
		state MessageState
		now   time.Time
		rel   *Relationship
		group *Group
		want  []Event
		code  Code
	}{
		{"sender edits within the window", EditMessage{direct, 7, a, "fixed"}, byA, t0.Add(window), rel, nil, edited, ""},
		{"sender cannot edit after the window", EditMessage{direct, 7, a, "fixed"}, byA, t0.Add(window + time.Millisecond), rel, nil, nil, EWindowPassed},
		{"other side cannot edit", EditMessage{direct, 7, b, "fixed"}, byA, t0, rel, nil, nil, EForbidden},
		{"recalled message cannot be edited", EditMessage{direct, 7, a, "fixed"}, MessageState{Sender: a, SentAt: t0, Recalled: true}, t0, rel, nil, nil, ENotFound},
		{"missing message is not found", EditMessage{direct, 7, a, "fixed"}, MessageState{}, t0, rel, nil, nil, ENotFound},
		{"blocked sender cannot edit", EditMessage{direct, 7, a, "fixed"}, byA, t0, aBlocked, nil, nil, EBlocked},
		{"blank text is invalid", EditMessage{direct, 7, a, "  "}, byA, t0, rel, nil, nil, EInvalid},
		{"long text is too large", EditMessage{direct, 7, a, strings.Repeat("x", 16<<10+1)}, byA, t0, rel, nil, nil, ETooLarge},
		{"zero seq is invalid", EditMessage{direct, 0, a, "fixed"}, byA, t0, rel, nil, nil, EInvalid},
		{"seq 2^64-1 is invalid", EditMessage{direct, 1<<64 - 1, a, "fixed"}, byA, t0, rel, nil, nil, EInvalid},
		{"group sender edits", EditMessage{groupConv, 7, member, "fixed"}, MessageState{Sender: member, SentAt: t0}, t0, nil, team, []Event{MessageEdited{Seq: 7, By: member, Text: "fixed"}}, ""},
		{"muted sender cannot edit", EditMessage{groupConv, 7, muted, "fixed"}, MessageState{Sender: muted, SentAt: t0}, t0, nil, team, nil, EMuted},
		{"admin cannot edit another's message", EditMessage{groupConv, 7, admin, "fixed"}, MessageState{Sender: member, SentAt: t0}, t0, nil, team, nil, EForbidden},
		{"departed sender cannot edit", EditMessage{groupConv, 7, outsider, "fixed"}, MessageState{Sender: outsider, SentAt: t0}, t0, nil, team, nil, ENotMember},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecideEdit(tt.cmd, tt.state, tt.now, DefaultPolicy(), tt.rel, tt.group)
			s, ok := wantDecided(t, tt.state, got, err, tt.want, tt.code)
			if !ok {
				return
			}
			if s.Edits != tt.state.Edits+1 || s.Recalled {
				t.Fatalf("state after edit = %+v", s)
			}
		})
	}
}

func TestMessageLifecycle(t *testing.T) {
	a, b := uid(1), uid(2)
	rel, _ := NewRelationship(a, b)
	p := DefaultPolicy()
	events, err := DecideSend(SendMessage{Conversation: DirectConversation(a, b), Sender: a, Kind: KindText, Text: "helo"}, t0.Add(time.Nanosecond), p, rel, nil)
	wantCode(t, err, "")
	sent := events[0].(MessageSent)
	sent.Seq = 1 // as the event store assigns it
	state := NewMessageState(sent)
	if want := (MessageState{Sender: a, SentAt: t0}); state != want {
		t.Fatalf("NewMessageState = %+v, want %+v", state, want)
	}
	edit, err := DecideEdit(EditMessage{sent.Conversation, sent.Seq, a, "hello"}, state, t0.Add(time.Minute), p, rel, nil)
	wantCode(t, err, "")
	mustApply(t, &state, edit...)
	recall, err := DecideRecall(RecallMessage{sent.Conversation, sent.Seq, a}, state, t0.Add(2*time.Minute), p, nil)
	wantCode(t, err, "")
	mustApply(t, &state, recall...)
	if want := (MessageState{Sender: a, SentAt: t0, Recalled: true, Edits: 1}); state != want {
		t.Fatalf("state = %+v, want %+v", state, want)
	}
	_, err = DecideEdit(EditMessage{sent.Conversation, sent.Seq, a, "again"}, state, t0.Add(3*time.Minute), p, rel, nil)
	wantCode(t, err, ENotFound)
	_, err = DecideRecall(RecallMessage{sent.Conversation, sent.Seq, a}, state, t0.Add(time.Minute), p, nil)
	wantCode(t, err, EExists)
}

func TestMessageStateApplyRejectsForeignEvents(t *testing.T) {
	for name, e := range map[string]Event{
		"recall of another sender's message": MessageRecalled{Seq: 1, Sender: uid(2)},
		"a message sent":                     MessageSent{},
		"a group event":                      MemberJoined{},
		"nil":                                nil,
	} {
		t.Run("rejects "+name, func(t *testing.T) {
			s := MessageState{Sender: uid(1), SentAt: t0}
			before := s
			wantCode(t, s.Apply(e), EInvalid)
			if !reflect.DeepEqual(s, before) {
				t.Fatalf("state changed to %+v", s)
			}
		})
	}
}

// wantDecided fails tb unless a decision on state returned the error code
// and the events wanted; it returns state with the events applied, and
// false when the decision failed.
func wantDecided(tb testing.TB, state MessageState, got []Event, err error, want []Event, code Code) (MessageState, bool) {
	tb.Helper()
	wantCode(tb, err, code)
	wantEvents(tb, got, want)
	if err != nil {
		return state, false
	}
	mustApply(tb, &state, got...)
	return state, true
}
