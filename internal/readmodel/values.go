package readmodel

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/mpim/mpim/domain"
)

// The values of friend_requests.status.
const (
	RequestPending  = "pending"
	RequestAccepted = "accepted"
	RequestDeclined = "declined"
)

// kindNames and roleNames are the column values of the domain's kinds and
// roles, which number from 1 in this order.
var (
	kindNames = [...]string{"text", "image", "file", "custom"}
	roleNames = [...]string{"member", "admin", "owner"}
)

// KindName returns the messages.kind value of k, or "" for a kind the
// column cannot hold.
func KindName(k domain.MessageKind) string { return nameOf(k, kindNames[:]) }

// ParseKind returns the kind a messages.kind value names, or 0 for an
// unknown one.
func ParseKind(s string) domain.MessageKind { return parse[domain.MessageKind](s, kindNames[:]) }

// RoleName returns the group_members.role value of r, or "" for a role the
// column cannot hold.
func RoleName(r domain.Role) string { return nameOf(r, roleNames[:]) }

// ParseRole returns the role a group_members.role value names, or 0 for an
// unknown one.
func ParseRole(s string) domain.Role { return parse[domain.Role](s, roleNames[:]) }

// nameOf returns the name of the enum value v, numbered from 1 in names.
func nameOf[T ~int](v T, names []string) string {
	if v < 1 || int(v) > len(names) {
		return ""
	}
	return names[v-1]
}

// parse returns the enum value named s in names (numbered from 1), or 0.
func parse[T ~int](s string, names []string) T {
	return T(slices.Index(names, s) + 1)
}

// attachmentDoc is the JSON document of an attachment in
// messages.attachment.
type attachmentDoc struct {
	URL    string            `json:"url"`
	Mime   string            `json:"mime,omitempty"`
	Size   int64             `json:"size,omitempty"`
	Name   string            `json:"name,omitempty"`
	Width  int32             `json:"width,omitempty"`
	Height int32             `json:"height,omitempty"`
	Meta   map[string]string `json:"meta,omitempty"`
}

// EncodeAttachment returns the messages.attachment document of a: a JSON
// object with "url" and, when set, "mime", "size", "name", "width",
// "height" and "meta" (an object of strings).
func EncodeAttachment(a domain.Attachment) (string, error) {
	b, err := json.Marshal(attachmentDoc{URL: a.URL, Mime: a.Mime, Size: a.Size, Name: a.Name, Width: a.Width, Height: a.Height, Meta: a.Meta})
	if err != nil {
		return "", fmt.Errorf("readmodel: encoding an attachment: %w", err)
	}
	return string(b), nil
}

// DecodeAttachment returns the attachment of a messages.attachment
// document. It fails for a document that is not a JSON object of the
// fields EncodeAttachment writes.
func DecodeAttachment(doc string) (domain.Attachment, error) {
	var d attachmentDoc
	if err := json.Unmarshal([]byte(doc), &d); err != nil {
		return domain.Attachment{}, fmt.Errorf("readmodel: decoding an attachment: %w", err)
	}
	return domain.Attachment{URL: d.URL, Mime: d.Mime, Size: d.Size, Name: d.Name, Width: d.Width, Height: d.Height, Meta: d.Meta}, nil
}
