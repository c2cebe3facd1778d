package readmodel

import (
	"reflect"
	"testing"

	"github.com/mpim/mpim/domain"
)

func TestAttachmentRoundTrips(t *testing.T) {
	for _, a := range []domain.Attachment{
		{URL: "https://img.example/cat.png"},
		{URL: "https://img.example/cat.png", Mime: "image/png", Size: 1234, Name: "cat.png", Width: 640, Height: 480,
			Meta: map[string]string{"alt": "a cat", "": "é\"\n"}},
	} {
		doc, err := EncodeAttachment(a)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeAttachment(doc)
		if err != nil || !reflect.DeepEqual(got, a) {
			t.Errorf("decode(encode(%+v)) = %+v, %v (document %s)", a, got, err, doc)
		}
	}
}

func TestAttachmentDocumentOmitsUnsetFields(t *testing.T) {
	doc, err := EncodeAttachment(domain.Attachment{URL: "u", Size: 3})
	if want := `{"url":"u","size":3}`; err != nil || doc != want {
		t.Fatalf("EncodeAttachment = %s, %v; want %s", doc, err, want)
	}
}

func TestDecodeAttachmentRejectsWhatIsNotADocument(t *testing.T) {
	for _, doc := range []string{"", "[]", `{"url":1}`, "{"} {
		if _, err := DecodeAttachment(doc); err == nil {
			t.Errorf("DecodeAttachment(%q) succeeded", doc)
		}
	}
}

func TestKindsAndRolesRoundTrip(t *testing.T) {
	for k := domain.KindText; k <= domain.KindCustom; k++ {
		if n := KindName(k); n == "" || ParseKind(n) != k {
			t.Errorf("kind %d: name %q parses to %d", k, n, ParseKind(n))
		}
	}
	for r := domain.RoleMember; r <= domain.RoleOwner; r++ {
		if n := RoleName(r); n == "" || ParseRole(n) != r {
			t.Errorf("role %d: name %q parses to %d", r, n, ParseRole(n))
		}
	}
	if KindName(0) != "" || ParseKind("video") != 0 || RoleName(0) != "" || ParseRole("king") != 0 {
		t.Error("an unknown kind or role has a name or parses")
	}
}
