package main

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// Every client command, once, through real processes: profiles, friends,
// blocks, a direct conversation (send, edit, recall, delete for me, read,
// typing, history, conversation list), a group's whole life, presence, ping,
// a password change (the new password logs in, the old one no longer) and
// logout (the token no longer resumes); on real servers no password hash in
// the clear is then anywhere in Redis, the archive or the users table. Queries read the MySQL read model, so each is repeated until
// the projection shows the command before it.
func TestE2EEveryCommand(t *testing.T) {
	cl := startE2ECluster(t)
	testEveryCommand(t, cl)
	auditSecrets(t, cl, 3) // bob changed his password in testEveryCommand
}

// The same against `mpimd all` on its embedded stand-ins.
func TestEmbeddedEveryCommand(t *testing.T) { testEveryCommand(t, startEmbeddedCluster(t)) }

func testEveryCommand(t *testing.T, cl *e2eCluster) {
	began := time.Now()
	gwA, gwB := cl.gateways[0], cl.gateways[1]
	alice, bob, carol := cl.register(t, gwA, "alice"), cl.register(t, gwB, "bob"), cl.register(t, gwA, "carol")
	a := cl.login(t, alice, "phone", gwA, frame.Proto)
	b := cl.login(t, bob, "phone", gwB, frame.JSON)
	c := cl.login(t, carol, "phone", gwA, frame.JSON)

	// Profiles.
	if p := a.call(t, &mpimv1.ClientFrame_GetProfile{GetProfile: &mpimv1.GetProfileRequest{}}).GetGetProfile(); p.GetUserId() != alice.id || p.GetUsername() != "alice" {
		t.Fatalf("own profile: %v", p)
	}
	a.call(t, &mpimv1.ClientFrame_UpdateProfile{UpdateProfile: &mpimv1.UpdateProfileRequest{DisplayName: "Alice A."}})
	b.eventually(t, "alice's new display name", &mpimv1.ClientFrame_GetProfile{GetProfile: &mpimv1.GetProfileRequest{UserId: alice.id}},
		func(r *mpimv1.Response) bool { return r.GetGetProfile().GetDisplayName() == "Alice A." })
	if p := a.call(t, &mpimv1.ClientFrame_FindUser{FindUser: &mpimv1.FindUserRequest{Username: "bob"}}).GetFindUser(); p.GetUserId() != bob.id {
		t.Fatalf("find bob: %v, want %s", p, bob.id)
	}

	// Friends: bob accepts alice, alice declines carol.
	a.call(t, &mpimv1.ClientFrame_RequestFriend{RequestFriend: &mpimv1.RequestFriendRequest{UserId: bob.id, Message: "hi"}})
	c.call(t, &mpimv1.ClientFrame_RequestFriend{RequestFriend: &mpimv1.RequestFriendRequest{UserId: alice.id}})
	a.eventually(t, "alice's pending requests", &mpimv1.ClientFrame_ListFriendRequests{ListFriendRequests: &mpimv1.ListFriendRequestsRequest{}},
		func(r *mpimv1.Response) bool {
			l := r.GetListFriendRequests()
			return len(l.GetOutgoing()) == 1 && l.GetOutgoing()[0].GetToUserId() == bob.id &&
				len(l.GetIncoming()) == 1 && l.GetIncoming()[0].GetFromUserId() == carol.id
		})
	b.call(t, &mpimv1.ClientFrame_AcceptFriend{AcceptFriend: &mpimv1.AcceptFriendRequest{UserId: alice.id}})
	a.call(t, &mpimv1.ClientFrame_DeclineFriend{DeclineFriend: &mpimv1.DeclineFriendRequest{UserId: carol.id}})
	a.eventually(t, "alice's friends", &mpimv1.ClientFrame_ListFriends{ListFriends: &mpimv1.ListFriendsRequest{}},
		func(r *mpimv1.Response) bool {
			f := r.GetListFriends().GetFriends()
			return len(f) == 1 && f[0].GetUserId() == bob.id
		})

	// Blocks.
	a.call(t, &mpimv1.ClientFrame_Block{Block: &mpimv1.BlockRequest{UserId: carol.id}})
	a.eventually(t, "alice's block list", &mpimv1.ClientFrame_ListBlocks{ListBlocks: &mpimv1.ListBlocksRequest{}},
		func(r *mpimv1.Response) bool { return slices.Equal(r.GetListBlocks().GetUserIds(), []string{carol.id}) })
	a.call(t, &mpimv1.ClientFrame_Unblock{Unblock: &mpimv1.UnblockRequest{UserId: carol.id}})
	a.eventually(t, "alice's empty block list", &mpimv1.ClientFrame_ListBlocks{ListBlocks: &mpimv1.ListBlocksRequest{}},
		func(r *mpimv1.Response) bool { return len(r.GetListBlocks().GetUserIds()) == 0 })

	// A direct conversation.
	ctx := cl.ctx
	var sent ledger
	var st sendStats
	pair := []*e2eUser{alice, bob}
	for i := range 3 {
		m, err := a.send(ctx, toUser(bob, fmt.Sprintf("m%d", i)), pair, &st)
		if err != nil {
			t.Fatal(err)
		}
		sent.add(m)
	}
	msgs := sent.all()
	conv := msgs[0].key.conv
	if au := waitDelivered(t, "the direct messages", msgs, []*e2eDevice{a, b}); !au.ok() {
		t.Fatalf("direct messages: %v", au)
	}
	a.call(t, &mpimv1.ClientFrame_Edit{Edit: &mpimv1.EditRequest{ConversationId: conv, Seq: msgs[0].seq, Text: "edited"}})
	a.call(t, &mpimv1.ClientFrame_Recall{Recall: &mpimv1.RecallRequest{ConversationId: conv, Seq: msgs[1].seq}})
	b.call(t, &mpimv1.ClientFrame_DeleteForMe{DeleteForMe: &mpimv1.DeleteForMeRequest{ConversationId: conv, Seq: msgs[2].seq}})
	b.call(t, &mpimv1.ClientFrame_Typing{Typing: &mpimv1.TypingRequest{ConversationId: conv}})
	b.call(t, &mpimv1.ClientFrame_MarkRead{MarkRead: &mpimv1.MarkReadRequest{ConversationId: conv, Seq: msgs[2].seq}})
	b.eventually(t, "bob's history with the edit, the recall and the deletion", &mpimv1.ClientFrame_History{History: &mpimv1.HistoryRequest{ConversationId: conv, Limit: 10}},
		func(r *mpimv1.Response) bool {
			h := r.GetHistory().GetMessages()
			byseq := map[uint64]*mpimv1.ChatMessage{}
			for _, m := range h {
				byseq[m.GetSeq()] = m
			}
			e, rc, d := byseq[msgs[0].seq], byseq[msgs[1].seq], byseq[msgs[2].seq]
			return e.GetText() == "edited" && e.GetEditedAtMs() > 0 && rc.GetRecalledAtMs() > 0 && (d == nil || d.GetDeleted())
		})
	b.eventually(t, "bob's conversation read to the end", &mpimv1.ClientFrame_Conversations{Conversations: &mpimv1.ConversationsRequest{Limit: 10}},
		func(r *mpimv1.Response) bool {
			for _, s := range r.GetConversations().GetConversations() {
				if s.GetConversationId() == conv {
					return s.GetPeerUserId() == alice.id && s.GetLastSeq() == msgs[2].seq && s.GetUnreadCount() == 0
				}
			}
			return false
		})

	// A group's life: open group, carol joins, roles, rename, history
	// visibility, mute, kick,
	// leave, dissolve.
	g := a.call(t, &mpimv1.ClientFrame_CreateGroup{CreateGroup: &mpimv1.CreateGroupRequest{Name: "smoke", MemberIds: []string{bob.id}, Open: true}}).GetCreateGroup()
	gid := g.GetGroupId()
	c.call(t, &mpimv1.ClientFrame_JoinGroup{JoinGroup: &mpimv1.JoinGroupRequest{GroupId: gid}})
	a.call(t, &mpimv1.ClientFrame_SetRole{SetRole: &mpimv1.SetRoleRequest{GroupId: gid, UserId: bob.id, Role: mpimv1.Role_ROLE_ADMIN}})
	b.call(t, &mpimv1.ClientFrame_RenameGroup{RenameGroup: &mpimv1.RenameGroupRequest{GroupId: gid, Name: "smoke 2"}})
	b.call(t, &mpimv1.ClientFrame_SetHistoryVisibility{SetHistoryVisibility: &mpimv1.SetHistoryVisibilityRequest{GroupId: gid, Visible: true}})
	b.call(t, &mpimv1.ClientFrame_MuteMember{MuteMember: &mpimv1.MuteMemberRequest{GroupId: gid, UserId: carol.id, UntilMs: time.Now().Add(time.Hour).UnixMilli()}})
	a.eventually(t, "the group's members", &mpimv1.ClientFrame_GroupMembers{GroupMembers: &mpimv1.GroupMembersRequest{GroupId: gid}},
		func(r *mpimv1.Response) bool {
			gm := r.GetGroupMembers()
			roles := map[string]mpimv1.Role{}
			muted := false
			for _, m := range gm.GetMembers() {
				roles[m.GetUserId()] = m.GetRole()
				muted = muted || (m.GetUserId() == carol.id && m.GetMuted())
			}
			return gm.GetGroup().GetName() == "smoke 2" && gm.GetGroup().GetHistoryVisible() && len(roles) == 3 && roles[alice.id] == mpimv1.Role_ROLE_OWNER &&
				roles[bob.id] == mpimv1.Role_ROLE_ADMIN && roles[carol.id] == mpimv1.Role_ROLE_MEMBER && muted
		})
	b.call(t, &mpimv1.ClientFrame_UnmuteMember{UnmuteMember: &mpimv1.UnmuteMemberRequest{GroupId: gid, UserId: carol.id}})
	m, err := c.send(ctx, toGroup(gid, "carol-unmuted"), []*e2eUser{alice, bob, carol}, &st)
	if err != nil {
		t.Fatal(err)
	}
	sent.add(m)
	if au := waitDelivered(t, "carol's group message", sent.all(), []*e2eDevice{a, b, c}); !au.ok() {
		t.Fatalf("group message: %v", au)
	}
	a.call(t, &mpimv1.ClientFrame_KickMember{KickMember: &mpimv1.KickMemberRequest{GroupId: gid, UserId: carol.id}})
	b.call(t, &mpimv1.ClientFrame_AddMember{AddMember: &mpimv1.AddMemberRequest{GroupId: gid, UserId: carol.id}})
	b.call(t, &mpimv1.ClientFrame_LeaveGroup{LeaveGroup: &mpimv1.LeaveGroupRequest{GroupId: gid}})
	a.eventually(t, "alice and carol left in the group", &mpimv1.ClientFrame_MyGroups{MyGroups: &mpimv1.MyGroupsRequest{}},
		func(r *mpimv1.Response) bool {
			gs := r.GetMyGroups().GetGroups()
			return len(gs) == 1 && gs[0].GetGroupId() == gid && gs[0].GetMemberCount() == 2 && gs[0].GetMyRole() == mpimv1.Role_ROLE_OWNER
		})
	a.call(t, &mpimv1.ClientFrame_DissolveGroup{DissolveGroup: &mpimv1.DissolveGroupRequest{GroupId: gid}})
	a.eventually(t, "the dissolved group", &mpimv1.ClientFrame_MyGroups{MyGroups: &mpimv1.MyGroupsRequest{}},
		func(r *mpimv1.Response) bool {
			gs := r.GetMyGroups().GetGroups()
			return len(gs) == 0 || (len(gs) == 1 && gs[0].GetDissolved())
		})

	// Presence, ping, unfriend, logout.
	a.eventually(t, "bob online for alice", &mpimv1.ClientFrame_Presence{Presence: &mpimv1.PresenceRequest{}},
		func(r *mpimv1.Response) bool {
			for _, u := range r.GetPresence().GetUsers() {
				if u.GetUserId() == bob.id {
					return u.GetOnline()
				}
			}
			return false
		})
	if p := a.call(t, &mpimv1.ClientFrame_Ping{Ping: &mpimv1.PingRequest{}}).GetPing(); p.GetServerTimeMs() == 0 {
		t.Fatalf("pong without a server time: %v", p)
	}
	a.call(t, &mpimv1.ClientFrame_RemoveFriend{RemoveFriend: &mpimv1.RemoveFriendRequest{UserId: bob.id}})
	b.eventually(t, "bob without friends", &mpimv1.ClientFrame_ListFriends{ListFriends: &mpimv1.ListFriendsRequest{}},
		func(r *mpimv1.Response) bool { return len(r.GetListFriends().GetFriends()) == 0 })
	changeBobsPassword(t, cl, b, bob, gwA)
	c.call(t, &mpimv1.ClientFrame_Logout{Logout: &mpimv1.LogoutRequest{}})
	c.goOffline()
	if err := c.dial(gwB.addr); err == nil {
		t.Fatal("a device resumed with the token it logged out")
	}
	t.Logf("every command answered; %d sends acked; %.1fs", st.acked, time.Since(began).Seconds())
}
