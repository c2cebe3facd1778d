package push

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/inbox"
	"github.com/mpim/mpim/internal/promreg"
	"github.com/mpim/mpim/projectors"
	"github.com/mpim/mpim/projectors/redisckpt"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/mpim/mpim/push/webhook"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Name is the projector's name.
const Name = "push"

// Directory is what the projector reads of the read models. From the cache
// model it reads for a whole batch at once: each of those methods answers
// for every user (group, mute) it is given, in their order, in one round
// trip (a pipeline) per few thousand of them. PushTargets gives the users'
// devices with a push token (none for a user without any), Muted whether
// users[i] muted convs[i] at at, MemberIDsOf the groups' members and
// Profiles the users' profiles (nil for one unknown), from which a
// sender's name comes. From the MySQL model Unread gives one user's unread
// counts (for the badge). *query.Service implements it.
type Directory interface {
	PushTargets(ctx context.Context, users []domain.UserID) ([][]domain.DeviceToken, error)
	Muted(ctx context.Context, users []domain.UserID, convs []domain.ConversationID, at time.Time) ([]bool, error)
	MemberIDsOf(ctx context.Context, groups []domain.GroupID) ([][]domain.UserID, error)
	Profiles(ctx context.Context, users []domain.UserID) ([]*mpimv1.Profile, error)
	Unread(ctx context.Context, user domain.UserID, convs []domain.ConversationID) (domain.Unread, error)
}

// Notifier takes the notifications of a batch and tells when the batch is
// settled. *webhook.Sender implements it.
type Notifier interface {
	Submit(ctx context.Context, ns []webhook.Notification) (webhook.Batch, error)
	Wait(ctx context.Context, b webhook.Batch) error
	Settled(b webhook.Batch) bool
}

// Heads tells where a partition of the log ends. *eventstore.Store
// implements it.
type Heads interface {
	Info(ctx context.Context, p int) (eventstore.PartitionInfo, error)
}

var (
	_ Notifier = (*webhook.Sender)(nil)
	_ Heads    = (*eventstore.Store)(nil)
)

// Projector is the push projector. It is safe for concurrent use by the
// owners of different partitions; one partition is applied by one owner at
// a time (the Projector contract).
type Projector struct {
	rdb    redis.UniversalClient
	cfg    Config
	dir    Directory
	sender Notifier
	heads  Heads
	keys   inbox.Keys
	ckpt   *redisckpt.Store
	// badgeFailures counts the users pushed without a badge because their
	// unread counts could not be read.
	badgeFailures prometheus.Counter

	mu    sync.Mutex
	pipes map[int]*pipeline // by partition, from its Claim or first Apply
}

var (
	_ projectors.Projector    = (*Projector)(nil)
	_ projectors.Checkpointer = (*Projector)(nil)
	_ projectors.Quarantiner  = (*Projector)(nil)
	_ projectors.Lingering    = (*Projector)(nil)
)

