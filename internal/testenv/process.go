package testenv

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisProcess is a redis-server owned by one test, which the test may stop
// and start again on the same port (to prove behaviour with Redis down and
// recovery without restart).
type RedisProcess struct {
	t    testing.TB
	bin  string
	port int
	dir  string
	cmd  *exec.Cmd
}

// StartRedis starts a private redis-server on a free loopback port; it is
// stopped at the end of the test.
func StartRedis(t testing.TB) *RedisProcess {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		missing(t, "redis-server binary")
	}
	p := &RedisProcess{t: t, bin: bin, port: freePort(t), dir: t.TempDir()}
	p.Start()
	t.Cleanup(p.Stop)
	return p
}

// Addr is host:port of the server.
func (p *RedisProcess) Addr() string { return "127.0.0.1:" + strconv.Itoa(p.port) }

// Socket is the path of the server's Unix socket.
func (p *RedisProcess) Socket() string { return filepath.Join(p.dir, "redis.sock") }

// Start (re)starts the server on its port and waits until it answers.
func (p *RedisProcess) Start() {
	p.t.Helper()
	if p.cmd != nil {
		return
	}
	cmd := exec.Command(p.bin,
		"--port", strconv.Itoa(p.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", p.dir,
		"--protected-mode", "yes", "--loglevel", "warning", "--logfile", filepath.Join(p.dir, "redis.log"),
		"--unixsocket", p.Socket(), "--unixsocketperm", "700")
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start redis-server: %v", err)
	}
	p.cmd = cmd
	c := redis.NewClient(&redis.Options{Addr: p.Addr()})
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
			p.t.Fatalf("redis-server on %s did not answer: %v", p.Addr(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server (SIGKILL: a crash, not a clean shutdown).
func (p *RedisProcess) Stop() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
	p.cmd = nil
}

// freePort asks the kernel for a free loopback port.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// FreeAddr returns a loopback address with a port free right now.
func FreeAddr(t testing.TB) string {
	return fmt.Sprintf("127.0.0.1:%d", freePort(t))
}

// Freeze stops the server's process (SIGSTOP) until Thaw: connections
// stay open and nothing answers, as a stalled server (DEBUG SLEEP is off
// by default since Redis 7).
func (p *RedisProcess) Freeze() { _ = p.cmd.Process.Signal(syscall.SIGSTOP) }

// Thaw resumes a frozen server.
func (p *RedisProcess) Thaw() { _ = p.cmd.Process.Signal(syscall.SIGCONT) }
