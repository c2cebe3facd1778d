package domain

import "time"

// Event is a fact that happened to one aggregate. Events are named in the
// past tense, carry no behaviour and are immutable once appended. The
// concrete types below are the whole vocabulary; proto/codec converts each
// one to and from its wire message, field for field.
type Event interface {
	// EventType is the stable name of the event ("MessageSent").
	EventType() string
}

// Account events (user aggregate, id "u/<ulid>").

// UserRegistered is the first event of a user aggregate.
type UserRegistered struct {
	User         UserID
	Username     string // normalised (see NormalizeUsername)
	PasswordHash string // PHC string of a real KDF (argon2id or bcrypt)
	DisplayName  string
}

// UsernameClaimed is the only event of a username aggregate ("n/<name>"): it
// reserves the name for one user. It is appended in the same atomic append as
// UserRegistered, which is what makes usernames unique.
type UsernameClaimed struct {
	Username string
	User     UserID
}

// ProfileUpdated replaces the display name and avatar URL.
type ProfileUpdated struct {
	DisplayName string
	AvatarURL   string
}

// PasswordChanged replaces the password hash.
type PasswordChanged struct {
	PasswordHash string
}

// DeviceLoggedIn records a device starting a session.
type DeviceLoggedIn struct {
	Device   DeviceID
	Platform string
}

// DeviceLoggedOut records a device ending its session.
type DeviceLoggedOut struct {
	Device DeviceID
}

// PushTokenRegistered sets the push token of a logged-in device, replacing
// the one it had. The token lasts until PushTokenRemoved or the device's
// DeviceLoggedOut.
type PushTokenRegistered struct {
	Device DeviceID
	PushToken
}

// PushTokenRemoved removes a device's push token (it may have had none).
type PushTokenRemoved struct {
	Device DeviceID
}

// Contact events (relationship aggregate of an unordered user pair).

// FriendRequested is a friend request From -> To.
type FriendRequested struct {
	From, To UserID
	Message  string
}

// FriendRequestAccepted makes the pair friends; By is the recipient.
type FriendRequestAccepted struct {
	From, By UserID
}

// FriendRequestDeclined drops a pending request; By is the recipient. At is
// when it was declined (millisecond precision; zero in events written before
// it was recorded): From may ask again only after a cooldown from At.
type FriendRequestDeclined struct {
	From, By UserID
	At       time.Time
}

// FriendRemoved ends a friendship; By is the user who removed the other.
type FriendRemoved struct {
	By, Other UserID
}

// UserBlocked means Blocker no longer accepts messages or requests from Blocked.
type UserBlocked struct {
	Blocker, Blocked UserID
}

// UserUnblocked lifts a block.
type UserUnblocked struct {
	Blocker, Blocked UserID
}

// Group events (group aggregate, id "g/<ulid>").

// GroupCreated is the first event of a group. Owner is a member with RoleOwner;
// Members (without the owner) join as RoleMember.
type GroupCreated struct {
	Group   GroupID
	Name    string
	Owner   UserID
	Members []UserID
	Open    bool // anyone may join without an invitation
}

// MemberAdded is a member added (invited) by another member.
type MemberAdded struct {
	User, By UserID
}

// MemberJoined is a user joining an open group by themselves.
type MemberJoined struct {
	User UserID
}

// MemberLeft is a member leaving by themselves.
type MemberLeft struct {
	User UserID
}

// MemberKicked is a member removed by an admin or the owner.
type MemberKicked struct {
	User, By UserID
}

// MemberRoleChanged sets a member's role (only the owner does this).
type MemberRoleChanged struct {
	User, By UserID
	Role     Role
}

// GroupRenamed changes the group's name.
type GroupRenamed struct {
	Name string
	By   UserID
}

// MemberMuted forbids a member to post until Until (zero: indefinitely).
type MemberMuted struct {
	User, By UserID
	Until    time.Time
}

// MemberUnmuted lifts a mute.
type MemberUnmuted struct {
	User, By UserID
}

// GroupHistoryVisibilityChanged sets whether members who join from now on
// read the group's history from its first message (Visible) or only from
// their joining. Memberships that began before it keep their start.
type GroupHistoryVisibilityChanged struct {
	Visible bool
	By      UserID
}

// MemberUnbanned takes a kicked user off the group's ban list; By is an
// admin or the owner. (A MemberAdded by an admin lifts a ban too.)
type MemberUnbanned struct {
	User, By UserID
}

