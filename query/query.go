package query

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/cachekeys"
	"github.com/redis/go-redis/v9"
)

// MaxList bounds the unpaged lists (friends, requests, blocks, groups,
// members) so that no query reads without limit.
const MaxList = 5000

// Config configures a Service. The zero value of each field takes the
// default documented next to it.
type Config struct {
	// Prefix is the deployment's key prefix (the event store's), under
	// which the cache model lives.
	Prefix string
	// HistoryPageBytes caps the messages of one history page (default 256
	// KiB, 4 KiB..16 MiB): a page that reaches it ends early with hasMore,
	// after at least one message.
	HistoryPageBytes int
	// Now is the clock that tells whether a mute has ended (default
	// time.Now).
	Now func() time.Time
}

func (c *Config) setDefaults() {
	c.HistoryPageBytes = cmp.Or(c.HistoryPageBytes, 256<<10)
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports every problem of the configuration at once.
func (c Config) Validate() error {
	var errs []error
	if c.HistoryPageBytes < 4<<10 || c.HistoryPageBytes > 16<<20 {
		errs = append(errs, fmt.Errorf("query: history page bytes must be 4KiB..16MiB, got %d", c.HistoryPageBytes))
	}
	if c.Now == nil {
		errs = append(errs, errors.New("query: a clock is required"))
	}
	return errors.Join(errs...)
}

// Service answers queries from the MySQL read model and the Redis cache
// model (see the package doc for what it promises). It is safe for
// concurrent use.
type Service struct {
	db   *sql.DB
	rdb  redis.UniversalClient
	keys cachekeys.Keys
	cfg  Config
}

// New returns a Service that reads the read model in db, whose schema must
// be migrated (schema.Migrate), and the cache model in rdb. It fails if the
// configuration is invalid (every problem at once) or a client is missing.
func New(db *sql.DB, rdb redis.UniversalClient, cfg Config) (*Service, error) {
	cfg.setDefaults()
	errs := []error{cfg.Validate()}
	if db == nil {
		errs = append(errs, errors.New("query: a database is required"))
	}
	if rdb == nil {
		errs = append(errs, errors.New("query: a Redis client is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Service{db: db, rdb: rdb, keys: cachekeys.New(cfg.Prefix), cfg: cfg}, nil
}

// unavailable wraps a database or Redis failure.
func unavailable(what string, err error) error {
	return domain.Errorf(domain.EUnavailable, "query: %s: %w", what, err)
}

// query runs a query and calls scan for every row.
func (s *Service) query(ctx context.Context, what string, scan func(*sql.Rows) error, q string, args ...any) error {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return unavailable(what, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return unavailable(what, err)
		}
	}
	if err := rows.Err(); err != nil {
		return unavailable(what, err)
	}
	return nil
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}
