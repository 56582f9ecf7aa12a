package idempotency

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

// stores runs f against every Store: in-process, a real redis-server and
// the local Redis Cluster (the scripts must be single-key to work there).
func stores(t *testing.T, f func(t *testing.T, s Store)) {
	t.Run("memory", func(t *testing.T) { f(t, NewMemory(100)) })
	t.Run("redis", func(t *testing.T) { f(t, NewRedis(testenv.Redis(t), testenv.KeyPrefix(t))) })
	t.Run("cluster", func(t *testing.T) { f(t, NewRedis(testenv.RedisCluster(t), testenv.KeyPrefix(t))) })
}

var rec = &Record{Status: 201, Header: [][2]string{{"content-type", "application/json"}, {"location", "/orders/7"}}, Body: []byte(`{"id":7}`)}

func TestLifecycle(t *testing.T) {
	stores(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		fp := NewFingerprint("POST", "/orders", []byte(`{"a":1}`))
		other := NewFingerprint("POST", "/orders", []byte(`{"a":2}`))
		first, second := NewOwner(), NewOwner()

		check := func(what string, fp Fingerprint, o Owner, want Outcome) *Record {
			t.Helper()
			got, r, err := s.Begin(ctx, "k1", fp, o, time.Minute)
			if err != nil || got != want {
				t.Fatalf("%s: Begin = %v, %v; want %v", what, got, err, want)
			}
			return r
		}
		check("first request", fp, first, Acquired)
		check("retry while in flight", fp, second, InFlight)
		check("other payload while in flight", other, second, Mismatch)

		if ok, err := s.Complete(ctx, "k1", fp, second, rec, time.Hour); ok || err != nil {
			t.Fatalf("Complete by a non-owner = %v, %v; want false", ok, err)
		}
		if ok, err := s.Complete(ctx, "k1", fp, first, rec, time.Hour); !ok || err != nil {
			t.Fatalf("Complete by the owner = %v, %v; want true", ok, err)
		}
		got := check("retry after completion", fp, second, Replay)
		if diff := cmp.Diff(rec, got); diff != "" {
			t.Errorf("replayed record mismatch (-want +got):\n%s", diff)
		}
		check("other payload after completion", other, second, Mismatch)
		if err := s.Release(ctx, "k1", fp, first); err != nil {
			t.Fatal(err)
		}
		check("release after completion changes nothing", fp, second, Replay)

		if err := s.Release(ctx, "k2", fp, first); err != nil {
			t.Fatal(err)
		}
		if got, _, _ := s.Begin(ctx, "k2", fp, first, time.Minute); got != Acquired {
			t.Fatalf("Begin(k2) = %v; want acquired", got)
		}
		if err := s.Release(ctx, "k2", fp, second); err != nil { // not the owner: no effect
			t.Fatal(err)
		}
		if got, _, _ := s.Begin(ctx, "k2", fp, second, time.Minute); got != InFlight {
			t.Fatalf("Begin(k2) after a foreign release = %v; want in flight", got)
		}
		if err := s.Release(ctx, "k2", fp, first); err != nil {
			t.Fatal(err)
		}
		if got, _, _ := s.Begin(ctx, "k2", fp, second, time.Minute); got != Acquired {
			t.Fatalf("Begin(k2) after release = %v; want acquired", got)
		}
		if err := s.Ping(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

func TestLockExpires(t *testing.T) {
	stores(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		fp := NewFingerprint("POST", "/x", nil)
		first, second := NewOwner(), NewOwner()
		if m, ok := s.(*Memory); ok {
			now := time.Now()
			m.now = func() time.Time { return now }
			defer func() { m.now = time.Now }()
			if got, _, _ := s.Begin(ctx, "k", fp, first, time.Second); got != Acquired {
				t.Fatal(got)
			}
			now = now.Add(2 * time.Second)
		} else {
			if got, _, _ := s.Begin(ctx, "k", fp, first, 20*time.Millisecond); got != Acquired {
				t.Fatal(got)
			}
			// Redis expires the key itself; poll rather than assume timing.
			deadline := time.Now().Add(5 * time.Second)
			for {
				got, _, err := s.Begin(ctx, "k", fp, second, time.Minute)
				if err != nil {
					t.Fatal(err)
				}
				if got == Acquired {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("lock never expired")
				}
				time.Sleep(10 * time.Millisecond)
			}
			if ok, _ := s.Complete(ctx, "k", fp, first, rec, time.Hour); ok {
				t.Fatalf("Complete by the owner of an expired lock = true; want false")
			}
			return
		}
		if got, _, _ := s.Begin(ctx, "k", fp, second, time.Minute); got != Acquired {
			t.Fatalf("Begin after lock expiry = %v; want acquired", got)
		}
		if ok, _ := s.Complete(ctx, "k", fp, first, rec, time.Hour); ok {
			t.Fatalf("Complete by the owner of an expired lock = true; want false")
		}
	})
}

func TestConcurrentBegin(t *testing.T) {
	stores(t, func(t *testing.T, s Store) {
		fp := NewFingerprint("POST", "/race", nil)
		var mu sync.Mutex
		counts := map[Outcome]int{}
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				got, _, err := s.Begin(context.Background(), "race", fp, NewOwner(), time.Minute)
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				counts[got]++
				mu.Unlock()
			})
		}
		wg.Wait()
		if counts[Acquired] != 1 || counts[InFlight] != 19 {
			t.Errorf("20 concurrent Begin = %v; want exactly one acquired", counts)
		}
	})
}

