package gateway_test

import (
	"testing"
	"time"

	"github.com/mpim/mpim/gateway/gatewaytest"
	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// TestGroupMembersAreRealUsersWhoConsent: members of a new group and added
// members are registered users who do not block the one adding them.
func TestGroupMembersAreRealUsersWhoConsent(t *testing.T) {
	e := gatewaytest.New(t)
	a, m, c := e.Login(t, frame.JSON, "ann"), e.Login(t, frame.JSON, "mal"), e.Login(t, frame.JSON, "cid")
	ghost := "u/01ARZ3NDEKTSV4RRFFQ69G5FAV"

	er := gatewaytest.Fails(t, m.Conn, "not_found", &mpimv1.ClientFrame_CreateGroup{CreateGroup: &mpimv1.CreateGroupRequest{Name: "fake", MemberIds: []string{c.ID, ghost}}})
	if !contains(er.GetMessage(), ghost) {
		t.Fatalf("error %q does not name %s", er.GetMessage(), ghost)
	}
	gatewaytest.OK(t, a.Conn, &mpimv1.ClientFrame_Block{Block: &mpimv1.BlockRequest{UserId: m.ID}})
	gatewaytest.Fails(t, m.Conn, "blocked", &mpimv1.ClientFrame_CreateGroup{CreateGroup: &mpimv1.CreateGroupRequest{Name: "trap", MemberIds: []string{a.ID}}})
	g := gatewaytest.OK(t, m.Conn, &mpimv1.ClientFrame_CreateGroup{CreateGroup: &mpimv1.CreateGroupRequest{Name: "trap", MemberIds: []string{c.ID}}}).GetCreateGroup()
	gatewaytest.Fails(t, m.Conn, "blocked", gatewaytest.AddMember(g.GetGroupId(), a.ID))
	gatewaytest.Fails(t, m.Conn, "not_found", gatewaytest.AddMember(g.GetGroupId(), ghost))
}

// TestFriendRequestAfterDeclineIsRateLimited: asking again right after a
// decline is rate_limited with the wait; the cooldown ends.
func TestFriendRequestAfterDeclineIsRateLimited(t *testing.T) {
	e := gatewaytest.New(t)
	a, b := e.Login(t, frame.JSON, "ann"), e.Login(t, frame.JSON, "ben")
	ask := &mpimv1.ClientFrame_RequestFriend{RequestFriend: &mpimv1.RequestFriendRequest{UserId: b.ID, Message: "hi"}}
	gatewaytest.OK(t, a.Conn, ask)
	gatewaytest.OK(t, b.Conn, &mpimv1.ClientFrame_DeclineFriend{DeclineFriend: &mpimv1.DeclineFriendRequest{UserId: a.ID}})
	er := gatewaytest.Fails(t, a.Conn, "rate_limited", ask)
	if er.GetRetryAfterMs() == 0 {
		t.Fatalf("rate_limited without retryAfterMs: %v", er)
	}
	e.Clock.Add(time.Duration(er.GetRetryAfterMs())*time.Millisecond + time.Second)
	gatewaytest.OK(t, a.Conn, ask)
}
