package codec_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/proto/codec"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"google.golang.org/protobuf/proto"
)

var (
	alice = domain.UserID("u/01J0000000000000000000000A")
	bob   = domain.UserID("u/01J0000000000000000000000B")
	when  = time.UnixMilli(1_760_000_000_123).UTC()
)

// samples holds one event of every type, with every field set.
var samples = []domain.Event{
	domain.UserRegistered{User: alice, Username: "alice", PasswordHash: "$argon2id$x", DisplayName: "Alice"},
	domain.UsernameClaimed{Username: "alice", User: alice},
	domain.ProfileUpdated{DisplayName: "A", AvatarURL: "https://a/b.png"},
	domain.PasswordChanged{PasswordHash: "$argon2id$y"},
	domain.DeviceLoggedIn{Device: "phone", Platform: "ios"},
	domain.DeviceLoggedOut{Device: "phone"},
	domain.FriendRequested{From: alice, To: bob, Message: "hi"},
	domain.FriendRequestAccepted{From: alice, By: bob},
	domain.FriendRequestDeclined{From: alice, By: bob, At: when},
	domain.FriendRemoved{By: alice, Other: bob},
	domain.UserBlocked{Blocker: alice, Blocked: bob},
	domain.UserUnblocked{Blocker: alice, Blocked: bob},
	domain.GroupCreated{Group: "g/01J0000000000000000000000G", Name: "g", Owner: alice, Members: []domain.UserID{bob}, Open: true},
	domain.MemberAdded{User: bob, By: alice},
	domain.MemberJoined{User: bob},
	domain.MemberLeft{User: bob},
	domain.MemberKicked{User: bob, By: alice},
	domain.MemberRoleChanged{User: bob, By: alice, Role: domain.RoleAdmin},
	domain.GroupRenamed{Name: "new", By: alice},
	domain.MemberMuted{User: bob, By: alice, Until: when},
	domain.MemberUnmuted{User: bob, By: alice},
	domain.MemberUnbanned{User: bob, By: alice},
	domain.GroupDissolved{By: alice},
	domain.GroupHistoryVisibilityChanged{Visible: true, By: alice},
	domain.MessageSent{Conversation: domain.DirectConversation(alice, bob), Seq: 9, Sender: alice, Device: "phone", ClientMsgID: "c1", Kind: domain.KindImage, Text: "look",
		Attachment: &domain.Attachment{URL: "https://x/y.jpg", Mime: "image/jpeg", Size: 10, Name: "y.jpg", Width: 3, Height: 4, Meta: map[string]string{"k": "v"}}, SentAt: when},
	domain.MessageRecalled{Seq: 9, By: alice, Sender: alice, SentAt: when},
	domain.MessageEdited{Seq: 9, By: alice, Text: "edited"},
	domain.ConversationRead{User: bob, Conversation: domain.DirectConversation(alice, bob), Seq: 9},
	domain.MessageDeletedForMe{User: bob, Conversation: domain.DirectConversation(alice, bob), Seq: 9},
	domain.PushTokenRegistered{Device: "phone", PushToken: domain.PushToken{Platform: domain.PushAPNs, Token: "abc123", AppID: "com.example.chat"}},
	domain.PushTokenRemoved{Device: "phone"},
	domain.ConversationMuted{User: bob, Conversation: domain.DirectConversation(alice, bob), Until: when},
	domain.ConversationUnmuted{User: bob, Conversation: domain.DirectConversation(alice, bob)},
}

func TestEveryEventRoundTrips(t *testing.T) {
	for _, e := range samples {
		t.Run(e.EventType(), func(t *testing.T) {
			meta := codec.Meta{ID: [16]byte{1, 2, 3}, Aggregate: "agg", OccurredAt: when, ActorUser: alice, ActorDevice: "phone", CorrelationID: "corr", CausationID: "cause"}
			env, err := codec.Envelope(meta, e)
			if err != nil {
				t.Fatal(err)
			}
			b, err := proto.Marshal(env)
			if err != nil {
				t.Fatal(err)
			}
			var back mpimv1.Event
			if err := proto.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if ms, ok := e.(domain.MessageSent); ok {
				back.Seq = ms.Seq // the store assigns the seq
			}
			gotMeta, got, err := codec.Decode(&back)
			if err != nil {
				t.Fatal(err)
			}
			meta.Seq = back.Seq
			if gotMeta != meta {
				t.Errorf("meta %+v, want %+v", gotMeta, meta)
			}
			if !reflect.DeepEqual(got, e) {
				t.Errorf("decoded %#v, want %#v", got, e)
			}
		})
	}
}

// Every payload of the wire envelope has a domain event, and back.
func TestEveryWirePayloadIsCovered(t *testing.T) {
	covered := map[string]bool{}
	for _, e := range samples {
		env, err := codec.Envelope(codec.Meta{Aggregate: "a"}, e)
		if err != nil {
			t.Fatal(err)
		}
		covered[string(env.ProtoReflect().WhichOneof(env.ProtoReflect().Descriptor().Oneofs().ByName("payload")).Name())] = true
	}
	fields := (&mpimv1.Event{}).ProtoReflect().Descriptor().Oneofs().ByName("payload").Fields()
	for i := range fields.Len() {
		if name := string(fields.Get(i).Name()); !covered[name] {
			t.Errorf("wire payload %s has no domain event sample", name)
		}
	}
	if fields.Len() != len(samples) {
		t.Errorf("%d wire payloads, %d domain samples", fields.Len(), len(samples))
	}
}

func TestDecodeRefusesUnknownPayload(t *testing.T) {
	if _, _, err := codec.Decode(&mpimv1.Event{Id: make([]byte, 16), Aggregate: "a"}); err == nil {
		t.Fatal("envelope without payload decoded")
	}
	if _, _, err := codec.Decode(&mpimv1.Event{Id: make([]byte, 3), Aggregate: "a", Payload: &mpimv1.Event_MemberLeft{MemberLeft: &mpimv1.MemberLeft{}}}); err == nil {
		t.Fatal("envelope with a short id decoded")
	}
}
