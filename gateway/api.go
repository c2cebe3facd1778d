package gateway

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/domain"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/mpim/mpim/query"
)

// api carries out the requests of authenticated sessions: commands through
// the write side (command.Service), queries through the read side
// (query.Service), typing and presence through the hub. Decisions are the write side's; the api only
// translates. It is safe for concurrent use.
type api struct {
	cmd *command.Service
	q   *query.Service
	hub Hub
}

// caller is the authenticated user and device of a session.
type caller struct {
	user   domain.UserID
	device domain.DeviceID
}

func (c *caller) actor() command.Actor { return command.Actor{User: c.user, Device: c.device} }

var done = &mpimv1.Done{}

// handle answers one request of an authenticated caller. The response's
// result is set only when err is nil.
func (a *api) handle(ctx context.Context, me *caller, f *mpimv1.ClientFrame) (*mpimv1.Response, error) {
	r := &mpimv1.Response{Id: f.GetId()}
	var err error
	actor := me.actor()
	contact := func(other string, cmd domain.RelationshipCommand) error {
		_, err := a.cmd.Contact(ctx, actor, domain.UserID(other), cmd)
		return err
	}
	group := func(id string, cmd domain.GroupCommand) error {
		_, err := a.cmd.UpdateGroup(ctx, actor, domain.GroupID(id), cmd)
		return err
	}
	switch q := f.GetRequest().(type) {
	case *mpimv1.ClientFrame_GetProfile:
		var p *mpimv1.Profile
		p, err = a.profile(ctx, or(domain.UserID(q.GetProfile.GetUserId()), me.user))
		r.Result = &mpimv1.Response_GetProfile{GetProfile: p}
	case *mpimv1.ClientFrame_UpdateProfile:
		var p *mpimv1.Profile
		p, err = a.updateProfile(ctx, me, q.UpdateProfile)
		r.Result = &mpimv1.Response_UpdateProfile{UpdateProfile: p}
	case *mpimv1.ClientFrame_FindUser:
		var p *mpimv1.Profile
		p, err = a.findUser(ctx, q.FindUser.GetUsername())
		r.Result = &mpimv1.Response_FindUser{FindUser: p}

	case *mpimv1.ClientFrame_RequestFriend:
		err = contact(q.RequestFriend.GetUserId(), domain.RequestFriend{From: me.user, To: domain.UserID(q.RequestFriend.GetUserId()), Message: q.RequestFriend.GetMessage()})
		r.Result = &mpimv1.Response_RequestFriend{RequestFriend: done}
	case *mpimv1.ClientFrame_AcceptFriend:
		err = contact(q.AcceptFriend.GetUserId(), domain.AcceptFriend{By: me.user})
		r.Result = &mpimv1.Response_AcceptFriend{AcceptFriend: done}
	case *mpimv1.ClientFrame_DeclineFriend:
		err = contact(q.DeclineFriend.GetUserId(), domain.DeclineFriend{By: me.user})
		r.Result = &mpimv1.Response_DeclineFriend{DeclineFriend: done}
	case *mpimv1.ClientFrame_RemoveFriend:
		err = contact(q.RemoveFriend.GetUserId(), domain.RemoveFriend{By: me.user})
		r.Result = &mpimv1.Response_RemoveFriend{RemoveFriend: done}
	case *mpimv1.ClientFrame_Block:
		err = contact(q.Block.GetUserId(), domain.Block{By: me.user})
		r.Result = &mpimv1.Response_Block{Block: done}
	case *mpimv1.ClientFrame_Unblock:
		err = contact(q.Unblock.GetUserId(), domain.Unblock{By: me.user})
		r.Result = &mpimv1.Response_Unblock{Unblock: done}
	case *mpimv1.ClientFrame_ListFriends:
		var fs []*mpimv1.Profile
		fs, err = a.q.Friends(ctx, me.user)
		r.Result = &mpimv1.Response_ListFriends{ListFriends: &mpimv1.FriendList{Friends: fs}}
	case *mpimv1.ClientFrame_ListFriendRequests:
		var l *mpimv1.FriendRequestList
		l, err = a.q.FriendRequests(ctx, me.user)
		r.Result = &mpimv1.Response_ListFriendRequests{ListFriendRequests: l}
	case *mpimv1.ClientFrame_ListBlocks:
		var bs []string
		bs, err = a.q.Blocks(ctx, me.user)
		r.Result = &mpimv1.Response_ListBlocks{ListBlocks: &mpimv1.BlockList{UserIds: bs}}

	case *mpimv1.ClientFrame_CreateGroup:
		var res *mpimv1.CreateGroupResult
		res, err = a.createGroup(ctx, actor, q.CreateGroup)
		r.Result = &mpimv1.Response_CreateGroup{CreateGroup: res}
	case *mpimv1.ClientFrame_AddMember:
		err = group(q.AddMember.GetGroupId(), domain.AddMember{Actor: me.user, User: domain.UserID(q.AddMember.GetUserId())})
		r.Result = &mpimv1.Response_AddMember{AddMember: done}
	case *mpimv1.ClientFrame_JoinGroup:
		err = group(q.JoinGroup.GetGroupId(), domain.JoinGroup{User: me.user})
		r.Result = &mpimv1.Response_JoinGroup{JoinGroup: done}
	case *mpimv1.ClientFrame_LeaveGroup:
		err = group(q.LeaveGroup.GetGroupId(), domain.LeaveGroup{User: me.user})
		r.Result = &mpimv1.Response_LeaveGroup{LeaveGroup: done}
	case *mpimv1.ClientFrame_KickMember:
		err = group(q.KickMember.GetGroupId(), domain.KickMember{Actor: me.user, Target: domain.UserID(q.KickMember.GetUserId())})
		r.Result = &mpimv1.Response_KickMember{KickMember: done}
	case *mpimv1.ClientFrame_SetRole:
		err = group(q.SetRole.GetGroupId(), domain.SetRole{Actor: me.user, Target: domain.UserID(q.SetRole.GetUserId()), Role: domain.Role(q.SetRole.GetRole())})
		r.Result = &mpimv1.Response_SetRole{SetRole: done}
	case *mpimv1.ClientFrame_RenameGroup:
		err = group(q.RenameGroup.GetGroupId(), domain.RenameGroup{Actor: me.user, Name: q.RenameGroup.GetName()})
		r.Result = &mpimv1.Response_RenameGroup{RenameGroup: done}
	case *mpimv1.ClientFrame_MuteMember:
		var until time.Time
		if until, err = domain.TimeFromUnixMilli("untilMs", q.MuteMember.GetUntilMs()); err == nil {
			err = group(q.MuteMember.GetGroupId(), domain.MuteMember{Actor: me.user, Target: domain.UserID(q.MuteMember.GetUserId()), Until: until})
		}
		r.Result = &mpimv1.Response_MuteMember{MuteMember: done}
	case *mpimv1.ClientFrame_UnmuteMember:
		err = group(q.UnmuteMember.GetGroupId(), domain.UnmuteMember{Actor: me.user, Target: domain.UserID(q.UnmuteMember.GetUserId())})
		r.Result = &mpimv1.Response_UnmuteMember{UnmuteMember: done}
	case *mpimv1.ClientFrame_UnbanMember:
		err = group(q.UnbanMember.GetGroupId(), domain.UnbanMember{Actor: me.user, Target: domain.UserID(q.UnbanMember.GetUserId())})
		r.Result = &mpimv1.Response_UnbanMember{UnbanMember: done}
	case *mpimv1.ClientFrame_DissolveGroup:
		err = group(q.DissolveGroup.GetGroupId(), domain.DissolveGroup{Actor: me.user})
		r.Result = &mpimv1.Response_DissolveGroup{DissolveGroup: done}
	case *mpimv1.ClientFrame_SetHistoryVisibility:
		err = group(q.SetHistoryVisibility.GetGroupId(), domain.SetHistoryVisibility{Actor: me.user, Visible: q.SetHistoryVisibility.GetVisible()})
		r.Result = &mpimv1.Response_SetHistoryVisibility{SetHistoryVisibility: done}
	case *mpimv1.ClientFrame_GroupMembers:
		var ms *mpimv1.GroupMembers
		ms, err = a.groupMembers(ctx, me.user, domain.GroupID(q.GroupMembers.GetGroupId()))
		r.Result = &mpimv1.Response_GroupMembers{GroupMembers: ms}
	case *mpimv1.ClientFrame_MyGroups:
		var gs []*mpimv1.GroupSummary
		gs, err = a.q.MyGroups(ctx, me.user)
		r.Result = &mpimv1.Response_MyGroups{MyGroups: &mpimv1.GroupList{Groups: gs}}

	case *mpimv1.ClientFrame_Send:
		var res *mpimv1.SendResult
		res, err = a.send(ctx, me, q.Send)
		r.Result = &mpimv1.Response_Send{Send: res}
	case *mpimv1.ClientFrame_Recall:
		_, err = a.cmd.Recall(ctx, actor, domain.RecallMessage{Conversation: domain.ConversationID(q.Recall.GetConversationId()), Seq: q.Recall.GetSeq()})
		r.Result = &mpimv1.Response_Recall{Recall: done}
	case *mpimv1.ClientFrame_Edit:
		_, err = a.cmd.Edit(ctx, actor, domain.EditMessage{Conversation: domain.ConversationID(q.Edit.GetConversationId()), Seq: q.Edit.GetSeq(), Text: q.Edit.GetText()})
		r.Result = &mpimv1.Response_Edit{Edit: done}
	case *mpimv1.ClientFrame_DeleteForMe:
		_, err = a.cmd.DeleteForMe(ctx, actor, domain.ConversationID(q.DeleteForMe.GetConversationId()), q.DeleteForMe.GetSeq())
		r.Result = &mpimv1.Response_DeleteForMe{DeleteForMe: done}
	case *mpimv1.ClientFrame_MarkRead:
		_, err = a.cmd.MarkRead(ctx, actor, domain.ConversationID(q.MarkRead.GetConversationId()), q.MarkRead.GetSeq())
		r.Result = &mpimv1.Response_MarkRead{MarkRead: done}
	case *mpimv1.ClientFrame_MuteConversation:
		err = a.muteConversation(ctx, actor, q.MuteConversation)
		r.Result = &mpimv1.Response_MuteConversation{MuteConversation: done}
	case *mpimv1.ClientFrame_UnmuteConversation:
		_, err = a.cmd.UnmuteConversation(ctx, actor, domain.ConversationID(q.UnmuteConversation.GetConversationId()))
		r.Result = &mpimv1.Response_UnmuteConversation{UnmuteConversation: done}
	case *mpimv1.ClientFrame_Conversations:
		var l *mpimv1.ConversationList
		l, err = a.conversations(ctx, me.user, q.Conversations)
		r.Result = &mpimv1.Response_Conversations{Conversations: l}
	case *mpimv1.ClientFrame_History:
		var h *mpimv1.History
		h, err = a.history(ctx, me.user, q.History)
		r.Result = &mpimv1.Response_History{History: h}

	case *mpimv1.ClientFrame_Typing:
		err = a.typing(ctx, me, q.Typing)
		r.Result = &mpimv1.Response_Typing{Typing: done}
	case *mpimv1.ClientFrame_Presence:
		var l *mpimv1.PresenceList
		l, err = a.presence(ctx, me)
		r.Result = &mpimv1.Response_Presence{Presence: l}
	default:
		err = domain.Errorf(codeUnknownRequest, "gateway: unknown request %T", q)
	}
	if err != nil {
		r.Result = nil
	}
	return r, err
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// profile returns a user's profile from the read models, else the log (a
// user registered a moment ago is in neither read model yet).
func (a *api) profile(ctx context.Context, user domain.UserID) (*mpimv1.Profile, error) {
	if !user.Valid() {
		return nil, domain.Errorf(domain.EInvalid, "gateway: invalid user id %q", user)
	}
	if p, err := a.q.Profile(ctx, user); err != nil || p != nil {
		return p, err
	}
	u, err := a.cmd.User(ctx, user)
	if err != nil {
		return nil, err
	}
	if !u.Registered() {
		return nil, domain.Errorf(domain.ENotFound, "gateway: user %s not found", user)
	}
	return &mpimv1.Profile{UserId: string(user), Username: u.Username(), DisplayName: u.DisplayName(), AvatarUrl: u.AvatarURL()}, nil
}

func (a *api) findUser(ctx context.Context, username string) (*mpimv1.Profile, error) {
	id, err := a.cmd.LookupUsername(ctx, username)
	if err != nil {
		return nil, err
	}
	return a.profile(ctx, id)
}

func (a *api) updateProfile(ctx context.Context, me *caller, q *mpimv1.UpdateProfileRequest) (*mpimv1.Profile, error) {
	if _, err := a.cmd.UpdateUser(ctx, me.actor(), domain.UpdateProfile{DisplayName: q.GetDisplayName(), AvatarURL: q.GetAvatarUrl()}); err != nil {
		return nil, err
	}
	p, err := a.profile(ctx, me.user)
	if err != nil {
		return nil, err
	}
	// The profile as the event has it (Decide trims the name), not as the
	// lagging read models do.
	p.DisplayName, p.AvatarUrl = strings.TrimSpace(q.GetDisplayName()), q.GetAvatarUrl()
	return p, nil
}

// muteConversation answers muteConversation: an until_ms beyond year 9999
// or negative is invalid before the command decides the rest
// (command.Service.MuteConversation).
func (a *api) muteConversation(ctx context.Context, actor command.Actor, q *mpimv1.MuteConversationRequest) error {
	until, err := domain.TimeFromUnixMilli("untilMs", q.GetUntilMs())
	if err != nil {
		return err
	}
	_, err = a.cmd.MuteConversation(ctx, actor, domain.ConversationID(q.GetConversationId()), until, q.GetForever())
	return err
}

// conversations answers a conversations request. Arguments out of range
// (domain.NewConversationsPage) are EInvalid before any query runs.
func (a *api) conversations(ctx context.Context, user domain.UserID, q *mpimv1.ConversationsRequest) (*mpimv1.ConversationList, error) {
	page, err := domain.NewConversationsPage(q.GetBeforeMs(), domain.ConversationID(q.GetBeforeConversationId()), q.GetLimit())
	if err != nil {
		return nil, err
	}
	return a.q.Conversations(ctx, user, page)
}

// history answers a history request. Arguments out of range
// (domain.NewHistoryPage) and an unknown direction are EInvalid before any
// query runs.
func (a *api) history(ctx context.Context, user domain.UserID, q *mpimv1.HistoryRequest) (*mpimv1.History, error) {
	var forward bool
	switch q.GetDirection() {
	case mpimv1.HistoryDirection_HISTORY_DIRECTION_UNSPECIFIED, mpimv1.HistoryDirection_HISTORY_DIRECTION_BACKWARD:
	case mpimv1.HistoryDirection_HISTORY_DIRECTION_FORWARD:
		forward = true
	default:
		return nil, domain.Errorf(domain.EInvalid, "gateway: unknown history direction %d", q.GetDirection())
	}
	page, err := domain.NewHistoryPage(domain.ConversationID(q.GetConversationId()), q.GetFromSeq(), forward, q.GetLimit())
	if err != nil {
		return nil, err
	}
	return a.q.History(ctx, user, page)
}

// groupMembers answers groupMembers from the read model and, for admins and
// the owner, adds the group's ban list, which only the group aggregate holds
// (read from the event store, so it is never behind a kick).
func (a *api) groupMembers(ctx context.Context, user domain.UserID, id domain.GroupID) (*mpimv1.GroupMembers, error) {
	ms, err := a.q.GroupMembers(ctx, user, id)
	if err != nil || ms.GetGroup().GetMyRole() < mpimv1.Role_ROLE_ADMIN {
		return ms, err
	}
	g, err := a.cmd.Group(ctx, id)
	if err != nil {
		return nil, err
	}
	for _, u := range g.Banned() {
		ms.BannedUserIds = append(ms.BannedUserIds, string(u))
	}
	return ms, nil
}

func (a *api) createGroup(ctx context.Context, actor command.Actor, q *mpimv1.CreateGroupRequest) (*mpimv1.CreateGroupResult, error) {
	members := make([]domain.UserID, len(q.GetMemberIds()))
	for i, m := range q.GetMemberIds() {
		members[i] = domain.UserID(m)
	}
	id, _, err := a.cmd.CreateGroup(ctx, actor, q.GetName(), members, q.GetOpen())
	if err != nil {
		return nil, err
	}
	return &mpimv1.CreateGroupResult{GroupId: string(id), ConversationId: string(domain.GroupConversation(id))}, nil
}

// target returns the conversation a send goes to.
func target(me domain.UserID, q *mpimv1.SendRequest) (domain.ConversationID, error) {
	switch to := q.GetTo().(type) {
	case *mpimv1.SendRequest_ConversationId:
		return domain.ConversationID(to.ConversationId), nil
	case *mpimv1.SendRequest_UserId:
		peer := domain.UserID(to.UserId)
		if !peer.Valid() || peer == me {
			return "", domain.Errorf(domain.EInvalid, "gateway: cannot send to user %q", peer)
		}
		return domain.DirectConversation(me, peer), nil
	case *mpimv1.SendRequest_GroupId:
		g := domain.GroupID(to.GroupId)
		if !g.Valid() {
			return "", domain.Errorf(domain.EInvalid, "gateway: invalid group id %q", g)
		}
		return domain.GroupConversation(g), nil
	}
	return "", domain.Errorf(domain.EInvalid, "gateway: send needs a conversation_id, user_id or group_id")
}

func (a *api) send(ctx context.Context, me *caller, q *mpimv1.SendRequest) (*mpimv1.SendResult, error) {
	conv, err := target(me.user, q)
	if err != nil {
		return nil, err
	}
	kind := domain.MessageKind(q.GetKind())
	if kind == 0 {
		kind = domain.KindText
	}
	sent, err := a.cmd.Send(ctx, me.actor(), domain.SendMessage{
		Conversation: conv, ClientMsgID: q.GetClientMsgId(), Kind: kind, Text: q.GetText(), Attachment: attachmentFromWire(q.GetAttachment()),
	})
	if err != nil {
		return nil, err
	}
	return &mpimv1.SendResult{EventId: sent.EventID[:], ConversationId: string(sent.Conversation), Seq: sent.Seq,
		SentAtMs: sent.SentAt.UnixMilli(), Duplicate: sent.Duplicate}, nil
}

func attachmentFromWire(a *mpimv1.Attachment) *domain.Attachment {
	if a == nil {
		return nil
	}
	return &domain.Attachment{URL: a.GetUrl(), Mime: a.GetMime(), Size: a.GetSize(), Name: a.GetName(),
		Width: a.GetWidth(), Height: a.GetHeight(), Meta: a.GetMeta()}
}

// typing signals the other participants of a conversation. A direct peer
// who blocks the caller is silently not told.
func (a *api) typing(ctx context.Context, me *caller, q *mpimv1.TypingRequest) error {
	conv := domain.ConversationID(q.GetConversationId())
	if !conv.Valid() {
		return domain.Errorf(domain.EInvalid, "gateway: invalid conversation id %q", conv)
	}
	var to []domain.UserID
	if g, ok := conv.Group(); ok {
		members, err := a.q.MemberIDs(ctx, g)
		if err != nil {
			return err
		}
		if !slices.Contains(members, me.user) {
			return domain.Errorf(domain.ENotMember, "gateway: %s is not a member of %s", me.user, g)
		}
		to = slices.DeleteFunc(members, func(u domain.UserID) bool { return u == me.user })
	} else {
		x, y, _ := conv.Members()
		peer := x
		switch me.user {
		case x:
			peer = y
		case y:
		default:
			return domain.Errorf(domain.EForbidden, "gateway: %s is not in %s", me.user, conv)
		}
		blocked, err := a.q.Blocking(ctx, peer, me.user)
		if err != nil || blocked {
			return err
		}
		to = []domain.UserID{peer}
	}
	if len(to) == 0 {
		return nil
	}
	kind := SignalTyping
	if q.GetStopped() {
		kind = SignalTypingStopped
	}
	if err := a.hub.Signal(ctx, to, Signal{From: string(me.user), Kind: kind, Payload: []byte(conv)}); err != nil {
		return unavailable("signalling", err)
	}
	return nil
}

// presence returns the presence of the caller's friends.
func (a *api) presence(ctx context.Context, me *caller) (*mpimv1.PresenceList, error) {
	friends, err := a.q.FriendIDs(ctx, me.user)
	if err != nil {
		return nil, err
	}
	out := &mpimv1.PresenceList{}
	if len(friends) == 0 {
		return out, nil
	}
	online, err := a.hub.Online(ctx, friends)
	if err != nil {
		return nil, unavailable("reading presence", err)
	}
	for _, f := range friends {
		p := online[f]
		up := &mpimv1.UserPresence{UserId: string(f), Online: p.Online}
		if !p.LastSeen.IsZero() {
			up.LastSeenMs = p.LastSeen.UnixMilli()
		}
		out.Users = append(out.Users, up)
	}
	return out, nil
}
