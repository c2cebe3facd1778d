package domain

import (
	"maps"
	"strings"
	"time"
	"unicode/utf8"
)

// Conversations have no aggregate loaded for sending: the event store assigns
// each MessageSent its seq atomically, so concurrent senders never conflict.
// What decides whether a message may be sent is the relationship of a direct
// conversation's pair or the group of a group conversation, which share the
// conversation's partition; recall and edit also need the MessageState the
// store keeps per message.

// SendMessage posts a message to a conversation.
type SendMessage struct {
	Conversation ConversationID
	Sender       UserID
	Device       DeviceID // the sending device; empty for server-side senders
	ClientMsgID  string   // the client's id for de-duplication, at most 64 bytes; may be empty
	Kind         MessageKind
	Text         string
	Attachment   *Attachment
}

// RecallMessage withdraws message Seq of Conversation for everybody.
type RecallMessage struct {
	Conversation ConversationID
	Seq          uint64
	Actor        UserID
}

// EditMessage replaces the text of message Seq of Conversation.
type EditMessage struct {
	Conversation ConversationID
	Seq          uint64
	Actor        UserID
	Text         string
}

// DecideSend returns the MessageSent that carries out cmd at now, with Seq 0
// (the event store assigns it) and SentAt now in UTC truncated to the
// millisecond. rel must be the relationship of a direct conversation's pair
// and group the group of a group conversation (the other may be nil);
// a missing or mismatched one is a caller bug reported as EInternal.
//
// In a direct conversation the sender must be one of the pair (EForbidden)
// and neither may block the other (EBlocked); friendship is not required. In
// a group conversation the errors are those of Group.CanPost (ENotFound,
// EDissolved, ENotMember, EMuted).
//
// The content must fit the kind (EInvalid otherwise): KindText needs
// non-blank text and no attachment; KindImage and KindFile need an attachment
// with an http(s) URL and may carry text as a caption; KindCustom needs text
// or an attachment, whose URL, if any, is http(s). Text must be valid UTF-8,
// and the text plus the attachment's strings at most MaxTextBytes (ETooLarge).
// A malformed sender, device or client message id gives EInvalid.
func DecideSend(cmd SendMessage, now time.Time, p Policy, rel *Relationship, group *Group) ([]Event, error) {
	if !cmd.Conversation.Valid() {
		return nil, Errorf(EInvalid, "domain: invalid conversation id %q", cmd.Conversation)
	}
	if err := checkUser("sender", cmd.Sender); err != nil {
		return nil, err
	}
	if cmd.Device != "" {
		if err := checkDevice(cmd.Device); err != nil {
			return nil, err
		}
	}
	if len(cmd.ClientMsgID) > maxClientMsgIDBytes || !utf8.ValidString(cmd.ClientMsgID) {
		return nil, Errorf(EInvalid, "domain: client message id is not UTF-8 of at most %d bytes", maxClientMsgIDBytes)
	}
	if err := checkContent(cmd.Kind, cmd.Text, cmd.Attachment, p); err != nil {
		return nil, err
	}
	if err := mayPost(cmd.Conversation, cmd.Sender, now, rel, group); err != nil {
		return nil, err
	}
	return []Event{MessageSent{
		Conversation: cmd.Conversation,
		Sender:       cmd.Sender,
		Device:       cmd.Device,
		ClientMsgID:  cmd.ClientMsgID,
		Kind:         cmd.Kind,
		Text:         cmd.Text,
		Attachment:   cloneAttachment(cmd.Attachment),
		SentAt:       now.UTC().Truncate(time.Millisecond),
	}}, nil
}

