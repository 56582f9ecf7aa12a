//go:build unix

package audit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// lockFile takes an exclusive lock on name (created if needed), so that
// two processes never write one audit file: their lines would interleave
// and break each other's chain. The lock goes away with the process.
func lockFile(name string) (io.Closer, error) {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: lock: %w", unwrapPath(err))
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("audit: %s is locked by another process: give each gatehouse process its own audit file", name)
		}
		return nil, fmt.Errorf("audit: lock %s: %w", name, err)
	}
	return f, nil
}
