package redisckpt

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/luascript"
	"github.com/mpim/mpim/projectors"
	"github.com/redis/go-redis/v9"
)

//go:embed claim.lua
var claimLua string

//go:embed advance.lua
var advanceLua string

// claim and advance are shared by every Store; a Script is not changed
// after NewScript.
var (
	claim   = luascript.New(claimLua)
	advance = luascript.New(advanceLua)
)

// globEscaper escapes the metacharacters of a SCAN MATCH pattern.
var globEscaper = strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`)

// Store is one projector's checkpoints in Redis (see the package comment for
// the layout). It holds no state of its own besides its arguments and is
// safe for concurrent use.
type Store struct {
	rdb       redis.UniversalClient
	prefix    string
	projector string
}

var _ projectors.Checkpointer = (*Store)(nil)

// New returns the checkpoints of the projector named projector under the
// deployment's key prefix, on rdb (the caller keeps ownership of the
// client, which must not be nil). The projector's name starts the messages
// of the errors the Store returns.
func New(rdb redis.UniversalClient, prefix, projector string) *Store {
	return &Store{rdb: rdb, prefix: prefix, projector: projector}
}

// Name returns the projector's name.
func (s *Store) Name() string { return s.projector }

// Tag returns "<prefix>proj:{<name>:pN}:", the start of every key of
// partition N that must share a hash slot with its checkpoint.
func (s *Store) Tag(partition int) string {
	return s.prefix + "proj:{" + s.projector + ":p" + strconv.Itoa(partition) + "}:"
}

// Key returns the key of the partition's checkpoint hash,
// "<prefix>proj:{<name>:pN}:ckpt".
func (s *Store) Key(partition int) string { return s.Tag(partition) + "ckpt" }

// KeyPattern returns the SCAN MATCH pattern of the checkpoint hashes of
// every partition (the prefix and name escaped).
func (s *Store) KeyPattern() string {
	return globEscaper.Replace(s.prefix) + "proj:{" + globEscaper.Replace(s.projector) + ":p*}:ckpt"
}

// FormatToken returns the form of a fencing token that the scripts receive
// and compare: decimal, without leading zeros.
func FormatToken(token uint64) string { return strconv.FormatUint(token, 10) }

// Claim records token as the partition's fencing token, unless a newer one
// is stored, and returns the checkpoint to resume after (the zero Position
// before the first batch). A token equal to the stored one claims again. It
// fails with an error wrapping projectors.ErrFenced, changing nothing, if a
// newer token was claimed.
func (s *Store) Claim(ctx context.Context, partition int, token uint64) (eventstore.Position, error) {
	res, err := claim.Run(ctx, s.rdb, []string{s.Key(partition)}, FormatToken(token)).Slice()
	if err != nil {
		return eventstore.Position{}, fmt.Errorf("%s: claiming partition %d: %w", s.projector, partition, err)
	}
	if err := s.Verdict(res, partition, token); err != nil {
		return eventstore.Position{}, err
	}
	pos := ""
	if len(res) > 1 {
		pos, _ = res[1].(string)
	}
	return eventstore.ParsePosition(pos)
}

// Advance checks that token is the partition's current fencing token and
// after its checkpoint and, unless check is true, moves the checkpoint to
// to, in one script (advance.lua). It fails with an error wrapping
// projectors.ErrFenced or projectors.ErrCheckpointMoved, changing nothing,
// when the check fails. A projector whose effects are not written with its
// checkpoint checks before them and moves after them.
func (s *Store) Advance(ctx context.Context, partition int, token uint64, after, to eventstore.Position, check bool) error {
	target := to.String()
	if check {
		target = ""
	}
	res, err := advance.Run(ctx, s.rdb, []string{s.Key(partition)}, FormatToken(token), after.String(), target).Slice()
	if err != nil {
		return fmt.Errorf("%s: checkpoint of partition %d: %w", s.projector, partition, err)
	}
	return s.Verdict(res, partition, token)
}

// Started reports whether the partition's checkpoint was ever written (a
// checkpoint at the zero Position may be either).
func (s *Store) Started(ctx context.Context, partition int) (bool, error) {
	ok, err := s.rdb.HExists(ctx, s.Key(partition), "pos").Result()
	if err != nil {
		return false, fmt.Errorf("%s: reading checkpoint of partition %d: %w", s.projector, partition, err)
	}
	return ok, nil
}

// Checkpoint returns the partition's checkpoint without claiming it: the
// zero Position before the first batch.
func (s *Store) Checkpoint(ctx context.Context, partition int) (eventstore.Position, error) {
	pos, err := s.rdb.HGet(ctx, s.Key(partition), "pos").Result()
	if errors.Is(err, redis.Nil) {
		return eventstore.Position{}, nil
	}
	if err != nil {
		return eventstore.Position{}, fmt.Errorf("%s: reading checkpoint of partition %d: %w", s.projector, partition, err)
	}
	return eventstore.ParsePosition(pos)
}

// Verdict reads the reply res of a checkpoint script run for the partition
// with token (see the package comment): nil for {"O", ...}, an error
// wrapping projectors.ErrFenced for {"F", stored token}, one wrapping
// projectors.ErrCheckpointMoved for {"M", pos}, and an error wrapping
// neither for any other reply.
func (s *Store) Verdict(res []any, partition int, token uint64) error {
	if len(res) == 0 {
		return fmt.Errorf("%s: empty script reply", s.projector)
	}
	status, _ := res[0].(string)
	arg := ""
	if len(res) > 1 {
		arg, _ = res[1].(string)
	}
	switch status {
	case "O":
		return nil
	case "F":
		return fmt.Errorf("%s: partition %d token %d, claimed by %s: %w", s.projector, partition, token, arg, projectors.ErrFenced)
	case "M":
		return fmt.Errorf("%s: partition %d checkpoint is at %s: %w", s.projector, partition, arg, projectors.ErrCheckpointMoved)
	}
	return fmt.Errorf("%s: unexpected script reply %v", s.projector, res)
}
