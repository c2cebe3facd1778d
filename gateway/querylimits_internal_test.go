package gateway

import (
	"strings"
	"testing"
	"time"

	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

func TestByteAndCostLimitsAreValidated(t *testing.T) {
	c := Config{GatewayID: "gw-1", PublicAddr: "gw1:8080", OutboxBytes: 10, OutboxHardBytes: 5, OutboxDrainTimeout: -time.Second,
		HistoryPageBytes: 1, HeavyQueryCost: 1000, HeavyInFlightPerUser: -1}
	err := c.Validate()
	for _, want := range []string{"outbox bytes", "outbox hard bytes", "outbox drain timeout", "history page bytes",
		"heavy query cost", "heavy queries in flight"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v; want it to mention %q", err, want)
		}
	}
	good := Config{GatewayID: "gw-1", PublicAddr: "gw1:8080", ConnBurst: 3}
	good.setDefaults()
	if err := good.Validate(); err != nil || good.HeavyQueryCost != 3 || good.OutboxHardBytes != 4*good.OutboxBytes {
		t.Fatalf("defaults with a burst of 3: %+v, %v", good, err)
	}
}

func TestHeavyQueriesCostInProportionToTheirPage(t *testing.T) {
	c := Config{HeavyQueryCost: 10}
	for _, tc := range []struct {
		req   *mpimv1.ClientFrame
		cost  int
		heavy bool
	}{
		{&mpimv1.ClientFrame{Request: &mpimv1.ClientFrame_Ping{}}, 1, false},
		{&mpimv1.ClientFrame{Request: &mpimv1.ClientFrame_History{History: &mpimv1.HistoryRequest{Limit: 200}}}, 10, true},
		{&mpimv1.ClientFrame{Request: &mpimv1.ClientFrame_History{History: &mpimv1.HistoryRequest{Limit: 5000}}}, 10, true},
		{&mpimv1.ClientFrame{Request: &mpimv1.ClientFrame_History{History: &mpimv1.HistoryRequest{}}}, 3, true}, // the default 50
		{&mpimv1.ClientFrame{Request: &mpimv1.ClientFrame_Conversations{Conversations: &mpimv1.ConversationsRequest{Limit: 1}}}, 1, true},
	} {
		if cost, heavy := c.requestCost(tc.req); cost != tc.cost || heavy != tc.heavy {
			t.Errorf("%v: cost %d heavy %v, want %d %v", tc.req, cost, heavy, tc.cost, tc.heavy)
		}
	}
}
