package inbox

import (
	"bytes"
	"fmt"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/streamid"
)

// Notification is the payload published on a gateway's channel: the users
// connected to that gateway whose inboxes received entries in one projector
// batch. A gateway reads each listed inbox from its devices' cursors; Last
// lets it skip the read for a device that has already seen that entry.
type Notification struct {
	Users []Head
}

// Head says that User's inbox holds new entries up to Last (an inbox stream
// entry id).
type Head struct {
	User domain.UserID
	Last string
}

// Encode returns the payload: one line "<user> <last>" per head, each ended
// by '\n'.
func (n Notification) Encode() []byte {
	size := 0
	for _, h := range n.Users {
		size += len(h.User) + len(h.Last) + 2
	}
	b := make([]byte, 0, size)
	for _, h := range n.Users {
		b = append(b, h.User...)
		b = append(b, ' ')
		b = append(b, h.Last...)
		b = append(b, '\n')
	}
	return b
}

// DecodeNotification parses a payload made by Encode. It fails on a
// malformed line.
func DecodeNotification(payload []byte) (Notification, error) {
	var n Notification
	for len(payload) > 0 {
		line, rest, ok := bytes.Cut(payload, []byte{'\n'})
		if !ok {
			return n, fmt.Errorf("inbox: notification line %q is not terminated", line)
		}
		payload = rest
		user, last, ok := bytes.Cut(line, []byte{' '})
		h := Head{User: domain.UserID(user), Last: string(last)}
		if _, err := streamid.Parse(h.Last); !ok || len(user) == 0 || err != nil {
			return n, fmt.Errorf("inbox: malformed notification line %q", line)
		}
		n.Users = append(n.Users, h)
	}
	return n, nil
}
