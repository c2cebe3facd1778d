package domain

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// Cast of the group tests.
var (
	g1       = gid(1)
	owner    = uid(1)
	admin    = uid(2)
	admin2   = uid(3)
	member   = uid(4)
	member2  = uid(5)
	muted    = uid(6)
	outsider = uid(9)
)

// teamHistory creates g1 with an owner, two admins, two members and a member
// muted indefinitely.
func teamHistory(open bool) []Event {
	return []Event{
		GroupCreated{Group: g1, Name: "team", Owner: owner, Members: []UserID{admin, admin2, member, member2, muted}, Open: open},
		MemberRoleChanged{User: admin, By: owner, Role: RoleAdmin},
		MemberRoleChanged{User: admin2, By: owner, Role: RoleAdmin},
		MemberMuted{User: muted, By: admin},
	}
}

func TestGroupDecide(t *testing.T) {
	team := teamHistory(false)
	open := teamHistory(true)
	small := DefaultPolicy()
	small.MaxGroupMembers = 6
	later := t0.Add(time.Hour)
	tests := []struct {
		name    string
		history []Event
		policy  *Policy
		cmd     GroupCommand
		want    []Event
		code    Code
	}{
		{"group is created without duplicates or the owner among members", nil, nil,
			CreateGroup{Group: g1, Name: " team ", Owner: owner, Members: []UserID{member, owner, admin, member}, Open: true},
			[]Event{GroupCreated{Group: g1, Name: "team", Owner: owner, Members: []UserID{member, admin}, Open: true}}, ""},
		{"group of one is created", nil, nil, CreateGroup{Group: g1, Name: "me", Owner: owner},
			[]Event{GroupCreated{Group: g1, Name: "me", Owner: owner}}, ""},
		{"created group exists", team, nil, CreateGroup{Group: g1, Name: "x", Owner: owner}, nil, EExists},
		{"creating another group is invalid", nil, nil, CreateGroup{Group: gid(2), Name: "x", Owner: owner}, nil, EInvalid},
		{"blank name is invalid", nil, nil, CreateGroup{Group: g1, Name: "  ", Owner: owner}, nil, EInvalid},
		{"long name is too large", nil, nil, CreateGroup{Group: g1, Name: strings.Repeat("n", 65), Owner: owner}, nil, ETooLarge},
		{"malformed owner is invalid", nil, nil, CreateGroup{Group: g1, Name: "x", Owner: "bob"}, nil, EInvalid},
		{"malformed member is invalid", nil, nil, CreateGroup{Group: g1, Name: "x", Owner: owner, Members: []UserID{"bob"}}, nil, EInvalid},
		{"too many members is too large", nil, &small, CreateGroup{Group: g1, Name: "x", Owner: owner, Members: []UserID{uid(11), uid(12), uid(13), uid(14), uid(15), uid(16)}}, nil, ETooLarge},
		{"exactly the limit is created", nil, &small, CreateGroup{Group: g1, Name: "x", Owner: owner, Members: []UserID{uid(11), uid(12), uid(13), uid(14), uid(15), owner}},
			[]Event{GroupCreated{Group: g1, Name: "x", Owner: owner, Members: []UserID{uid(11), uid(12), uid(13), uid(14), uid(15)}}}, ""},

		{"command on a missing group is not found", nil, nil, AddMember{Actor: owner, User: member}, nil, ENotFound},
		{"plain member adds to an open group", open, nil, AddMember{Actor: member, User: outsider}, []Event{MemberAdded{User: outsider, By: member}}, ""},
		{"plain member cannot add to a closed group", team, nil, AddMember{Actor: member, User: outsider}, nil, EForbidden},
		{"admin adds to a closed group", team, nil, AddMember{Actor: admin, User: outsider}, []Event{MemberAdded{User: outsider, By: admin}}, ""},
		{"kicked user cannot rejoin", append(slices.Clone(open), MemberKicked{User: member, By: admin}), nil, JoinGroup{User: member}, nil, EForbidden},
		{"plain member cannot re-add a kicked user", append(slices.Clone(open), MemberKicked{User: member, By: admin}), nil, AddMember{Actor: member2, User: member}, nil, EForbidden},
		{"admin re-adds a kicked user", append(slices.Clone(open), MemberKicked{User: member, By: admin}), nil, AddMember{Actor: admin2, User: member}, []Event{MemberAdded{User: member, By: admin2}}, ""},
		{"admin unbans", append(slices.Clone(open), MemberKicked{User: member, By: admin}), nil, UnbanMember{Actor: admin2, Target: member}, []Event{MemberUnbanned{User: member, By: admin2}}, ""},
		{"plain member cannot unban", append(slices.Clone(open), MemberKicked{User: member, By: admin}), nil, UnbanMember{Actor: member2, Target: member}, nil, EForbidden},
		{"unbanning a user not banned is not found", open, nil, UnbanMember{Actor: admin, Target: outsider}, nil, ENotFound},
		{"unbanned user rejoins", append(slices.Clone(open), MemberKicked{User: member, By: admin}, MemberUnbanned{User: member, By: owner}), nil, JoinGroup{User: member}, []Event{MemberJoined{User: member}}, ""},
		{"user who left rejoins", append(slices.Clone(open), MemberLeft{User: member}), nil, JoinGroup{User: member}, []Event{MemberJoined{User: member}}, ""},
		{"adding a member exists", team, nil, AddMember{Actor: owner, User: member}, nil, EExists},
		{"non-member cannot add", team, nil, AddMember{Actor: outsider, User: uid(10)}, nil, ENotMember},
		{"adding a malformed user is invalid", team, nil, AddMember{Actor: owner, User: "x"}, nil, EInvalid},
		{"adding to a full group is too large", team, &small, AddMember{Actor: owner, User: outsider}, nil, ETooLarge},

		{"anyone joins an open group", open, nil, JoinGroup{User: outsider}, []Event{MemberJoined{User: outsider}}, ""},
		{"joining a closed group is forbidden", team, nil, JoinGroup{User: outsider}, nil, EForbidden},
		{"joining twice exists", open, nil, JoinGroup{User: member}, nil, EExists},
		{"joining a full group is too large", open, &small, JoinGroup{User: outsider}, nil, ETooLarge},

		{"member leaves", team, nil, LeaveGroup{User: member}, []Event{MemberLeft{User: member}}, ""},
		{"owner cannot leave", team, nil, LeaveGroup{User: owner}, nil, EForbidden},
		{"non-member cannot leave", team, nil, LeaveGroup{User: outsider}, nil, ENotMember},

		{"owner kicks an admin", team, nil, KickMember{Actor: owner, Target: admin}, []Event{MemberKicked{User: admin, By: owner}}, ""},
		{"admin kicks a member", team, nil, KickMember{Actor: admin, Target: member}, []Event{MemberKicked{User: member, By: admin}}, ""},
		{"admin cannot kick an admin", team, nil, KickMember{Actor: admin, Target: admin2}, nil, EForbidden},
		{"admin cannot kick the owner", team, nil, KickMember{Actor: admin, Target: owner}, nil, EForbidden},
		{"member cannot kick", team, nil, KickMember{Actor: member, Target: member2}, nil, EForbidden},
		{"nobody kicks themselves", team, nil, KickMember{Actor: owner, Target: owner}, nil, EForbidden},
		{"non-member cannot kick", team, nil, KickMember{Actor: outsider, Target: member}, nil, ENotMember},
		{"kicking a non-member is not member", team, nil, KickMember{Actor: owner, Target: outsider}, nil, ENotMember},

		{"owner promotes", team, nil, SetRole{Actor: owner, Target: member, Role: RoleAdmin}, []Event{MemberRoleChanged{User: member, By: owner, Role: RoleAdmin}}, ""},
		{"owner demotes", team, nil, SetRole{Actor: owner, Target: admin, Role: RoleMember}, []Event{MemberRoleChanged{User: admin, By: owner, Role: RoleMember}}, ""},
		{"admin cannot set roles", team, nil, SetRole{Actor: admin, Target: member, Role: RoleAdmin}, nil, EForbidden},
		{"ownership cannot be transferred", team, nil, SetRole{Actor: owner, Target: admin, Role: RoleOwner}, nil, EForbidden},
		{"owner cannot demote themselves", team, nil, SetRole{Actor: owner, Target: owner, Role: RoleMember}, nil, EForbidden},
		{"same role exists", team, nil, SetRole{Actor: owner, Target: admin, Role: RoleAdmin}, nil, EExists},
		{"unknown role is invalid", team, nil, SetRole{Actor: owner, Target: member, Role: Role(9)}, nil, EInvalid},
		{"role of a non-member is not member", team, nil, SetRole{Actor: owner, Target: outsider, Role: RoleAdmin}, nil, ENotMember},

		{"admin renames", team, nil, RenameGroup{Actor: admin, Name: "crew"}, []Event{GroupRenamed{Name: "crew", By: admin}}, ""},
		{"owner renames", team, nil, RenameGroup{Actor: owner, Name: "crew"}, []Event{GroupRenamed{Name: "crew", By: owner}}, ""},
		{"member cannot rename", team, nil, RenameGroup{Actor: member, Name: "crew"}, nil, EForbidden},
		{"non-member cannot rename", team, nil, RenameGroup{Actor: outsider, Name: "crew"}, nil, ENotMember},
		{"rename to blank is invalid", team, nil, RenameGroup{Actor: owner, Name: ""}, nil, EInvalid},

		{"admin mutes a member until later, in UTC milliseconds", team, nil,
			MuteMember{Actor: admin, Target: member, Until: later.In(time.FixedZone("x", 3600)).Add(time.Microsecond)},
			[]Event{MemberMuted{User: member, By: admin, Until: later}}, ""},
		{"owner mutes an admin indefinitely", team, nil, MuteMember{Actor: owner, Target: admin}, []Event{MemberMuted{User: admin, By: owner}}, ""},
		{"admin cannot mute an admin", team, nil, MuteMember{Actor: admin, Target: admin2}, nil, EForbidden},
		{"admin cannot mute the owner", team, nil, MuteMember{Actor: admin, Target: owner}, nil, EForbidden},
		{"member cannot mute", team, nil, MuteMember{Actor: member, Target: member2}, nil, EForbidden},
		{"nobody mutes themselves", team, nil, MuteMember{Actor: admin, Target: admin}, nil, EForbidden},
		{"mute until the past is invalid", team, nil, MuteMember{Actor: admin, Target: member, Until: t0}, nil, EInvalid},
		{"mute for exactly the longest mute is accepted", team, nil, MuteMember{Actor: admin, Target: member, Until: t0.Add(365 * 24 * time.Hour)},
			[]Event{MemberMuted{User: member, By: admin, Until: t0.Add(365 * 24 * time.Hour)}}, ""},
		{"mute beyond the longest mute is invalid", team, nil, MuteMember{Actor: admin, Target: member, Until: t0.Add(365*24*time.Hour + time.Millisecond)}, nil, EInvalid},
		{"mute until the year 10000 is invalid", team, nil, MuteMember{Actor: admin, Target: member, Until: time.UnixMilli(253402300800000)}, nil, EInvalid},
		{"admin unmutes", team, nil, UnmuteMember{Actor: admin2, Target: muted}, []Event{MemberUnmuted{User: muted, By: admin2}}, ""},
		{"unmuting an unmuted member is not found", team, nil, UnmuteMember{Actor: admin, Target: member}, nil, ENotFound},
		{"unmuting an expired mute is not found", append(team[:4:4], MemberMuted{User: member, By: owner, Until: t0}), nil, UnmuteMember{Actor: admin, Target: member}, nil, ENotFound},
		{"member cannot unmute", team, nil, UnmuteMember{Actor: member, Target: muted}, nil, EForbidden},
		{"muted member cannot unmute themselves", team, nil, UnmuteMember{Actor: muted, Target: muted}, nil, EForbidden},

		{"owner makes the history visible to new members", team, nil, SetHistoryVisibility{Actor: owner, Visible: true},
			[]Event{GroupHistoryVisibilityChanged{Visible: true, By: owner}}, ""},
		{"admin hides the history again", append(team[:4:4], GroupHistoryVisibilityChanged{Visible: true, By: owner}), nil,
			SetHistoryVisibility{Actor: admin, Visible: false}, []Event{GroupHistoryVisibilityChanged{Visible: false, By: admin}}, ""},
		{"plain member cannot change the history visibility", team, nil, SetHistoryVisibility{Actor: member, Visible: true}, nil, EForbidden},
		{"non-member cannot change the history visibility", team, nil, SetHistoryVisibility{Actor: outsider, Visible: true}, nil, ENotMember},
		{"history visibility already off exists", team, nil, SetHistoryVisibility{Actor: owner}, nil, EExists},

		{"owner dissolves", team, nil, DissolveGroup{Actor: owner}, []Event{GroupDissolved{By: owner}}, ""},
		{"admin cannot dissolve", team, nil, DissolveGroup{Actor: admin}, nil, EForbidden},
		{"non-member cannot dissolve", team, nil, DissolveGroup{Actor: outsider}, nil, ENotMember},

		{"nil command is invalid", team, nil, nil, nil, EInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := DefaultPolicy()
			if tt.policy != nil {
				p = *tt.policy
			}
			decideCase(t, func(h []Event) (*Group, error) { return RebuildGroup(g1, h) }, tt.history, tt.cmd, p, tt.code, tt.want)
		})
	}
}

