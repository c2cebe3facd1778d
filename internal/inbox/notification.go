package inbox

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/streamid"
)

// MaxNotificationBytes bounds an encoded Notification: a projector carries
// entries only while the payload stays within it (heads after that), and a
// gateway refuses a larger payload.
const MaxNotificationBytes = 1 << 20

// Notification is the payload published on a gateway's channel: the users
// connected to that gateway whose inboxes received entries in one projector
// batch. For each user it carries either the head only (Last) or, in
// addition, the entries themselves with the id of the inbox entry before
// the first of them (Prev), so a gateway whose device was given exactly up
// to Prev pushes them without reading the inbox back; any other device
// reads its inbox from its position. Last lets a gateway skip the read for
// a device that has already seen that entry.
type Notification struct {
	Users []Head
}

// Head says that User's inbox holds new entries up to Last (an inbox stream
// entry id). When Entries is not empty they are the user's entries of the
// batch, in inbox order, the last one with id Last, and Prev is the id of
// the entry immediately before the first of them in the inbox ("0-0" if
// there was none): no other entry lies between Prev and Last.
type Head struct {
	User    domain.UserID
	Last    string
	Prev    string
	Entries []Carried
}

// Carried is one inbox entry carried by a notification: its inbox id and its
// fields.
type Carried struct {
	ID string
	Entry
}

// Size is the bytes h adds to an encoded notification.
func (h *Head) Size() int {
	n := len(h.User) + len(h.Last) + 2
	if len(h.Entries) == 0 {
		return n
	}
	n += len(h.Prev) + 2 + digits(uint64(len(h.Entries)))
	for i := range h.Entries {
		c := &h.Entries[i]
		n += len(c.ID) + len(c.Type) + digits(uint64(c.Partition)) + len(c.Position) + digits(c.Version) + digits(c.Seq) +
			digits(uint64(len(c.Envelope))) + 7 + len(c.EventID) + len(c.Envelope)
	}
	return n
}

// digits is the length of v in decimal.
func digits(v uint64) int {
	n := 1
	for ; v >= 10; v /= 10 {
		n++
	}
	return n
}

// Encode returns the payload: per head a line "<user> <last>\n", or, when
// it carries entries, "<user> <last> <prev> <n>\n" followed by n records,
// each a line "<id> <type> <partition>:<position> <version> <seq> <len>\n",
// the 16 bytes of the event id and the len bytes of the envelope.
func (n Notification) Encode() []byte {
	return n.AppendEncoded(make([]byte, 0, n.Size()))
}

// Size is the length of the payload Encode returns.
func (n Notification) Size() int {
	size := 0
	for i := range n.Users {
		size += n.Users[i].Size()
	}
	return size
}

// AppendEncoded appends the payload Encode returns to b and returns the
// extended slice: a caller that reuses b (a pooled buffer) allocates
// nothing once b has grown to its notifications' size.
func (n Notification) AppendEncoded(b []byte) []byte {
	b = slices.Grow(b, n.Size())
	for _, h := range n.Users {
		b = append(b, h.User...)
		b = append(b, ' ')
		b = append(b, h.Last...)
		if len(h.Entries) == 0 {
			b = append(b, '\n')
			continue
		}
		b = append(b, ' ')
		b = append(b, h.Prev...)
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(len(h.Entries)), 10)
		b = append(b, '\n')
		for _, c := range h.Entries {
			b = append(b, c.ID...)
			b = append(b, ' ')
			b = append(b, c.Type...)
			b = append(b, ' ')
			b = strconv.AppendInt(b, int64(c.Partition), 10)
			b = append(b, ':')
			b = append(b, c.Position...)
			b = append(b, ' ')
			b = strconv.AppendUint(b, c.Version, 10)
			b = append(b, ' ')
			b = strconv.AppendUint(b, c.Seq, 10)
			b = append(b, ' ')
			b = strconv.AppendInt(b, int64(len(c.Envelope)), 10)
			b = append(b, '\n')
			b = append(b, c.EventID[:]...)
			b = append(b, c.Envelope...)
		}
	}
	return b
}

