// Package parallel spreads independent per-item work over the CPUs, for
// the config builds whose cost is per resource (translation, validation,
// encoding) at tens of thousands of routes.
package parallel

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// minPerWorker is how many items make another worker worth its start-up.
const minPerWorker = 256

// Do runs work(i) for every i in [0, n), each on one of up to GOMAXPROCS
// workers, and returns when all are done. newWorker gives each worker its
// function (and with it any scratch state the worker keeps between
// items). Below minPerWorker items a worker, the work runs in order on the
// calling goroutine.
func Do(n int, newWorker func() func(int)) {
	workers := min(runtime.GOMAXPROCS(0), n/minPerWorker)
	if workers < 2 {
		if n > 0 {
			work := newWorker()
			for i := range n {
				work(i)
			}
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			work := newWorker()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				work(i)
			}
		})
	}
	wg.Wait()
}
