package gateway_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

func sendTo(userID, text, clientMsgID string) *mpimv1.ClientFrame_Send {
	return &mpimv1.ClientFrame_Send{Send: &mpimv1.SendRequest{To: &mpimv1.SendRequest_UserId{UserId: userID}, Text: text, ClientMsgId: clientMsgID}}
}

func sendGroup(groupID, text string) *mpimv1.ClientFrame_Send {
	return &mpimv1.ClientFrame_Send{Send: &mpimv1.SendRequest{To: &mpimv1.SendRequest_GroupId{GroupId: groupID}, Text: text}}
}

// TestDomainRulesAnswerWithStableCodes drives every rule of the write side
// through the protocol and checks the error code the client sees.
func TestDomainRulesAnswerWithStableCodes(t *testing.T) {
	encodings(t, func(t *testing.T, enc frame.Encoding) {
		e := newEnv(t)
		a, b, c := e.login(t, enc, "ann"), e.login(t, enc, "ben"), e.login(t, enc, "cid")

		// Contacts.
		fails(t, c.c, "no_request", &mpimv1.ClientFrame_AcceptFriend{AcceptFriend: &mpimv1.AcceptFriendRequest{UserId: a.id}})
		ok(t, a.c, &mpimv1.ClientFrame_RequestFriend{RequestFriend: &mpimv1.RequestFriendRequest{UserId: b.id, Message: "hi"}})
		ok(t, b.c, &mpimv1.ClientFrame_AcceptFriend{AcceptFriend: &mpimv1.AcceptFriendRequest{UserId: a.id}})
		fails(t, a.c, "invalid", &mpimv1.ClientFrame_RequestFriend{RequestFriend: &mpimv1.RequestFriendRequest{UserId: "u/nope"}})

		// Direct messages: ack with seq, dedup by client message id.
		s1 := ok(t, a.c, sendTo(b.id, "hello", "m-1")).GetSend()
		if s1.GetSeq() != 1 || len(s1.GetEventId()) != 16 || s1.GetSentAtMs() == 0 || s1.GetDuplicate() {
			t.Fatalf("send result %v", s1)
		}
		again := ok(t, a.c, sendTo(b.id, "hello", "m-1")).GetSend()
		if !again.GetDuplicate() || again.GetSeq() != 1 || !bytes.Equal(again.GetEventId(), s1.GetEventId()) {
			t.Fatalf("retried send %v, want the original %v", again, s1)
		}
		s2 := ok(t, b.c, &mpimv1.ClientFrame_Send{Send: &mpimv1.SendRequest{To: &mpimv1.SendRequest_ConversationId{ConversationId: s1.GetConversationId()}, Text: "yo"}}).GetSend()
		if s2.GetSeq() != 2 {
			t.Fatalf("second message seq %d", s2.GetSeq())
		}
		fails(t, a.c, "invalid", sendTo(b.id, "   ", ""))
		fails(t, a.c, "invalid", sendTo(a.id, "to myself", ""))
		fails(t, a.c, "too_large", sendTo(b.id, strings.Repeat("x", 17<<10), ""))
		fails(t, a.c, "invalid", &mpimv1.ClientFrame_Send{Send: &mpimv1.SendRequest{Text: "nowhere"}})
		fails(t, c.c, "forbidden", &mpimv1.ClientFrame_Send{Send: &mpimv1.SendRequest{To: &mpimv1.SendRequest_ConversationId{ConversationId: s1.GetConversationId()}, Text: "intruder"}})

		// Message operations.
		conv := s1.GetConversationId()
		ok(t, a.c, &mpimv1.ClientFrame_Edit{Edit: &mpimv1.EditRequest{ConversationId: conv, Seq: 1, Text: "hello!"}})
		fails(t, b.c, "forbidden", &mpimv1.ClientFrame_Edit{Edit: &mpimv1.EditRequest{ConversationId: conv, Seq: 1, Text: "not mine"}})
		fails(t, a.c, "invalid", &mpimv1.ClientFrame_Recall{Recall: &mpimv1.RecallRequest{ConversationId: conv, Seq: 99}}) // beyond the last seq
		ok(t, b.c, &mpimv1.ClientFrame_MarkRead{MarkRead: &mpimv1.MarkReadRequest{ConversationId: conv, Seq: 1}})
		ok(t, b.c, &mpimv1.ClientFrame_DeleteForMe{DeleteForMe: &mpimv1.DeleteForMeRequest{ConversationId: conv, Seq: 1}})
		fails(t, c.c, "forbidden", &mpimv1.ClientFrame_MarkRead{MarkRead: &mpimv1.MarkReadRequest{ConversationId: conv, Seq: 1}})
		e.clock.Add(3 * time.Minute) // past the 2-minute recall window
		fails(t, a.c, "window_passed", &mpimv1.ClientFrame_Recall{Recall: &mpimv1.RecallRequest{ConversationId: conv, Seq: 1}})
		s3 := ok(t, a.c, sendTo(b.id, "oops", "")).GetSend()
		ok(t, a.c, &mpimv1.ClientFrame_Recall{Recall: &mpimv1.RecallRequest{ConversationId: conv, Seq: s3.GetSeq()}})
		fails(t, a.c, "exists", &mpimv1.ClientFrame_Recall{Recall: &mpimv1.RecallRequest{ConversationId: conv, Seq: s3.GetSeq()}})

		// Blocks.
		ok(t, b.c, &mpimv1.ClientFrame_Block{Block: &mpimv1.BlockRequest{UserId: c.id}})
		fails(t, c.c, "blocked", sendTo(b.id, "hey", ""))
		fails(t, b.c, "blocked", sendTo(c.id, "hey", ""))
		ok(t, b.c, &mpimv1.ClientFrame_Unblock{Unblock: &mpimv1.UnblockRequest{UserId: c.id}})
		ok(t, c.c, sendTo(b.id, "hey", ""))

		// Groups.
		g := ok(t, a.c, &mpimv1.ClientFrame_CreateGroup{CreateGroup: &mpimv1.CreateGroupRequest{Name: "team", MemberIds: []string{b.id}}}).GetCreateGroup()
		if !strings.HasPrefix(g.GetGroupId(), "g/") || g.GetConversationId() != "c/"+strings.TrimPrefix(g.GetGroupId(), "g/") {
			t.Fatalf("create group %v", g)
		}
		gid := g.GetGroupId()
		fails(t, a.c, "invalid", &mpimv1.ClientFrame_CreateGroup{CreateGroup: &mpimv1.CreateGroupRequest{Name: " "}})
		fails(t, c.c, "not_member", sendGroup(gid, "let me in"))
		fails(t, c.c, "forbidden", &mpimv1.ClientFrame_JoinGroup{JoinGroup: &mpimv1.JoinGroupRequest{GroupId: gid}}) // closed group
		fails(t, a.c, "exists", &mpimv1.ClientFrame_AddMember{AddMember: &mpimv1.AddMemberRequest{GroupId: gid, UserId: b.id}})
		fails(t, b.c, "forbidden", &mpimv1.ClientFrame_AddMember{AddMember: &mpimv1.AddMemberRequest{GroupId: gid, UserId: c.id}}) // closed: admins add
		ok(t, a.c, &mpimv1.ClientFrame_AddMember{AddMember: &mpimv1.AddMemberRequest{GroupId: gid, UserId: c.id}})
		ok(t, c.c, sendGroup(gid, "thanks"))
		fails(t, b.c, "forbidden", &mpimv1.ClientFrame_KickMember{KickMember: &mpimv1.KickMemberRequest{GroupId: gid, UserId: c.id}})
		fails(t, b.c, "forbidden", &mpimv1.ClientFrame_RenameGroup{RenameGroup: &mpimv1.RenameGroupRequest{GroupId: gid, Name: "mine"}})
		ok(t, a.c, &mpimv1.ClientFrame_SetRole{SetRole: &mpimv1.SetRoleRequest{GroupId: gid, UserId: b.id, Role: mpimv1.Role_ROLE_ADMIN}})
		fails(t, a.c, "exists", &mpimv1.ClientFrame_SetRole{SetRole: &mpimv1.SetRoleRequest{GroupId: gid, UserId: b.id, Role: mpimv1.Role_ROLE_ADMIN}})
		fails(t, a.c, "forbidden", &mpimv1.ClientFrame_SetRole{SetRole: &mpimv1.SetRoleRequest{GroupId: gid, UserId: b.id, Role: mpimv1.Role_ROLE_OWNER}})
		ok(t, b.c, &mpimv1.ClientFrame_RenameGroup{RenameGroup: &mpimv1.RenameGroupRequest{GroupId: gid, Name: "the team"}})
		ok(t, b.c, &mpimv1.ClientFrame_MuteMember{MuteMember: &mpimv1.MuteMemberRequest{GroupId: gid, UserId: c.id}})
		fails(t, c.c, "muted", sendGroup(gid, "can you hear me"))
		fails(t, c.c, "muted", &mpimv1.ClientFrame_Edit{Edit: &mpimv1.EditRequest{ConversationId: g.GetConversationId(), Seq: 1, Text: "edited"}})
		ok(t, b.c, &mpimv1.ClientFrame_UnmuteMember{UnmuteMember: &mpimv1.UnmuteMemberRequest{GroupId: gid, UserId: c.id}})
		fails(t, b.c, "not_found", &mpimv1.ClientFrame_UnmuteMember{UnmuteMember: &mpimv1.UnmuteMemberRequest{GroupId: gid, UserId: c.id}})
		fails(t, b.c, "invalid", &mpimv1.ClientFrame_MuteMember{MuteMember: &mpimv1.MuteMemberRequest{GroupId: gid, UserId: c.id, UntilMs: 1}})
		ok(t, c.c, sendGroup(gid, "back"))
		fails(t, a.c, "forbidden", &mpimv1.ClientFrame_LeaveGroup{LeaveGroup: &mpimv1.LeaveGroupRequest{GroupId: gid}})
		ok(t, b.c, &mpimv1.ClientFrame_KickMember{KickMember: &mpimv1.KickMemberRequest{GroupId: gid, UserId: c.id}})
		fails(t, c.c, "not_member", sendGroup(gid, "still here?"))
		fails(t, c.c, "not_member", &mpimv1.ClientFrame_LeaveGroup{LeaveGroup: &mpimv1.LeaveGroupRequest{GroupId: gid}})
		fails(t, b.c, "forbidden", &mpimv1.ClientFrame_DissolveGroup{DissolveGroup: &mpimv1.DissolveGroupRequest{GroupId: gid}})
		ok(t, b.c, &mpimv1.ClientFrame_LeaveGroup{LeaveGroup: &mpimv1.LeaveGroupRequest{GroupId: gid}})
		fails(t, b.c, "not_member", &mpimv1.ClientFrame_DissolveGroup{DissolveGroup: &mpimv1.DissolveGroupRequest{GroupId: gid}})
		ok(t, a.c, &mpimv1.ClientFrame_DissolveGroup{DissolveGroup: &mpimv1.DissolveGroupRequest{GroupId: gid}})
		fails(t, a.c, "dissolved", sendGroup(gid, "anyone?"))
		fails(t, a.c, "not_found", sendGroup("g/01ARZ3NDEKTSV4RRFFQ69G5FAV", "ghost town"))
		fails(t, a.c, "invalid", sendGroup("g/nope", "?"))

		// An open group anyone may join.
		open := ok(t, a.c, &mpimv1.ClientFrame_CreateGroup{CreateGroup: &mpimv1.CreateGroupRequest{Name: "lobby", Open: true}}).GetCreateGroup()
		ok(t, c.c, &mpimv1.ClientFrame_JoinGroup{JoinGroup: &mpimv1.JoinGroupRequest{GroupId: open.GetGroupId()}})
		fails(t, c.c, "exists", &mpimv1.ClientFrame_JoinGroup{JoinGroup: &mpimv1.JoinGroupRequest{GroupId: open.GetGroupId()}})
		ok(t, c.c, sendGroup(open.GetGroupId(), "hi all"))

		// Friend removal and profile.
		ok(t, a.c, &mpimv1.ClientFrame_RemoveFriend{RemoveFriend: &mpimv1.RemoveFriendRequest{UserId: b.id}})
		fails(t, a.c, "not_found", &mpimv1.ClientFrame_RemoveFriend{RemoveFriend: &mpimv1.RemoveFriendRequest{UserId: b.id}})
		ok(t, c.c, &mpimv1.ClientFrame_RequestFriend{RequestFriend: &mpimv1.RequestFriendRequest{UserId: a.id}})
		ok(t, a.c, &mpimv1.ClientFrame_DeclineFriend{DeclineFriend: &mpimv1.DeclineFriendRequest{UserId: c.id}})
		fails(t, a.c, "invalid", &mpimv1.ClientFrame_UpdateProfile{UpdateProfile: &mpimv1.UpdateProfileRequest{DisplayName: "Ann", AvatarUrl: "ftp://x"}})
		p := ok(t, a.c, &mpimv1.ClientFrame_UpdateProfile{UpdateProfile: &mpimv1.UpdateProfileRequest{DisplayName: " Ann ", AvatarUrl: "https://img.example/ann.png"}}).GetUpdateProfile()
		if p.GetDisplayName() != "Ann" || p.GetUsername() != "ann" || p.GetAvatarUrl() != "https://img.example/ann.png" {
			t.Fatalf("updated profile %v", p)
		}
		if f := ok(t, c.c, &mpimv1.ClientFrame_FindUser{FindUser: &mpimv1.FindUserRequest{Username: "ANN"}}).GetFindUser(); f.GetUserId() != a.id {
			t.Fatalf("find user %v", f)
		}
		fails(t, c.c, "not_found", &mpimv1.ClientFrame_FindUser{FindUser: &mpimv1.FindUserRequest{Username: "nobody"}})
		fails(t, c.c, "not_found", &mpimv1.ClientFrame_GetProfile{GetProfile: &mpimv1.GetProfileRequest{UserId: "u/01ARZ3NDEKTSV4RRFFQ69G5FAV"}})
	})
}
