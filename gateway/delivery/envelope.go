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
)

func eventField(name protoreflect.Name) protowire.Number {
	return (*mpimv1.Event)(nil).ProtoReflect().Descriptor().Fields().ByName(name).Number()
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
