package query

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/cachekeys"
	"github.com/mpim/mpim/internal/readmodel"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

func TestConfigIsValidated(t *testing.T) {
	if _, err := New(nil, nil, Config{HistoryPageBytes: 1}); err == nil ||
		!strings.Contains(err.Error(), "history page bytes") || !strings.Contains(err.Error(), "database") || !strings.Contains(err.Error(), "Redis") {
		t.Fatalf("New with nothing = %v; want every problem", err)
	}
}

func TestWireEnumsShareTheDomainsNumbers(t *testing.T) {
	for r := domain.RoleMember; r <= domain.RoleOwner; r++ {
		if got := roleOf(readmodel.RoleName(r)); !strings.HasSuffix(got.String(), strings.ToUpper(readmodel.RoleName(r))) {
			t.Errorf("role %s reads as %s", readmodel.RoleName(r), got)
		}
	}
	for k := domain.KindText; k <= domain.KindCustom; k++ {
		if got := mpimv1.MessageKind(k); !strings.HasSuffix(got.String(), strings.ToUpper(readmodel.KindName(k))) {
			t.Errorf("kind %s reads as %s", readmodel.KindName(k), got)
		}
	}
}

func TestProfilesContactsAndDevices(t *testing.T) {
	e := newEnv(t, Config{})
	ctx, u := testCtx(t), ids(4)
	e.user(t, u[0], "ann", "ANN")
	e.user(t, u[1], "ben", "")
	keys := cachekeys.New(e.s.cfg.Prefix)
	e.rdb.HSet(ctx, keys.Profile(u[0]), cachekeys.ProfileUsername, "ann", cachekeys.ProfileName, "Ann (cached)")
	e.rdb.SAdd(ctx, keys.Friends(u[0]), string(u[2]), string(u[1]))
	e.rdb.SAdd(ctx, keys.Blocks(u[0]), string(u[3]))
	e.exec(t, "INSERT INTO "+readmodel.Friendships+" (user_id, friend_id, since) VALUES (?, ?, ?), (?, ?, ?)",
		string(u[0]), string(u[1]), t0, string(u[0]), string(u[2]), t0)
	e.exec(t, "INSERT INTO "+readmodel.Requests+" (from_user, to_user, message, status, created_at, updated_at, version) VALUES"+
		" (?, ?, 'hi', ?, ?, ?, 1), (?, ?, '', ?, ?, ?, 1)",
		string(u[1]), string(u[0]), readmodel.RequestPending, t0, t0, string(u[0]), string(u[3]), readmodel.RequestDeclined, t0, t0)
	e.exec(t, "INSERT INTO "+readmodel.Blocks+" (blocker, blocked, blocked_at) VALUES (?, ?, ?)", string(u[0]), string(u[3]), t0)
	e.exec(t, "INSERT INTO "+readmodel.Devices+" (user_id, device_id, platform, last_login_at, logged_out_at) VALUES"+
		" (?, 'phone', 'ios', ?, NULL), (?, 'laptop', 'web', ?, NULL), (?, 'old', 'web', ?, ?)",
		string(u[0]), t0, string(u[0]), t0.Add(time.Second), string(u[0]), t0, t0)

	t.Run("profiles come from the cache, else MySQL, else nowhere", func(t *testing.T) {
		for _, tc := range []struct {
			user domain.UserID
			name string
		}{{u[0], "Ann (cached)"}, {u[1], ""}, {u[2], "-"}} {
			p, err := e.s.Profile(ctx, tc.user)
			if err != nil || (tc.name == "-") != (p == nil) || (p != nil && p.GetDisplayName() != tc.name) {
				t.Errorf("%s: %v, %v; want name %q", tc.user, p, err, tc.name)
			}
		}
		ps, err := e.s.Profiles(ctx, []domain.UserID{u[2], u[1], u[0], u[1]})
		if err != nil || len(ps) != 4 || ps[0] != nil || ps[1].GetUsername() != "ben" || ps[2].GetDisplayName() != "Ann (cached)" ||
			ps[3].GetUserId() != string(u[1]) {
			t.Errorf("profiles of nobody, ben, ann and ben at once: %v, %v", ps, err)
		}
	})
	t.Run("friends, pending requests and blocks", func(t *testing.T) {
		fs, err := e.s.Friends(ctx, u[0])
		if err != nil || len(fs) != 2 || fs[0].GetUsername() != "ben" || fs[1].GetUserId() != string(u[2]) || fs[1].GetUsername() != "" {
			t.Errorf("friends %v, %v", fs, err)
		}
		rs, err := e.s.FriendRequests(ctx, u[0])
		if err != nil || len(rs.GetIncoming()) != 1 || len(rs.GetOutgoing()) != 0 || rs.GetIncoming()[0].GetUser().GetUsername() != "ben" ||
			rs.GetIncoming()[0].GetCreatedAtMs() != t0.UnixMilli() {
			t.Errorf("requests %v, %v", rs, err)
		}
		if bs, err := e.s.Blocks(ctx, u[0]); err != nil || len(bs) != 1 || bs[0] != string(u[3]) {
			t.Errorf("blocks %v, %v", bs, err)
		}
		if b, err := e.s.Blocking(ctx, u[0], u[3]); err != nil || !b {
			t.Errorf("cached block %v, %v", b, err)
		}
		if fs, err := e.s.FriendIDs(ctx, u[0]); err != nil || len(fs) != 2 || fs[0] != u[1] {
			t.Errorf("cached friends %v, %v; want them sorted", fs, err)
		}
	})
	t.Run("devices, most recent login first, logged-out ones left out", func(t *testing.T) {
		ds, err := e.s.Devices(ctx, u[0], 5)
		if err != nil || len(ds) != 2 || ds[0].GetDeviceId() != "laptop" || ds[1].GetPlatform() != "ios" {
			t.Errorf("devices %v, %v", ds, err)
		}
		if ds, err := e.s.Devices(ctx, u[0], 1); err != nil || len(ds) != 1 {
			t.Errorf("devices at most 1: %v, %v", ds, err)
		}
	})
}

