// Package codec converts between domain events and their wire messages
// (mpim.v1). It is the only place that knows both; domain stays free of
// generated types and the rest of the system speaks either side through it.
package codec

import (
	"fmt"
	"time"

	"github.com/mpim/mpim/domain"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// Meta is the envelope data of an event besides its payload.
type Meta struct {
	ID            [16]byte
	Aggregate     string
	Version       uint64
	Seq           uint64
	OccurredAt    time.Time
	ActorUser     domain.UserID
	ActorDevice   domain.DeviceID
	CorrelationID string
	CausationID   string
}

// Envelope builds the wire envelope of a domain event. The version and seq
// of meta are ignored: the event store assigns them.
func Envelope(m Meta, e domain.Event) (*mpimv1.Event, error) {
	env := &mpimv1.Event{
		Id:            m.ID[:],
		Aggregate:     m.Aggregate,
		OccurredAtMs:  m.OccurredAt.UnixMilli(),
		CorrelationId: m.CorrelationID,
		CausationId:   m.CausationID,
	}
	if m.ActorUser != "" || m.ActorDevice != "" {
		env.Actor = &mpimv1.Actor{UserId: string(m.ActorUser), DeviceId: string(m.ActorDevice)}
	}
	if err := setPayload(env, e); err != nil {
		return nil, err
	}
	return env, nil
}

// Decode returns the envelope data and the domain event of a wire envelope.
// It fails for an envelope without a known payload.
func Decode(env *mpimv1.Event) (Meta, domain.Event, error) {
	m := Meta{
		Aggregate:     env.GetAggregate(),
		Version:       env.GetVersion(),
		Seq:           env.GetSeq(),
		OccurredAt:    fromMs(env.GetOccurredAtMs()),
		ActorUser:     domain.UserID(env.GetActor().GetUserId()),
		ActorDevice:   domain.DeviceID(env.GetActor().GetDeviceId()),
		CorrelationID: env.GetCorrelationId(),
		CausationID:   env.GetCausationId(),
	}
	if len(env.GetId()) != 16 {
		return m, nil, fmt.Errorf("codec: event id of %d bytes", len(env.GetId()))
	}
	copy(m.ID[:], env.GetId())
	e, err := payload(env)
	if err != nil {
		return m, nil, err
	}
	if ms, ok := e.(domain.MessageSent); ok {
		ms.Seq = env.GetSeq()
		e = ms
	}
	return m, e, nil
}

func fromMs(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

func toMs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func users(ids []domain.UserID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = string(id)
	}
	return out
}

func fromUsers(ids []string) []domain.UserID {
	out := make([]domain.UserID, len(ids))
	for i, id := range ids {
		out[i] = domain.UserID(id)
	}
	return out
}

func attachmentToWire(a *domain.Attachment) *mpimv1.Attachment {
	if a == nil {
		return nil
	}
	return &mpimv1.Attachment{Url: a.URL, Mime: a.Mime, Size: a.Size, Name: a.Name, Width: a.Width, Height: a.Height, Meta: a.Meta}
}

func attachmentFromWire(a *mpimv1.Attachment) *domain.Attachment {
	if a == nil {
		return nil
	}
	return &domain.Attachment{URL: a.GetUrl(), Mime: a.GetMime(), Size: a.GetSize(), Name: a.GetName(), Width: a.GetWidth(), Height: a.GetHeight(), Meta: a.GetMeta()}
}

// setPayload sets the oneof of env from e.
func setPayload(env *mpimv1.Event, e domain.Event) error {
	switch e := e.(type) {
	case domain.UserRegistered:
		env.Payload = &mpimv1.Event_UserRegistered{UserRegistered: &mpimv1.UserRegistered{UserId: string(e.User), Username: e.Username, PasswordHash: e.PasswordHash, DisplayName: e.DisplayName}}
	case domain.UsernameClaimed:
		env.Payload = &mpimv1.Event_UsernameClaimed{UsernameClaimed: &mpimv1.UsernameClaimed{Username: e.Username, UserId: string(e.User)}}
	case domain.ProfileUpdated:
		env.Payload = &mpimv1.Event_ProfileUpdated{ProfileUpdated: &mpimv1.ProfileUpdated{DisplayName: e.DisplayName, AvatarUrl: e.AvatarURL}}
	case domain.PasswordChanged:
		env.Payload = &mpimv1.Event_PasswordChanged{PasswordChanged: &mpimv1.PasswordChanged{PasswordHash: e.PasswordHash}}
	case domain.DeviceLoggedIn:
		env.Payload = &mpimv1.Event_DeviceLoggedIn{DeviceLoggedIn: &mpimv1.DeviceLoggedIn{DeviceId: string(e.Device), Platform: e.Platform}}
	case domain.DeviceLoggedOut:
		env.Payload = &mpimv1.Event_DeviceLoggedOut{DeviceLoggedOut: &mpimv1.DeviceLoggedOut{DeviceId: string(e.Device)}}
	case domain.FriendRequested:
		env.Payload = &mpimv1.Event_FriendRequested{FriendRequested: &mpimv1.FriendRequested{FromUserId: string(e.From), ToUserId: string(e.To), Message: e.Message}}
	case domain.FriendRequestAccepted:
		env.Payload = &mpimv1.Event_FriendRequestAccepted{FriendRequestAccepted: &mpimv1.FriendRequestAccepted{FromUserId: string(e.From), ByUserId: string(e.By)}}
	case domain.FriendRequestDeclined:
		env.Payload = &mpimv1.Event_FriendRequestDeclined{FriendRequestDeclined: &mpimv1.FriendRequestDeclined{FromUserId: string(e.From), ByUserId: string(e.By), DeclinedAtMs: toMs(e.At)}}
	case domain.FriendRemoved:
		env.Payload = &mpimv1.Event_FriendRemoved{FriendRemoved: &mpimv1.FriendRemoved{ByUserId: string(e.By), OtherUserId: string(e.Other)}}
	case domain.UserBlocked:
		env.Payload = &mpimv1.Event_UserBlocked{UserBlocked: &mpimv1.UserBlocked{BlockerId: string(e.Blocker), BlockedId: string(e.Blocked)}}
	case domain.UserUnblocked:
		env.Payload = &mpimv1.Event_UserUnblocked{UserUnblocked: &mpimv1.UserUnblocked{BlockerId: string(e.Blocker), BlockedId: string(e.Blocked)}}
	case domain.GroupCreated:
		env.Payload = &mpimv1.Event_GroupCreated{GroupCreated: &mpimv1.GroupCreated{GroupId: string(e.Group), Name: e.Name, OwnerId: string(e.Owner), MemberIds: users(e.Members), Open: e.Open}}
	case domain.MemberAdded:
		env.Payload = &mpimv1.Event_MemberAdded{MemberAdded: &mpimv1.MemberAdded{UserId: string(e.User), ByUserId: string(e.By)}}
	case domain.MemberJoined:
		env.Payload = &mpimv1.Event_MemberJoined{MemberJoined: &mpimv1.MemberJoined{UserId: string(e.User)}}
	case domain.MemberLeft:
		env.Payload = &mpimv1.Event_MemberLeft{MemberLeft: &mpimv1.MemberLeft{UserId: string(e.User)}}
	case domain.MemberKicked:
		env.Payload = &mpimv1.Event_MemberKicked{MemberKicked: &mpimv1.MemberKicked{UserId: string(e.User), ByUserId: string(e.By)}}
	case domain.MemberRoleChanged:
		env.Payload = &mpimv1.Event_MemberRoleChanged{MemberRoleChanged: &mpimv1.MemberRoleChanged{UserId: string(e.User), ByUserId: string(e.By), Role: mpimv1.Role(e.Role)}}
	case domain.GroupRenamed:
		env.Payload = &mpimv1.Event_GroupRenamed{GroupRenamed: &mpimv1.GroupRenamed{Name: e.Name, ByUserId: string(e.By)}}
	case domain.MemberMuted:
		env.Payload = &mpimv1.Event_MemberMuted{MemberMuted: &mpimv1.MemberMuted{UserId: string(e.User), ByUserId: string(e.By), UntilMs: toMs(e.Until)}}
	case domain.MemberUnmuted:
		env.Payload = &mpimv1.Event_MemberUnmuted{MemberUnmuted: &mpimv1.MemberUnmuted{UserId: string(e.User), ByUserId: string(e.By)}}
	case domain.MemberUnbanned:
		env.Payload = &mpimv1.Event_MemberUnbanned{MemberUnbanned: &mpimv1.MemberUnbanned{UserId: string(e.User), ByUserId: string(e.By)}}
	case domain.GroupDissolved:
		env.Payload = &mpimv1.Event_GroupDissolved{GroupDissolved: &mpimv1.GroupDissolved{ByUserId: string(e.By)}}
	case domain.GroupHistoryVisibilityChanged:
		env.Payload = &mpimv1.Event_GroupHistoryVisibilityChanged{GroupHistoryVisibilityChanged: &mpimv1.GroupHistoryVisibilityChanged{Visible: e.Visible, ByUserId: string(e.By)}}
	case domain.MessageSent:
		env.Payload = &mpimv1.Event_MessageSent{MessageSent: &mpimv1.MessageSent{ConversationId: string(e.Conversation), SenderId: string(e.Sender), DeviceId: string(e.Device),
			ClientMsgId: e.ClientMsgID, Kind: mpimv1.MessageKind(e.Kind), Text: e.Text, Attachment: attachmentToWire(e.Attachment), SentAtMs: toMs(e.SentAt)}}
	case domain.MessageRecalled:
		env.Payload = &mpimv1.Event_MessageRecalled{MessageRecalled: &mpimv1.MessageRecalled{Seq: e.Seq, ByUserId: string(e.By), SenderId: string(e.Sender), SentAtMs: toMs(e.SentAt)}}
	case domain.MessageEdited:
		env.Payload = &mpimv1.Event_MessageEdited{MessageEdited: &mpimv1.MessageEdited{Seq: e.Seq, ByUserId: string(e.By), Text: e.Text}}
	case domain.ConversationRead:
		env.Payload = &mpimv1.Event_ConversationRead{ConversationRead: &mpimv1.ConversationRead{UserId: string(e.User), ConversationId: string(e.Conversation), Seq: e.Seq}}
	case domain.MessageDeletedForMe:
		env.Payload = &mpimv1.Event_MessageDeletedForMe{MessageDeletedForMe: &mpimv1.MessageDeletedForMe{UserId: string(e.User), ConversationId: string(e.Conversation), Seq: e.Seq}}
	case domain.PushTokenRegistered:
		env.Payload = &mpimv1.Event_PushTokenRegistered{PushTokenRegistered: &mpimv1.PushTokenRegistered{DeviceId: string(e.Device), Platform: string(e.Platform), Token: e.Token, AppId: e.AppID}}
	case domain.PushTokenRemoved:
		env.Payload = &mpimv1.Event_PushTokenRemoved{PushTokenRemoved: &mpimv1.PushTokenRemoved{DeviceId: string(e.Device)}}
	case domain.ConversationMuted:
		env.Payload = &mpimv1.Event_ConversationMuted{ConversationMuted: &mpimv1.ConversationMuted{UserId: string(e.User), ConversationId: string(e.Conversation), UntilMs: toMs(e.Until)}}
	case domain.ConversationUnmuted:
		env.Payload = &mpimv1.Event_ConversationUnmuted{ConversationUnmuted: &mpimv1.ConversationUnmuted{UserId: string(e.User), ConversationId: string(e.Conversation)}}
	default:
		return fmt.Errorf("codec: no wire message for event %T", e)
	}
	return nil
}

// payload returns the domain event of env's oneof.
func payload(env *mpimv1.Event) (domain.Event, error) {
	switch p := env.GetPayload().(type) {
	case *mpimv1.Event_UserRegistered:
		x := p.UserRegistered
		return domain.UserRegistered{User: domain.UserID(x.GetUserId()), Username: x.GetUsername(), PasswordHash: x.GetPasswordHash(), DisplayName: x.GetDisplayName()}, nil
	case *mpimv1.Event_UsernameClaimed:
		x := p.UsernameClaimed
		return domain.UsernameClaimed{Username: x.GetUsername(), User: domain.UserID(x.GetUserId())}, nil
	case *mpimv1.Event_ProfileUpdated:
		x := p.ProfileUpdated
		return domain.ProfileUpdated{DisplayName: x.GetDisplayName(), AvatarURL: x.GetAvatarUrl()}, nil
	case *mpimv1.Event_PasswordChanged:
		return domain.PasswordChanged{PasswordHash: p.PasswordChanged.GetPasswordHash()}, nil
	case *mpimv1.Event_DeviceLoggedIn:
		x := p.DeviceLoggedIn
		return domain.DeviceLoggedIn{Device: domain.DeviceID(x.GetDeviceId()), Platform: x.GetPlatform()}, nil
	case *mpimv1.Event_DeviceLoggedOut:
		return domain.DeviceLoggedOut{Device: domain.DeviceID(p.DeviceLoggedOut.GetDeviceId())}, nil
	case *mpimv1.Event_FriendRequested:
		x := p.FriendRequested
		return domain.FriendRequested{From: domain.UserID(x.GetFromUserId()), To: domain.UserID(x.GetToUserId()), Message: x.GetMessage()}, nil
	case *mpimv1.Event_FriendRequestAccepted:
		x := p.FriendRequestAccepted
		return domain.FriendRequestAccepted{From: domain.UserID(x.GetFromUserId()), By: domain.UserID(x.GetByUserId())}, nil
	case *mpimv1.Event_FriendRequestDeclined:
		x := p.FriendRequestDeclined
		return domain.FriendRequestDeclined{From: domain.UserID(x.GetFromUserId()), By: domain.UserID(x.GetByUserId()), At: fromMs(x.GetDeclinedAtMs())}, nil
	case *mpimv1.Event_FriendRemoved:
		x := p.FriendRemoved
		return domain.FriendRemoved{By: domain.UserID(x.GetByUserId()), Other: domain.UserID(x.GetOtherUserId())}, nil
	case *mpimv1.Event_UserBlocked:
		x := p.UserBlocked
		return domain.UserBlocked{Blocker: domain.UserID(x.GetBlockerId()), Blocked: domain.UserID(x.GetBlockedId())}, nil
	case *mpimv1.Event_UserUnblocked:
		x := p.UserUnblocked
		return domain.UserUnblocked{Blocker: domain.UserID(x.GetBlockerId()), Blocked: domain.UserID(x.GetBlockedId())}, nil
	case *mpimv1.Event_GroupCreated:
		x := p.GroupCreated
		return domain.GroupCreated{Group: domain.GroupID(x.GetGroupId()), Name: x.GetName(), Owner: domain.UserID(x.GetOwnerId()), Members: fromUsers(x.GetMemberIds()), Open: x.GetOpen()}, nil
	case *mpimv1.Event_MemberAdded:
		x := p.MemberAdded
		return domain.MemberAdded{User: domain.UserID(x.GetUserId()), By: domain.UserID(x.GetByUserId())}, nil
	case *mpimv1.Event_MemberJoined:
		return domain.MemberJoined{User: domain.UserID(p.MemberJoined.GetUserId())}, nil
	case *mpimv1.Event_MemberLeft:
		return domain.MemberLeft{User: domain.UserID(p.MemberLeft.GetUserId())}, nil
	case *mpimv1.Event_MemberKicked:
		x := p.MemberKicked
		return domain.MemberKicked{User: domain.UserID(x.GetUserId()), By: domain.UserID(x.GetByUserId())}, nil
	case *mpimv1.Event_MemberRoleChanged:
		x := p.MemberRoleChanged
		return domain.MemberRoleChanged{User: domain.UserID(x.GetUserId()), By: domain.UserID(x.GetByUserId()), Role: domain.Role(x.GetRole())}, nil
	case *mpimv1.Event_GroupRenamed:
		x := p.GroupRenamed
		return domain.GroupRenamed{Name: x.GetName(), By: domain.UserID(x.GetByUserId())}, nil
	case *mpimv1.Event_MemberMuted:
		x := p.MemberMuted
		return domain.MemberMuted{User: domain.UserID(x.GetUserId()), By: domain.UserID(x.GetByUserId()), Until: fromMs(x.GetUntilMs())}, nil
	case *mpimv1.Event_MemberUnmuted:
		x := p.MemberUnmuted
		return domain.MemberUnmuted{User: domain.UserID(x.GetUserId()), By: domain.UserID(x.GetByUserId())}, nil
	case *mpimv1.Event_MemberUnbanned:
		x := p.MemberUnbanned
		return domain.MemberUnbanned{User: domain.UserID(x.GetUserId()), By: domain.UserID(x.GetByUserId())}, nil
	case *mpimv1.Event_GroupDissolved:
		return domain.GroupDissolved{By: domain.UserID(p.GroupDissolved.GetByUserId())}, nil
	case *mpimv1.Event_GroupHistoryVisibilityChanged:
		x := p.GroupHistoryVisibilityChanged
		return domain.GroupHistoryVisibilityChanged{Visible: x.GetVisible(), By: domain.UserID(x.GetByUserId())}, nil
	case *mpimv1.Event_MessageSent:
		x := p.MessageSent
		return domain.MessageSent{Conversation: domain.ConversationID(x.GetConversationId()), Sender: domain.UserID(x.GetSenderId()), Device: domain.DeviceID(x.GetDeviceId()),
			ClientMsgID: x.GetClientMsgId(), Kind: domain.MessageKind(x.GetKind()), Text: x.GetText(), Attachment: attachmentFromWire(x.GetAttachment()), SentAt: fromMs(x.GetSentAtMs())}, nil
	case *mpimv1.Event_MessageRecalled:
		x := p.MessageRecalled
		return domain.MessageRecalled{Seq: x.GetSeq(), By: domain.UserID(x.GetByUserId()), Sender: domain.UserID(x.GetSenderId()), SentAt: fromMs(x.GetSentAtMs())}, nil
	case *mpimv1.Event_MessageEdited:
		x := p.MessageEdited
		return domain.MessageEdited{Seq: x.GetSeq(), By: domain.UserID(x.GetByUserId()), Text: x.GetText()}, nil
	case *mpimv1.Event_ConversationRead:
		x := p.ConversationRead
		return domain.ConversationRead{User: domain.UserID(x.GetUserId()), Conversation: domain.ConversationID(x.GetConversationId()), Seq: x.GetSeq()}, nil
	case *mpimv1.Event_MessageDeletedForMe:
		x := p.MessageDeletedForMe
		return domain.MessageDeletedForMe{User: domain.UserID(x.GetUserId()), Conversation: domain.ConversationID(x.GetConversationId()), Seq: x.GetSeq()}, nil
	case *mpimv1.Event_PushTokenRegistered:
		x := p.PushTokenRegistered
		return domain.PushTokenRegistered{Device: domain.DeviceID(x.GetDeviceId()),
			PushToken: domain.PushToken{Platform: domain.PushPlatform(x.GetPlatform()), Token: x.GetToken(), AppID: x.GetAppId()}}, nil
	case *mpimv1.Event_PushTokenRemoved:
		return domain.PushTokenRemoved{Device: domain.DeviceID(p.PushTokenRemoved.GetDeviceId())}, nil
	case *mpimv1.Event_ConversationMuted:
		x := p.ConversationMuted
		return domain.ConversationMuted{User: domain.UserID(x.GetUserId()), Conversation: domain.ConversationID(x.GetConversationId()), Until: fromMs(x.GetUntilMs())}, nil
	case *mpimv1.Event_ConversationUnmuted:
		x := p.ConversationUnmuted
		return domain.ConversationUnmuted{User: domain.UserID(x.GetUserId()), Conversation: domain.ConversationID(x.GetConversationId())}, nil
	case nil:
		return nil, fmt.Errorf("codec: event without payload (unknown event type)")
	}
	return nil, fmt.Errorf("codec: unhandled payload %T", env.GetPayload())
}
