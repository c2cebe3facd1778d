package stacktest

import (
	"testing"

	"github.com/mpim/mpim/gateway/gatewaytest"
	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// nextSignal returns the next frame of c, which must be a signal.
func nextSignal(tb testing.TB, c *gatewaytest.Client) *mpimv1.Signal {
	tb.Helper()
	f, err := c.Next(gatewaytest.Ctx(tb))
	if err != nil || f.GetSignal() == nil {
		tb.Fatalf("frame %v, %v; want a signal", f, err)
	}
	return f.GetSignal()
}

// TestQueriesReturnWhatTheProjectorsWrote runs the real MySQL and cache
// projectors over the log the commands wrote and reads the result through
// the protocol.
func TestQueriesReturnWhatTheProjectorsWrote(t *testing.T) {
	e := newEnv(t)
	enc := frame.JSON
	a, b, c, d := e.Login(t, enc, "ann"), e.Login(t, enc, "ben"), e.Login(t, enc, "cid"), e.Login(t, enc, "dee")

	gatewaytest.OK(t, a.Conn, &mpimv1.ClientFrame_RequestFriend{RequestFriend: &mpimv1.RequestFriendRequest{UserId: b.ID}})
	gatewaytest.OK(t, b.Conn, &mpimv1.ClientFrame_AcceptFriend{AcceptFriend: &mpimv1.AcceptFriendRequest{UserId: a.ID}})
	gatewaytest.OK(t, c.Conn, &mpimv1.ClientFrame_RequestFriend{RequestFriend: &mpimv1.RequestFriendRequest{UserId: a.ID, Message: "let's talk"}})
	gatewaytest.OK(t, a.Conn, &mpimv1.ClientFrame_Block{Block: &mpimv1.BlockRequest{UserId: d.ID}})

	conv := gatewaytest.OK(t, a.Conn, gatewaytest.SendTo(b.ID, "hello", "")).GetSend().GetConversationId()
	gatewaytest.OK(t, a.Conn, &mpimv1.ClientFrame_Send{Send: &mpimv1.SendRequest{To: &mpimv1.SendRequest_UserId{UserId: b.ID},
		Kind: mpimv1.MessageKind_MESSAGE_KIND_IMAGE, Text: "look",
		Attachment: &mpimv1.Attachment{Url: "https://img.example/cat.png", Mime: "image/png", Size: 1234, Width: 640, Height: 480, Meta: map[string]string{"alt": "a cat"}}}})
	gatewaytest.OK(t, a.Conn, gatewaytest.SendTo(b.ID, "oops", ""))
	gatewaytest.OK(t, a.Conn, &mpimv1.ClientFrame_Edit{Edit: &mpimv1.EditRequest{ConversationId: conv, Seq: 1, Text: "hello!"}})
	gatewaytest.OK(t, a.Conn, &mpimv1.ClientFrame_Recall{Recall: &mpimv1.RecallRequest{ConversationId: conv, Seq: 3}})
	gatewaytest.OK(t, b.Conn, &mpimv1.ClientFrame_DeleteForMe{DeleteForMe: &mpimv1.DeleteForMeRequest{ConversationId: conv, Seq: 2}})
	gatewaytest.OK(t, b.Conn, &mpimv1.ClientFrame_MarkRead{MarkRead: &mpimv1.MarkReadRequest{ConversationId: conv, Seq: 2}})
	g := gatewaytest.OK(t, a.Conn, &mpimv1.ClientFrame_CreateGroup{CreateGroup: &mpimv1.CreateGroupRequest{Name: "team", MemberIds: []string{b.ID, c.ID}}}).GetCreateGroup()
	gatewaytest.OK(t, c.Conn, gatewaytest.SendGroup(g.GetGroupId(), "hi team"))
	e.project(t)

	t.Run("friends, requests and blocks", func(t *testing.T) {
		fs := gatewaytest.OK(t, a.Conn, &mpimv1.ClientFrame_ListFriends{ListFriends: &mpimv1.ListFriendsRequest{}}).GetListFriends().GetFriends()
		if len(fs) != 1 || fs[0].GetUserId() != b.ID || fs[0].GetUsername() != "ben" || fs[0].GetDisplayName() != "BEN" {
			t.Fatalf("friends %v", fs)
		}
		rs := gatewaytest.OK(t, a.Conn, &mpimv1.ClientFrame_ListFriendRequests{ListFriendRequests: &mpimv1.ListFriendRequestsRequest{}}).GetListFriendRequests()
		if len(rs.GetIncoming()) != 1 || len(rs.GetOutgoing()) != 0 {
			t.Fatalf("requests %v", rs)
		}
		in := rs.GetIncoming()[0]
		if in.GetFromUserId() != c.ID || in.GetMessage() != "let's talk" || in.GetUser().GetUsername() != "cid" || in.GetCreatedAtMs() == 0 {
			t.Fatalf("incoming request %v", in)
		}
		out := gatewaytest.OK(t, c.Conn, &mpimv1.ClientFrame_ListFriendRequests{ListFriendRequests: &mpimv1.ListFriendRequestsRequest{}}).GetListFriendRequests()
		if len(out.GetOutgoing()) != 1 || out.GetOutgoing()[0].GetUser().GetUserId() != a.ID {
			t.Fatalf("outgoing requests %v", out)
		}
		bs := gatewaytest.OK(t, a.Conn, &mpimv1.ClientFrame_ListBlocks{ListBlocks: &mpimv1.ListBlocksRequest{}}).GetListBlocks().GetUserIds()
		if len(bs) != 1 || bs[0] != d.ID {
			t.Fatalf("blocks %v", bs)
		}
		p := gatewaytest.OK(t, d.Conn, &mpimv1.ClientFrame_GetProfile{GetProfile: &mpimv1.GetProfileRequest{UserId: b.ID}}).GetGetProfile()
		if p.GetUsername() != "ben" || p.GetDisplayName() != "BEN" {
			t.Fatalf("profile %v", p)
		}
	})

	t.Run("groups and members", func(t *testing.T) {
		gs := gatewaytest.OK(t, b.Conn, &mpimv1.ClientFrame_MyGroups{MyGroups: &mpimv1.MyGroupsRequest{}}).GetMyGroups().GetGroups()
		if len(gs) != 1 || gs[0].GetGroupId() != g.GetGroupId() || gs[0].GetName() != "team" || gs[0].GetMyRole() != mpimv1.Role_ROLE_MEMBER ||
			gs[0].GetOwnerId() != a.ID || gs[0].GetMemberCount() != 3 || gs[0].GetConversationId() != g.GetConversationId() {
			t.Fatalf("b's groups %v", gs)
		}
		ms := gatewaytest.OK(t, c.Conn, &mpimv1.ClientFrame_GroupMembers{GroupMembers: &mpimv1.GroupMembersRequest{GroupId: g.GetGroupId()}}).GetGroupMembers()
		if len(ms.GetMembers()) != 3 || ms.GetGroup().GetMyRole() != mpimv1.Role_ROLE_MEMBER {
			t.Fatalf("members %v", ms)
		}
		roles := map[string]mpimv1.Role{}
		for _, m := range ms.GetMembers() {
			roles[m.GetUsername()] = m.GetRole()
		}
		if roles["ann"] != mpimv1.Role_ROLE_OWNER || roles["ben"] != mpimv1.Role_ROLE_MEMBER || roles["cid"] != mpimv1.Role_ROLE_MEMBER {
			t.Fatalf("roles %v", roles)
		}
		gatewaytest.Fails(t, d.Conn, "not_member", &mpimv1.ClientFrame_GroupMembers{GroupMembers: &mpimv1.GroupMembersRequest{GroupId: g.GetGroupId()}})
		gatewaytest.Fails(t, d.Conn, "not_found", &mpimv1.ClientFrame_GroupMembers{GroupMembers: &mpimv1.GroupMembersRequest{GroupId: "g/01ARZ3NDEKTSV4RRFFQ69G5FAV"}})
	})

	t.Run("conversation list with unread counts", func(t *testing.T) {
		l := gatewaytest.OK(t, b.Conn, &mpimv1.ClientFrame_Conversations{Conversations: &mpimv1.ConversationsRequest{}}).GetConversations()
		if len(l.GetConversations()) != 2 || l.GetHasMore() {
			t.Fatalf("b's conversations %v", l)
		}
		grp, direct := l.GetConversations()[0], l.GetConversations()[1]
		if grp.GetConversationId() != g.GetConversationId() || grp.GetGroupId() != g.GetGroupId() || grp.GetTitle() != "team" ||
			grp.GetLastSeq() != 1 || grp.GetUnreadCount() != 1 || grp.GetLastSenderId() != c.ID {
			t.Fatalf("group conversation %v", grp)
		}
		if direct.GetConversationId() != conv || direct.GetPeerUserId() != a.ID || direct.GetTitle() != "ANN" ||
			direct.GetLastSeq() != 3 || direct.GetReadSeq() != 2 || direct.GetUnreadCount() != 1 {
			t.Fatalf("direct conversation %v", direct)
		}
		page := gatewaytest.OK(t, b.Conn, &mpimv1.ClientFrame_Conversations{Conversations: &mpimv1.ConversationsRequest{Limit: 1}}).GetConversations()
		if len(page.GetConversations()) != 1 || !page.GetHasMore() || page.GetConversations()[0].GetConversationId() != grp.GetConversationId() {
			t.Fatalf("first page %v", page)
		}
		last := page.GetConversations()[0]
		page = gatewaytest.OK(t, b.Conn, &mpimv1.ClientFrame_Conversations{Conversations: &mpimv1.ConversationsRequest{Limit: 1,
			BeforeMs: last.GetLastMessageAtMs(), BeforeConversationId: last.GetConversationId()}}).GetConversations()
		if len(page.GetConversations()) != 1 || page.GetHasMore() || page.GetConversations()[0].GetConversationId() != conv {
			t.Fatalf("second page %v", page)
		}
	})

	t.Run("history pages both ways and honours deletions", func(t *testing.T) {
		hist := func(u *gatewaytest.User, from uint64, dir mpimv1.HistoryDirection, limit uint32) *mpimv1.History {
			return gatewaytest.OK(t, u.Conn, &mpimv1.ClientFrame_History{History: &mpimv1.HistoryRequest{ConversationId: conv, FromSeq: from, Direction: dir, Limit: limit}}).GetHistory()
		}
		seqs := func(h *mpimv1.History) []uint64 {
			var out []uint64
			for _, m := range h.GetMessages() {
				out = append(out, m.GetSeq())
			}
			return out
		}
		h := hist(b, 0, mpimv1.HistoryDirection_HISTORY_DIRECTION_BACKWARD, 2)
		if s := seqs(h); len(s) != 2 || s[0] != 2 || s[1] != 3 || !h.GetHasMore() {
			t.Fatalf("newest page %v", h)
		}
		if m := h.GetMessages()[0]; !m.GetDeleted() || m.GetText() != "" || m.GetAttachment() != nil {
			t.Fatalf("a message b deleted for themself: %v", m)
		}
		if m := h.GetMessages()[1]; m.GetRecalledAtMs() == 0 || m.GetText() != "" {
			t.Fatalf("a recalled message: %v", m)
		}
		h = hist(b, 2, mpimv1.HistoryDirection_HISTORY_DIRECTION_BACKWARD, 2)
		if s := seqs(h); len(s) != 1 || s[0] != 1 || h.GetHasMore() {
			t.Fatalf("older page %v", h)
		}
		if m := h.GetMessages()[0]; m.GetText() != "hello!" || m.GetEditedAtMs() == 0 || m.GetSenderId() != a.ID || m.GetKind() != mpimv1.MessageKind_MESSAGE_KIND_TEXT {
			t.Fatalf("an edited message: %v", m)
		}
		h = hist(a, 0, mpimv1.HistoryDirection_HISTORY_DIRECTION_FORWARD, 0)
		if s := seqs(h); len(s) != 3 || s[0] != 1 || h.GetHasMore() {
			t.Fatalf("forward page %v", h)
		}
		img := h.GetMessages()[1]
		if img.GetDeleted() || img.GetKind() != mpimv1.MessageKind_MESSAGE_KIND_IMAGE || img.GetAttachment().GetUrl() != "https://img.example/cat.png" ||
			img.GetAttachment().GetWidth() != 640 || img.GetAttachment().GetMeta()["alt"] != "a cat" || len(img.GetEventId()) != 16 {
			t.Fatalf("the image as its sender sees it: %v", img)
		}
		h = hist(a, 1, mpimv1.HistoryDirection_HISTORY_DIRECTION_FORWARD, 1)
		if s := seqs(h); len(s) != 1 || s[0] != 2 || !h.GetHasMore() {
			t.Fatalf("forward from 1: %v", h)
		}
		gatewaytest.Fails(t, d.Conn, "forbidden", &mpimv1.ClientFrame_History{History: &mpimv1.HistoryRequest{ConversationId: conv}})
		gatewaytest.Fails(t, d.Conn, "not_member", &mpimv1.ClientFrame_History{History: &mpimv1.HistoryRequest{ConversationId: g.GetConversationId()}})
		gatewaytest.Fails(t, d.Conn, "invalid", &mpimv1.ClientFrame_History{History: &mpimv1.HistoryRequest{ConversationId: "x/y"}})
		gh := gatewaytest.OK(t, c.Conn, &mpimv1.ClientFrame_History{History: &mpimv1.HistoryRequest{ConversationId: g.GetConversationId()}}).GetHistory()
		if len(gh.GetMessages()) != 1 || gh.GetMessages()[0].GetText() != "hi team" {
			t.Fatalf("group history %v", gh)
		}
	})

	t.Run("a group left is no longer listed", func(t *testing.T) {
		listed := func(u *gatewaytest.User) bool {
			for _, s := range gatewaytest.OK(t, u.Conn, &mpimv1.ClientFrame_Conversations{Conversations: &mpimv1.ConversationsRequest{}}).GetConversations().GetConversations() {
				if s.GetConversationId() == g.GetConversationId() {
					return true
				}
			}
			return false
		}
		if !listed(c) {
			t.Fatal("a member does not see the group's conversation")
		}
		gatewaytest.OK(t, c.Conn, &mpimv1.ClientFrame_LeaveGroup{LeaveGroup: &mpimv1.LeaveGroupRequest{GroupId: g.GetGroupId()}})
		e.project(t)
		if listed(c) {
			t.Fatal("the group's conversation is still listed after leaving")
		}
		if !listed(b) {
			t.Fatal("the other members lost the group's conversation")
		}
		gatewaytest.OK(t, a.Conn, &mpimv1.ClientFrame_AddMember{AddMember: &mpimv1.AddMemberRequest{GroupId: g.GetGroupId(), UserId: c.ID}})
		e.project(t)
		if !listed(c) {
			t.Fatal("added back, the group's conversation is not listed")
		}
	})

	t.Run("presence of friends", func(t *testing.T) {
		ps := gatewaytest.OK(t, a.Conn, &mpimv1.ClientFrame_Presence{Presence: &mpimv1.PresenceRequest{}}).GetPresence().GetUsers()
		if len(ps) != 1 || ps[0].GetUserId() != b.ID || !ps[0].GetOnline() {
			t.Fatalf("presence %v", ps)
		}
		ps = gatewaytest.OK(t, d.Conn, &mpimv1.ClientFrame_Presence{Presence: &mpimv1.PresenceRequest{}}).GetPresence().GetUsers()
		if len(ps) != 0 {
			t.Fatalf("a user without friends sees %v", ps)
		}
	})

	t.Run("typing reaches the other participants only", func(t *testing.T) {
		gatewaytest.OK(t, a.Conn, &mpimv1.ClientFrame_Typing{Typing: &mpimv1.TypingRequest{ConversationId: conv}})
		if s := nextSignal(t, b.Conn); s.GetKind() != "typing" || s.GetFromUserId() != a.ID || s.GetConversationId() != conv {
			t.Fatalf("signal %v", s)
		}
		gatewaytest.OK(t, c.Conn, &mpimv1.ClientFrame_Typing{Typing: &mpimv1.TypingRequest{ConversationId: g.GetConversationId(), Stopped: true}})
		for _, u := range []*gatewaytest.User{a, b} {
			if s := nextSignal(t, u.Conn); s.GetKind() != "typing_stopped" || s.GetFromUserId() != c.ID || s.GetConversationId() != g.GetConversationId() {
				t.Fatalf("%s got %v", u.Name, s)
			}
		}
		gatewaytest.Fails(t, d.Conn, "not_member", &mpimv1.ClientFrame_Typing{Typing: &mpimv1.TypingRequest{ConversationId: g.GetConversationId()}})
		gatewaytest.Fails(t, d.Conn, "forbidden", &mpimv1.ClientFrame_Typing{Typing: &mpimv1.TypingRequest{ConversationId: conv}})
		// a blocks d: d's typing is accepted but a is not told.
		gatewaytest.OK(t, d.Conn, &mpimv1.ClientFrame_Typing{Typing: &mpimv1.TypingRequest{ConversationId: gatewaytest.DirectOf(a.ID, d.ID)}})
		gatewaytest.OK(t, b.Conn, &mpimv1.ClientFrame_Typing{Typing: &mpimv1.TypingRequest{ConversationId: conv}})
		if s := nextSignal(t, a.Conn); s.GetFromUserId() != b.ID {
			t.Fatalf("a was told %v, want only b's typing", s)
		}
	})
}