func TestGroupDissolvedAcceptsNothing(t *testing.T) {
	history := append(teamHistory(true), GroupDissolved{By: owner})
	g, err := RebuildGroup(g1, history)
	wantCode(t, err, "")
	for _, cmd := range []GroupCommand{
		CreateGroup{Group: g1, Name: "again", Owner: owner},
		AddMember{Actor: owner, User: outsider},
		JoinGroup{User: outsider},
		LeaveGroup{User: member},
		KickMember{Actor: owner, Target: member},
		SetRole{Actor: owner, Target: member, Role: RoleAdmin},
		RenameGroup{Actor: owner, Name: "x"},
		MuteMember{Actor: owner, Target: member},
		UnmuteMember{Actor: owner, Target: muted},
		DissolveGroup{Actor: owner},
		nil,
	} {
		t.Run(fmt.Sprintf("%T is refused", cmd), func(t *testing.T) {
			fresh, _ := RebuildGroup(g1, history)
			_, err := g.Decide(cmd, t0, DefaultPolicy())
			wantCode(t, err, EDissolved)
			wantUnchanged(t, g, fresh)
		})
	}
	t.Run("owner cannot post", func(t *testing.T) {
		wantCode(t, g.CanPost(owner, t0), EDissolved)
	})
	conv := GroupConversation(g1)
	state := MessageState{Sender: owner, SentAt: t0}
	t.Run("send is refused", func(t *testing.T) {
		_, err := DecideSend(SendMessage{Conversation: conv, Sender: owner, Kind: KindText, Text: "hi"}, t0, DefaultPolicy(), nil, g)
		wantCode(t, err, EDissolved)
	})
	t.Run("recall is refused", func(t *testing.T) {
		_, err := DecideRecall(RecallMessage{Conversation: conv, Seq: 1, Actor: owner}, state, t0, DefaultPolicy(), g)
		wantCode(t, err, EDissolved)
	})
	t.Run("edit is refused", func(t *testing.T) {
		_, err := DecideEdit(EditMessage{Conversation: conv, Seq: 1, Actor: owner, Text: "x"}, state, t0, DefaultPolicy(), nil, g)
		wantCode(t, err, EDissolved)
	})
}

