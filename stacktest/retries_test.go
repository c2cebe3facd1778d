package stacktest

import (
	"fmt"
	"sync"
	"testing"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/gateway/gatewaytest"
	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// A client retries a send on a new connection while the first attempt is
// still being handled on the old one: two connections of one user send the
// same client message id at the same moment, through the gateway. Each
// round appends exactly one message, and both connections are answered
// with its event id and seq, one as the original and one as a duplicate
// (protocol.md: a retried send returns the original acknowledgement).
func TestConcurrentRetriesThroughTheGatewayAppendOnce(t *testing.T) {
	e := newEnv(t)
	alice := e.Login(t, frame.Proto, "alice")
	bob := e.Login(t, frame.JSON, "bob")
	laptop, _ := e.LoginAs(t, "alice", "", "laptop")
	conns := [2]*gatewaytest.Client{alice.Conn, laptop}
	const rounds = 20
	for i := range rounds {
		req := &mpimv1.ClientFrame_Send{Send: &mpimv1.SendRequest{To: &mpimv1.SendRequest_UserId{UserId: bob.ID},
			ClientMsgId: fmt.Sprint("retry-", i), Text: fmt.Sprint("retried ", i)}}
		var res [2]*mpimv1.SendResult
		start := make(chan struct{})
		var wg sync.WaitGroup
		for j, c := range conns {
			wg.Go(func() {
				<-start
				r, err := c.Call(gatewaytest.Ctx(t), req)
				if err != nil || r.GetError() != nil {
					t.Errorf("round %d, connection %d: %v %v", i, j, err, r.GetError())
					return
				}
				res[j] = r.GetSend()
			})
		}
		close(start)
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		a, b := res[0], res[1]
		if string(a.GetEventId()) != string(b.GetEventId()) || a.GetSeq() != b.GetSeq() || a.GetSeq() != uint64(i+1) {
			t.Fatalf("round %d: answered %x seq %d and %x seq %d; want one message, seq %d", i, a.GetEventId(), a.GetSeq(), b.GetEventId(), b.GetSeq(), i+1)
		}
		if a.GetDuplicate() == b.GetDuplicate() {
			t.Fatalf("round %d: duplicate %v and %v; want exactly one original", i, a.GetDuplicate(), b.GetDuplicate())
		}
	}
	conv := domain.DirectConversation(domain.UserID(alice.ID), domain.UserID(bob.ID))
	_, seq, err := e.Store.Version(gatewaytest.Ctx(t), conv.PartitionKey(), string(conv))
	if err != nil || seq != rounds {
		t.Fatalf("conversation seq %d, %v; want %d messages", seq, err, rounds)
	}
}
