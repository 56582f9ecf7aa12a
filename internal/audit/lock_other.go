//go:build !unix

package audit

import "io"

type noLock struct{}

func (noLock) Close() error { return nil }

// lockFile is a no-op where flock(2) is not available; docs/audit.md says
// to give each process its own file.
func lockFile(string) (io.Closer, error) { return noLock{}, nil }
