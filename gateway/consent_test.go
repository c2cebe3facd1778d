package gateway_test

import (
	"slices"
	"testing"
	"time"

	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

func addMember(group, user string) *mpimv1.ClientFrame_AddMember {
	return &mpimv1.ClientFrame_AddMember{AddMember: &mpimv1.AddMemberRequest{GroupId: group, UserId: user}}
}

// TestGroupMembersAreRealUsersWhoConsent: members of a new group and added
// members are registered users who do not block the one adding them.
func TestGroupMembersAreRealUsersWhoConsent(t *testing.T) {
	e := newEnv(t)
	a, m, c := e.login(t, frame.JSON, "ann"), e.login(t, frame.JSON, "mal"), e.login(t, frame.JSON, "cid")
	ghost := "u/01ARZ3NDEKTSV4RRFFQ69G5FAV"

	er := fails(t, m.c, "not_found", &mpimv1.ClientFrame_CreateGroup{CreateGroup: &mpimv1.CreateGroupRequest{Name: "fake", MemberIds: []string{c.id, ghost}}})
	if !contains(er.GetMessage(), ghost) {
		t.Fatalf("error %q does not name %s", er.GetMessage(), ghost)
	}
	ok(t, a.c, &mpimv1.ClientFrame_Block{Block: &mpimv1.BlockRequest{UserId: m.id}})
	fails(t, m.c, "blocked", &mpimv1.ClientFrame_CreateGroup{CreateGroup: &mpimv1.CreateGroupRequest{Name: "trap", MemberIds: []string{a.id}}})
	g := ok(t, m.c, &mpimv1.ClientFrame_CreateGroup{CreateGroup: &mpimv1.CreateGroupRequest{Name: "trap", MemberIds: []string{c.id}}}).GetCreateGroup()
	fails(t, m.c, "blocked", addMember(g.GetGroupId(), a.id))
	fails(t, m.c, "not_found", addMember(g.GetGroupId(), ghost))
}

// TestKickBansUntilAnAdminLetsBack: a kicked user can neither rejoin nor be
// re-added by a plain member; admins see the ban list and lift a ban with
// unbanMember or by adding the user; plain members add only to open groups.
func TestKickBansUntilAnAdminLetsBack(t *testing.T) {
	encodings(t, func(t *testing.T, enc frame.Encoding) {
		e := newEnv(t)
		o, b, k, d := e.login(t, enc, "own"), e.login(t, enc, "bea"), e.login(t, enc, "kim"), e.login(t, enc, "dan")
		open := ok(t, o.c, &mpimv1.ClientFrame_CreateGroup{CreateGroup: &mpimv1.CreateGroupRequest{Name: "lobby", Open: true, MemberIds: []string{b.id, k.id}}}).GetCreateGroup().GetGroupId()
		ok(t, o.c, &mpimv1.ClientFrame_KickMember{KickMember: &mpimv1.KickMemberRequest{GroupId: open, UserId: k.id}})
		fails(t, k.c, "forbidden", &mpimv1.ClientFrame_JoinGroup{JoinGroup: &mpimv1.JoinGroupRequest{GroupId: open}})
		fails(t, b.c, "forbidden", addMember(open, k.id))
		ok(t, b.c, addMember(open, d.id)) // a plain member adds to an open group

		e.project(t)
		ms := ok(t, o.c, &mpimv1.ClientFrame_GroupMembers{GroupMembers: &mpimv1.GroupMembersRequest{GroupId: open}}).GetGroupMembers()
		if !slices.Equal(ms.GetBannedUserIds(), []string{k.id}) {
			t.Fatalf("owner sees bans %v, want [%s]", ms.GetBannedUserIds(), k.id)
		}
		if bs := ok(t, b.c, &mpimv1.ClientFrame_GroupMembers{GroupMembers: &mpimv1.GroupMembersRequest{GroupId: open}}).GetGroupMembers().GetBannedUserIds(); len(bs) != 0 {
			t.Fatalf("a plain member sees bans %v", bs)
		}
		unban := &mpimv1.ClientFrame_UnbanMember{UnbanMember: &mpimv1.UnbanMemberRequest{GroupId: open, UserId: k.id}}
		fails(t, b.c, "forbidden", unban)
		ok(t, o.c, unban)
		fails(t, o.c, "not_found", unban)
		ok(t, k.c, &mpimv1.ClientFrame_JoinGroup{JoinGroup: &mpimv1.JoinGroupRequest{GroupId: open}})

		closed := ok(t, o.c, &mpimv1.ClientFrame_CreateGroup{CreateGroup: &mpimv1.CreateGroupRequest{Name: "staff", MemberIds: []string{b.id, k.id}}}).GetCreateGroup().GetGroupId()
		fails(t, b.c, "forbidden", addMember(closed, d.id))
		ok(t, o.c, &mpimv1.ClientFrame_KickMember{KickMember: &mpimv1.KickMemberRequest{GroupId: closed, UserId: k.id}})
		ok(t, o.c, &mpimv1.ClientFrame_SetRole{SetRole: &mpimv1.SetRoleRequest{GroupId: closed, UserId: b.id, Role: mpimv1.Role_ROLE_ADMIN}})
		ok(t, b.c, addMember(closed, k.id)) // an admin's add lets the user back
		ok(t, k.c, sendGroup(closed, "back"))
	})
}

// TestFriendRequestAfterDeclineIsRateLimited: asking again right after a
// decline is rate_limited with the wait; the cooldown ends.
func TestFriendRequestAfterDeclineIsRateLimited(t *testing.T) {
	e := newEnv(t)
	a, b := e.login(t, frame.JSON, "ann"), e.login(t, frame.JSON, "ben")
	ask := &mpimv1.ClientFrame_RequestFriend{RequestFriend: &mpimv1.RequestFriendRequest{UserId: b.id, Message: "hi"}}
	ok(t, a.c, ask)
	ok(t, b.c, &mpimv1.ClientFrame_DeclineFriend{DeclineFriend: &mpimv1.DeclineFriendRequest{UserId: a.id}})
	er := fails(t, a.c, "rate_limited", ask)
	if er.GetRetryAfterMs() == 0 {
		t.Fatalf("rate_limited without retryAfterMs: %v", er)
	}
	e.clock.Add(time.Duration(er.GetRetryAfterMs())*time.Millisecond + time.Second)
	ok(t, a.c, ask)
}
