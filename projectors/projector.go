// Package projectors runs projectors: named, deterministic functions from the
// event log to effects (read models, inboxes, the archive).
//
// The contract every projector keeps:
//
//   - Deterministic: the effects of an event depend only on the event and the
//     projector's own state built from earlier events of the log.
//   - Idempotent by position: applying a batch that was already applied (a
//     retry after a crash) has no further effect. Projectors that keep their
//     checkpoint in the same transaction as their effects get this from the
//     compare-and-set of the checkpoint; the others make each write idempotent.
//   - Rebuildable from zero: starting from the zero position reproduces the
//     same read model.
//
// A partition is processed by exactly one owner at a time, in order, in
// batches. Ownership comes from a Coordinator with a fencing token that grows
// with every new owner; a projector refuses (ErrFenced) a batch whose token is
// older than the one it has seen, so an owner that paused and woke up late
// cannot commit.
//
// The runners of one process share their reads through a SharedLog: one
// XREAD and one decode per batch of a partition feed every projector, each
// still reading after its own checkpoint. A batch's entries (Event, Raw and
// the Domain decode) are therefore shared between projectors and read-only.
package projectors

import (
	"context"
	"errors"
	"time"

	"github.com/mpim/mpim/eventstore"
)

// ErrFenced is returned by Claim and Apply when the partition's checkpoint
// was claimed by a newer owner or moved past the batch: the caller lost
// ownership and must stop processing the partition.
var ErrFenced = errors.New("projectors: fenced by a newer owner")

// ErrCheckpointMoved is returned by Apply when the token is still current but
// the checkpoint is no longer After (a replay swapped in a rebuilt read model
// with its own checkpoint). Nothing was applied; the runner claims again and
// resumes from the stored checkpoint.
var ErrCheckpointMoved = errors.New("projectors: checkpoint moved")

// Batch is a run of consecutive log entries of one partition.
type Batch struct {
	Partition int
	// Token is the fencing token of the owner applying the batch.
	Token uint64
	// After is the checkpoint the batch follows; To is the checkpoint after it
	// (the position of its last entry, event or skipped).
	After, To eventstore.Position
	// Events are the decodable events, in log order. They may be shared
	// with the other projectors of the process (SharedLog): read them, use
	// Recorded.Domain for the domain event, never modify them.
	Events []eventstore.Recorded
	// Skipped are entries that could not be decoded. The projector records
	// them (quarantine) and moves past them: a bad entry never wedges a
	// partition and is never silently dropped.
	Skipped []*eventstore.DecodeError
}

// Projector is one read model's writer.
type Projector interface {
	// Name is the projector's stable name (checkpoints and ZooKeeper paths
	// use it).
	Name() string
	// Claim records token as the partition's current fencing token and
	// returns the checkpoint to resume after. It fails with ErrFenced if a
	// newer token was already claimed.
	Claim(ctx context.Context, partition int, token uint64) (eventstore.Position, error)
	// Apply applies the batch's effects and moves the checkpoint from After to
	// To, only if the checkpoint is still After and Token is still current;
	// otherwise it fails with ErrFenced (a newer token) or ErrCheckpointMoved
	// (same token, other position) and applies nothing. Any other error means
	// nothing conclusive: the runner retries the same batch.
	Apply(ctx context.Context, b *Batch) error
}

// Lingering is implemented by projectors whose effects may trail the log by
// a little (read models nobody waits on to make progress). After a batch
// smaller than the batch size, the runner waits until Linger has passed
// since the batch was read before it reads again, so the next batch collects
// what arrives meanwhile: the per-batch costs (round trips, a transaction, a
// checkpoint write) are then shared by more events when the log is busy,
// for at most Linger more lag. A projector on the delivery path (the inbox)
// does not linger. RunnerConfig.Linger overrides it.
type Lingering interface {
	Linger() time.Duration
}

// Coordinator hands out partition ownership for a projector.
type Coordinator interface {
	// Run takes part in the ownership of the partitions of projector name
	// until ctx ends. For every partition it acquires, it calls work in a
	// goroutine of its own with a fencing token and a context that is
	// cancelled when ownership ends (rebalancing, lost session, ctx); it
	// releases the partition only after work returned. Run returns after every
	// work call returned.
	Run(ctx context.Context, name string, partitions int, work func(ctx context.Context, partition int, token uint64) error) error
}
