package kv

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

// stores returns every Store implementation under test, so both backends
// are held to the same semantics.
func stores(t *testing.T) map[string]Store {
	c := testenv.Redis(t)
	return map[string]Store{
		"memory": NewMemory(0),
		"redis":  NewRedis(c, testenv.KeyPrefix(t)),
	}
}

func TestStoreSemantics(t *testing.T) {
	ctx := context.Background()
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ok, err := s.SetNX(ctx, "k", []byte("v1"), time.Minute)
			if err != nil || !ok {
				t.Fatalf("SetNX(new) = %v, %v; want true, nil", ok, err)
			}
			ok, err = s.SetNX(ctx, "k", []byte("v2"), time.Minute)
			if err != nil || ok {
				t.Fatalf("SetNX(existing) = %v, %v; want false, nil", ok, err)
			}
			v, found, err := s.Get(ctx, "k")
			if err != nil || !found || string(v) != "v1" {
				t.Fatalf("Get(k) = %q, %v, %v; want v1, true, nil", v, found, err)
			}
			if err := s.Set(ctx, "k", []byte("v3"), time.Minute); err != nil {
				t.Fatalf("Set() = %v", err)
			}
			if v, _, _ := s.Get(ctx, "k"); string(v) != "v3" {
				t.Fatalf("Get after Set = %q; want v3", v)
			}
			if err := s.Delete(ctx, "k"); err != nil {
				t.Fatalf("Delete() = %v", err)
			}
			if _, found, _ := s.Get(ctx, "k"); found {
				t.Fatal("Get after Delete found the key")
			}
			if err := s.Delete(ctx, "absent"); err != nil {
				t.Fatalf("Delete(absent) = %v; want nil", err)
			}
			if err := s.Ping(ctx); err != nil {
				t.Fatalf("Ping() = %v", err)
			}
		})
	}
}

func TestMemoryExpiry(t *testing.T) {
	ctx := context.Background()
	s := NewMemory(0)
	now := time.Unix(1000, 0)
	s.now = func() time.Time { return now }
	if ok, _ := s.SetNX(ctx, "k", []byte("v"), time.Second); !ok {
		t.Fatal("SetNX() = false")
	}
	now = now.Add(999 * time.Millisecond)
	if _, found, _ := s.Get(ctx, "k"); !found {
		t.Fatal("key expired before its TTL")
	}
	now = now.Add(time.Millisecond)
	if _, found, _ := s.Get(ctx, "k"); found {
		t.Fatal("key still present at its TTL")
	}
	if ok, _ := s.SetNX(ctx, "k", []byte("v"), time.Second); !ok {
		t.Fatal("SetNX() after expiry = false; want true")
	}
}

func TestMemoryBounded(t *testing.T) {
	ctx := context.Background()
	s := NewMemory(2)
	for _, k := range []string{"a", "b"} {
		if ok, err := s.SetNX(ctx, k, nil, 0); !ok || err != nil {
			t.Fatalf("SetNX(%s) = %v, %v", k, ok, err)
		}
	}
	if _, err := s.SetNX(ctx, "c", nil, 0); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("SetNX over capacity = %v; want ErrUnavailable", err)
	}
	if err := s.Set(ctx, "a", []byte("x"), 0); err != nil {
		t.Fatalf("Set(existing) at capacity = %v; want nil", err)
	}
}

func TestRedisDown(t *testing.T) {
	p := testenv.StartRedis(t)
	c := redis.NewClient(&redis.Options{Addr: p.Addr(), DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	s := NewRedis(c, "t:")
	ctx := context.Background()
	if _, err := s.SetNX(ctx, "k", []byte("v"), time.Minute); err != nil {
		t.Fatalf("SetNX() = %v", err)
	}
	p.Stop()
	if _, err := s.SetNX(ctx, "k2", []byte("v"), time.Minute); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("SetNX() with redis down = %v; want ErrUnavailable", err)
	}
	if _, _, err := s.Get(ctx, "k"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Get() with redis down = %v; want ErrUnavailable", err)
	}
	p.Start()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping() after restart = %v; want recovery without a new client", err)
	}
}

// TestMemoryFullOfExpiredKeys: a store at capacity whose keys have all
// expired has room; refusing (ErrUnavailable) would make callers apply
// their failure mode, closed by default, to requests it could serve.
func TestMemoryFullOfExpiredKeys(t *testing.T) {
	ctx := context.Background()
	s := NewMemory(2)
	now := time.Unix(1000, 0)
	s.now = func() time.Time { return now }
	for _, k := range []string{"a", "b"} {
		if ok, err := s.SetNX(ctx, k, nil, time.Second); !ok || err != nil {
			t.Fatalf("SetNX(%s) = %v, %v", k, ok, err)
		}
	}
	now = now.Add(2 * time.Second)
	if ok, err := s.SetNX(ctx, "c", nil, time.Second); !ok || err != nil {
		t.Fatalf("SetNX(c) with every key expired = %v, %v; want true, nil", ok, err)
	}
	if err := s.Set(ctx, "d", nil, time.Second); err != nil {
		t.Fatalf("Set(d) = %v; want nil (one key of two held)", err)
	}
}