func TestGroupsAndConversations(t *testing.T) {
	e := newEnv(t, Config{})
	ctx, u := testCtx(t), ids(4)
	e.user(t, u[0], "ann", "ANN")
	e.user(t, u[1], "ben", "")
	g := domain.GroupID("g/01ARZ3NDEKTSV4RRFFQ69G5FAV")
	e.exec(t, "INSERT INTO "+readmodel.Groups+" (group_id, name, owner_id, member_count, created_at, updated_at, version) VALUES (?, 'team', ?, 2, ?, ?, 1)",
		string(g), string(u[0]), t0, t0)
	e.exec(t, "INSERT INTO "+readmodel.Members+" (group_id, user_id, role, muted, muted_until, joined_at) VALUES"+
		" (?, ?, ?, FALSE, NULL, ?), (?, ?, ?, TRUE, ?, ?), (?, ?, ?, TRUE, ?, ?)",
		string(g), string(u[0]), readmodel.RoleName(domain.RoleOwner), t0,
		string(g), string(u[1]), readmodel.RoleName(domain.RoleMember), t0.Add(time.Hour), t0,
		string(g), string(u[2]), readmodel.RoleName(domain.RoleAdmin), t0.Add(-time.Hour), t0)
	keys := cachekeys.New(e.s.cfg.Prefix)
	e.rdb.HSet(ctx, keys.Members(g), string(u[0]), "owner", string(u[1]), "member")

	t.Run("members, with mutes that have ended shown unmuted", func(t *testing.T) {
		ms, err := e.s.GroupMembers(ctx, u[1], g)
		if err != nil || len(ms.GetMembers()) != 3 || ms.GetGroup().GetMyRole() != mpimv1.Role_ROLE_MEMBER ||
			ms.GetGroup().GetConversationId() != string(domain.GroupConversation(g)) {
			t.Fatalf("%v, %v", ms, err)
		}
		ann, ben, third := ms.GetMembers()[0], ms.GetMembers()[1], ms.GetMembers()[2]
		if ann.GetRole() != mpimv1.Role_ROLE_OWNER || ann.GetUsername() != "ann" || ann.GetMuted() {
			t.Errorf("owner %v", ann)
		}
		if !ben.GetMuted() || ben.GetMutedUntilMs() != t0.Add(time.Hour).UnixMilli() {
			t.Errorf("muted for an hour %v", ben)
		}
		if third.GetMuted() || third.GetMutedUntilMs() != 0 || third.GetRole() != mpimv1.Role_ROLE_ADMIN {
			t.Errorf("a mute that ended %v", third)
		}
		if _, err := e.s.GroupMembers(ctx, u[3], g); domain.ErrorCode(err) != domain.ENotMember {
			t.Errorf("a stranger: %v", err)
		}
		if _, err := e.s.GroupMembers(ctx, u[0], "g/01ARZ3NDEKTSV4RRFFQ69G5FAW"); domain.ErrorCode(err) != domain.ENotFound {
			t.Errorf("no such group: %v", err)
		}
		if _, err := e.s.GroupMembers(ctx, u[0], "g/x"); domain.ErrorCode(err) != domain.EInvalid {
			t.Errorf("a malformed id: %v", err)
		}
		if gs, err := e.s.MyGroups(ctx, u[1]); err != nil || len(gs) != 1 || gs[0].GetName() != "team" || gs[0].GetMyRole() != mpimv1.Role_ROLE_MEMBER {
			t.Errorf("my groups %v, %v", gs, err)
		}
		if ids, err := e.s.MemberIDs(ctx, g); err != nil || len(ids) != 2 {
			t.Errorf("cached members %v, %v", ids, err)
		}
		if ids, err := e.s.MemberIDsOf(ctx, []domain.GroupID{g, "g/01ARZ3NDEKTSV4RRFFQ69G5FAW"}); err != nil || len(ids) != 2 || len(ids[0]) != 2 || len(ids[1]) != 0 {
			t.Errorf("cached members of the group and of none %v, %v", ids, err)
		}
	})

	t.Run("conversations, newest first, titled, paged", func(t *testing.T) {
		direct, gc := domain.DirectConversation(u[0], u[1]), domain.GroupConversation(g)
		left := domain.GroupConversation("g/01ARZ3NDEKTSV4RRFFQ69G5FAW")
		e.exec(t, "INSERT INTO "+readmodel.UserConversations+" (user_id, conversation_id, last_seq, last_message_at, read_seq, unread_count, updated_at) VALUES"+
			" (?, ?, 3, ?, 1, 2, ?), (?, ?, 1, ?, 0, 1, ?), (?, ?, 9, ?, 0, 9, ?)",
			string(u[1]), string(direct), t0, t0, string(u[1]), string(gc), t0.Add(time.Second), t0, string(u[1]), string(left), t0.Add(time.Hour), t0)
		list := func(p domain.ConversationsPage) *mpimv1.ConversationList {
			l, err := e.s.Conversations(ctx, u[1], p)
			if err != nil {
				t.Fatal(err)
			}
			return l
		}
		l := list(domain.ConversationsPage{Limit: 1})
		if len(l.GetConversations()) != 1 || !l.GetHasMore() || l.GetConversations()[0].GetTitle() != "team" || l.GetConversations()[0].GetGroupId() != string(g) {
			t.Fatalf("first page %v (a group left is not listed)", l)
		}
		first := l.GetConversations()[0]
		l = list(domain.ConversationsPage{After: true, Before: time.UnixMilli(first.GetLastMessageAtMs()).UTC(),
			BeforeConversation: domain.ConversationID(first.GetConversationId()), Limit: 5})
		if len(l.GetConversations()) != 1 || l.GetHasMore() {
			t.Fatalf("second page %v", l)
		}
		if c := l.GetConversations()[0]; c.GetPeerUserId() != string(u[0]) || c.GetTitle() != "ANN" || c.GetUnreadCount() != 2 || c.GetReadSeq() != 1 {
			t.Errorf("direct conversation %v", c)
		}
	})

	t.Run("unread counts: the sum over the conversations listed, and the rows asked for", func(t *testing.T) {
		direct, left := domain.DirectConversation(u[0], u[1]), domain.GroupConversation("g/01ARZ3NDEKTSV4RRFFQ69G5FAW")
		got, err := e.s.Unread(ctx, u[1], []domain.ConversationID{direct, left, domain.DirectConversation(u[1], u[2])})
		want := domain.Unread{Total: 3, Conversations: []domain.ConversationUnread{{Conversation: direct, LastSeq: 3, ReadSeq: 1, Count: 2}}}
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("unread of ben %+v, %v; want %+v (the group left is not counted)", got, err, want)
		}
		if got, err := e.s.Unread(ctx, u[3], nil); err != nil || !reflect.DeepEqual(got, domain.Unread{}) {
			t.Errorf("unread of a user without conversations %+v, %v", got, err)
		}
		for name, convs := range map[string][]domain.ConversationID{
			"a malformed conversation": {"c/x y"},
			"too many conversations":   make([]domain.ConversationID, domain.MaxUnreadConversations+1),
		} {
			if _, err := e.s.Unread(ctx, u[1], convs); domain.ErrorCode(err) != domain.EInvalid {
				t.Errorf("%s: %v, want EInvalid", name, err)
			}
		}
		if _, err := e.s.Unread(ctx, "bob", nil); domain.ErrorCode(err) != domain.EInvalid {
			t.Errorf("a malformed user: %v, want EInvalid", err)
		}
	})
}
