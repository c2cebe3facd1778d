package eventstore

import (
	"context"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/replwait"
)

// With Durability.WaitReplicas an append is acknowledged only once the
// replicas have it, but its master shows it to readers at once: a reader
// that acted on an entry no replica had yet (a projector writing it to the
// read model, an inbox, the archive) would keep it after a failover loses
// it, while the log, retried, gets another event in its place. So Tail
// hands entries on only once the replicas have them too: it writes the
// last position read to the partition's {pN}:r key and WAITs on the same
// connection to the partition's master (a WAIT counts the replicas that
// have the connection's last write, and replication is in order, so every
// entry read is then on them). An append answered as a duplicate is
// confirmed the same way: it wrote nothing, so the WAIT of its group
// commit says nothing about the first execution's events.

// confirmReplicated returns nil once the entries of partition p up to
// last are on Durability.WaitReplicas replicas (at once without
// WaitReplicas), else an EUnavailable error: the reader retries later, by
// when the replicas caught up or one of them has taken over.
func (s *Store) confirmReplicated(ctx context.Context, p int, last Position) error {
	d := s.cfg.Durability
	if d.WaitReplicas <= 0 {
		return nil
	}
	// On a cluster, a partition whose slot moved to another master
	// (resharding) is confirmed there: OnMaster follows the MOVED.
	n, err := replwait.OnMaster(ctx, s.rdb, s.keys.replicated(p), last.String(), 0, d.WaitReplicas, d.WaitTimeout)
	if err != nil {
		return domain.Errorf(domain.EUnavailable, "eventstore: confirming partition %d replicated up to %s: %w", p, last, err)
	}
	if n < int64(d.WaitReplicas) {
		return domain.Errorf(domain.EUnavailable, "eventstore: partition %d up to %s is on %d of %d replicas within %s",
			p, last, n, d.WaitReplicas, d.WaitTimeout)
	}
	return nil
}

// replicated is the key confirmReplicated writes: the position of
// partition p last confirmed replicated.
func (k keys) replicated(p int) string { return k.tag(p) + "r" }
