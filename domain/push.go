package domain

import "time"

// Push settings: a device's push token (user aggregate) and a user's
// do-not-disturb of a conversation (reader aggregate). They are what a push
// notifier needs to reach a device that has no connection, and to keep
// quiet when asked to.

// PushPlatform names the service a push token belongs to.
type PushPlatform string

// The push platforms. Custom is a token for a relay of the deployment's
// own, which mpim passes on without interpreting.
const (
	PushAPNs    PushPlatform = "apns"
	PushFCM     PushPlatform = "fcm"
	PushWebPush PushPlatform = "webpush"
	PushCustom  PushPlatform = "custom"
)

// Bounds of a push token and its app id.
const (
	MaxPushTokenBytes = 4096 // a Web Push subscription as compact JSON fits
	MaxPushAppIDBytes = 128
)

// Valid reports whether p is one of the push platforms.
func (p PushPlatform) Valid() bool {
	switch p {
	case PushAPNs, PushFCM, PushWebPush, PushCustom:
		return true
	}
	return false
}

// PushToken is a device's push token.
type PushToken struct {
	Platform PushPlatform
	Token    string // 1..MaxPushTokenBytes of printable ASCII without spaces
	AppID    string // "" or 1..MaxPushAppIDBytes of printable ASCII without spaces
}

// Check returns an EInvalid error, naming what is wrong, unless t has a
// known platform, a token of 1..MaxPushTokenBytes printable ASCII bytes
// without spaces and an app id that is empty or 1..MaxPushAppIDBytes such
// bytes. An overlong token is EInvalid too, not ETooLarge: no token of a
// real platform is that long, so it is malformed rather than too big.
func (t PushToken) Check() error {
	switch {
	case !t.Platform.Valid():
		return Errorf(EInvalid, "domain: unknown push platform %q (apns, fcm, webpush or custom)", t.Platform)
	case t.Token == "":
		return Errorf(EInvalid, "domain: push token is empty")
	case len(t.Token) > MaxPushTokenBytes:
		return Errorf(EInvalid, "domain: push token is longer than %d bytes", MaxPushTokenBytes)
	case !printable(t.Token, MaxPushTokenBytes):
		return Errorf(EInvalid, "domain: push token has characters other than printable ASCII without spaces")
	case t.AppID != "" && !printable(t.AppID, MaxPushAppIDBytes):
		return Errorf(EInvalid, "domain: push app id is not 1..%d bytes of printable ASCII without spaces", MaxPushAppIDBytes)
	}
	return nil
}

// DeviceToken is the push token of one device.
type DeviceToken struct {
	Device DeviceID
	PushToken
}

// RegisterPushToken sets the push token of Device, which must be logged in
// (a User command; the gateway passes the calling device).
type RegisterPushToken struct {
	Device DeviceID
	Token  PushToken
}

// RemovePushToken removes the push token of Device, which must be logged in.
type RemovePushToken struct {
	Device DeviceID
}

func (RegisterPushToken) userCommand() {}
func (RemovePushToken) userCommand()   {}

// decidePush decides the push commands of a registered user. The user
// aggregate does not remember tokens (read models do): removing a device's
// token appends PushTokenRemoved whether or not it had one.
func (u *User) decidePush(cmd UserCommand) ([]Event, error) {
	switch c := cmd.(type) {
	case RegisterPushToken:
		if err := u.loggedIn(c.Device); err != nil {
			return nil, err
		}
		if err := c.Token.Check(); err != nil {
			return nil, err
		}
		return []Event{PushTokenRegistered{Device: c.Device, PushToken: c.Token}}, nil
	case RemovePushToken:
		if err := u.loggedIn(c.Device); err != nil {
			return nil, err
		}
		return []Event{PushTokenRemoved{Device: c.Device}}, nil
	}
	return nil, unknownCommand(u.AggregateID(), cmd)
}

// loggedIn returns an ENotFound error unless device has a session.
func (u *User) loggedIn(device DeviceID) error {
	if _, ok := u.devices[device]; !ok {
		return Errorf(ENotFound, "domain: device %q of %s is not logged in", device, u.id)
	}
	return nil
}

