package accounts

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/testsvc"
)

func TestPasswordsHashAndVerify(t *testing.T) {
	pw, err := newPasswords(Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1, SaltBytes: 16, KeyBytes: 32}, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	h1, _ := pw.hash(ctx, "correct horse")
	h2, _ := pw.hash(ctx, "correct horse")
	if h1 == h2 || !strings.HasPrefix(h1, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("hashes %q %q: want PHC strings with distinct salts", h1, h2)
	}
	if ok, err := pw.verify(ctx, h1, "correct horse"); !ok || err != nil {
		t.Fatalf("verify the right password: %v %v", ok, err)
	}
	if ok, err := pw.verify(ctx, h1, "correct horsf"); ok || err != nil {
		t.Fatalf("verify a wrong password: %v %v", ok, err)
	}
	for _, bad := range []string{"", "$2b$10$abc", "$argon2id$v=19$m=999999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "$argon2id$v=19$m=64,t=1,p=1$!!$!!"} {
		if _, err := pw.verify(ctx, bad, "x"); domain.ErrorCode(err) != domain.EInternal {
			t.Errorf("verify against %q: %v", bad, err)
		}
	}
}

// When every hashing slot is taken, a waiting login gets the next free slot
// before registrations that waited longer.
func TestHashQueueServesLoginsFirst(t *testing.T) {
	q := newHashQueue(1)
	ctx := context.Background()
	if err := q.acquire(ctx, priorityRegister); err != nil {
		t.Fatal(err)
	}
	order := make(chan hashPriority, 2)
	for _, p := range []hashPriority{priorityRegister, priorityLogin} {
		go func() {
			if err := q.acquire(ctx, p); err == nil {
				order <- p
				q.release()
			}
		}()
		// The next waiter starts only once this one waits, so that the
		// registration has waited longer.
		testsvc.Eventually(t, 10*time.Second, fmt.Sprintf("a waiter of priority %v", p), func() bool { return q.waiters(p) > 0 })
	}
	q.release()
	if first, second := <-order, <-order; first != priorityLogin || second != priorityRegister {
		t.Fatalf("served %v then %v, want the login first", first, second)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := q.acquire(ctx, priorityLogin); err != nil {
		t.Fatal(err)
	}
	if err := q.acquire(cctx, priorityLogin); domain.ErrorCode(err) != domain.EUnavailable {
		t.Fatalf("acquire with an ended context: %v", err)
	}
	q.release()
	if err := q.acquire(ctx, priorityRegister); err != nil {
		t.Fatal(err)
	}
}