func TestMemoryFull(t *testing.T) {
	s := NewMemory(2)
	fp := NewFingerprint("POST", "/", nil)
	for _, k := range []string{"a", "b"} {
		if got, _, err := s.Begin(context.Background(), k, fp, NewOwner(), time.Minute); got != Acquired || err != nil {
			t.Fatal(got, err)
		}
	}
	if _, _, err := s.Begin(context.Background(), "c", fp, NewOwner(), time.Minute); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Begin on a full store = %v; want ErrUnavailable", err)
	}
}

func TestRedisDown(t *testing.T) {
	p := testenv.StartRedis(t)
	c := newClient(p.Addr())
	defer c.Close()
	s := NewRedis(c, "t:")
	fp := NewFingerprint("POST", "/", nil)
	if got, _, err := s.Begin(context.Background(), "k", fp, NewOwner(), time.Minute); got != Acquired || err != nil {
		t.Fatal(got, err)
	}
	p.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, _, err := s.Begin(ctx, "k", fp, NewOwner(), time.Minute); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Begin with redis down = %v; want ErrUnavailable", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Ping with redis down = %v; want ErrUnavailable", err)
	}
	p.Start()
	if got, _, err := s.Begin(context.Background(), "k2", fp, NewOwner(), time.Minute); got != Acquired || err != nil {
		t.Errorf("Begin after redis came back = %v, %v", got, err)
	}
}

func newClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 200 * time.Millisecond,
		ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond, MaxRetries: -1})
}

func TestRecordCodec(t *testing.T) {
	fp := NewFingerprint("POST", "/", []byte("x"))
	for _, r := range []*Record{rec, {Status: 500}, {Status: 200, Header: [][2]string{{"", ""}}, Body: []byte{0, 1, 2}}} {
		got, err := decodeRecord(doneValue(fp, r)[headLen:])
		if err != nil {
			t.Fatal(err)
		}
		want := *r
		if want.Header == nil {
			want.Header = [][2]string{}
		}
		if want.Body == nil {
			want.Body = []byte{}
		}
		if diff := cmp.Diff(&want, got); diff != "" {
			t.Errorf("round trip mismatch (-want +got):\n%s", diff)
		}
	}
}

func FuzzDecode(f *testing.F) {
	fp := NewFingerprint("POST", "/", nil)
	f.Add(doneValue(fp, rec))
	f.Add([]byte(lockValue(fp, NewOwner())))
	f.Add([]byte{1, 'D'})
	f.Fuzz(func(t *testing.T, v []byte) {
		state, _, r, err := decode(v)
		if err != nil {
			return
		}
		if state == stateDone {
			// Whatever decodes must encode back to the same bytes.
			var got Fingerprint
			copy(got[:], v[2:headLen])
			if string(doneValue(got, r)) != string(v) {
				t.Fatalf("decode/encode round trip differs for %q", v)
			}
		}
	})
}

func TestValidKeyAndStoreKey(t *testing.T) {
	for k, want := range map[string]bool{"abc": true, "a b": false, "": false, "ключ": false, string(make([]byte, 256)): false} {
		if got := ValidKey(k); got != want {
			t.Errorf("ValidKey(%q) = %v; want %v", k, got, want)
		}
	}
	a := StoreKey("orders", []string{"Bearer t1"}, "k")
	if a == StoreKey("orders", []string{"Bearer t2"}, "k") || a == StoreKey("users", []string{"Bearer t1"}, "k") ||
		a == StoreKey("orders", []string{"Bearer t1", ""}, "k") || a != StoreKey("orders", []string{"Bearer t1"}, "k") {
		t.Errorf("StoreKey does not separate routes and scopes")
	}
	for s, want := range map[int]bool{200: true, 201: true, 400: true, 500: true, 401: false, 429: false, 503: false, 504: false, 100: false, 299: false, 520: false} {
		if got := Storable(s); got != want {
			t.Errorf("Storable(%d) = %v; want %v", s, got, want)
		}
	}
	for s, want := range map[int]bool{401: true, 403: true, 429: true, 502: true, 503: true, 504: false, 500: false, 201: false, 520: false} {
		if got := Frees(s); got != want {
			t.Errorf("Frees(%d) = %v; want %v", s, got, want)
		}
	}
}
