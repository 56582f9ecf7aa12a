package harness

import (
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// process is one child process of the harness (gatehouse or Envoy): it
// may be started again after it ended, stopped (SIGTERM, then SIGKILL
// after a grace period) or killed, and its end is watched.
type process struct {
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// running reports whether the process was started and not stopped.
func (p *process) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// started records a started command; wait is run in the background and
// must return once the process has ended and its output is read.
func (p *process) started(cmd *exec.Cmd, wait func()) {
	done := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	go func() {
		wait()
		close(done)
	}()
}

// exited reports whether the process has ended (by itself or stopped).
func (p *process) exited() bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// signal sends sig to the running process.
func (p *process) signal(sig os.Signal) {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Signal(sig)
	}
}

// stop ends the process: sig, then SIGKILL if it is still there after
// grace; it returns once the process has ended, with its exit code (-1
// when it was not running).
func (p *process) stop(sig os.Signal, grace time.Duration) int {
	return p.stopAgain(sig, grace, nil)
}

// stopAgain is stop that sends sig a second time, once, as soon as again
// reports true (polled every 20 ms): a process that answers the first
// signal with a drain delay ends its delay on the second.
func (p *process) stopAgain(sig os.Signal, grace time.Duration, again func() bool) int {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return -1
	}
	_ = cmd.Process.Signal(sig)
	if sig == syscall.SIGKILL {
		<-done
		return cmd.ProcessState.ExitCode()
	}
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for {
		select {
		case <-done:
			return cmd.ProcessState.ExitCode()
		case <-deadline.C:
			_ = cmd.Process.Kill()
			<-done
			return cmd.ProcessState.ExitCode()
		case <-poll.C:
			if again != nil && again() {
				_ = cmd.Process.Signal(sig)
				again = nil
			}
		}
	}
}