// DecideRecall returns the MessageRecalled that carries out cmd at now, given
// the message's state (the zero MessageState: no such message, ENotFound).
// group must be the group of a group conversation (EInternal otherwise).
//
// The sender may recall within RecallWindow of SentAt (EWindowPassed after).
// In a group, an admin or the owner may recall their own messages at any time,
// and the messages of anyone they outrank (the owner outranks admins, admins
// outrank members, everyone outranks a sender who is no longer a member): an
// admin cannot recall the owner's or another admin's message. Anybody else
// gets EForbidden. A second recall of a recalled message returns
// EExists (a retried command is answered by the event store's idempotency
// key before it gets here). In a group the actor must still be a member
// (ENotMember) of a group not dissolved (EDissolved); a muted member may
// still recall. In a direct conversation the actor must be one of the pair
// (EForbidden); blocks do not prevent withdrawing one's own message.
func DecideRecall(cmd RecallMessage, state MessageState, now time.Time, p Policy, group *Group) ([]Event, error) {
	if err := checkRef(cmd.Conversation, cmd.Seq, cmd.Actor); err != nil {
		return nil, err
	}
	if state.Sender == "" {
		return nil, Errorf(ENotFound, "domain: message %d of %s not found", cmd.Seq, cmd.Conversation)
	}
	privileged := false // the actor is an admin who may recall this message at any time
	if gid, ok := cmd.Conversation.Group(); ok {
		if group == nil || group.id != gid {
			return nil, Errorf(EInternal, "domain: recall in %s needs its group", cmd.Conversation)
		}
		if err := group.live(); err != nil {
			return nil, err
		}
		if _, err := group.member(cmd.Actor); err != nil {
			return nil, err
		}
		actor, _ := group.Role(cmd.Actor)
		sender, _ := group.Role(state.Sender) // zero for a former member
		privileged = actor >= RoleAdmin && (cmd.Actor == state.Sender || actor > sender)
	} else if a, b, _ := cmd.Conversation.Members(); cmd.Actor != a && cmd.Actor != b {
		return nil, Errorf(EForbidden, "domain: %s is not in %s", cmd.Actor, cmd.Conversation)
	}
	switch {
	case state.Recalled:
		return nil, Errorf(EExists, "domain: message %d of %s is already recalled", cmd.Seq, cmd.Conversation)
	case privileged:
	case cmd.Actor != state.Sender:
		return nil, Errorf(EForbidden, "domain: only the sender or a group admin who outranks them may recall message %d", cmd.Seq)
	case now.Sub(state.SentAt) > p.RecallWindow:
		return nil, Errorf(EWindowPassed, "domain: message %d is older than the recall window of %v", cmd.Seq, p.RecallWindow)
	}
	return []Event{MessageRecalled{Seq: cmd.Seq, By: cmd.Actor, Sender: state.Sender, SentAt: state.SentAt}}, nil
}

// DecideEdit returns the MessageEdited that carries out cmd at now, given the
// message's state (the zero MessageState: no such message, ENotFound). rel and
// group are as for DecideSend, and the actor must still be allowed to post,
// with the same errors: an edit delivers new text.
//
// Only the sender edits (EForbidden), within EditWindow of SentAt
// (EWindowPassed), and not after a recall (ENotFound). The new text must be
// non-blank valid UTF-8 (EInvalid) of at most MaxTextBytes (ETooLarge).
func DecideEdit(cmd EditMessage, state MessageState, now time.Time, p Policy, rel *Relationship, group *Group) ([]Event, error) {
	if err := checkRef(cmd.Conversation, cmd.Seq, cmd.Actor); err != nil {
		return nil, err
	}
	if err := checkText("text", cmd.Text, p.MaxTextBytes); err != nil {
		return nil, err
	}
	if strings.TrimSpace(cmd.Text) == "" {
		return nil, Errorf(EInvalid, "domain: text is empty")
	}
	if state.Sender == "" {
		return nil, Errorf(ENotFound, "domain: message %d of %s not found", cmd.Seq, cmd.Conversation)
	}
	if err := mayPost(cmd.Conversation, cmd.Actor, now, rel, group); err != nil {
		return nil, err
	}
	switch {
	case cmd.Actor != state.Sender:
		return nil, Errorf(EForbidden, "domain: only the sender may edit message %d", cmd.Seq)
	case state.Recalled:
		return nil, Errorf(ENotFound, "domain: message %d of %s was recalled", cmd.Seq, cmd.Conversation)
	case now.Sub(state.SentAt) > p.EditWindow:
		return nil, Errorf(EWindowPassed, "domain: message %d is older than the edit window of %v", cmd.Seq, p.EditWindow)
	}
	return []Event{MessageEdited{Seq: cmd.Seq, By: cmd.Actor, Text: cmd.Text}}, nil
}

