// Package frame encodes and decodes the frames of the mpim client protocol
// (mpim.v1.ClientFrame and mpim.v1.ServerFrame, proto/mpim/v1/client.proto)
// in the protocol's two encodings: binary protobuf ("mpim.v1.proto") and the
// protobuf JSON mapping in text frames ("mpim.v1.json"). It knows nothing of
// connections; the gateway and clients move the bytes.
//
// Decoding discards unknown fields in both encodings, so a newer client's
// extra fields do not break an older server; a request type the server does
// not know decodes as a ClientFrame without a request. Encodings are safe for
// concurrent use.
package frame

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The WebSocket subprotocols of the two encodings.
const (
	SubprotocolProto = "mpim.v1.proto"
	SubprotocolJSON  = "mpim.v1.json"
)

// Subprotocols lists the subprotocols a server offers, preferred first.
func Subprotocols() []string { return []string{SubprotocolProto, SubprotocolJSON} }

// Encoding is one of the protocol's encodings.
type Encoding int

const (
	// Proto is binary protobuf in binary WebSocket messages.
	Proto Encoding = iota + 1
	// JSON is the protobuf JSON mapping in text WebSocket messages.
	JSON
)

// ForSubprotocol returns the encoding of a negotiated subprotocol.
func ForSubprotocol(s string) (Encoding, bool) {
	switch s {
	case SubprotocolProto:
		return Proto, true
	case SubprotocolJSON:
		return JSON, true
	}
	return 0, false
}

// String returns the encoding's subprotocol.
func (e Encoding) String() string {
	switch e {
	case Proto:
		return SubprotocolProto
	case JSON:
		return SubprotocolJSON
	}
	return "encoding(" + strconv.Itoa(int(e)) + ")"
}

// Binary reports whether the encoding's messages are binary (true) or text
// (false) WebSocket messages.
func (e Encoding) Binary() bool { return e == Proto }

// Decoding errors. Every error DecodeClient and DecodeServer return wraps one
// of them.
var (
	// ErrMessageType: a text message on a binary connection or the reverse.
	ErrMessageType = errors.New("frame: wrong WebSocket message type for the encoding")
	// ErrUTF8: a text message that is not valid UTF-8.
	ErrUTF8 = errors.New("frame: text message is not valid UTF-8")
	// ErrMalformed: bytes that are not a frame of the encoding.
	ErrMalformed = errors.New("frame: malformed frame")
)

var (
	jsonIn   = protojson.UnmarshalOptions{DiscardUnknown: true}
	jsonOut  = protojson.MarshalOptions{}
	protoIn  = proto.UnmarshalOptions{DiscardUnknown: true}
	protoOut = proto.MarshalOptions{}
)

// DecodeClient decodes a client frame from one WebSocket message (binary
// says whether it was a binary message) into f, which it resets first. On an
// error, f.Id holds the request id if the message still revealed one, so the
// error can be answered to that request.
func (e Encoding) DecodeClient(binary bool, data []byte, f *mpimv1.ClientFrame) error {
	proto.Reset(f)
	if err := e.decode(binary, data, f); err != nil {
		f.Reset()
		f.Id = e.peekID(data)
		return err
	}
	return nil
}

// DecodeServer decodes a server frame into f, which it resets first.
func (e Encoding) DecodeServer(binary bool, data []byte, f *mpimv1.ServerFrame) error {
	proto.Reset(f)
	return e.decode(binary, data, f)
}

func (e Encoding) decode(binary bool, data []byte, m proto.Message) error {
	if binary != e.Binary() {
		return fmt.Errorf("%w (%s expects %s messages)", ErrMessageType, e, map[bool]string{true: "binary", false: "text"}[e.Binary()])
	}
	switch e {
	case Proto:
		if err := protoIn.Unmarshal(data, m); err != nil {
			return fmt.Errorf("%w: %w", ErrMalformed, err)
		}
	case JSON:
		if !utf8.Valid(data) {
			return ErrUTF8
		}
		if err := jsonIn.Unmarshal(data, m); err != nil {
			return fmt.Errorf("%w: %w", ErrMalformed, err)
		}
	default:
		return fmt.Errorf("frame: unknown encoding %d", int(e))
	}
	return nil
}

// EncodeServer encodes a server frame: AppendServer to a new buffer.
func (e Encoding) EncodeServer(f *mpimv1.ServerFrame) ([]byte, error) { return e.AppendServer(nil, f) }

