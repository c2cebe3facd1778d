package eventstore

import "github.com/mpim/mpim/internal/streamid"

// Position is the stream entry id of an event in its partition ("<ms>-<seq>"),
// assigned by Redis. Positions of one partition are strictly increasing in
// append order; positions of different partitions are not comparable.
// The zero Position is before every event. It is the one stream entry id
// type of mpim (streamid.ID), under the name the log gives it.
type Position = streamid.ID

// ParsePosition parses a stream entry id ("1700000000000-3"); "" and "0",
// which Redis accepts for the start of a stream, mean the zero Position.
func ParsePosition(s string) (Position, error) {
	if s == "" || s == "0" {
		return Position{}, nil
	}
	return streamid.Parse(s)
}

// GlobalPosition is a position in the whole log.
type GlobalPosition struct {
	Partition int
	Position  Position
}
