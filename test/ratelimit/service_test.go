package ratelimit_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

// gatehouseBinary builds cmd/gatehouse once per test binary run.
var gatehouseBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "gatehouse-bin")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "gatehouse")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/gatehouse").CombinedOutput(); err != nil {
		return "", &exec.ExitError{Stderr: out}
	}
	return bin, nil
})

// service is a rate limit service process started with an
// envoyproxy/ratelimit environment: the reference's own binary, or
// gatehouse ratelimit-compat.
type service struct {
	name        string
	client      rlsv3.RateLimitServiceClient
	http, debug string // host:port of PORT and DEBUG_PORT
	cmd         *exec.Cmd
	logPath     string
	done        chan error
}

// refEnv is the environment of a reference Deployment serving runtime
// root/sub/config from Redis at redisAddr, on free loopback ports.
func refEnv(t *testing.T, redisAddr, root, sub string) map[string]string {
	port := func() string { a := testenv.FreeAddr(t); return a[strings.LastIndex(a, ":")+1:] }
	return map[string]string{
		"USE_STATSD": "false", "DISABLE_STATS": "true", "LOG_LEVEL": "warn", "LOG_FORMAT": "json",
		"REDIS_SOCKET_TYPE": "tcp", "REDIS_TYPE": "SINGLE", "REDIS_URL": redisAddr,
		"RUNTIME_ROOT": root, "RUNTIME_SUBDIRECTORY": sub, "RUNTIME_APPDIRECTORY": "config",
		"RUNTIME_WATCH_ROOT": "false", "RUNTIME_IGNOREDOTFILES": "true",
		"HOST": "127.0.0.1", "PORT": port(), "GRPC_HOST": "127.0.0.1", "GRPC_PORT": port(),
		"DEBUG_HOST": "127.0.0.1", "DEBUG_PORT": port(),
	}
}

// startService runs bin with args and env (over a clean environment) and
// waits until its gRPC server answers.
func startService(t *testing.T, name, bin string, args []string, env map[string]string) *service {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	s := &service{
		name: name, cmd: cmd, logPath: logPath, done: make(chan error, 1),
		http:  "127.0.0.1:" + env["PORT"],
		debug: "127.0.0.1:" + env["DEBUG_PORT"],
	}
	go func() { s.done <- cmd.Wait(); logf.Close() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-s.done
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s log (last 4KB):\n%s", name, lastBytes(b, 4096))
		}
	})
	cc, err := grpc.NewClient("127.0.0.1:"+env["GRPC_PORT"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	s.client = rlsv3.NewRateLimitServiceClient(cc)
	// Both serve the standard gRPC health service as "ratelimit", once the
	// first config was read.
	health := healthpb.NewHealthClient(cc)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: "ratelimit"})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return s
		}
		select {
		case werr := <-s.done:
			s.done <- werr
			b, _ := os.ReadFile(logPath)
			t.Fatalf("%s exited at start (%v):\n%s", name, werr, lastBytes(b, 4096))
		default:
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("%s did not answer: %v\n%s", name, err, lastBytes(b, 4096))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// get fetches http://addr+path and returns the status and body.
func get(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s%s: %v", addr, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// post sends body to http://addr+path and returns the status and body.
func post(t *testing.T, addr, path, body string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Post("http://"+addr+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s%s: %v", addr, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// stop sends SIGTERM and waits for the process to exit.
func (s *service) stop(t *testing.T) error {
	t.Helper()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		s.done <- err
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not exit on SIGTERM", s.name)
		return nil
	}
}

func lastBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
