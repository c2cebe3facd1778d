package eventstore

import (
	"cmp"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Config configures a Store. The zero value of each field takes the default
// documented next to it.
type Config struct {
	// Prefix is prepended to every key (isolates deployments and tests).
	Prefix string
	// Partitions is the partition count (default 16). It is recorded in the
	// store when the deployment is created; opening with another count fails.
	Partitions int
	// MaxEventBytes bounds one encoded event (default 64 KiB).
	MaxEventBytes int
	// MaxEventsPerAppend bounds the events of one append request (default 100).
	MaxEventsPerAppend int
	// MaxBatchEvents bounds the events of one group commit (default 1024),
	// over all partitions.
	MaxBatchEvents int
	// Committers is how many group commits may be in flight at once
	// (default 2): one collects appends while another executes.
	Committers int
	// IdempotencyTTL is how long an idempotency key is remembered (default 24h).
	IdempotencyTTL time.Duration
	// Durability states what an acknowledged append means.
	Durability Durability
	// ReadOnly opens an existing deployment for reading: Open records
	// nothing, loads no script and starts no committers, and fails with
	// ErrNoDeployment when the deployment's meta hash is missing. Append,
	// SaveSnapshot and TrimBefore then fail with ErrReadOnly. NewTap still
	// creates its consumer group: that is state its caller asks for.
	ReadOnly bool
}

// Durability selects what an acknowledged append guarantees.
type Durability struct {
	// RequireFsyncAlways makes Open fail unless the server runs with
	// appendonly yes and appendfsync always: then every acknowledged event was
	// fsynced to the AOF before the reply, and survives a crash of the node.
	RequireFsyncAlways bool
	// WaitReplicas, when positive, sends WAIT after each group commit; an
	// append whose commit reached fewer replicas within WaitTimeout fails with
	// an unavailable error. The events may still be in the log: the caller
	// retries with the same idempotency key and gets the original result.
	WaitReplicas int
	// WaitTimeout bounds the WAIT (default 1s when WaitReplicas > 0).
	WaitTimeout time.Duration
}

func (c *Config) setDefaults() {
	c.Partitions = cmp.Or(c.Partitions, 16)
	c.MaxEventBytes = cmp.Or(c.MaxEventBytes, 64<<10)
	c.MaxEventsPerAppend = cmp.Or(c.MaxEventsPerAppend, 100)
	c.MaxBatchEvents = cmp.Or(c.MaxBatchEvents, 1024)
	c.Committers = cmp.Or(c.Committers, 2)
	c.IdempotencyTTL = cmp.Or(c.IdempotencyTTL, 24*time.Hour)
	if c.Durability.WaitReplicas > 0 && c.Durability.WaitTimeout == 0 {
		c.Durability.WaitTimeout = time.Second
	}
}

// MaxPrefixBytes bounds Config.Prefix.
const MaxPrefixBytes = 256

// CheckPrefix reports a key prefix the store refuses: one longer than
// MaxPrefixBytes, or one with a brace. A hash tag ("{...}") in the prefix
// would be the hash tag of every key, putting the whole deployment in one
// Redis Cluster slot, and a lone brace would change which part of the key
// after it is the tag.
func CheckPrefix(prefix string) error {
	if len(prefix) > MaxPrefixBytes {
		return fmt.Errorf("eventstore: prefix must be at most %d bytes, got %d", MaxPrefixBytes, len(prefix))
	}
	if strings.ContainsAny(prefix, "{}") {
		return fmt.Errorf("eventstore: prefix %q must not contain { or }: a hash tag there would put every key in one Redis Cluster slot", prefix)
	}
	return nil
}

// Validate reports every problem of the configuration at once.
func (c Config) Validate() error {
	var errs []error
	if err := CheckPrefix(c.Prefix); err != nil {
		errs = append(errs, err)
	}
	if c.Partitions < 1 || c.Partitions > 4096 {
		errs = append(errs, fmt.Errorf("eventstore: partitions must be 1..4096, got %d", c.Partitions))
	}
	if c.MaxEventBytes < 256 || c.MaxEventBytes > 16<<20 {
		errs = append(errs, fmt.Errorf("eventstore: max event bytes must be 256..16MiB, got %d", c.MaxEventBytes))
	}
	if c.MaxEventsPerAppend < 1 {
		errs = append(errs, fmt.Errorf("eventstore: max events per append must be positive, got %d", c.MaxEventsPerAppend))
	}
	if c.MaxBatchEvents < c.MaxEventsPerAppend {
		errs = append(errs, fmt.Errorf("eventstore: max batch events (%d) must be at least max events per append (%d)", c.MaxBatchEvents, c.MaxEventsPerAppend))
	}
	if c.Committers < 1 || c.Committers > 64 {
		errs = append(errs, fmt.Errorf("eventstore: committers must be 1..64, got %d", c.Committers))
	}
	if c.IdempotencyTTL < time.Second {
		errs = append(errs, fmt.Errorf("eventstore: idempotency TTL must be at least 1s, got %s", c.IdempotencyTTL))
	}
	if c.Durability.WaitReplicas < 0 {
		errs = append(errs, fmt.Errorf("eventstore: wait replicas must not be negative, got %d", c.Durability.WaitReplicas))
	}
	return errors.Join(errs...)
}