// MuteConversation silences the push notifications of Conversation for
// User until Until, or forever (Until must then be zero).
type MuteConversation struct {
	User         UserID
	Conversation ConversationID
	Until        time.Time
	Forever      bool
}

// UnmuteConversation lifts User's mute of Conversation.
type UnmuteConversation struct {
	User         UserID
	Conversation ConversationID
}

// DecideMute returns the ConversationMuted that carries out cmd. It returns
// an EInvalid error for a malformed user or conversation id, for neither or
// both of Until and Forever, and for an Until that is not after now or more
// than Policy.MaxMute ahead; EForbidden if User is not one of a direct
// conversation's pair. Group membership is not checked (see
// DecideMarkRead): a mute only affects the user's own notifications.
func DecideMute(cmd MuteConversation, now time.Time, p Policy) ([]Event, error) {
	if err := checkMuter(cmd.User, cmd.Conversation); err != nil {
		return nil, err
	}
	switch {
	case cmd.Forever && !cmd.Until.IsZero():
		return nil, Errorf(EInvalid, "domain: a mute is either forever or until a time, not both")
	case !cmd.Forever && cmd.Until.IsZero():
		return nil, Errorf(EInvalid, "domain: a mute needs an end or forever")
	}
	until, err := checkMuteEnd(cmd.Until, now, p)
	if err != nil {
		return nil, err
	}
	return []Event{ConversationMuted{User: cmd.User, Conversation: cmd.Conversation, Until: until}}, nil
}

// DecideUnmute returns the ConversationUnmuted that carries out cmd, with
// the id errors of DecideMute. Unmuting a conversation that is not muted is
// allowed (the reader aggregate keeps no state).
func DecideUnmute(cmd UnmuteConversation) ([]Event, error) {
	if err := checkMuter(cmd.User, cmd.Conversation); err != nil {
		return nil, err
	}
	return []Event{ConversationUnmuted{User: cmd.User, Conversation: cmd.Conversation}}, nil
}

func checkMuter(user UserID, conv ConversationID) error {
	if err := checkUser("user", user); err != nil {
		return err
	}
	if !conv.Valid() {
		return Errorf(EInvalid, "domain: invalid conversation id %q", conv)
	}
	if a, b, ok := conv.Members(); ok && user != a && user != b {
		return Errorf(EForbidden, "domain: %s is not in %s", user, conv)
	}
	return nil
}

// checkMuteEnd returns until in UTC at millisecond precision, or zero for
// zero (no end). A non-zero until must be after now and at most p.MaxMute
// ahead (EInvalid).
func checkMuteEnd(until, now time.Time, p Policy) (time.Time, error) {
	if until.IsZero() {
		return until, nil
	}
	t := until.UTC().Truncate(time.Millisecond)
	if !t.After(now) {
		return time.Time{}, Errorf(EInvalid, "domain: mute until %v is not after now", until)
	}
	if t.After(now.Add(p.MaxMute)) {
		return time.Time{}, Errorf(EInvalid, "domain: mute until %v is more than %v ahead", until, p.MaxMute)
	}
	return t, nil
}

// Muted reports whether a mute that ends at until (zero: forever) is in
// force at now.
func Muted(until, now time.Time) bool {
	return until.IsZero() || now.Before(until)
}

// MaxUnreadConversations bounds the conversations whose rows one read of a
// user's Unread asks for.
const MaxUnreadConversations = 1000

// Unread is a user's unread messages as a read model holds them: the
// number for the app icon of a push, and the rows of the conversations a
// push notifier also counts itself.
type Unread struct {
	// Total is the sum of the unread counts of the user's conversations.
	Total uint64
	// Conversations are the user's rows, among those asked for, that
	// Total counts.
	Conversations []ConversationUnread
}

// ConversationUnread is a user's read state of one conversation.
type ConversationUnread struct {
	Conversation ConversationID
	LastSeq      uint64 // the conversation's last message the row counts
	ReadSeq      uint64 // the user's read marker (own messages count as read)
	Count        uint64 // max(LastSeq - ReadSeq, 0)
}
