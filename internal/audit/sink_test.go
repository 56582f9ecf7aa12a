package audit

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"
)

// cutWriter fails its call-th write after writing cut bytes.
type cutWriter struct {
	bytes.Buffer
	calls int
	fail  map[int]int // call number → bytes written before the error
}

func (w *cutWriter) Write(p []byte) (int, error) {
	w.calls++
	if cut, ok := w.fail[w.calls]; ok {
		n, _ := w.Buffer.Write(p[:min(cut, len(p))])
		return n, errors.New("write failed")
	}
	return w.Buffer.Write(p)
}

// TestSinkPartialWrites cuts a failed write at every byte of a batch, then
// fails the next write at several places: whatever was left in the file,
// verify accepts it, every event is written or counted, and the torn bytes
// are declared exactly.
func TestSinkPartialWrites(t *testing.T) {
	m, err := newMetrics(nil, func() float64 { return 0 })
	if err != nil {
		t.Fatal(err)
	}
	h := NewHasher(nil)
	ev := func(i int) []byte {
		e := Event{Time: time.Unix(int64(i), 0), Kind: KindDecision, ID: fmt.Sprint("d-", i)}
		return appendEvent(nil, &e)
	}
	const batch1 = 3 * 97 // three lines of 97 bytes (ids d-1..d-3)
	cases := 0
	for cut1 := 0; cut1 < batch1+2; cut1++ {
		for _, cut2 := range []int{-1, 0, 1, 50, 150} {
			w := &cutWriter{fail: map[int]int{2: cut1}}
			if cut2 >= 0 {
				w.fail[3] = cut2
			}
			s := newSink("stdout", w, nil, m, slog.New(slog.DiscardHandler))
			s.add(appendEvent(nil, &Event{Time: time.Unix(0, 0), Kind: KindStart}), 0, h, m)
			s.flush()
			for _, group := range [][]int{{1, 2, 3}, {4, 5}, {6}} {
				for _, i := range group {
					s.add(ev(i), 0, h, m)
				}
				s.flush()
			}
			rep := verifyBytes(t, w.Bytes())
			if rep.Problem != nil {
				t.Fatalf("cut %d then %d: Verify = %v\n%s", cut1, cut2, rep.Problem, w.Bytes())
			}
			if got := rep.Lines - 1 + int64(rep.Lost); got != 6 {
				t.Fatalf("cut %d then %d: %d lines written + %d lost; want 6 events", cut1, cut2, rep.Lines-1, rep.Lost)
			}
			cases++
		}
	}
	if cases < 100 {
		t.Fatalf("only %d cases", cases)
	}
}
