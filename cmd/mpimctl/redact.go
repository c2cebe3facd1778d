package main

import (
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// redacted replaces a secret in printed events.
const redacted = "[redacted]"

// secretFields are the event fields that tail, export and tap print as
// redacted unless --with-secrets is given: a password hash can be attacked
// offline, and a push token (PushTokenRegistered) lets whoever holds the
// app's push credentials reach the device, so neither may land in a
// terminal, a pipe or an export file by default.
var secretFields = map[protoreflect.Name]bool{"password_hash": true, "token": true}

// redact returns m, or a copy of m in which every non-empty secret field, at
// any depth, reads redacted. m itself is never changed.
func redact(m proto.Message) proto.Message {
	if !hasSecret(m.ProtoReflect()) {
		return m
	}
	c := proto.Clone(m)
	redactIn(c.ProtoReflect())
	return c
}

func hasSecret(m protoreflect.Message) bool {
	found := false
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case secretFields[fd.Name()] && fd.Kind() == protoreflect.StringKind:
			found = true
		case fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap():
			found = hasSecret(v.Message())
		}
		return !found
	})
	return found
}

func redactIn(m protoreflect.Message) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case secretFields[fd.Name()] && fd.Kind() == protoreflect.StringKind && !fd.IsList():
			m.Set(fd, protoreflect.ValueOfString(redacted))
		case fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap():
			redactIn(v.Message())
		}
		return true
	})
}
