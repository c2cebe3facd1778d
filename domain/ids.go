package domain

import (
	"fmt"
	"strings"
)

// Aggregate ids are strings with a kind prefix. User and group ids embed a
// ULID (26 characters, Crockford base32) minted by the caller; domain does not
// generate them so it stays deterministic and standard-library only.
//
//	user          u/<ulid>
//	username      n/<normalised name>
//	relationship  r/<ulid-a>.<ulid-b>   (a < b)
//	group         g/<ulid>
//	conversation  d/<ulid-a>.<ulid-b>   (direct, a < b) or c/<group ulid> (group)
//	reader        m/<ulid>              (a user's read markers and deletions)
type (
	UserID         string
	DeviceID       string
	GroupID        string
	ConversationID string
)

// Role is a group member's role.
type Role int

const (
	RoleMember Role = iota + 1
	RoleAdmin
	RoleOwner
)

func (r Role) String() string {
	switch r {
	case RoleMember:
		return "member"
	case RoleAdmin:
		return "admin"
	case RoleOwner:
		return "owner"
	}
	return fmt.Sprintf("role(%d)", int(r))
}

// MessageKind is what a message carries.
type MessageKind int

const (
	KindText MessageKind = iota + 1
	KindImage
	KindFile
	KindCustom
)

// Attachment is the typed payload of a non-text message: a URL plus metadata.
type Attachment struct {
	URL    string
	Mime   string
	Size   int64
	Name   string
	Width  int32
	Height int32
	Meta   map[string]string
}

// ulidLen is the length of a ULID in its text form.
const ulidLen = 26

// ValidULID reports whether s looks like a ULID in text form.
func ValidULID(s string) bool {
	if len(s) != ulidLen || s[0] > '7' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9', c >= 'A' && c <= 'Z' && c != 'I' && c != 'L' && c != 'O' && c != 'U':
		default:
			return false
		}
	}
	return true
}

// NewUserID builds a user id from a ULID string.
func NewUserID(ulid string) (UserID, error) {
	if !ValidULID(ulid) {
		return "", Errorf(EInvalid, "domain: invalid user ulid %q", ulid)
	}
	return UserID("u/" + ulid), nil
}

// NewGroupID builds a group id from a ULID string.
func NewGroupID(ulid string) (GroupID, error) {
	if !ValidULID(ulid) {
		return "", Errorf(EInvalid, "domain: invalid group ulid %q", ulid)
	}
	return GroupID("g/" + ulid), nil
}

// Valid reports whether id is a well-formed user id.
func (id UserID) Valid() bool {
	return strings.HasPrefix(string(id), "u/") && ValidULID(string(id[2:]))
}

// Valid reports whether id is a well-formed group id.
func (id GroupID) Valid() bool {
	return strings.HasPrefix(string(id), "g/") && ValidULID(string(id[2:]))
}

// ULID returns the ULID part of the id.
func (id UserID) ULID() string { return strings.TrimPrefix(string(id), "u/") }

// ULID returns the ULID part of the id.
func (id GroupID) ULID() string { return strings.TrimPrefix(string(id), "g/") }

// pair orders two users so both sides compute the same key.
func pair(a, b UserID) string {
	x, y := a.ULID(), b.ULID()
	if y < x {
		x, y = y, x
	}
	return x + "." + y
}

// PairKey is the partition key shared by the relationship aggregate and the
// direct conversation of two users, so that a block and the messages it
// forbids are ordered in one partition.
func PairKey(a, b UserID) string { return pair(a, b) }

// RelationshipID is the id of the contacts aggregate of two users.
func RelationshipID(a, b UserID) string { return "r/" + pair(a, b) }

// DirectConversation is the conversation id of two users; both compute the same.
func DirectConversation(a, b UserID) ConversationID { return ConversationID("d/" + pair(a, b)) }

// GroupConversation is the conversation id of a group.
func GroupConversation(g GroupID) ConversationID { return ConversationID("c/" + g.ULID()) }

// UsernameAggregate is the id of the aggregate that reserves a username.
func UsernameAggregate(normalised string) string { return "n/" + normalised }

// ReaderID is the id of a user's reader aggregate.
func ReaderID(u UserID) string { return "m/" + u.ULID() }

// IsGroup reports whether the conversation belongs to a group.
func (c ConversationID) IsGroup() bool { return strings.HasPrefix(string(c), "c/") }

// Valid reports whether c is a well-formed conversation id: "c/<ulid>", or
// "d/<ulid-a>.<ulid-b>" with a < b as DirectConversation builds it (so a pair
// has exactly one direct conversation id).
func (c ConversationID) Valid() bool {
	if g, ok := c.Group(); ok {
		return g.Valid()
	}
	a, b, ok := c.Members()
	return ok && a < b
}

// Group returns the group of a group conversation.
func (c ConversationID) Group() (GroupID, bool) {
	if !c.IsGroup() {
		return "", false
	}
	return GroupID("g/" + c[2:]), true
}

// Members returns the two users of a direct conversation.
func (c ConversationID) Members() (UserID, UserID, bool) {
	s := string(c)
	if !strings.HasPrefix(s, "d/") {
		return "", "", false
	}
	a, b, ok := strings.Cut(s[2:], ".")
	if !ok || !ValidULID(a) || !ValidULID(b) {
		return "", "", false
	}
	return UserID("u/" + a), UserID("u/" + b), true
}

// PartitionKey is the key whose hash picks the conversation's partition: the
// pair for direct conversations, the group id for group conversations.
func (c ConversationID) PartitionKey() string {
	if g, ok := c.Group(); ok {
		return string(g)
	}
	return strings.TrimPrefix(string(c), "d/")
}
