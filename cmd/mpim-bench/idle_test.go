package main

import (
	"context"
	"testing"
)

// settle waits out a falling RSS (a gateway returning freed pages) and
// takes the reading once it stops moving; one that keeps moving is taken
// as it is at the limit, marked unsettled.
func TestSettle(t *testing.T) {
	const mib = 1 << 20
	readings := func(vs ...int64) func() int64 {
		i := 0
		return func() int64 {
			v := vs[min(i, len(vs)-1)]
			i++
			return v
		}
	}
	var vs []int64 // 20 readings falling by 10 MiB, longer than the window
	for v := int64(300); v >= 100; v -= 10 {
		vs = append(vs, v*mib)
	}
	falling := readings(vs...)
	if v, ok := settle(context.Background(), falling, 0, settleLimit); !ok || v != 100*mib {
		t.Fatalf("settle = %d MiB, %v; want 100 MiB, settled", v/mib, ok)
	}
	n := int64(0)
	moving := func() int64 { n++; return n * 10 * mib }
	if _, ok := settle(context.Background(), moving, 0, 0); ok {
		t.Fatal("a reading that keeps moving was taken as settled")
	}
}
