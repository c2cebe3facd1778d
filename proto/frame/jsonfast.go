package frame

import (
	"encoding/base64"
	"errors"
	"strconv"
	"unicode/utf8"

	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// The JSON fast path writes the hot frames of the JSON encoding directly:
// the Push of a MessageSent (and the event inside any push, once per event:
// AppendEventJSON), the send response and the ack response. It writes what
// protojson writes (the same fields, names, order and value encodings:
// 64-bit integers as decimal strings, bytes as padded standard base64,
// enums by name, zero values left out, strings escaped as protojson does),
// without protojson's reflection; anything else takes protojson. Tests
// prove that both parse equal over many messages (jsonfast_test.go).

// errJSONUTF8 is protojson's refusal of a string that is not valid UTF-8.
var errJSONUTF8 = errors.New("frame: invalid UTF-8 in a string field")

// AppendEventJSON appends ev in the protobuf JSON mapping: the value of a
// Push's "event". A MessageSent (or an event without payload) is written
// directly; other events by protojson. It fails as protojson does, on a
// string that is not valid UTF-8.
func AppendEventJSON(buf []byte, ev *mpimv1.Event) ([]byte, error) {
	if !fastEvent(ev) {
		return jsonOut.MarshalAppend(buf, ev)
	}
	w := jsonWriter{buf: append(buf, '{')}
	w.bytes("id", ev.Id)
	w.str("aggregate", ev.Aggregate)
	w.uint("version", ev.Version)
	w.int("occurredAtMs", ev.OccurredAtMs)
	if a := ev.Actor; a != nil {
		w.open("actor")
		w.str("userId", a.UserId)
		w.str("deviceId", a.DeviceId)
		w.close()
	}
	w.str("correlationId", ev.CorrelationId)
	w.str("causationId", ev.CausationId)
	w.uint("seq", ev.Seq)
	if m := ev.GetMessageSent(); m != nil {
		w.open("messageSent")
		w.str("conversationId", m.ConversationId)
		w.str("senderId", m.SenderId)
		w.str("deviceId", m.DeviceId)
		w.str("clientMsgId", m.ClientMsgId)
		if m.Kind != 0 {
			w.key("kind")
			if name, ok := mpimv1.MessageKind_name[int32(m.Kind)]; ok {
				w.buf = append(append(append(w.buf, '"'), name...), '"')
			} else {
				w.buf = strconv.AppendInt(w.buf, int64(m.Kind), 10)
			}
		}
		w.str("text", m.Text)
		if at := m.Attachment; at != nil {
			w.open("attachment")
			w.str("url", at.Url)
			w.str("mime", at.Mime)
			w.int("size", at.Size)
			w.str("name", at.Name)
			w.int32("width", at.Width)
			w.int32("height", at.Height)
			w.close()
		}
		w.int("sentAtMs", m.SentAtMs)
		w.close()
	}
	return w.end()
}

// fastEvent reports whether AppendEventJSON writes ev itself: no payload
// or a MessageSent whose attachment has no meta (a map, left to
// protojson).
func fastEvent(ev *mpimv1.Event) bool {
	switch ev.GetPayload().(type) {
	case nil:
		return true
	case *mpimv1.Event_MessageSent:
		return len(ev.GetMessageSent().GetAttachment().GetMeta()) == 0
	}
	return false
}

// AppendPushJSON appends the JSON ServerFrame holding Push{inbox_id, type,
// event, resend}, with event given by its JSON encoding (AppendEventJSON;
// nil for none), as protojson writes it. It fails on a string that is not
// valid UTF-8.
func AppendPushJSON(buf []byte, inboxID, typ string, event []byte, resend bool) ([]byte, error) {
	w := jsonWriter{buf: append(buf, `{"push":{`...)}
	w.str("inboxId", inboxID)
	w.str("type", typ)
	if event != nil {
		w.key("event")
		w.buf = append(w.buf, event...)
	}
	if resend {
		w.key("resend")
		w.buf = append(w.buf, "true"...)
	}
	w.close()
	return w.end()
}

// appendJSONFast appends f if it is a frame of the fast path: a push, a
// send response or an ack response. ok is false for any other frame.
func appendJSONFast(buf []byte, f *mpimv1.ServerFrame) (out []byte, ok bool, err error) {
	switch fr := f.GetFrame().(type) {
	case *mpimv1.ServerFrame_Push:
		p := fr.Push
		if p == nil || len(p.Envelope) > 0 || (p.Event != nil && !fastEvent(p.Event)) {
			return buf, false, nil
		}
		var ev []byte
		if p.Event != nil {
			start := len(buf)
			if buf, err = AppendEventJSON(buf, p.Event); err != nil {
				return buf[:start], true, err
			}
			// The event is written again after the push's head: keep a copy.
			ev = append([]byte(nil), buf[start:]...)
			buf = buf[:start]
		}
		out, err = AppendPushJSON(buf, p.InboxId, p.Type, ev, p.Resend)
		return out, true, err
	case *mpimv1.ServerFrame_Response:
		r := fr.Response
		if r == nil {
			return buf, false, nil
		}
		switch res := r.GetResult().(type) {
		case *mpimv1.Response_Send:
			w := jsonWriter{buf: append(buf, `{"response":{`...)}
			w.uint("id", r.Id)
			s := res.Send
			w.open("send")
			w.bytes("eventId", s.GetEventId())
			w.str("conversationId", s.GetConversationId())
			w.uint("seq", s.GetSeq())
			w.int("sentAtMs", s.GetSentAtMs())
			if s.GetDuplicate() {
				w.key("duplicate")
				w.buf = append(w.buf, "true"...)
			}
			w.close()
			w.close()
			out, err = w.end()
			return out, true, err
		case *mpimv1.Response_Ack:
			w := jsonWriter{buf: append(buf, `{"response":{`...)}
			w.uint("id", r.Id)
			w.open("ack")
			w.close()
			w.close()
			out, err = w.end()
			return out, true, err
		}
	}
	return buf, false, nil
}

// jsonWriter appends the members of JSON objects, leaving zero values out
// as protojson does for fields without presence. The first error (a
// string that is not valid UTF-8) sticks; end reports it.
type jsonWriter struct {
	buf   []byte
	comma bool // a member was written in the current object
	err   error
}

func (w *jsonWriter) key(k string) {
	if w.comma {
		w.buf = append(w.buf, ',')
	}
	w.comma = true
	w.buf = append(append(append(w.buf, '"'), k...), '"', ':')
}

// open starts the object member k (written even if it stays empty).
func (w *jsonWriter) open(k string) {
	w.key(k)
	w.buf = append(w.buf, '{')
	w.comma = false
}

// close ends the current object.
func (w *jsonWriter) close() {
	w.buf = append(w.buf, '}')
	w.comma = true
}

// end ends the outermost object and returns the buffer.
func (w *jsonWriter) end() ([]byte, error) {
	w.buf = append(w.buf, '}')
	return w.buf, w.err
}

func (w *jsonWriter) str(k, v string) {
	if v == "" {
		return
	}
	w.key(k)
	w.buf = appendJSONString(w.buf, v)
	if w.err == nil && !utf8.ValidString(v) {
		w.err = errJSONUTF8
	}
}

func (w *jsonWriter) bytes(k string, v []byte) {
	if len(v) == 0 {
		return
	}
	w.key(k)
	w.buf = append(w.buf, '"')
	w.buf = base64.StdEncoding.AppendEncode(w.buf, v)
	w.buf = append(w.buf, '"')
}

func (w *jsonWriter) uint(k string, v uint64) {
	if v == 0 {
		return
	}
	w.key(k)
	w.buf = append(strconv.AppendUint(append(w.buf, '"'), v, 10), '"')
}

func (w *jsonWriter) int(k string, v int64) {
	if v == 0 {
		return
	}
	w.key(k)
	w.buf = append(strconv.AppendInt(append(w.buf, '"'), v, 10), '"')
}

// int32 writes a 32-bit integer as a JSON number, as protojson does.
func (w *jsonWriter) int32(k string, v int32) {
	if v == 0 {
		return
	}
	w.key(k)
	w.buf = strconv.AppendInt(w.buf, int64(v), 10)
}

// appendJSONString appends s quoted as protojson quotes it: '"' and '\'
// escaped, control characters as \b \f \n \r \t or \u00XX, everything
// else as is. Invalid UTF-8 is copied (the caller reports it).
func appendJSONString(buf []byte, s string) []byte {
	const hex = "0123456789abcdef"
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= ' ' && c != '"' && c != '\\' {
			continue
		}
		buf = append(buf, s[start:i]...)
		switch c {
		case '"', '\\':
			buf = append(buf, '\\', c)
		case '\b':
			buf = append(buf, '\\', 'b')
		case '\f':
			buf = append(buf, '\\', 'f')
		case '\n':
			buf = append(buf, '\\', 'n')
		case '\r':
			buf = append(buf, '\\', 'r')
		case '\t':
			buf = append(buf, '\\', 't')
		default:
			buf = append(buf, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	return append(append(buf, s[start:]...), '"')
}
