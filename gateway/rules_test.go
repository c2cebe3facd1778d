package gateway_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/gateway/gatewaytest"
	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// TestDomainRulesAnswerWithStableCodes drives every rule of the write side
// through the protocol and checks the error code the client sees.
func TestDomainRulesAnswerWithStableCodes(t *testing.T) {
	gatewaytest.Encodings(t, func(t *testing.T, enc frame.Encoding) {
		e := gatewaytest.New(t)
		a, b, c := e.Login(t, enc, "ann"), e.Login(t, enc, "ben"), e.Login(t, enc, "cid")

		// Contacts.
		gatewaytest.Fails(t, c.Conn, "no_request", &mpimv1.ClientFrame_AcceptFriend{AcceptFriend: &mpimv1.AcceptFriendRequest{UserId: a.ID}})
		gatewaytest.OK(t, a.Conn, &mpimv1.ClientFrame_RequestFriend{RequestFriend: &mpimv1.RequestFriendRequest{UserId: b.ID, Message: "hi"}})
		gatewaytest.OK(t, b.Conn, &mpimv1.ClientFrame_AcceptFriend{AcceptFriend: &mpimv1.AcceptFriendRequest{UserId: a.ID}})
		gatewaytest.Fails(t, a.Conn, "invalid", &mpimv1.ClientFrame_RequestFriend{RequestFriend: &mpimv1.RequestFriendRequest{UserId: "u/nope"}})

		// Direct messages: ack with seq, dedup by client message id.
		s1 := gatewaytest.OK(t, a.Conn, gatewaytest.SendTo(b.ID, "hello", "m-1")).GetSend()
		if s1.GetSeq() != 1 || len(s1.GetEventId()) != 16 || s1.GetSentAtMs() == 0 || s1.GetDuplicate() {
			t.Fatalf("send result %v", s1)
		}
		again := gatewaytest.OK(t, a.Conn, gatewaytest.SendTo(b.ID, "hello", "m-1")).GetSend()
		if !again.GetDuplicate() || again.GetSeq() != 1 || !bytes.Equal(again.GetEventId(), s1.GetEventId()) {
			t.Fatalf("retried send %v, want the original %v", again, s1)
		}
		s2 := gatewaytest.OK(t, b.Conn, &mpimv1.ClientFrame_Send{Send: &mpimv1.SendRequest{To: &mpimv1.SendRequest_ConversationId{ConversationId: s1.GetConversationId()}, Text: "yo"}}).GetSend()
		if s2.GetSeq() != 2 {
			t.Fatalf("second message seq %d", s2.GetSeq())
		}
		gatewaytest.Fails(t, a.Conn, "invalid", gatewaytest.SendTo(b.ID, "   ", ""))
		gatewaytest.Fails(t, a.Conn, "invalid", gatewaytest.SendTo(a.ID, "to myself", ""))
		gatewaytest.Fails(t, a.Conn, "too_large", gatewaytest.SendTo(b.ID, strings.Repeat("x", 17<<10), ""))
		gatewaytest.Fails(t, a.Conn, "invalid", &mpimv1.ClientFrame_Send{Send: &mpimv1.SendRequest{Text: "nowhere"}})
		gatewaytest.Fails(t, c.Conn, "forbidden", &mpimv1.ClientFrame_Send{Send: &mpimv1.SendRequest{To: &mpimv1.SendRequest_ConversationId{ConversationId: s1.GetConversationId()}, Text: "intruder"}})

		// Message operations.
		conv := s1.GetConversationId()
		gatewaytest.OK(t, a.Conn, &mpimv1.ClientFrame_Edit{Edit: &mpimv1.EditRequest{ConversationId: conv, Seq: 1, Text: "hello!"}})
		gatewaytest.Fails(t, b.Conn, "forbidden", &mpimv1.ClientFrame_Edit{Edit: &mpimv1.EditRequest{ConversationId: conv, Seq: 1, Text: "not mine"}})
		gatewaytest.Fails(t, a.Conn, "invalid", &mpimv1.ClientFrame_Recall{Recall: &mpimv1.RecallRequest{ConversationId: conv, Seq: 99}}) // beyond the last seq
		gatewaytest.OK(t, b.Conn, &mpimv1.ClientFrame_MarkRead{MarkRead: &mpimv1.MarkReadRequest{ConversationId: conv, Seq: 1}})
		gatewaytest.OK(t, b.Conn, &mpimv1.ClientFrame_DeleteForMe{DeleteForMe: &mpimv1.DeleteForMeRequest{ConversationId: conv, Seq: 1}})
		gatewaytest.Fails(t, c.Conn, "forbidden", &mpimv1.ClientFrame_MarkRead{MarkRead: &mpimv1.MarkReadRequest{ConversationId: conv, Seq: 1}})
		e.Clock.Add(3 * time.Minute) // past the 2-minute recall window
		gatewaytest.Fails(t, a.Conn, "window_passed", &mpimv1.ClientFrame_Recall{Recall: &mpimv1.RecallRequest{ConversationId: conv, Seq: 1}})
		s3 := gatewaytest.OK(t, a.Conn, gatewaytest.SendTo(b.ID, "oops", "")).GetSend()
		gatewaytest.OK(t, a.Conn, &mpimv1.ClientFrame_Recall{Recall: &mpimv1.RecallRequest{ConversationId: conv, Seq: s3.GetSeq()}})
		gatewaytest.Fails(t, a.Conn, "exists", &mpimv1.ClientFrame_Recall{Recall: &mpimv1.RecallRequest{ConversationId: conv, Seq: s3.GetSeq()}})

		// Blocks.
		gatewaytest.OK(t, b.Conn, &mpimv1.ClientFrame_Block{Block: &mpimv1.BlockRequest{UserId: c.ID}})
		gatewaytest.Fails(t, c.Conn, "blocked", gatewaytest.SendTo(b.ID, "hey", ""))
		gatewaytest.Fails(t, b.Conn, "blocked", gatewaytest.SendTo(c.ID, "hey", ""))
		gatewaytest.OK(t, b.Conn, &mpimv1.ClientFrame_Unblock{Unblock: &mpimv1.UnblockRequest{UserId: c.ID}})
		gatewaytest.OK(t, c.Conn, gatewaytest.SendTo(b.ID, "hey", ""))

		// Groups.
		g := gatewaytest.OK(t, a.Conn, &mpimv1.ClientFrame_CreateGroup{CreateGroup: &mpimv1.CreateGroupRequest{Name: "team", MemberIds: []string{b.ID}}}).GetCreateGroup()
		if !strings.HasPrefix(g.GetGroupId(), "g/") || g.GetConversationId() != "c/"+strings.TrimPrefix(g.GetGroupId(), "g/") {
			t.Fatalf("create group %v", g)
		}
		gid := g.GetGroupId()
		gatewaytest.Fails(t, a.Conn, "invalid", &mpimv1.ClientFrame_CreateGroup{CreateGroup: &mpimv1.CreateGroupRequest{Name: " "}})
		gatewaytest.Fails(t, c.Conn, "not_member", gatewaytest.SendGroup(gid, "let me in"))
		gatewaytest.Fails(t, c.Conn, "forbidden", &mpimv1.ClientFrame_JoinGroup{JoinGroup: &mpimv1.JoinGroupRequest{GroupId: gid}}) // closed group
		gatewaytest.Fails(t, a.Conn, "exists", &mpimv1.ClientFrame_AddMember{AddMember: &mpimv1.AddMemberRequest{GroupId: gid, UserId: b.ID}})
		gatewaytest.Fails(t, b.Conn, "forbidden", &mpimv1.ClientFrame_AddMember{AddMember: &mpimv1.AddMemberRequest{GroupId: gid, UserId: c.ID}}) // closed: admins add
		gatewaytest.OK(t, a.Conn, &mpimv1.ClientFrame_AddMember{AddMember: &mpimv1.AddMemberRequest{GroupId: gid, UserId: c.ID}})
		gatewaytest.OK(t, c.Conn, gatewaytest.SendGroup(gid, "thanks"))
		gatewaytest.Fails(t, b.Conn, "forbidden", &mpimv1.ClientFrame_KickMember{KickMember: &mpimv1.KickMemberRequest{GroupId: gid, UserId: c.ID}})
		gatewaytest.Fails(t, b.Conn, "forbidden", &mpimv1.ClientFrame_RenameGroup{RenameGroup: &mpimv1.RenameGroupRequest{GroupId: gid, Name: "mine"}})
		gatewaytest.OK(t, a.Conn, &mpimv1.ClientFrame_SetRole{SetRole: &mpimv1.SetRoleRequest{GroupId: gid, UserId: b.ID, Role: mpimv1.Role_ROLE_ADMIN}})
		gatewaytest.Fails(t, a.Conn, "exists", &mpimv1.ClientFrame_SetRole{SetRole: &mpimv1.SetRoleRequest{GroupId: gid, UserId: b.ID, Role: mpimv1.Role_ROLE_ADMIN}})
		gatewaytest.Fails(t, a.Conn, "forbidden", &mpimv1.ClientFrame_SetRole{SetRole: &mpimv1.SetRoleRequest{GroupId: gid, UserId: b.ID, Role: mpimv1.Role_ROLE_OWNER}})
		gatewaytest.OK(t, b.Conn, &mpimv1.ClientFrame_RenameGroup{RenameGroup: &mpimv1.RenameGroupRequest{GroupId: gid, Name: "the team"}})
		gatewaytest.OK(t, b.Conn, &mpimv1.ClientFrame_MuteMember{MuteMember: &mpimv1.MuteMemberRequest{GroupId: gid, UserId: c.ID}})
		gatewaytest.Fails(t, c.Conn, "muted", gatewaytest.SendGroup(gid, "can you hear me"))
		gatewaytest.Fails(t, c.Conn, "muted", &mpimv1.ClientFrame_Edit{Edit: &mpimv1.EditRequest{ConversationId: g.GetConversationId(), Seq: 1, Text: "edited"}})
		gatewaytest.OK(t, b.Conn, &mpimv1.ClientFrame_UnmuteMember{UnmuteMember: &mpimv1.UnmuteMemberRequest{GroupId: gid, UserId: c.ID}})
		gatewaytest.Fails(t, b.Conn, "not_found", &mpimv1.ClientFrame_UnmuteMember{UnmuteMember: &mpimv1.UnmuteMemberRequest{GroupId: gid, UserId: c.ID}})
		gatewaytest.Fails(t, b.Conn, "invalid", &mpimv1.ClientFrame_MuteMember{MuteMember: &mpimv1.MuteMemberRequest{GroupId: gid, UserId: c.ID, UntilMs: 1}})
		gatewaytest.OK(t, c.Conn, gatewaytest.SendGroup(gid, "back"))
		gatewaytest.Fails(t, a.Conn, "forbidden", &mpimv1.ClientFrame_LeaveGroup{LeaveGroup: &mpimv1.LeaveGroupRequest{GroupId: gid}})
		gatewaytest.OK(t, b.Conn, &mpimv1.ClientFrame_KickMember{KickMember: &mpimv1.KickMemberRequest{GroupId: gid, UserId: c.ID}})
		gatewaytest.Fails(t, c.Conn, "not_member", gatewaytest.SendGroup(gid, "still here?"))
		gatewaytest.Fails(t, c.Conn, "not_member", &mpimv1.ClientFrame_LeaveGroup{LeaveGroup: &mpimv1.LeaveGroupRequest{GroupId: gid}})
		gatewaytest.Fails(t, b.Conn, "forbidden", &mpimv1.ClientFrame_DissolveGroup{DissolveGroup: &mpimv1.DissolveGroupRequest{GroupId: gid}})
		gatewaytest.OK(t, b.Conn, &mpimv1.ClientFrame_LeaveGroup{LeaveGroup: &mpimv1.LeaveGroupRequest{GroupId: gid}})
		gatewaytest.Fails(t, b.Conn, "not_member", &mpimv1.ClientFrame_DissolveGroup{DissolveGroup: &mpimv1.DissolveGroupRequest{GroupId: gid}})
		gatewaytest.OK(t, a.Conn, &mpimv1.ClientFrame_DissolveGroup{DissolveGroup: &mpimv1.DissolveGroupRequest{GroupId: gid}})
		gatewaytest.Fails(t, a.Conn, "dissolved", gatewaytest.SendGroup(gid, "anyone?"))
		gatewaytest.Fails(t, a.Conn, "not_found", gatewaytest.SendGroup("g/01ARZ3NDEKTSV4RRFFQ69G5FAV", "ghost town"))
		gatewaytest.Fails(t, a.Conn, "invalid", gatewaytest.SendGroup("g/nope", "?"))

		// An open group anyone may join.
		open := gatewaytest.OK(t, a.Conn, &mpimv1.ClientFrame_CreateGroup{CreateGroup: &mpimv1.CreateGroupRequest{Name: "lobby", Open: true}}).GetCreateGroup()
		gatewaytest.OK(t, c.Conn, &mpimv1.ClientFrame_JoinGroup{JoinGroup: &mpimv1.JoinGroupRequest{GroupId: open.GetGroupId()}})
		gatewaytest.Fails(t, c.Conn, "exists", &mpimv1.ClientFrame_JoinGroup{JoinGroup: &mpimv1.JoinGroupRequest{GroupId: open.GetGroupId()}})
		gatewaytest.OK(t, c.Conn, gatewaytest.SendGroup(open.GetGroupId(), "hi all"))

		// Friend removal and profile.
		gatewaytest.OK(t, a.Conn, &mpimv1.ClientFrame_RemoveFriend{RemoveFriend: &mpimv1.RemoveFriendRequest{UserId: b.ID}})
		gatewaytest.Fails(t, a.Conn, "not_found", &mpimv1.ClientFrame_RemoveFriend{RemoveFriend: &mpimv1.RemoveFriendRequest{UserId: b.ID}})
		gatewaytest.OK(t, c.Conn, &mpimv1.ClientFrame_RequestFriend{RequestFriend: &mpimv1.RequestFriendRequest{UserId: a.ID}})
		gatewaytest.OK(t, a.Conn, &mpimv1.ClientFrame_DeclineFriend{DeclineFriend: &mpimv1.DeclineFriendRequest{UserId: c.ID}})
		gatewaytest.Fails(t, a.Conn, "invalid", &mpimv1.ClientFrame_UpdateProfile{UpdateProfile: &mpimv1.UpdateProfileRequest{DisplayName: "Ann", AvatarUrl: "ftp://x"}})
		p := gatewaytest.OK(t, a.Conn, &mpimv1.ClientFrame_UpdateProfile{UpdateProfile: &mpimv1.UpdateProfileRequest{DisplayName: " Ann ", AvatarUrl: "https://img.example/ann.png"}}).GetUpdateProfile()
		if p.GetDisplayName() != "Ann" || p.GetUsername() != "ann" || p.GetAvatarUrl() != "https://img.example/ann.png" {
			t.Fatalf("updated profile %v", p)
		}
		if f := gatewaytest.OK(t, c.Conn, &mpimv1.ClientFrame_FindUser{FindUser: &mpimv1.FindUserRequest{Username: "ANN"}}).GetFindUser(); f.GetUserId() != a.ID {
			t.Fatalf("find user %v", f)
		}
		gatewaytest.Fails(t, c.Conn, "not_found", &mpimv1.ClientFrame_FindUser{FindUser: &mpimv1.FindUserRequest{Username: "nobody"}})
		gatewaytest.Fails(t, c.Conn, "not_found", &mpimv1.ClientFrame_GetProfile{GetProfile: &mpimv1.GetProfileRequest{UserId: "u/01ARZ3NDEKTSV4RRFFQ69G5FAV"}})
	})
}
