package main

import (
	"errors"

	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"google.golang.org/protobuf/encoding/protowire"
)

// sentFields are what the audit needs of a MessageSent event.
type sentFields struct {
	eventID      string // the id's raw bytes
	seq          uint64
	conversation string
	clientMsgID  string
}

// The field numbers read by sentOf (proto/mpim/v1/event.proto).
const (
	eventIDField      = 1
	eventSeqField     = 8
	eventMessageSent  = 400
	sentConversation  = 1
	sentClientMessage = 4
)

var errNotMessageSent = errors.New("not a MessageSent event")

// sentOf reads the fields the audit needs from an encoded mpim.v1.Event
// (a binary push's envelope) without decoding the rest: the envelope is
// read once, and only the id and two strings are allocated. It reads as
// proto.Unmarshal does (the last occurrence of a field wins, occurrences
// of the message_sent field merge) and fails on malformed input or an
// event that is not a MessageSent.
func sentOf(env []byte) (sentFields, error) {
	var f sentFields
	sent := false
	err := walk(env, func(num protowire.Number, typ protowire.Type, v []byte, u uint64) error {
		switch {
		case num == eventIDField && typ == protowire.BytesType:
			f.eventID = string(v)
		case num == eventSeqField && typ == protowire.VarintType:
			f.seq = u
		case num == eventMessageSent && typ == protowire.BytesType:
			sent = true
			return walk(v, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
				switch {
				case num == sentConversation && typ == protowire.BytesType:
					f.conversation = string(v)
				case num == sentClientMessage && typ == protowire.BytesType:
					f.clientMsgID = string(v)
				}
				return nil
			})
		case num >= 100 && num < 1000 && typ == protowire.BytesType:
			sent = false // another payload of the oneof, set later, wins
			f.conversation, f.clientMsgID = "", ""
		}
		return nil
	})
	if err != nil {
		return sentFields{}, err
	}
	if !sent {
		return sentFields{}, errNotMessageSent
	}
	return f, nil
}

// walk calls field for every field of the encoded message b, with its
// bytes (length-delimited) or its value (varint, fixed).
func walk(b []byte, field func(num protowire.Number, typ protowire.Type, v []byte, u uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v []byte
		var u uint64
		switch typ {
		case protowire.VarintType:
			u, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := field(num, typ, v, u); err != nil {
			return err
		}
	}
	return nil
}

// sentOfEvent is sentOf for an event decoded already (JSON pushes).
func sentOfEvent(ev *mpimv1.Event) (sentFields, error) {
	ms := ev.GetMessageSent()
	if ms == nil {
		return sentFields{}, errNotMessageSent
	}
	return sentFields{eventID: string(ev.GetId()), seq: ev.GetSeq(), conversation: ms.GetConversationId(),
		clientMsgID: ms.GetClientMsgId()}, nil
}
