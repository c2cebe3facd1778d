package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/eventjson"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/redis/go-redis/v9"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

const schemaFile = "../../docs/event-line.schema.json"

var (
	schemaOnce sync.Once
	lineSch    *jsonschema.Schema
	schemaErr  error
)

// lineSchema compiles docs/event-line.schema.json (draft 2020-12) with
// formats and content encodings asserted.
func lineSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	schemaOnce.Do(func() {
		c := jsonschema.NewCompiler()
		c.AssertFormat()
		c.AssertContent()
		lineSch, schemaErr = c.Compile(schemaFile)
	})
	if schemaErr != nil {
		t.Fatalf("%s: %v", schemaFile, schemaErr)
	}
	return lineSch
}

func validate(t *testing.T, line []byte) error {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(line))
	if err != nil {
		return err
	}
	return lineSchema(t).Validate(inst)
}

// checkLine requires that a printed line matches the schema and parses.
func checkLine(t *testing.T, what, line string) eventjson.Entry {
	t.Helper()
	if err := validate(t, []byte(line)); err != nil {
		t.Fatalf("%s line does not match %s: %v\n%s", what, schemaFile, err, line)
	}
	e, err := eventjson.Parse([]byte(line))
	if err != nil {
		t.Fatalf("%s line does not parse: %v\n%s", what, err, line)
	}
	return e
}

// fill sets every field of m, at any depth, to a value that is not its
// zero value; a field kind it cannot fill fails the test.
func fill(t *testing.T, m protoreflect.Message, seed int) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		switch {
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			mp.Set(scalar(t, fd.MapKey(), seed).MapKey(), scalar(t, fd.MapValue(), seed))
			mp.Set(scalar(t, fd.MapKey(), seed+1).MapKey(), scalar(t, fd.MapValue(), seed+1))
		case fd.IsList() && fd.Kind() == protoreflect.MessageKind:
			l := m.Mutable(fd).List()
			fill(t, l.AppendMutable().Message(), seed)
		case fd.IsList():
			l := m.Mutable(fd).List()
			l.Append(scalar(t, fd, seed))
			l.Append(scalar(t, fd, seed+1))
		case fd.Kind() == protoreflect.MessageKind:
			fill(t, m.Mutable(fd).Message(), seed)
		default:
			m.Set(fd, scalar(t, fd, seed))
		}
	}
}

func scalar(t *testing.T, fd protoreflect.FieldDescriptor, seed int) protoreflect.Value {
	n := int64(fd.Number()) + int64(seed)
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(fmt.Sprintf("%s-%d \"é\"", fd.Name(), seed))
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte{0, byte(n), 0xff})
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		return protoreflect.ValueOfEnum(vals.Get(vals.Len() - 1).Number())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(-int32(n))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(n))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(1<<60 + n) // beyond a float64's exact integers
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(1<<63 + uint64(n))
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(float64(n) + 0.25)
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(float32(n) + 0.5)
	}
	t.Fatalf("field %s: kind %s not covered by the test's filler", fd.FullName(), fd.Kind())
	return protoreflect.Value{}
}

// everyType returns, for every payload type of the oneof, an event with
// every payload field set and one with an empty payload, with envelopes
// that vary (seq, actor, correlation present or not).
func everyType(t *testing.T) []eventstore.Recorded {
	var out []eventstore.Recorded
	fields := (&mpimv1.Event{}).ProtoReflect().Descriptor().Oneofs().ByName("payload").Fields()
	for i := range fields.Len() {
		for _, full := range []bool{true, false} {
			n := len(out)
			ev := &mpimv1.Event{
				Id:           bytes.Repeat([]byte{byte(n + 1)}, 16),
				Aggregate:    fmt.Sprintf("x/%d", n),
				Version:      uint64(n + 1),
				OccurredAtMs: 1795711331632 + int64(n)*1001,
			}
			if full {
				ev.Seq = uint64(n + 7)
				ev.Actor = &mpimv1.Actor{UserId: "u/01KAAAAAAAAAAAAAAAAAAAAAAA", DeviceId: "phone"}
				ev.CorrelationId, ev.CausationId = "corr", "cause"
			}
			m := ev.ProtoReflect()
			pm := m.NewField(fields.Get(i)).Message()
			if full {
				fill(t, pm, n)
			}
			m.Set(fields.Get(i), protoreflect.ValueOfMessage(pm))
			out = append(out, eventstore.Recorded{Partition: n % 4, Position: eventstore.Position{Ms: uint64(ev.OccurredAtMs), Seq: uint64(n)}, Event: ev})
		}
	}
	return out
}

