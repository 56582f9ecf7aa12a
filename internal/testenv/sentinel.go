package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisSentinelProcess is a Sentinel set owned by one test: a master, its
// replicas and one Sentinel (quorum 1) watching them, on loopback. It is
// stopped at the end of the test.
type RedisSentinelProcess struct {
	t testing.TB
	// Servers are the master (first) and its replicas.
	Servers  []*RedisProcess
	Sentinel *RedisProcess
	// MasterName is the name Sentinel knows the master by.
	MasterName string
}

// StartRedisSentinel starts a master with replicas replicas and a
// Sentinel (down-after 1s) and waits until the replicas are in sync and
// the Sentinel sees them.
func StartRedisSentinel(t testing.TB, replicas int) *RedisSentinelProcess {
	t.Helper()
	if _, err := exec.LookPath("redis-sentinel"); err != nil {
		if _, err := exec.LookPath("redis-server"); err != nil {
			missing(t, "redis-sentinel binary")
		}
	}
	s := &RedisSentinelProcess{t: t, MasterName: "gh-master"}
	master := StartRedis(t)
	s.Servers = append(s.Servers, master)
	for i := 0; i < replicas; i++ {
		r := StartRedis(t)
		c := redis.NewClient(&redis.Options{Addr: r.Addr()})
		err := c.Do(t.Context(), "replicaof", "127.0.0.1", strconv.Itoa(master.port)).Err()
		_ = c.Close()
		if err != nil {
			t.Fatalf("replicaof: %v", err)
		}
		s.Servers = append(s.Servers, r)
	}
	dir := t.TempDir()
	port := freePort(t)
	conf := filepath.Join(dir, "sentinel.conf")
	body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor %s 127.0.0.1 %d 1\n"+
		"sentinel down-after-milliseconds %s 1000\nsentinel failover-timeout %s 5000\nsentinel parallel-syncs %s 1\n",
		port, dir, s.MasterName, master.port, s.MasterName, s.MasterName, s.MasterName)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	bin, err := exec.LookPath("redis-sentinel")
	args := []string{conf}
	if err != nil {
		bin, _ = exec.LookPath("redis-server")
		args = append(args, "--sentinel")
	}
	cmd := exec.Command(bin, append(args, "--logfile", filepath.Join(dir, "sentinel.log"))...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-sentinel: %v", err)
	}
	s.Sentinel = &RedisProcess{t: t, bin: bin, port: port, dir: dir, cmd: cmd}
	t.Cleanup(s.Sentinel.Stop)
	waitPing(t, s.Sentinel.Addr())
	// The replicas are in sync and the Sentinel knows them.
	deadline := time.Now().Add(20 * time.Second)
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinel.Addr()})
	defer sc.Close()
	for {
		reps, err := sc.Replicas(t.Context(), s.MasterName).Result()
		if err == nil && len(reps) == replicas && s.replicasInSync() {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("sentinel set not ready after 20s: %d replicas known, %v", len(reps), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *RedisSentinelProcess) replicasInSync() bool {
	for _, r := range s.Servers[1:] {
		c := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
		info, err := c.Info(s.t.Context(), "replication").Result()
		_ = c.Close()
		if err != nil || !strings.Contains(info, "master_link_status:up") {
			return false
		}
	}
	return true
}

// Client is a failover client through the Sentinel, closed at the end of
// the test.
func (s *RedisSentinelProcess) Client(o *redis.FailoverOptions) *redis.Client {
	if o == nil {
		o = &redis.FailoverOptions{}
	}
	o.MasterName = s.MasterName
	o.SentinelAddrs = []string{s.Sentinel.Addr()}
	c := redis.NewFailoverClient(o)
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

// Master is the address the Sentinel gives for the master now.
func (s *RedisSentinelProcess) Master() string {
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinel.Addr()})
	defer sc.Close()
	a, err := sc.GetMasterAddrByName(s.t.Context(), s.MasterName).Result()
	if err != nil || len(a) != 2 {
		return ""
	}
	return a[0] + ":" + a[1]
}

// Failover asks the Sentinel to fail over now (SENTINEL FAILOVER): the
// old master is still up, and takes writes until it is told it is a
// replica.
func (s *RedisSentinelProcess) Failover() {
	s.t.Helper()
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinel.Addr()})
	defer sc.Close()
	if err := sc.Failover(s.t.Context(), s.MasterName).Err(); err != nil {
		s.t.Fatalf("sentinel failover: %v", err)
	}
}
