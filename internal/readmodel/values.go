package readmodel

import (
	"encoding/json"
	"fmt"

	"github.com/mpim/mpim/domain"
)

// The values of friend_requests.status.
const (
	RequestPending  = "pending"
	RequestAccepted = "accepted"
	RequestDeclined = "declined"
)

// KindName returns the messages.kind value of k, or "" for a kind the
// column cannot hold.
func KindName(k domain.MessageKind) string {
	switch k {
	case domain.KindText:
		return "text"
	case domain.KindImage:
		return "image"
	case domain.KindFile:
		return "file"
	case domain.KindCustom:
		return "custom"
	}
	return ""
}

// ParseKind returns the kind a messages.kind value names, or 0 for an
// unknown one.
func ParseKind(s string) domain.MessageKind {
	for k := domain.KindText; k <= domain.KindCustom; k++ {
		if KindName(k) == s {
			return k
		}
	}
	return 0
}

// RoleName returns the group_members.role value of r, or "" for a role the
// column cannot hold.
func RoleName(r domain.Role) string {
	switch r {
	case domain.RoleMember:
		return "member"
	case domain.RoleAdmin:
		return "admin"
	case domain.RoleOwner:
		return "owner"
	}
	return ""
}

// ParseRole returns the role a group_members.role value names, or 0 for an
// unknown one.
func ParseRole(s string) domain.Role {
	for r := domain.RoleMember; r <= domain.RoleOwner; r++ {
		if RoleName(r) == s {
			return r
		}
	}
	return 0
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
