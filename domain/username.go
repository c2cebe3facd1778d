package domain

import "time"

// Username is the aggregate "n/<name>" that reserves one normalised username
// for one user. Its only event is UsernameClaimed, appended atomically with the
// UserRegistered of the same user, which is what makes usernames unique.
type Username struct {
	name    string
	version uint64
	owner   UserID
}

// UsernameCommand is a command for the Username aggregate: ClaimUsername.
type UsernameCommand interface{ usernameCommand() }

// ClaimUsername reserves Username (normalised by Decide) for User.
type ClaimUsername struct {
	Username string
	User     UserID
}

func (ClaimUsername) usernameCommand() {}

// NewUsername returns the unclaimed aggregate of a username. It returns an
// EInvalid error unless name is already normalised (see NormalizeUsername);
// the policy's length limit is enforced when the name is claimed.
func NewUsername(name string) (*Username, error) {
	if n, err := normalizeUsername(name, len(name)); err != nil || n != name {
		return nil, Errorf(EInvalid, "domain: username %q is not normalised", name)
	}
	return &Username{name: name}, nil
}

// RebuildUsername replays the events of the aggregate of name, as read from
// the log. It trusts the log: it only fails, with EInvalid, on an event that
// does not belong to this aggregate.
func RebuildUsername(name string, events []Event) (*Username, error) {
	n := &Username{name: name}
	if err := applyAll(n, events); err != nil {
		return nil, err
	}
	return n, nil
}

// Name returns the normalised username.
func (n *Username) Name() string { return n.name }

// AggregateID returns "n/<name>".
func (n *Username) AggregateID() string { return UsernameAggregate(n.name) }

// PartitionKey returns the key that picks the aggregate's partition: its id.
func (n *Username) PartitionKey() string { return n.AggregateID() }

// Version returns the number of events applied.
func (n *Username) Version() uint64 { return n.version }

// Owner returns the user that claimed the name, and whether it is claimed.
func (n *Username) Owner() (UserID, bool) { return n.owner, n.owner != "" }

// Decide returns the events that carry out cmd. It returns an EInvalid error
// for a malformed command or one naming another username, and an EExists error
// if the name is already claimed (by anyone, the same user included).
func (n *Username) Decide(cmd UsernameCommand, now time.Time, p Policy) ([]Event, error) {
	c, ok := cmd.(ClaimUsername)
	if !ok {
		return nil, unknownCommand(n.AggregateID(), cmd)
	}
	name, err := p.NormalizeUsername(c.Username)
	if err != nil {
		return nil, err
	}
	if name != n.name {
		return nil, Errorf(EInvalid, "domain: %s: command claims username %q", n.AggregateID(), name)
	}
	if err := checkUser("user", c.User); err != nil {
		return nil, err
	}
	if n.owner != "" {
		return nil, Errorf(EExists, "domain: username %q is taken", n.name)
	}
	return []Event{UsernameClaimed{Username: name, User: c.User}}, nil
}

// Apply applies one event. It returns an EInvalid error for any event other
// than a first UsernameClaimed of this name.
func (n *Username) Apply(e Event) error {
	c, ok := e.(UsernameClaimed)
	if !ok || c.Username != n.name || n.owner != "" {
		return foreign(n.AggregateID(), e)
	}
	n.owner = c.User
	n.version++
	return nil
}
