package inbox_test

import (
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/projectors/inbox"
	"github.com/redis/go-redis/v9"
)

// A negative replica count or WAIT timeout is refused, saying so.
func TestNegativeWaitIsRefused(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled
	defer rdb.Close()
	for _, cfg := range []inbox.Config{{WaitReplicas: -1}, {WaitReplicas: 1, WaitTimeout: -time.Second}} {
		cfg.Prefix = "t:"
		if _, err := inbox.New(rdb, cfg); err == nil || !strings.Contains(err.Error(), "wait replicas and wait timeout must not be negative") {
			t.Errorf("%+v: %v", cfg, err)
		}
	}
}
