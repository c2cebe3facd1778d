package stacktest

import (
	"slices"
	"testing"

	"github.com/mpim/mpim/gateway/gatewaytest"
	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// TestKickBansUntilAnAdminLetsBack: a kicked user can neither rejoin nor be
// re-added by a plain member; admins see the ban list and lift a ban with
// unbanMember or by adding the user; plain members add only to open groups.
func TestKickBansUntilAnAdminLetsBack(t *testing.T) {
	gatewaytest.Encodings(t, func(t *testing.T, enc frame.Encoding) {
		e := newEnv(t)
		o, b, k, d := e.Login(t, enc, "own"), e.Login(t, enc, "bea"), e.Login(t, enc, "kim"), e.Login(t, enc, "dan")
		open := gatewaytest.OK(t, o.Conn, &mpimv1.ClientFrame_CreateGroup{CreateGroup: &mpimv1.CreateGroupRequest{Name: "lobby", Open: true, MemberIds: []string{b.ID, k.ID}}}).GetCreateGroup().GetGroupId()
		gatewaytest.OK(t, o.Conn, &mpimv1.ClientFrame_KickMember{KickMember: &mpimv1.KickMemberRequest{GroupId: open, UserId: k.ID}})
		gatewaytest.Fails(t, k.Conn, "forbidden", &mpimv1.ClientFrame_JoinGroup{JoinGroup: &mpimv1.JoinGroupRequest{GroupId: open}})
		gatewaytest.Fails(t, b.Conn, "forbidden", gatewaytest.AddMember(open, k.ID))
		gatewaytest.OK(t, b.Conn, gatewaytest.AddMember(open, d.ID)) // a plain member adds to an open group

		e.project(t)
		ms := gatewaytest.OK(t, o.Conn, &mpimv1.ClientFrame_GroupMembers{GroupMembers: &mpimv1.GroupMembersRequest{GroupId: open}}).GetGroupMembers()
		if !slices.Equal(ms.GetBannedUserIds(), []string{k.ID}) {
			t.Fatalf("owner sees bans %v, want [%s]", ms.GetBannedUserIds(), k.ID)
		}
		if bs := gatewaytest.OK(t, b.Conn, &mpimv1.ClientFrame_GroupMembers{GroupMembers: &mpimv1.GroupMembersRequest{GroupId: open}}).GetGroupMembers().GetBannedUserIds(); len(bs) != 0 {
			t.Fatalf("a plain member sees bans %v", bs)
		}
		unban := &mpimv1.ClientFrame_UnbanMember{UnbanMember: &mpimv1.UnbanMemberRequest{GroupId: open, UserId: k.ID}}
		gatewaytest.Fails(t, b.Conn, "forbidden", unban)
		gatewaytest.OK(t, o.Conn, unban)
		gatewaytest.Fails(t, o.Conn, "not_found", unban)
		gatewaytest.OK(t, k.Conn, &mpimv1.ClientFrame_JoinGroup{JoinGroup: &mpimv1.JoinGroupRequest{GroupId: open}})

		closed := gatewaytest.OK(t, o.Conn, &mpimv1.ClientFrame_CreateGroup{CreateGroup: &mpimv1.CreateGroupRequest{Name: "staff", MemberIds: []string{b.ID, k.ID}}}).GetCreateGroup().GetGroupId()
		gatewaytest.Fails(t, b.Conn, "forbidden", gatewaytest.AddMember(closed, d.ID))
		gatewaytest.OK(t, o.Conn, &mpimv1.ClientFrame_KickMember{KickMember: &mpimv1.KickMemberRequest{GroupId: closed, UserId: k.ID}})
		gatewaytest.OK(t, o.Conn, &mpimv1.ClientFrame_SetRole{SetRole: &mpimv1.SetRoleRequest{GroupId: closed, UserId: b.ID, Role: mpimv1.Role_ROLE_ADMIN}})
		gatewaytest.OK(t, b.Conn, gatewaytest.AddMember(closed, k.ID)) // an admin's add lets the user back
		gatewaytest.OK(t, k.Conn, gatewaytest.SendGroup(closed, "back"))
	})
}
