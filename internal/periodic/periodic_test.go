package periodic

import (
	"context"
	"testing"
	"time"
)

func TestRunCallsOnTicksAndWakesUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	wake := make(chan struct{})
	calls := make(chan struct{})
	done := make(chan struct{})
	go func() {
		Run(ctx, time.Hour, wake, func() { calls <- struct{}{} })
		close(done)
	}()
	wake <- struct{}{}
	<-calls
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func TestRunCallsEveryInterval(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := make(chan struct{}, 3)
	go Run(ctx, time.Millisecond, nil, func() {
		select {
		case calls <- struct{}{}:
		default:
		}
	})
	for range 3 {
		select {
		case <-calls:
		case <-time.After(10 * time.Second):
			t.Fatal("no call within 10s of a 1ms interval")
		}
	}
}