// GroupDissolved ends the group; it accepts no command afterwards.
type GroupDissolved struct {
	By UserID
}

// Conversation events (conversation aggregate).

// MessageSent is a message posted to a conversation. Seq is the message's
// position in the conversation (1, 2, ...), assigned atomically by the event
// store at append time; it is zero until then.
type MessageSent struct {
	Conversation ConversationID
	Seq          uint64
	Sender       UserID
	Device       DeviceID
	ClientMsgID  string
	Kind         MessageKind
	Text         string
	Attachment   *Attachment // nil for plain text
	SentAt       time.Time
}

// MessageRecalled withdraws message Seq for everybody. Sender and SentAt are
// copied from the original so the fact stands on its own.
type MessageRecalled struct {
	Seq    uint64
	By     UserID
	Sender UserID
	SentAt time.Time
}

// MessageEdited replaces the text of message Seq.
type MessageEdited struct {
	Seq  uint64
	By   UserID
	Text string
}

// Reader events (reader aggregate of one user, "m/<ulid>"): read markers and
// per-user deletions belong to the reader, not to the conversation.

// ConversationRead marks everything up to Seq in Conversation as read by User.
type ConversationRead struct {
	User         UserID
	Conversation ConversationID
	Seq          uint64
}

// MessageDeletedForMe hides message Seq of Conversation from User only.
type MessageDeletedForMe struct {
	User         UserID
	Conversation ConversationID
	Seq          uint64
}

// ConversationMuted is User's do-not-disturb of Conversation: no push
// notifications of it until Until (zero: until unmuted). It replaces an
// earlier mute of the conversation. A reader event.
type ConversationMuted struct {
	User         UserID
	Conversation ConversationID
	Until        time.Time
}

// ConversationUnmuted lifts User's mute of Conversation. A reader event.
type ConversationUnmuted struct {
	User         UserID
	Conversation ConversationID
}

func (UserRegistered) EventType() string                { return "UserRegistered" }
func (UsernameClaimed) EventType() string               { return "UsernameClaimed" }
func (ProfileUpdated) EventType() string                { return "ProfileUpdated" }
func (PasswordChanged) EventType() string               { return "PasswordChanged" }
func (DeviceLoggedIn) EventType() string                { return "DeviceLoggedIn" }
func (DeviceLoggedOut) EventType() string               { return "DeviceLoggedOut" }
func (FriendRequested) EventType() string               { return "FriendRequested" }
func (FriendRequestAccepted) EventType() string         { return "FriendRequestAccepted" }
func (FriendRequestDeclined) EventType() string         { return "FriendRequestDeclined" }
func (FriendRemoved) EventType() string                 { return "FriendRemoved" }
func (UserBlocked) EventType() string                   { return "UserBlocked" }
func (UserUnblocked) EventType() string                 { return "UserUnblocked" }
func (GroupCreated) EventType() string                  { return "GroupCreated" }
func (MemberAdded) EventType() string                   { return "MemberAdded" }
func (MemberJoined) EventType() string                  { return "MemberJoined" }
func (MemberLeft) EventType() string                    { return "MemberLeft" }
func (MemberKicked) EventType() string                  { return "MemberKicked" }
func (MemberRoleChanged) EventType() string             { return "MemberRoleChanged" }
func (GroupRenamed) EventType() string                  { return "GroupRenamed" }
func (MemberMuted) EventType() string                   { return "MemberMuted" }
func (MemberUnmuted) EventType() string                 { return "MemberUnmuted" }
func (MemberUnbanned) EventType() string                { return "MemberUnbanned" }
func (GroupDissolved) EventType() string                { return "GroupDissolved" }
func (GroupHistoryVisibilityChanged) EventType() string { return "GroupHistoryVisibilityChanged" }
func (MessageSent) EventType() string                   { return "MessageSent" }
func (MessageRecalled) EventType() string               { return "MessageRecalled" }
func (MessageEdited) EventType() string                 { return "MessageEdited" }
func (ConversationRead) EventType() string              { return "ConversationRead" }
func (MessageDeletedForMe) EventType() string           { return "MessageDeletedForMe" }
func (PushTokenRegistered) EventType() string           { return "PushTokenRegistered" }
func (PushTokenRemoved) EventType() string              { return "PushTokenRemoved" }
func (ConversationMuted) EventType() string             { return "ConversationMuted" }
func (ConversationUnmuted) EventType() string           { return "ConversationUnmuted" }