// DecodeNotification parses a payload made by Encode. It fails on a payload
// over MaxNotificationBytes or a malformed head or record; the heads before
// the bad one are returned with the error. Carried envelopes alias payload.
func DecodeNotification(payload []byte) (Notification, error) {
	var n Notification
	if len(payload) > MaxNotificationBytes {
		return n, fmt.Errorf("inbox: notification of %d bytes is over %d", len(payload), MaxNotificationBytes)
	}
	for len(payload) > 0 {
		h, rest, err := decodeHead(payload)
		if err != nil {
			return n, err
		}
		payload = rest
		n.Users = append(n.Users, h)
	}
	return n, nil
}

// cutLine returns the '\n'-terminated line at the start of b and the rest.
func cutLine(b []byte) (line, rest []byte, err error) {
	line, rest, ok := bytes.Cut(b, []byte{'\n'})
	if !ok {
		return nil, nil, fmt.Errorf("inbox: notification line %q is not terminated", line[:min(len(line), 80)])
	}
	return line, rest, nil
}

// malformedLine is the error of a notification line that does not parse.
func malformedLine(what string, line []byte) error {
	return fmt.Errorf("inbox: malformed notification %s line %q", what, line[:min(len(line), 80)])
}

// splitFields splits s at each ' ' into f and returns the number of
// fields, len(f)+1 when s has more than len(f). The fields alias s.
func splitFields(s string, f []string) int {
	for n := range f {
		i := strings.IndexByte(s, ' ')
		if i < 0 {
			f[n] = s
			return n + 1
		}
		f[n], s = s[:i], s[i+1:]
	}
	return len(f) + 1
}

// decodeHead decodes one head with its records and returns the rest of b.
// The head's strings share one allocation, its line's; each record's
// strings share its own line's.
func decodeHead(b []byte) (Head, []byte, error) {
	line, b, err := cutLine(b)
	if err != nil {
		return Head{}, nil, err
	}
	var f [4]string
	nf := splitFields(string(line), f[:])
	if (nf != 2 && nf != 4) || len(f[0]) == 0 {
		return Head{}, nil, malformedLine("head", line)
	}
	h := Head{User: domain.UserID(f[0]), Last: f[1]}
	last, err := streamid.Parse(h.Last)
	if err != nil {
		return Head{}, nil, malformedLine("head", line)
	}
	if nf == 2 {
		return h, b, nil
	}
	h.Prev = f[2]
	prev, err := streamid.Parse(h.Prev)
	count, cerr := strconv.Atoi(f[3])
	if err != nil || cerr != nil || count < 1 || count > len(b) {
		return Head{}, nil, malformedLine("head", line)
	}
	h.Entries = make([]Carried, count)
	for i := range h.Entries {
		c := &h.Entries[i]
		var id streamid.ID
		if b, id, err = decodeCarried(b, c); err != nil {
			return Head{}, nil, fmt.Errorf("inbox: entry %d of %s in a notification: %w", i, h.User, err)
		}
		if !id.After(prev) {
			return Head{}, nil, fmt.Errorf("inbox: notification entry %s of %s is not after %s", c.ID, h.User, prev)
		}
		prev = id
	}
	if prev != last {
		return Head{}, nil, fmt.Errorf("inbox: notification of %s ends at %s, not at its last %s", h.User, prev, h.Last)
	}
	return h, b, nil
}

// decodeCarried decodes one record into c and returns the rest of b and
// the record's parsed inbox id.
func decodeCarried(b []byte, c *Carried) ([]byte, streamid.ID, error) {
	line, b, err := cutLine(b)
	if err != nil {
		return nil, streamid.ID{}, err
	}
	var f [6]string
	if splitFields(string(line), f[:]) != len(f) {
		return nil, streamid.ID{}, malformedLine("record", line)
	}
	size, err := strconv.Atoi(f[5])
	id, perr := streamid.Parse(f[0])
	if perr != nil || err != nil || size < 0 || size > len(b)-16 {
		return nil, streamid.ID{}, malformedLine("record", line)
	}
	c.ID = f[0]
	if err := c.parseMeta(f[1], f[2], f[3], f[4]); err != nil {
		return nil, streamid.ID{}, err
	}
	copy(c.EventID[:], b[:16])
	c.Envelope = b[16 : 16+size : 16+size]
	return b[16+size:], id, nil
}