// New returns the push projector: rdb holds its checkpoints and the
// presence hashes, dir answers who to tell, sender calls the webhook and
// heads tells where a partition ends (Config.Start). The caller keeps
// ownership of all four. It fails on an invalid configuration or a missing
// argument.
func New(rdb redis.UniversalClient, dir Directory, sender Notifier, heads Heads, cfg Config) (*Projector, error) {
	cfg.setDefaults()
	errs := []error{cfg.Validate()}
	if rdb == nil || dir == nil || sender == nil || heads == nil {
		errs = append(errs, errors.New("push: projector needs a Redis client, a directory, a sender and the log"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	failures := prometheus.NewCounter(prometheus.CounterOpts{Name: "mpim_push_badge_failures_total",
		Help: "Users pushed without an unread badge because the read model could not be read."})
	p := &Projector{rdb: rdb, cfg: cfg, dir: dir, sender: sender, heads: heads,
		keys: inbox.NewKeys(cfg.Prefix), ckpt: redisckpt.New(rdb, cfg.Prefix, Name), badgeFailures: failures,
		pipes: make(map[int]*pipeline)}
	pendingBatches := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mpim_push_pending_batches",
		Help: "Batches applied whose webhook calls have not settled yet (the checkpoint waits for them), over the partitions this process owns; at most --push-max-pending per partition."},
		func() float64 { return float64(p.Pending()) })
	if err := promreg.Register(cfg.Registerer, "push: metrics", failures, pendingBatches); err != nil {
		return nil, err
	}
	return p, nil
}

// Name returns "push".
func (p *Projector) Name() string { return Name }

// Linger returns Config.Linger (projectors.Lingering).
func (p *Projector) Linger() time.Duration { return p.cfg.Linger }

// Claim records token as the partition's fencing token and returns its
// checkpoint. A partition never processed begins at its last entry under
// StartHead: the checkpoint is written there before Claim returns. It
// fails with projectors.ErrFenced if a newer token was claimed.
//
// Claim first drops the batches of the partition applied in this process
// and not settled yet: they are after the checkpoint it returns, so the
// caller applies them again.
func (p *Projector) Claim(ctx context.Context, partition int, token uint64) (eventstore.Position, error) {
	p.drop(partition)
	pos, err := p.claim(ctx, partition, token)
	if err != nil {
		return pos, err
	}
	p.install(partition, token, pos)
	return pos, nil
}

// claim is Claim's checkpoint work.
func (p *Projector) claim(ctx context.Context, partition int, token uint64) (eventstore.Position, error) {
	pos, err := p.ckpt.Claim(ctx, partition, token)
	if err != nil || !pos.IsZero() || p.cfg.Start != StartHead {
		return pos, err
	}
	started, err := p.ckpt.Started(ctx, partition)
	if err != nil || started {
		return pos, err
	}
	info, err := p.heads.Info(ctx, partition)
	if err != nil {
		return pos, fmt.Errorf("push: reading the head of partition %d: %w", partition, err)
	}
	// Written even when the partition is empty ("0-0"), so that a restart
	// does not skip what arrived meanwhile.
	if err := p.ckpt.Advance(ctx, partition, token, pos, info.Last, false); err != nil {
		return pos, err
	}
	p.cfg.Logger.Info("push projector starts at the head of the log", "partition", partition, "position", info.Last.String())
	return info.Last, nil
}

// Checkpoint returns the partition's stored checkpoint without claiming
// it: the batches applied after it are not settled yet.
func (p *Projector) Checkpoint(ctx context.Context, partition int) (eventstore.Position, error) {
	return p.ckpt.Checkpoint(ctx, partition)
}

// Apply reads what the notifications of the batch's events need, checks
// the batch's fencing token against the stored checkpoint, submits the
// notifications and returns without waiting for them: the batch is
// pending. The partition's advancer moves the stored checkpoint past
// pending batches in log order, each once the sender settled it. Apply
// waits while Config.MaxPending batches are pending. A batch with no
// notification skips the check: nothing is sent, and the advancer's write
// of its checkpoint checks the token itself, so it costs its lookups and
// at most one checkpoint script.
//
// It sends nothing and returns an error wrapping projectors.ErrFenced or
// projectors.ErrCheckpointMoved when the batch may not be applied: a newer
// token, a batch that follows neither the last one applied nor the stored
// checkpoint, or an advancer that failed for good (fenced, or a checkpoint
// write refused: then the runner claims again, which drops the pending
// batches and resumes from the stored checkpoint). A loss of ownership
// found while batches are pending stops their checkpoint (the calls made
// may be made again by the new owner). Any other error leaves the batch
// unapplied and the runner applies it again, sending its notifications
// again with the same event ids.
func (p *Projector) Apply(ctx context.Context, b *projectors.Batch) error {
	pl, err := p.admit(ctx, b)
	if err != nil {
		return err
	}
	ns, err := p.notifications(ctx, b)
	if err != nil {
		return err
	}
	if len(ns) > 0 {
		if err := p.fence(ctx, pl); err != nil {
			return err
		}
	}
	last, err := p.submit(ctx, ns)
	if err != nil {
		return err
	}
	p.push(ctx, pl, pending{to: b.To, batch: last})
	return nil
}

// submit submits ns and returns the number of the last batch submitted (0
// when none was). A notification the sender refuses (webhook.ErrInvalid: a
// read model value beyond the webhook's bounds) is logged and left out, so
// that it cannot wedge the partition.
func (p *Projector) submit(ctx context.Context, ns []webhook.Notification) (webhook.Batch, error) {
	if len(ns) == 0 {
		return 0, nil
	}
	last, err := p.sender.Submit(ctx, ns)
	if errors.Is(err, webhook.ErrInvalid) {
		last, err = 0, nil
		for i := range ns {
			b, err := p.sender.Submit(ctx, ns[i:i+1])
			switch {
			case errors.Is(err, webhook.ErrInvalid):
				p.cfg.Logger.Warn("push notification left out", "user", ns[i].User, "event_id", ns[i].EventID, "err", err)
			case err != nil:
				return 0, fmt.Errorf("push: submitting: %w", err)
			default:
				last = b
			}
		}
	}
	if err != nil {
		return 0, fmt.Errorf("push: submitting: %w", err)
	}
	return last, nil
}

// Quarantine moves the checkpoint past the batch's only entry, which Apply
// keeps failing on, with Apply's checks (projectors.Quarantiner): the batch
// is pending with nothing to settle, so the stored checkpoint passes it
// once the batches before it are settled. Nothing is set aside: the push
// projector keeps no read model, and the other projectors quarantine the
// entry for inspection. The entry is logged.
func (p *Projector) Quarantine(ctx context.Context, b *projectors.Batch, cause error) error {
	p.cfg.Logger.Error("push projector skips an entry it cannot apply", "partition", b.Partition, "position", b.To.String(), "err", cause)
	pl, err := p.admit(ctx, b)
	if err != nil {
		return err
	}
	p.push(ctx, pl, pending{to: b.To})
	return nil
}