func TestGroupCanPost(t *testing.T) {
	until := t0.Add(time.Hour)
	history := append(teamHistory(false), MemberMuted{User: member, By: admin, Until: until})
	g, err := RebuildGroup(g1, history)
	wantCode(t, err, "")
	tests := []struct {
		name string
		user UserID
		now  time.Time
		code Code
	}{
		{"owner posts", owner, t0, ""},
		{"admin posts", admin, t0, ""},
		{"member posts", member2, t0, ""},
		{"non-member cannot post", outsider, t0, ENotMember},
		{"muted member cannot post before until", member, t0, EMuted},
		{"muted member cannot post just before until", member, until.Add(-time.Millisecond), EMuted},
		{"muted member posts at until", member, until, ""},
		{"muted member posts after until", member, until.Add(time.Minute), ""},
		{"indefinitely muted member cannot post years later", muted, t0.AddDate(10, 0, 0), EMuted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantCode(t, g.CanPost(tt.user, tt.now), tt.code)
		})
	}
	t.Run("unmuted member posts", func(t *testing.T) {
		g, _ := RebuildGroup(g1, history)
		run[GroupCommand](t, g, t0, UnmuteMember{Actor: owner, Target: muted})
		wantCode(t, g.CanPost(muted, t0), "")
	})
	t.Run("missing group is not found", func(t *testing.T) {
		g, _ := NewGroup(g1)
		wantCode(t, g.CanPost(owner, t0), ENotFound)
	})
	t.Run("kicked member cannot post", func(t *testing.T) {
		g, _ := RebuildGroup(g1, history)
		run[GroupCommand](t, g, t0, KickMember{Actor: admin, Target: member2})
		wantCode(t, g.CanPost(member2, t0), ENotMember)
	})
}

