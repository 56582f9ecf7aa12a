package app

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

// TestReadyzFollowsRedisWrites: /readyz answers from the store's recent
// round trips and background probes, never from a round trip of its own:
// it turns 503 while Redis answers PING but refuses every write
// (NOREPLICAS), and answers at once while Redis is stalled — where a PING
// would wait out its timeout, past a Kubernetes probe's one second.
func TestReadyzFollowsRedisWrites(t *testing.T) {
	srv := testenv.StartRedis(t)
	cfg := testConfig + "redis:\n  addresses: [\"" + srv.Addr() + "\"]\n  dialTimeout: 2s\n  readTimeout: 2s\n"
	r := start(t, Options{ConfigPath: writeConfig(t, t.TempDir(), cfg)})
	admin := "http://" + r.rt.AdminAddr()
	var slowest time.Duration
	readyz := func() (int, string) {
		start := time.Now()
		code, body := httpGet(t, admin+"/readyz")
		slowest = max(slowest, time.Since(start))
		return code, body
	}
	eventually(t, "/readyz 200 with redis up", func() bool { code, _ := readyz(); return code == http.StatusOK })

	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer c.Close()
	if err := c.ConfigSet(context.Background(), "min-replicas-to-write", "1").Err(); err != nil {
		t.Fatal(err)
	}
	var body string
	eventually(t, "/readyz 503 while writes fail", func() bool {
		var code int
		code, body = readyz()
		return code == http.StatusServiceUnavailable
	})
	if !strings.Contains(body, "NOREPLICAS") {
		t.Errorf("/readyz body = %s; want the ratelimit check to name NOREPLICAS", body)
	}
	if err := c.ConfigSet(context.Background(), "min-replicas-to-write", "0").Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "/readyz 200 once writes succeed", func() bool { code, _ := readyz(); return code == http.StatusOK })

	srv.Freeze()
	defer srv.Thaw()
	eventually(t, "/readyz 503 while redis is stalled", func() bool { code, _ := readyz(); return code == http.StatusServiceUnavailable })
	for i := 0; i < 20; i++ {
		readyz()
	}
	t.Logf("slowest /readyz answer: %s", slowest)
	if slowest > time.Second {
		t.Errorf("slowest /readyz answer took %s; want no round trip to Redis on its path", slowest)
	}
	srv.Thaw()
	eventually(t, "/readyz 200 once redis is back", func() bool { code, _ := readyz(); return code == http.StatusOK })
}
