package gateway_test

import (
	"slices"
	"testing"

	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// TestGroupHistoryFollowsMembership: a member reads only what was said while
// a member (history, the conversation list's preview and unread count), a
// former member keeps their old periods, and with the group's history
// visible to new members a new member reads everything.
func TestGroupHistoryFollowsMembership(t *testing.T) {
	e := newEnv(t)
	enc := frame.JSON
	a, b, c, d := e.login(t, enc, "ann"), e.login(t, enc, "ben"), e.login(t, enc, "cid"), e.login(t, enc, "dee")
	g := ok(t, a.c, &mpimv1.ClientFrame_CreateGroup{CreateGroup: &mpimv1.CreateGroupRequest{Name: "team", MemberIds: []string{b.id}}}).GetCreateGroup()
	gid, conv := g.GetGroupId(), g.GetConversationId()
	add := func(u *user) {
		t.Helper()
		ok(t, a.c, &mpimv1.ClientFrame_AddMember{AddMember: &mpimv1.AddMemberRequest{GroupId: gid, UserId: u.id}})
	}
	seqs := func(u *user) []uint64 {
		t.Helper()
		var out []uint64
		for _, m := range ok(t, u.c, &mpimv1.ClientFrame_History{History: &mpimv1.HistoryRequest{ConversationId: conv}}).GetHistory().GetMessages() {
			out = append(out, m.GetSeq())
		}
		return out
	}
	forward := func(u *user, from uint64) []uint64 {
		t.Helper()
		var out []uint64
		h := ok(t, u.c, &mpimv1.ClientFrame_History{History: &mpimv1.HistoryRequest{ConversationId: conv, FromSeq: from,
			Direction: mpimv1.HistoryDirection_HISTORY_DIRECTION_FORWARD}}).GetHistory()
		for _, m := range h.GetMessages() {
			out = append(out, m.GetSeq())
		}
		return out
	}
	listed := func(u *user) *mpimv1.ConversationSummary {
		t.Helper()
		for _, s := range ok(t, u.c, &mpimv1.ClientFrame_Conversations{Conversations: &mpimv1.ConversationsRequest{}}).GetConversations().GetConversations() {
			if s.GetConversationId() == conv {
				return s
			}
		}
		t.Fatalf("%s does not list %s", u.name, conv)
		return nil
	}
	wantSeqs := func(what string, got []uint64, want ...uint64) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Fatalf("%s: seqs %v, want %v", what, got, want)
		}
	}

	ok(t, a.c, sendGroup(gid, "before cid 1"))
	ok(t, b.c, sendGroup(gid, "before cid 2"))
	add(c)
	e.project(t)
	wantSeqs("cid's history right after joining", seqs(c))
	if s := listed(c); s.GetLastPreview() != "" || s.GetUnreadCount() != 0 || s.GetLastSenderId() != "" {
		t.Fatalf("cid's list entry right after joining %v: shows what was said before", s)
	}

	ok(t, a.c, sendGroup(gid, "with cid"))                                                                        // 3
	ok(t, a.c, &mpimv1.ClientFrame_KickMember{KickMember: &mpimv1.KickMemberRequest{GroupId: gid, UserId: c.id}}) //
	ok(t, a.c, sendGroup(gid, "while cid is out"))                                                                // 4
	add(c)
	e.project(t)
	wantSeqs("cid's history after being added back", seqs(c), 3)
	wantSeqs("cid's history forward from 0", forward(c, 0), 3)
	// Joining again counts everything before it as read.
	if s := listed(c); s.GetLastPreview() != "with cid" || s.GetUnreadCount() != 0 {
		t.Fatalf("cid's list entry after being added back %v, want the preview of seq 3 and nothing unread", s)
	}
	ok(t, b.c, sendGroup(gid, "welcome back")) // 5
	e.project(t)
	wantSeqs("cid's history", seqs(c), 3, 5)
	if s := listed(c); s.GetLastPreview() != "welcome back" || s.GetUnreadCount() != 1 {
		t.Fatalf("cid's list entry %v, want the preview of seq 5 and 1 unread", s)
	}
	wantSeqs("ben's history", seqs(b), 1, 2, 3, 4, 5)

	// A former member keeps what they saw; a stranger reads nothing.
	ok(t, b.c, &mpimv1.ClientFrame_LeaveGroup{LeaveGroup: &mpimv1.LeaveGroupRequest{GroupId: gid}})
	ok(t, a.c, sendGroup(gid, "ben left")) // 6
	fails(t, d.c, "not_member", &mpimv1.ClientFrame_History{History: &mpimv1.HistoryRequest{ConversationId: conv}})

	// The setting: admins and the owner only, and not twice.
	setVisible := func(u *user, visible bool) *mpimv1.ClientFrame_SetHistoryVisibility {
		return &mpimv1.ClientFrame_SetHistoryVisibility{SetHistoryVisibility: &mpimv1.SetHistoryVisibilityRequest{GroupId: gid, Visible: visible}}
	}
	fails(t, c.c, "forbidden", setVisible(c, true))
	fails(t, d.c, "not_member", setVisible(d, true))
	fails(t, a.c, "exists", setVisible(a, false))
	fails(t, a.c, "invalid", &mpimv1.ClientFrame_SetHistoryVisibility{SetHistoryVisibility: &mpimv1.SetHistoryVisibilityRequest{GroupId: "g/nope", Visible: true}})
	ok(t, a.c, setVisible(a, true))
	add(d)
	e.project(t)
	wantSeqs("ben's history after leaving", seqs(b), 1, 2, 3, 4, 5)
	wantSeqs("dee's history with the history visible", seqs(d), 1, 2, 3, 4, 5, 6)
	if s := listed(d); s.GetLastPreview() != "ben left" || s.GetUnreadCount() != 0 {
		t.Fatalf("dee's list entry %v, want the last preview and nothing unread", s)
	}
	wantSeqs("cid's history is not widened by the setting", seqs(c), 3, 5, 6)
	ms := ok(t, a.c, &mpimv1.ClientFrame_GroupMembers{GroupMembers: &mpimv1.GroupMembersRequest{GroupId: gid}}).GetGroupMembers()
	if !ms.GetGroup().GetHistoryVisible() {
		t.Fatalf("group info %v: history not shown as visible", ms.GetGroup())
	}
	gs := ok(t, d.c, &mpimv1.ClientFrame_MyGroups{MyGroups: &mpimv1.MyGroupsRequest{}}).GetMyGroups().GetGroups()
	if len(gs) != 1 || !gs[0].GetHistoryVisible() {
		t.Fatalf("dee's groups %v: history not shown as visible", gs)
	}
}
