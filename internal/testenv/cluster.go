package testenv

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisClusterProcess is a Redis Cluster owned by one test: masters, each
// with its replicas, on loopback, which the test may kill, pause and
// reshard. It is stopped at the end of the test.
type RedisClusterProcess struct {
	t     testing.TB
	bin   string
	args  []string
	Nodes []*ClusterNode
}

// ClusterNode is one redis-server of a RedisClusterProcess.
type ClusterNode struct {
	Port int
	dir  string
	cmd  *exec.Cmd
}

// Addr is host:port of the node.
func (n *ClusterNode) Addr() string { return "127.0.0.1:" + strconv.Itoa(n.Port) }

// StartRedisCluster starts masters×(1+replicas) redis-servers and joins
// them in a cluster (cluster-node-timeout 1s: a dead master's replica is
// promoted within about two seconds), waiting until every node says the
// cluster is ok and every replica is in sync. args are more redis-server
// arguments for every node.
func StartRedisCluster(t testing.TB, masters, replicas int, args ...string) *RedisClusterProcess {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		missing(t, "redis-server binary")
	}
	if _, err := exec.LookPath("redis-cli"); err != nil {
		missing(t, "redis-cli binary")
	}
	p := &RedisClusterProcess{t: t, bin: bin, args: args}
	t.Cleanup(p.stopAll)
	base := t.TempDir()
	var addrs []string
	for i := 0; i < masters*(1+replicas); i++ {
		n := &ClusterNode{Port: clusterPort(t), dir: filepath.Join(base, strconv.Itoa(i))}
		p.Nodes = append(p.Nodes, n)
		p.Start(n)
		addrs = append(addrs, n.Addr())
	}
	create := append([]string{"--cluster", "create"}, addrs...)
	create = append(create, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.Command("redis-cli", create...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	p.WaitHealthy(30 * time.Second)
	return p
}

// clusterPort is a free loopback port whose cluster bus port (+10000) is
// free too.
func clusterPort(t testing.TB) int {
	t.Helper()
	for i := 0; i < 200; i++ {
		port := 20000 + rand.IntN(30000)
		l1, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		l2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+10000))
		_ = l1.Close()
		if err != nil {
			continue
		}
		_ = l2.Close()
		return port
	}
	t.Fatalf("no free port pair for a cluster node")
	return 0
}

// Start (re)starts a node on its port and waits until it answers.
func (p *RedisClusterProcess) Start(n *ClusterNode) {
	p.t.Helper()
	if n.cmd != nil {
		return
	}
	cmd := exec.Command(p.bin, append([]string{
		"--port", strconv.Itoa(n.Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", n.dir, "--protected-mode", "yes",
		"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", "1000", "--cluster-replica-validity-factor", "0",
		"--loglevel", "warning", "--logfile", filepath.Join(n.dir, "redis.log")}, p.args...)...)
	if err := mkdir(n.dir); err != nil {
		p.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start redis-server: %v", err)
	}
	n.cmd = cmd
	waitPing(p.t, n.Addr())
}

// Kill SIGKILLs a node (a crash).
func (p *RedisClusterProcess) Kill(n *ClusterNode) {
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Kill()
	_ = n.cmd.Wait()
	n.cmd = nil
}

// Freeze stops a node's process (SIGSTOP) until Thaw: its connections stay
// open and nothing answers, as a stalled server.
func (p *RedisClusterProcess) Freeze(n *ClusterNode) { _ = n.cmd.Process.Signal(syscall.SIGSTOP) }

// Thaw resumes a frozen node.
func (p *RedisClusterProcess) Thaw(n *ClusterNode) { _ = n.cmd.Process.Signal(syscall.SIGCONT) }

func (p *RedisClusterProcess) stopAll() {
	for _, n := range p.Nodes {
		if n.cmd != nil {
			_ = n.cmd.Process.Signal(syscall.SIGCONT)
		}
		p.Kill(n)
	}
}

// Addrs are the addresses of the nodes running.
func (p *RedisClusterProcess) Addrs() []string {
	var out []string
	for _, n := range p.Nodes {
		if n.cmd != nil {
			out = append(out, n.Addr())
		}
	}
	return out
}

// Node is the node at addr.
func (p *RedisClusterProcess) Node(addr string) *ClusterNode {
	for _, n := range p.Nodes {
		if n.Addr() == addr {
			return n
		}
	}
	p.t.Fatalf("no cluster node %s", addr)
	return nil
}

// Client returns a cluster client, closed at the end of the test.
func (p *RedisClusterProcess) Client() *redis.ClusterClient {
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: p.Addrs(), DialTimeout: 500 * time.Millisecond})
	p.t.Cleanup(func() { _ = c.Close() })
	return c
}

// Role is "master" or "slave" as the node at addr says.
func (p *RedisClusterProcess) Role(addr string) string {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "role:"); ok {
			return v
		}
	}
	return ""
}

// WaitHealthy waits until every running node says cluster_state:ok, every
// slot has a master, and every running replica's link to its master is up.
func (p *RedisClusterProcess) WaitHealthy(within time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(within)
	for {
		why := p.unhealthy()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("redis cluster not healthy after %s: %s", within, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *RedisClusterProcess) unhealthy() string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, addr := range p.Addrs() {
		c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
		info, err := c.ClusterInfo(ctx).Result()
		if err == nil && !strings.Contains(info, "cluster_state:ok") {
			err = fmt.Errorf("cluster_state not ok")
		}
		var repl string
		if err == nil {
			repl, err = c.Info(ctx, "replication").Result()
		}
		_ = c.Close()
		if err != nil {
			return addr + ": " + err.Error()
		}
		if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
			return addr + ": replica link down"
		}
	}
	return ""
}

func waitPing(t testing.TB, addr string) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s did not answer: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mkdir(dir string) error { return os.MkdirAll(dir, 0o700) }
