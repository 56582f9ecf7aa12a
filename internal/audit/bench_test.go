package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatehouse/gatehouse/internal/config"
)

func benchLogger(b *testing.B, cfg config.Audit, stdout io.Writer) *Logger {
	b.Helper()
	l, err := newLogger(cfg, stdout, nil, nil, options{})
	if err != nil {
		b.Fatal(err)
	}
	return l
}

// BenchmarkRecord is what a decision pays to audit: Record from one
// goroutine (serial) or from every core at once (parallel) while the
// writer drains to io.Discard. dropped/op shows whether the writer kept
// up; a dropped event costs about the same (BenchmarkRecordFull).
func BenchmarkRecord(b *testing.B) {
	for _, parallel := range []bool{false, true} {
		name := "serial"
		if parallel {
			name = "parallel"
		}
		b.Run(name, func(b *testing.B) {
			cfg := testConfig()
			cfg.BufferSize = 8192
			l := benchLogger(b, cfg, io.Discard)
			e := event(1)
			b.ReportAllocs()
			b.ResetTimer()
			if parallel {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						l.Record(e)
					}
				})
			} else {
				for range b.N {
					l.Record(e)
				}
			}
			b.StopTimer()
			_ = l.Close(context.Background())
			b.ReportMetric(testutil.ToFloat64(l.m.dropped)/float64(b.N), "dropped/op")
		})
	}
}

// BenchmarkRecordEnqueue is Record's successful path alone: the writer is
// held, and the benchmark empties the buffer itself (untimed) whenever it
// fills. This is the cost per decision when the writer keeps up.
func BenchmarkRecordEnqueue(b *testing.B) {
	gate := newGate()
	cfg := testConfig()
	cfg.BufferSize = 4096
	l := benchLogger(b, cfg, gate)
	gate.armed.Store(true)
	l.Record(event(0))
	<-gate.entered
	e := event(1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if i%4096 == 0 {
			b.StopTimer()
			for len(l.ch) > 0 {
				<-l.ch
			}
			b.StartTimer()
		}
		l.Record(e)
	}
	b.StopTimer()
	if d := testutil.ToFloat64(l.m.dropped); d > 0 {
		b.Fatalf("%v dropped", d)
	}
	close(gate.release)
	_ = l.Close(context.Background())
}

// BenchmarkRecordFull is Record when the buffer is full (the writer is
// stuck): the drop path, which must stay as cheap as the normal one.
func BenchmarkRecordFull(b *testing.B) {
	gate := newGate()
	cfg := testConfig()
	cfg.BufferSize = 16
	l := benchLogger(b, cfg, gate)
	gate.armed.Store(true)
	l.Record(event(0))
	<-gate.entered
	e := event(1)
	for range 16 {
		l.Record(e)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Record(e)
		}
	})
	b.StopTimer()
	close(gate.release)
	_ = l.Close(context.Background())
}

// BenchmarkEncode is the writer's cost per line: encode the event, chain
// and hash it.
func BenchmarkEncode(b *testing.B) {
	for _, key := range []struct {
		name string
		key  []byte
	}{{"sha256", nil}, {"hmac", testKey}} {
		b.Run(key.name, func(b *testing.B) {
			h := NewHasher(key.key)
			e := event(1)
			var ev, out []byte
			prev := link{seq: 41}
			b.ReportAllocs()
			for b.Loop() {
				ev = appendEvent(ev[:0], &e)
				out, _ = appendLine(out[:0], chainFields{seq: 42, prev: &prev}, ev, h)
			}
			b.SetBytes(int64(len(out)))
		})
	}
}

// BenchmarkEncodeStdlib is the same line built with encoding/json: the
// reason appendEvent is hand-written.
func BenchmarkEncodeStdlib(b *testing.B) {
	e := event(1)
	type wire struct {
		Seq  uint64 `json:"seq"`
		Prev string `json:"prev"`
		Event
	}
	prev := hex.EncodeToString(make([]byte, 32))
	b.ReportAllocs()
	for b.Loop() {
		body, _ := json.Marshal(wire{Seq: 42, Prev: prev, Event: e})
		sum := sha256.Sum256(body)
		_ = hex.EncodeToString(sum[:])
	}
}

// BenchmarkWriterThroughput drives the whole writer into a file (sync:
// interval) as fast as it takes lines: lines/s is the most it sustains.
func BenchmarkWriterThroughput(b *testing.B) {
	for _, key := range []struct {
		name string
		key  []byte
	}{{"sha256", nil}, {"hmac", testKey}} {
		b.Run(key.name, func(b *testing.B) {
			cfg := testConfig()
			cfg.Stdout = false
			cfg.File = config.OutputPath(filepath.Join(b.TempDir(), "audit.log"))
			cfg.Sync, cfg.SyncInterval = config.AuditSyncInterval, config.Duration(time.Second)
			if key.key != nil {
				cfg = keyed(b, cfg, string(key.key))
			}
			l := benchLogger(b, cfg, nil)
			e := event(1)
			b.ResetTimer()
			for range b.N {
				// A blocking send, unlike Record: the producer waits for
				// the writer, so the figure is the writer's pace.
				l.ch <- item{e: e}
			}
			if err := l.Close(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if d := testutil.ToFloat64(l.m.dropped); d > 0 {
				b.Fatalf("%v events dropped; the pacing is wrong", d)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
		})
	}
}

// BenchmarkWriterCeiling writes the same bytes in the same batches to a
// file with no encoding or hashing: the ceiling of the throughput above.
func BenchmarkWriterCeiling(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "ceiling.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	line := splitLines(fixedLog(1, nil))[1]
	line = append(line, '\n')
	var batch []byte
	for range maxBatch {
		batch = append(batch, line...)
	}
	b.ResetTimer()
	for n := 0; n < b.N; n += maxBatch {
		k := min(maxBatch, b.N-n)
		if _, err := f.Write(batch[:k*len(line)]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

// BenchmarkVerify is verify's speed in lines/s.
func BenchmarkVerify(b *testing.B) {
	log := fixedLog(10000, nil)
	b.SetBytes(int64(len(log)))
	b.ResetTimer()
	for b.Loop() {
		rep, err := Verify([]Source{memSource("f", log)}, nil)
		if err != nil || rep.Problem != nil {
			b.Fatal(err, rep.Problem)
		}
	}
	b.ReportMetric(float64(b.N)*10002/b.Elapsed().Seconds(), "lines/s")
}
