package delivery

import "github.com/mpim/mpim/internal/streamid"

// rangeAfter is the XRANGE start that reads an inbox after p, a device's
// position: from the start for the zero position, otherwise exclusive of p.
func rangeAfter(p streamid.ID) string {
	if p.IsZero() {
		return "-"
	}
	return "(" + p.String()
}