// TestEveryEventTypeRoundTrips prints an event of every payload type (all
// fields set, and empty) as the JSON line, parses it back and requires the
// same event, and every line to match the schema in docs.
func TestEveryEventTypeRoundTrips(t *testing.T) {
	types := map[string]bool{}
	for _, r := range everyType(t) {
		line, err := eventLine(r, true)
		if err != nil {
			t.Fatal(err)
		}
		e := checkLine(t, "event", string(line))
		if !proto.Equal(e.Event, r.Event) || e.Partition != r.Partition || e.Position != r.Position {
			t.Fatalf("round trip of %s:\nline %s\ngot  %d/%s %v\nwant %d/%s %v", eventjson.TypeOf(r.Event), line, e.Partition, e.Position, e.Event, r.Partition, r.Position, r.Event)
		}
		types[eventjson.TypeOf(r.Event)] = true
	}
	if len(types) != len(eventjson.Types()) || len(types) < 27 {
		t.Fatalf("%d types round-tripped, %d known", len(types), len(eventjson.Types()))
	}
}

// TestEventLineIsStable pins one line byte for byte: a renamed or
// reformatted field is a new format version, not a change of v1.
func TestEventLineIsStable(t *testing.T) {
	ev := &mpimv1.Event{
		Id:        []byte{0x01, 0x9a, 0xe2, 0x3b, 0x4c, 0x5d, 0x6e, 0x7f, 0x80, 0x91, 0xa2, 0xb3, 0xc4, 0xd5, 0xe6, 0xf7},
		Aggregate: "d/01KAAAAAAAAAAAAAAAAAAAAAAA.01KBBBBBBBBBBBBBBBBBBBBBBB", Version: 3, Seq: 2, OccurredAtMs: 1795711331632,
		Actor: &mpimv1.Actor{UserId: "u/01KAAAAAAAAAAAAAAAAAAAAAAA", DeviceId: "phone"},
		Payload: &mpimv1.Event_MessageSent{MessageSent: &mpimv1.MessageSent{ConversationId: "d/01KAAAAAAAAAAAAAAAAAAAAAAA.01KBBBBBBBBBBBBBBBBBBBBBBB",
			SenderId: "u/01KAAAAAAAAAAAAAAAAAAAAAAA", ClientMsgId: "m1", Kind: mpimv1.MessageKind_MESSAGE_KIND_TEXT, Text: "hi <b>&amp;</b> é", SentAtMs: 1795711331632}},
	}
	line, err := eventLine(eventstore.Recorded{Partition: 5, Position: eventstore.Position{Ms: 1795711331632, Seq: 0}, Event: ev}, false)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"format":"mpim.event.v1","partition":5,"position":"1795711331632-0","event_id":"01KBH3PK2XDSZR14D2PF2DBSQQ",` +
		`"type":"MessageSent","aggregate":"d/01KAAAAAAAAAAAAAAAAAAAAAAA.01KBBBBBBBBBBBBBBBBBBBBBBB","version":3,"seq":2,` +
		`"occurred_at":"2026-11-26T16:42:11.632Z","occurred_at_ms":1795711331632,"actor":{"user_id":"u/01KAAAAAAAAAAAAAAAAAAAAAAA","device_id":"phone"},` +
		`"payload":{"conversation_id":"d/01KAAAAAAAAAAAAAAAAAAAAAAA.01KBBBBBBBBBBBBBBBBBBBBBBB","sender_id":"u/01KAAAAAAAAAAAAAAAAAAAAAAA",` +
		`"client_msg_id":"m1","kind":"MESSAGE_KIND_TEXT","text":"hi <b>&amp;</b> é","sent_at_ms":"1795711331632"}}`
	if string(line) != want {
		t.Fatalf("line\n%s\nwant\n%s", line, want)
	}
	checkLine(t, "pinned", want)
}

// TestSecretsAreRedactedInLines: a password hash reads [redacted] in the
// line unless secrets are asked for, and the event printed is not changed.
func TestSecretsAreRedactedInLines(t *testing.T) {
	ev := &mpimv1.Event{Id: make([]byte, 16), Aggregate: "u/a", Version: 1,
		Payload: &mpimv1.Event_PasswordChanged{PasswordChanged: &mpimv1.PasswordChanged{PasswordHash: "$argon2id$secret"}}}
	r := eventstore.Recorded{Event: ev}
	line, err := eventLine(r, false)
	if err != nil {
		t.Fatal(err)
	}
	if e := checkLine(t, "redacted", string(line)); e.Event.GetPasswordChanged().GetPasswordHash() != redacted {
		t.Fatalf("redacted line: %s", line)
	}
	if ev.GetPasswordChanged().GetPasswordHash() != "$argon2id$secret" {
		t.Fatal("redaction changed the event")
	}
	line, _ = eventLine(r, true)
	if e := checkLine(t, "with secrets", string(line)); !proto.Equal(e.Event, ev) {
		t.Fatalf("line with secrets: %s", line)
	}
}

// TestPushTokensAreRedactedInLines: a push token reads [redacted] in the
// line unless secrets are asked for; the device, platform and app id stay.
func TestPushTokensAreRedactedInLines(t *testing.T) {
	ev := &mpimv1.Event{Id: make([]byte, 16), Aggregate: "u/a", Version: 2,
		Payload: &mpimv1.Event_PushTokenRegistered{PushTokenRegistered: &mpimv1.PushTokenRegistered{
			DeviceId: "phone", Platform: "apns", Token: "device-token-123", AppId: "com.example.chat"}}}
	r := eventstore.Recorded{Event: ev}
	line, err := eventLine(r, false)
	if err != nil {
		t.Fatal(err)
	}
	want := &mpimv1.PushTokenRegistered{DeviceId: "phone", Platform: "apns", Token: redacted, AppId: "com.example.chat"}
	if e := checkLine(t, "redacted", string(line)); !proto.Equal(e.Event.GetPushTokenRegistered(), want) {
		t.Fatalf("redacted line: %s", line)
	}
	if ev.GetPushTokenRegistered().GetToken() != "device-token-123" {
		t.Fatal("redaction changed the event")
	}
	line, _ = eventLine(r, true)
	if e := checkLine(t, "with secrets", string(line)); !proto.Equal(e.Event, ev) {
		t.Fatalf("line with secrets: %s", line)
	}
}

// TestUndecodableLine: an entry that cannot be decoded prints its position,
// the reason and the stored bytes, which parse back.
func TestUndecodableLine(t *testing.T) {
	var out bytes.Buffer
	p := &printer{w: &out, json: true}
	raw := []byte{0x0a, 0xff, 0x00, 0x12}
	p.printBad(&eventstore.DecodeError{Partition: 3, Position: eventstore.Position{Ms: 12, Seq: 4}, Raw: raw, Err: errors.New("proto: cannot parse")})
	p.printBad(&eventstore.DecodeError{Partition: 0, Position: eventstore.Position{Ms: 1}, Err: errors.New("entry lacks fields v, s, d")})
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	e := checkLine(t, "undecodable", lines[0])
	if e.Event != nil || e.Partition != 3 || e.Position.String() != "12-4" || e.Error != "proto: cannot parse" || !bytes.Equal(e.Raw, raw) {
		t.Fatalf("undecodable line %s parsed as %+v", lines[0], e)
	}
	if e := checkLine(t, "undecodable without bytes", lines[1]); len(e.Raw) != 0 || e.Error == "" {
		t.Fatalf("undecodable line %s parsed as %+v", lines[1], e)
	}
}

// TestBadLinesAreRefused: lines the format does not allow fail both the
// schema in docs and the parser (so neither is vacuous).
func TestBadLinesAreRefused(t *testing.T) {
	good, err := eventLine(everyType(t)[0], true)
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(map[string]any)) string {
		var m map[string]any
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, _ := json.Marshal(m)
		return string(b)
	}
	cases := map[string]string{
		"no event_id":           edit(func(m map[string]any) { delete(m, "event_id") }),
		"event_id of 25 chars":  edit(func(m map[string]any) { m["event_id"] = m["event_id"].(string)[1:] }),
		"base64 event_id":       edit(func(m map[string]any) { m["event_id"] = "AQEBAQEBAQEBAQEBAQEBAQ==" }),
		"format v2":             edit(func(m map[string]any) { m["format"] = "mpim.event.v2" }),
		"no format":             edit(func(m map[string]any) { delete(m, "format") }),
		"version 0":             edit(func(m map[string]any) { m["version"] = 0 }),
		"no payload":            edit(func(m map[string]any) { delete(m, "payload") }),
		"payload not object":    edit(func(m map[string]any) { m["payload"] = "x" }),
		"negative partition":    edit(func(m map[string]any) { m["partition"] = -1 }),
		"bad position":          edit(func(m map[string]any) { m["position"] = "12" }),
		"time without ms":       edit(func(m map[string]any) { m["occurred_at"] = "2026-11-26T16:42:11Z" }),
		"error and event":       edit(func(m map[string]any) { m["error"] = "x" }),
		"undecodable and event": edit(func(m map[string]any) { m["error"], m["raw_base64"] = "x", "" }),
		"undecodable bad b64":   `{"format":"mpim.event.v1","partition":1,"position":"1-0","error":"x","raw_base64":"!!"}`,
		"undecodable no raw":    `{"format":"mpim.event.v1","partition":1,"position":"1-0","error":"x"}`,
		"not an object":         `[1]`,
	}
	for name, line := range cases {
		if err := validate(t, []byte(line)); err == nil {
			t.Errorf("%s: the schema accepts %s", name, line)
		}
		if _, err := eventjson.Parse([]byte(line)); err == nil {
			t.Errorf("%s: Parse accepts %s", name, line)
		}
	}
	// The parser also checks what a schema cannot: both times agree, the
	// type is known.
	for name, line := range map[string]string{
		"times disagree": edit(func(m map[string]any) { m["occurred_at"] = "2020-01-01T00:00:00.000Z" }),
		"unknown type":   edit(func(m map[string]any) { m["type"] = "SomethingNew" }),
	} {
		if _, err := eventjson.Parse([]byte(line)); err == nil {
			t.Errorf("%s: Parse accepts %s", name, line)
		}
	}
	// Additive changes: unknown fields are accepted by both.
	extra := edit(func(m map[string]any) { m["added_later"] = 1; m["payload"].(map[string]any)["new_field"] = "x" })
	if err := validate(t, []byte(extra)); err != nil {
		t.Errorf("the schema refuses an added field: %v", err)
	}
	if _, err := eventjson.Parse([]byte(extra)); err != nil {
		t.Errorf("Parse refuses an added field: %v", err)
	}
}

// TestSchemaFileParsesAndIsDocumented: the schema in docs compiles as draft
// 2020-12, and docs/analytics-format.md describes each of its fields and
// names every event type.
func TestSchemaFileParsesAndIsDocumented(t *testing.T) {
	lineSchema(t)
	b, err := os.ReadFile(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Schema string `json:"$schema"`
		Defs   map[string]struct {
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	if s.Schema != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("$schema %q, want draft 2020-12", s.Schema)
	}
	doc, err := os.ReadFile("../../docs/analytics-format.md")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, def := range []string{"event", "undecodable"} {
		for field := range s.Defs[def].Properties {
			n++
			if !regexp.MustCompile("(?m)^\\| `" + field + "` \\|").Match(doc) {
				t.Errorf("docs/analytics-format.md has no table row for field %q", field)
			}
		}
	}
	if n < 18 {
		t.Errorf("%d fields found in %s", n, schemaFile)
	}
	for _, typ := range eventjson.Types() {
		if !strings.Contains(string(doc), "`"+typ+"`") {
			t.Errorf("docs/analytics-format.md does not name event type %s", typ)
		}
	}
	// The examples (an event folded over lines, an undecodable entry) are
	// lines of the format.
	examples := regexp.MustCompile("(?s)```json\n(.*?)```").FindAllStringSubmatch(string(doc), -1)
	if len(examples) != 2 {
		t.Fatalf("docs/analytics-format.md has %d JSON examples, want 2", len(examples))
	}
	kinds := map[bool]int{}
	for _, ex := range examples {
		line := regexp.MustCompile(`\n\s*`).ReplaceAllString(strings.TrimSpace(ex[1]), "")
		kinds[checkLine(t, "docs/analytics-format.md example", line).Event != nil]++
	}
	if kinds[true] != 1 || kinds[false] != 1 {
		t.Errorf("docs/analytics-format.md examples: %d events, %d undecodable entries, want one of each", kinds[true], kinds[false])
	}
}

// TestCommandsPrintUndecodableEntries: export, tail --json and tap print an
// undecodable log entry as its line, with the stored bytes, between the
// events around it.
func TestCommandsPrintUndecodableEntries(t *testing.T) {
	base := seed(t)
	rdb := redis.NewClient(&redis.Options{Addr: base[1]})
	defer rdb.Close()
	garbage := "\xff\xfegarbage"
	// The garbage goes after the events of the fullest partition, so one read
	// returns events and then the undecodable entry: their order is checked.
	badPart, most := 0, int64(-1)
	for p := range 4 { // seed's partition count
		if n, _ := rdb.XLen(context.Background(), fmt.Sprintf("%s{p%d}:log", base[3], p)).Result(); n > most {
			badPart, most = p, n
		}
	}
	if most < 1 {
		t.Fatalf("the seeded log has no events")
	}
	badID, err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: fmt.Sprintf("%s{p%d}:log", base[3], badPart), Values: []string{"v", "1", "s", "0", "d", garbage}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]string{{"export"}, {"tail", "--from-start", "--json", "--limit", "10"}, {"tap", "--group", "undecodable", "--limit", "10"}} {
		out, _, err := ctl(t, append(cmd, base...)...)
		if err != nil {
			t.Fatalf("%s: %v", cmd[0], err)
		}
		events, bad := 0, 0
		last := map[int]eventstore.Position{} // each partition's lines come in log order
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			e := checkLine(t, cmd[0], l)
			if prev, ok := last[e.Partition]; ok && e.Position.Compare(prev) <= 0 {
				t.Errorf("%s: partition %d printed %s after %s", cmd[0], e.Partition, e.Position, prev)
			}
			last[e.Partition] = e.Position
			if e.Event != nil {
				events++
				continue
			}
			bad++
			if e.Partition != badPart || e.Position.String() != badID || string(e.Raw) != garbage || e.Error == "" {
				t.Errorf("%s: undecodable line %s", cmd[0], l)
			}
		}
		if events != 9 || bad != 1 {
			t.Errorf("%s printed %d events and %d undecodable entries, want 9 and 1:\n%s", cmd[0], events, bad, out)
		}
	}
}
