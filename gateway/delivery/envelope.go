package delivery

import (
	"time"

	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The envelope fields the hub touches, by number, from the generated
// descriptor.
var (
	fieldVersion    = eventField("version")
	fieldSeq        = eventField("seq")
	fieldOccurredAt = eventField("occurred_at_ms")
	fieldActor      = eventField("actor")
	fieldActorUser  = actorField("user_id")
	fieldActorDev   = actorField("device_id")
)

func eventField(name protoreflect.Name) protowire.Number {
	return (*mpimv1.Event)(nil).ProtoReflect().Descriptor().Fields().ByName(name).Number()
}

func actorField(name protoreflect.Name) protowire.Number {
	return (*mpimv1.Actor)(nil).ProtoReflect().Descriptor().Fields().ByName(name).Number()
}

// actedBy reports whether the envelope's actor is user's device, scanning
// its top-level fields and the actor's without decoding them (later
// occurrences win, as in a protobuf parser); false if it is malformed.
func actedBy(env []byte, user, device string) bool {
	var actorUser, actorDevice []byte
	ok := scanFields(env, func(num protowire.Number, typ protowire.Type, v []byte) int {
		if num != fieldActor || typ != protowire.BytesType {
			return -1
		}
		actor, m := protowire.ConsumeBytes(v)
		if m < 0 || !scanFields(actor, func(num protowire.Number, typ protowire.Type, v []byte) int {
			if (num != fieldActorUser && num != fieldActorDev) || typ != protowire.BytesType {
				return -1
			}
			s, n := protowire.ConsumeBytes(v)
			if n < 0 {
				return -2
			}
			if num == fieldActorUser {
				actorUser = s
			} else {
				actorDevice = s
			}
			return n
		}) {
			return -2
		}
		return m
	})
	return ok && string(actorUser) == user && string(actorDevice) == device
}

// scanFields walks the fields of an encoded message. visit is given each
// field's number, type and the bytes from its value on, and returns the
// bytes of the value it consumed, -1 to have the value skipped, or another
// negative number for a malformed value. scanFields reports whether the
// whole message was well-formed.
func scanFields(b []byte, visit func(num protowire.Number, typ protowire.Type, v []byte) int) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		m := visit(num, typ, b)
		if m == -1 {
			m = protowire.ConsumeFieldValue(num, typ, b)
		}
		if m < 0 {
			return false
		}
		b = b[m:]
	}
	return true
}

// completeEnvelope appends version and seq to an envelope as the log stores
// it (without them) and returns the result, which may share env's array. A
// protobuf parser takes the last occurrence of a scalar field, so this
// equals setting the fields and marshalling again, without decoding.
func completeEnvelope(env []byte, version, seq uint64) []byte {
	if version != 0 {
		env = protowire.AppendTag(env, fieldVersion, protowire.VarintType)
		env = protowire.AppendVarint(env, version)
	}
	if seq != 0 {
		env = protowire.AppendTag(env, fieldSeq, protowire.VarintType)
		env = protowire.AppendVarint(env, seq)
	}
	return env
}

// occurredAt returns the envelope's occurred_at, scanning its top-level
// fields without decoding them; false if it has none or is malformed.
func occurredAt(env []byte) (time.Time, bool) {
	var ms int64
	found := false
	for len(env) > 0 {
		num, typ, n := protowire.ConsumeTag(env)
		if n < 0 {
			return time.Time{}, false
		}
		env = env[n:]
		if num == fieldOccurredAt && typ == protowire.VarintType {
			v, m := protowire.ConsumeVarint(env)
			if m < 0 {
				return time.Time{}, false
			}
			ms, found = int64(v), true
			env = env[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, env)
		if m < 0 {
			return time.Time{}, false
		}
		env = env[m:]
	}
	if !found || ms <= 0 {
		return time.Time{}, false
	}
	return time.UnixMilli(ms), true
}
