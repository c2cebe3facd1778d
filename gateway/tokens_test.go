package gateway_test

import (
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/gateway"
	"github.com/mpim/mpim/gateway/gatewaytest"
	"github.com/mpim/mpim/proto/frame"
)

// TestExpiredTokensArePruned checks that the gateway deletes expired tokens
// from auth_tokens in bounded rounds and keeps the live ones, which still
// resume.
func TestExpiredTokensArePruned(t *testing.T) {
	e := gatewaytest.New(t, func(c *gateway.Config, _ *gateway.Deps) {
		c.TokenTTL = time.Hour
		c.TokenPruneInterval = time.Second
		c.TokenPruneMax = 2 // three expired tokens take two rounds
	})
	for _, name := range []string{"old1", "old2", "old3"} {
		e.Login(t, frame.JSON, name)
	}
	e.Clock.Add(time.Hour + time.Second)
	fresh := e.Login(t, frame.JSON, "fresh")

	count := func() int {
		var n int
		if err := e.DB.QueryRow("SELECT COUNT(*) FROM auth_tokens").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	pruned := func() float64 {
		mfs, err := e.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "mpim_gateway_tokens_pruned_total" {
				return mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		return -1
	}
	// The counter is added to after the rows are deleted: wait for both.
	gatewaytest.Eventually(t, "expired tokens pruned", func() bool { return count() == 1 && pruned() == 3 })
	gatewaytest.OK(t, e.Dial(t, frame.JSON), gatewaytest.ResumeReq(fresh.Token))
}

func TestTokenPruneSettingsAreValidated(t *testing.T) {
	for _, c := range []gateway.Config{
		{GatewayID: "gw", PublicAddr: "x:1", TokenPruneInterval: time.Millisecond},
		{GatewayID: "gw", PublicAddr: "x:1", TokenPruneMax: -1},
		{GatewayID: "gw", PublicAddr: "x:1", TokenPruneMax: 1_000_001},
	} {
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "token prune") {
			t.Errorf("%+v: %v", c, err)
		}
	}
	if err := (gateway.Config{GatewayID: "gw", PublicAddr: "x:1", TokenPruneInterval: -1}).Validate(); err != nil {
		t.Errorf("pruning turned off: %v", err)
	}
}