// mayPost returns nil if user may post to conv at now; see DecideSend.
func mayPost(conv ConversationID, user UserID, now time.Time, rel *Relationship, group *Group) error {
	if gid, ok := conv.Group(); ok {
		if group == nil || group.id != gid {
			return Errorf(EInternal, "domain: posting to %s needs its group", conv)
		}
		return group.CanPost(user, now)
	}
	a, b, _ := conv.Members()
	if rel == nil || rel.users != [2]UserID{a, b} {
		return Errorf(EInternal, "domain: posting to %s needs the relationship of its pair", conv)
	}
	return rel.CanMessage(user)
}

// checkRef returns an EInvalid error unless conv is well formed, seq is
// 1..MaxSeq and user is well formed.
func checkRef(conv ConversationID, seq uint64, user UserID) error {
	if !conv.Valid() {
		return Errorf(EInvalid, "domain: invalid conversation id %q", conv)
	}
	if seq == 0 || seq > MaxSeq {
		return Errorf(EInvalid, "domain: seq %d is not in 1..%d", seq, MaxSeq)
	}
	return checkUser("user", user)
}

// checkContent checks a message's kind, text and attachment; see DecideSend.
func checkContent(kind MessageKind, text string, att *Attachment, p Policy) error {
	size := len(text)
	if att != nil {
		size += len(att.URL) + len(att.Mime) + len(att.Name)
		for k, v := range att.Meta {
			size += len(k) + len(v)
		}
	}
	if size > p.MaxTextBytes {
		return Errorf(ETooLarge, "domain: message content is longer than %d bytes", p.MaxTextBytes)
	}
	if !utf8.ValidString(text) {
		return Errorf(EInvalid, "domain: text is not valid UTF-8")
	}
	switch kind {
	case KindText:
		if strings.TrimSpace(text) == "" {
			return Errorf(EInvalid, "domain: text is empty")
		}
		if att != nil {
			return Errorf(EInvalid, "domain: a text message carries no attachment")
		}
		return nil
	case KindImage, KindFile:
		if att == nil {
			return Errorf(EInvalid, "domain: an image or file message needs an attachment")
		}
		if err := checkURL("attachment URL", att.URL, true); err != nil {
			return err
		}
	case KindCustom:
		if text == "" && att == nil {
			return Errorf(EInvalid, "domain: a custom message needs text or an attachment")
		}
		if att == nil {
			return nil
		}
		if err := checkURL("attachment URL", att.URL, false); err != nil {
			return err
		}
	default:
		return Errorf(EInvalid, "domain: unknown message kind %d", kind)
	}
	if att.Size < 0 || uint64(att.Size) > MaxSeq || att.Width < 0 || att.Height < 0 {
		return Errorf(EInvalid, "domain: attachment size must be 0..%d and its dimensions not negative", MaxSeq)
	}
	valid := utf8.ValidString(att.Mime) && utf8.ValidString(att.Name)
	for k, v := range att.Meta {
		valid = valid && k != "" && utf8.ValidString(k) && utf8.ValidString(v)
	}
	if !valid {
		return Errorf(EInvalid, "domain: attachment has an invalid name, type or metadata")
	}
	return nil
}

// cloneAttachment returns a copy of a that shares nothing with it.
func cloneAttachment(a *Attachment) *Attachment {
	if a == nil {
		return nil
	}
	c := *a
	c.Meta = maps.Clone(a.Meta)
	return &c
}