// AppendServer encodes a server frame, appending it to buf (which may be
// nil), and returns the extended buffer: a writer that reuses its buffer
// allocates nothing per frame. A binary Push, the most frequent frame by
// far, is encoded directly (the same bytes as proto.Marshal, without its
// reflective size pass over the oneof); in JSON the push, the send
// response and the ack response are written directly (jsonfast.go), with
// what protojson writes.
func (e Encoding) AppendServer(buf []byte, f *mpimv1.ServerFrame) ([]byte, error) {
	switch e {
	case Proto:
		if p := f.GetPush(); p != nil && plainPush(p) {
			return appendPush(buf, p), nil
		}
		return protoOut.MarshalAppend(buf, f)
	case JSON:
		if out, ok, err := appendJSONFast(buf, f); ok {
			return out, err
		}
		return jsonOut.MarshalAppend(buf, f)
	}
	return nil, fmt.Errorf("frame: unknown encoding %d", int(e))
}

// The field numbers appendPush writes, from the generated descriptors.
var (
	fieldFramePush   = fieldNumber(&mpimv1.ServerFrame{}, "push")
	fieldPushInboxID = fieldNumber(&mpimv1.Push{}, "inbox_id")
	fieldPushType    = fieldNumber(&mpimv1.Push{}, "type")
	fieldPushEnv     = fieldNumber(&mpimv1.Push{}, "envelope")
	fieldPushResend  = fieldNumber(&mpimv1.Push{}, "resend")
)

func fieldNumber(m proto.Message, name protoreflect.Name) protowire.Number {
	return m.ProtoReflect().Descriptor().Fields().ByName(name).Number()
}

// plainPush reports whether appendPush encodes p: no decoded event (JSON
// only), no unknown fields, valid UTF-8 strings (else Marshal's error).
func plainPush(p *mpimv1.Push) bool {
	return p.GetEvent() == nil && len(p.ProtoReflect().GetUnknown()) == 0 &&
		utf8.ValidString(p.GetInboxId()) && utf8.ValidString(p.GetType())
}

// appendPush appends the ServerFrame holding push p, fields in number
// order and zero values left out, as proto.Marshal does.
func appendPush(buf []byte, p *mpimv1.Push) []byte {
	n := 0
	if p.InboxId != "" {
		n += protowire.SizeTag(fieldPushInboxID) + protowire.SizeBytes(len(p.InboxId))
	}
	if p.Type != "" {
		n += protowire.SizeTag(fieldPushType) + protowire.SizeBytes(len(p.Type))
	}
	if len(p.Envelope) > 0 {
		n += protowire.SizeTag(fieldPushEnv) + protowire.SizeBytes(len(p.Envelope))
	}
	if p.Resend {
		n += protowire.SizeTag(fieldPushResend) + protowire.SizeVarint(1)
	}
	buf = protowire.AppendTag(buf, fieldFramePush, protowire.BytesType)
	buf = protowire.AppendVarint(buf, uint64(n))
	if p.InboxId != "" {
		buf = protowire.AppendTag(buf, fieldPushInboxID, protowire.BytesType)
		buf = protowire.AppendString(buf, p.InboxId)
	}
	if p.Type != "" {
		buf = protowire.AppendTag(buf, fieldPushType, protowire.BytesType)
		buf = protowire.AppendString(buf, p.Type)
	}
	if len(p.Envelope) > 0 {
		buf = protowire.AppendTag(buf, fieldPushEnv, protowire.BytesType)
		buf = protowire.AppendBytes(buf, p.Envelope)
	}
	if p.Resend {
		buf = protowire.AppendTag(buf, fieldPushResend, protowire.VarintType)
		buf = protowire.AppendVarint(buf, 1)
	}
	return buf
}

// EncodeClient encodes a client frame.
func (e Encoding) EncodeClient(f *mpimv1.ClientFrame) ([]byte, error) { return e.encode(f) }

func (e Encoding) encode(m proto.Message) ([]byte, error) {
	switch e {
	case Proto:
		return protoOut.Marshal(m)
	case JSON:
		return jsonOut.Marshal(m)
	}
	return nil, fmt.Errorf("frame: unknown encoding %d", int(e))
}

// peekID returns the id (field 1) of a client frame that failed to decode,
// or 0.
func (e Encoding) peekID(data []byte) uint64 {
	switch e {
	case Proto:
		for len(data) > 0 {
			num, typ, n := protowire.ConsumeTag(data)
			if n < 0 {
				return 0
			}
			data = data[n:]
			if num == 1 && typ == protowire.VarintType {
				v, n := protowire.ConsumeVarint(data)
				if n < 0 {
					return 0
				}
				return v
			}
			n = protowire.ConsumeFieldValue(num, typ, data)
			if n < 0 {
				return 0
			}
			data = data[n:]
		}
	case JSON:
		var head struct {
			ID json.RawMessage `json:"id"`
		}
		if json.Unmarshal(data, &head) != nil || len(head.ID) == 0 {
			return 0
		}
		s := string(head.ID)
		if uq, err := strconv.Unquote(s); err == nil {
			s = uq
		}
		if v, err := strconv.ParseUint(s, 10, 64); err == nil {
			return v
		}
	}
	return 0
}