func TestGroupLifecycle(t *testing.T) {
	g, err := NewGroup(g1)
	wantCode(t, err, "")
	mute := t0.Add(time.Hour)
	events := run[GroupCommand](t, g, t0,
		CreateGroup{Group: g1, Name: "team", Owner: owner, Members: []UserID{member, admin}},
		SetRole{Actor: owner, Target: admin, Role: RoleAdmin},
		AddMember{Actor: admin, User: member2},
		AddMember{Actor: admin, User: outsider},
		MuteMember{Actor: admin, Target: member2, Until: mute},
		RenameGroup{Actor: admin, Name: "crew"},
		KickMember{Actor: admin, Target: outsider},
		LeaveGroup{User: member},
	)
	t.Run("state follows the events", func(t *testing.T) {
		want := []Member{
			{User: owner, Role: RoleOwner},
			{User: admin, Role: RoleAdmin},
			{User: member2, Role: RoleMember, Muted: true, MutedUntil: mute},
		}
		if got := g.Members(); !reflect.DeepEqual(got, want) {
			t.Fatalf("Members() = %+v\nwant %+v", got, want)
		}
		if !slices.IsSortedFunc(g.Members(), func(a, b Member) int { return strings.Compare(string(a.User), string(b.User)) }) {
			t.Fatal("members are not sorted")
		}
		if g.Name() != "crew" || g.Owner() != owner || g.Open() || g.Dissolved() || !g.Exists() || g.Len() != 3 {
			t.Fatalf("group: name %q owner %v open %v dissolved %v len %d", g.Name(), g.Owner(), g.Open(), g.Dissolved(), g.Len())
		}
		if r, ok := g.Role(admin); !ok || r != RoleAdmin || !g.IsAdmin(admin) || !g.IsAdmin(owner) || g.IsAdmin(member2) {
			t.Fatal("roles are wrong")
		}
		if _, ok := g.Role(member); ok || g.IsAdmin(outsider) {
			t.Fatal("a departed member still has a role")
		}
		if m, ok := g.Member(member2); !ok || !m.MutedAt(t0) || m.MutedAt(mute) {
			t.Fatalf("Member(member2) = %+v, %v", m, ok)
		}
		if g.Version() != uint64(len(events)) || g.ID() != g1 || g.AggregateID() != string(g1) || g.PartitionKey() != GroupConversation(g1).PartitionKey() || g.Conversation() != GroupConversation(g1) {
			t.Fatal("identity is wrong")
		}
	})
	t.Run("rebuild equals step by step", func(t *testing.T) {
		r, err := RebuildGroup(g1, events)
		wantCode(t, err, "")
		if !reflect.DeepEqual(r, g) {
			t.Fatalf("rebuilt %+v\nstepped %+v", r, g)
		}
	})
	t.Run("dissolving keeps the members for history", func(t *testing.T) {
		run[GroupCommand](t, g, t0, DissolveGroup{Actor: owner})
		if !g.Dissolved() || g.Len() != 3 {
			t.Fatalf("dissolved %v len %d", g.Dissolved(), g.Len())
		}
	})
}

func TestGroupApplyRejectsForeignEvents(t *testing.T) {
	created := GroupCreated{Group: g1, Name: "team", Owner: owner}
	tests := []struct {
		name    string
		history []Event
		e       Event
	}{
		{"event before creation", nil, MemberJoined{User: member}},
		{"another group's creation", nil, GroupCreated{Group: gid(2), Owner: owner}},
		{"a second creation", []Event{created}, created},
		{"a user event", []Event{created}, ProfileUpdated{}},
		{"a message event", []Event{created}, MessageSent{}},
		{"nil", []Event{created}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantRejected(t, func(h []Event) (*Group, error) { return RebuildGroup(g1, h) }, tt.history, tt.e)
		})
	}
	t.Run("new rejects a malformed id", func(t *testing.T) {
		_, err := NewGroup("g/x")
		wantCode(t, err, EInvalid)
	})
}
