package stacktest

import (
	"slices"
	"testing"

	"github.com/mpim/mpim/gateway/gatewaytest"
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
	a, b, c, d := e.Login(t, enc, "ann"), e.Login(t, enc, "ben"), e.Login(t, enc, "cid"), e.Login(t, enc, "dee")
	g := gatewaytest.OK(t, a.Conn, &mpimv1.ClientFrame_CreateGroup{CreateGroup: &mpimv1.CreateGroupRequest{Name: "team", MemberIds: []string{b.ID}}}).GetCreateGroup()
	gid, conv := g.GetGroupId(), g.GetConversationId()
	add := func(u *gatewaytest.User) {
		t.Helper()
		gatewaytest.OK(t, a.Conn, &mpimv1.ClientFrame_AddMember{AddMember: &mpimv1.AddMemberRequest{GroupId: gid, UserId: u.ID}})
	}
	seqs := func(u *gatewaytest.User) []uint64 {
		t.Helper()
		var out []uint64
		for _, m := range gatewaytest.OK(t, u.Conn, &mpimv1.ClientFrame_History{History: &mpimv1.HistoryRequest{ConversationId: conv}}).GetHistory().GetMessages() {
			out = append(out, m.GetSeq())
		}
		return out
	}
	forward := func(u *gatewaytest.User, from uint64) []uint64 {
		t.Helper()
		var out []uint64
		h := gatewaytest.OK(t, u.Conn, &mpimv1.ClientFrame_History{History: &mpimv1.HistoryRequest{ConversationId: conv, FromSeq: from,
			Direction: mpimv1.HistoryDirection_HISTORY_DIRECTION_FORWARD}}).GetHistory()
		for _, m := range h.GetMessages() {
			out = append(out, m.GetSeq())
		}
		return out
	}
	listed := func(u *gatewaytest.User) *mpimv1.ConversationSummary {
		t.Helper()
		for _, s := range gatewaytest.OK(t, u.Conn, &mpimv1.ClientFrame_Conversations{Conversations: &mpimv1.ConversationsRequest{}}).GetConversations().GetConversations() {
			if s.GetConversationId() == conv {
				return s
			}
		}
		t.Fatalf("%s does not list %s", u.Name, conv)
		return nil
	}
	wantSeqs := func(what string, got []uint64, want ...uint64) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Fatalf("%s: seqs %v, want %v", what, got, want)
		}
	}

	gatewaytest.OK(t, a.Conn, gatewaytest.SendGroup(gid, "before cid 1"))
	gatewaytest.OK(t, b.Conn, gatewaytest.SendGroup(gid, "before cid 2"))
	add(c)
	e.project(t)
	wantSeqs("cid's history right after joining", seqs(c))
	if s := listed(c); s.GetLastPreview() != "" || s.GetUnreadCount() != 0 || s.GetLastSenderId() != "" {
		t.Fatalf("cid's list entry right after joining %v: shows what was said before", s)
	}

	gatewaytest.OK(t, a.Conn, gatewaytest.SendGroup(gid, "with cid"))                                                            // 3
	gatewaytest.OK(t, a.Conn, &mpimv1.ClientFrame_KickMember{KickMember: &mpimv1.KickMemberRequest{GroupId: gid, UserId: c.ID}}) //
	gatewaytest.OK(t, a.Conn, gatewaytest.SendGroup(gid, "while cid is out"))                                                    // 4
	add(c)
	e.project(t)
	wantSeqs("cid's history after being added back", seqs(c), 3)
	wantSeqs("cid's history forward from 0", forward(c, 0), 3)
	// Joining again counts everything before it as read.
	if s := listed(c); s.GetLastPreview() != "with cid" || s.GetUnreadCount() != 0 {
		t.Fatalf("cid's list entry after being added back %v, want the preview of seq 3 and nothing unread", s)
	}
	gatewaytest.OK(t, b.Conn, gatewaytest.SendGroup(gid, "welcome back")) // 5
	e.project(t)
	wantSeqs("cid's history", seqs(c), 3, 5)
	if s := listed(c); s.GetLastPreview() != "welcome back" || s.GetUnreadCount() != 1 {
		t.Fatalf("cid's list entry %v, want the preview of seq 5 and 1 unread", s)
	}
	wantSeqs("ben's history", seqs(b), 1, 2, 3, 4, 5)

	// A former member keeps what they saw; a stranger reads nothing.
	gatewaytest.OK(t, b.Conn, &mpimv1.ClientFrame_LeaveGroup{LeaveGroup: &mpimv1.LeaveGroupRequest{GroupId: gid}})
	gatewaytest.OK(t, a.Conn, gatewaytest.SendGroup(gid, "ben left")) // 6
	gatewaytest.Fails(t, d.Conn, "not_member", &mpimv1.ClientFrame_History{History: &mpimv1.HistoryRequest{ConversationId: conv}})

	// The setting: admins and the owner only, and not twice.
	setVisible := func(u *gatewaytest.User, visible bool) *mpimv1.ClientFrame_SetHistoryVisibility {
		return &mpimv1.ClientFrame_SetHistoryVisibility{SetHistoryVisibility: &mpimv1.SetHistoryVisibilityRequest{GroupId: gid, Visible: visible}}
	}
	gatewaytest.Fails(t, c.Conn, "forbidden", setVisible(c, true))
	gatewaytest.Fails(t, d.Conn, "not_member", setVisible(d, true))
	gatewaytest.Fails(t, a.Conn, "exists", setVisible(a, false))
	gatewaytest.Fails(t, a.Conn, "invalid", &mpimv1.ClientFrame_SetHistoryVisibility{SetHistoryVisibility: &mpimv1.SetHistoryVisibilityRequest{GroupId: "g/nope", Visible: true}})
	gatewaytest.OK(t, a.Conn, setVisible(a, true))
	add(d)
	e.project(t)
	wantSeqs("ben's history after leaving", seqs(b), 1, 2, 3, 4, 5)
	wantSeqs("dee's history with the history visible", seqs(d), 1, 2, 3, 4, 5, 6)
	if s := listed(d); s.GetLastPreview() != "ben left" || s.GetUnreadCount() != 0 {
		t.Fatalf("dee's list entry %v, want the last preview and nothing unread", s)
	}
	wantSeqs("cid's history is not widened by the setting", seqs(c), 3, 5, 6)
	ms := gatewaytest.OK(t, a.Conn, &mpimv1.ClientFrame_GroupMembers{GroupMembers: &mpimv1.GroupMembersRequest{GroupId: gid}}).GetGroupMembers()
	if !ms.GetGroup().GetHistoryVisible() {
		t.Fatalf("group info %v: history not shown as visible", ms.GetGroup())
	}
	gs := gatewaytest.OK(t, d.Conn, &mpimv1.ClientFrame_MyGroups{MyGroups: &mpimv1.MyGroupsRequest{}}).GetMyGroups().GetGroups()
	if len(gs) != 1 || !gs[0].GetHistoryVisible() {
		t.Fatalf("dee's groups %v: history not shown as visible", gs)
	}
}
