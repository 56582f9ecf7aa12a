package parallel

import (
	"sync/atomic"
	"testing"
)

// TestDoEveryItemOnce: every index is worked exactly once, whether the
// work runs in order (few items) or over workers (many), and each worker
// gets its own function.
func TestDoEveryItemOnce(t *testing.T) {
	for _, n := range []int{0, 1, 255, 256, 1000, 20_000} {
		seen := make([]atomic.Int32, n)
		var workers atomic.Int32
		Do(n, func() func(int) {
			workers.Add(1)
			return func(i int) { seen[i].Add(1) }
		})
		for i := range seen {
			if c := seen[i].Load(); c != 1 {
				t.Fatalf("n=%d: item %d worked %d times", n, i, c)
			}
		}
		if n == 0 && workers.Load() != 0 {
			t.Errorf("n=0: %d workers started", workers.Load())
		}
	}
}
