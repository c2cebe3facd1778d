package coord

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestGatewayRegistrationLivesWithTheSession(t *testing.T) {
	env := newEnv(t)
	cut := &cutter{}
	zg := env.coordinator(t, "gateway", cut)
	zd := env.coordinator(t, "dispatcher", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	listed := func() ([]GatewayInfo, error) { return zd.Gateways(ctx) }
	has := func(want ...GatewayInfo) func() bool {
		return func() bool {
			got, err := listed()
			return err == nil && fmt.Sprint(got) == fmt.Sprint(want)
		}
	}
	state := func() string {
		got, err := listed()
		return fmt.Sprintf("gateways %+v, err %v", got, err)
	}

	reg, err := zg.RegisterGateway(ctx, "g1", GatewayInfo{Addr: "10.0.0.1:7000", Load: 1})
	if err != nil {
		t.Fatal(err)
	}
	g1 := GatewayInfo{ID: "g1", Addr: "10.0.0.1:7000", Load: 1}
	eventually(t, 10*time.Second, "g1 listed", has(g1), state)

	if _, err := zg.RegisterGateway(ctx, "g1", GatewayInfo{Addr: "elsewhere"}); err == nil {
		t.Error("registering g1 twice in one process accepted")
	}

	if err := reg.Update(7); err != nil {
		t.Fatal(err)
	}
	g1.Load = 7
	eventually(t, 10*time.Second, "g1's load updated", has(g1), state)

	cut.set(true)
	eventually(t, 30*time.Second, "g1 gone with its session", has(), state)
	if err := reg.Update(9); err != nil {
		t.Errorf("Update between sessions: %v, want nil (kept for the next registration)", err)
	}
	cut.set(false)
	g1.Load = 9
	eventually(t, 30*time.Second, "g1 registered again in the new session, with the latest load", has(g1), state)

	reg.Close()
	if got, err := listed(); err != nil || len(got) != 0 {
		t.Errorf("after Close: %+v, %v; want no gateways", got, err)
	}
	reg.Close()

	if _, err := zg.RegisterGateway(ctx, "g2", GatewayInfo{Addr: "10.0.0.2:7000"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "g2 listed", has(GatewayInfo{ID: "g2", Addr: "10.0.0.2:7000"}), state)
	zg.Close()
	if got, err := listed(); err != nil || len(got) != 0 {
		t.Errorf("after the gateway's ZooKeeper closed: %+v, %v; want no gateways", got, err)
	}
	if _, err := zg.RegisterGateway(ctx, "g3", GatewayInfo{}); !errors.Is(err, ErrClosed) {
		t.Errorf("RegisterGateway after Close: %v, want ErrClosed", err)
	}
}

func TestRegisterGatewayWaitsForAnotherSessionsNode(t *testing.T) {
	env := newEnv(t)
	z1 := env.coordinator(t, "first", nil)
	z2 := env.coordinator(t, "second", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := z1.RegisterGateway(ctx, "g", GatewayInfo{Addr: "one"}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := z2.RegisterGateway(ctx, "g", GatewayInfo{Addr: "two"})
		done <- err
	}()
	// The second session waits (it says so) while the first holds the id,
	// however long it takes to get there; then the holder leaves.
	eventually(t, 30*time.Second, "the second session waiting for the id", func() bool {
		return strings.Contains(env.logs.String(), "gateway id held by another session; waiting")
	}, env.logs.String)
	select {
	case err := <-done:
		t.Fatalf("a second session's registration of an id held by a live session returned (%v)", err)
	default:
	}
	z1.Close()
	if err := <-done; err != nil {
		t.Fatalf("registering after the holder left: %v", err)
	}
	got, err := z2.Gateways(ctx)
	if err != nil || len(got) != 1 || got[0].Addr != "two" {
		t.Fatalf("gateways %+v, %v; want g at two", got, err)
	}
}
