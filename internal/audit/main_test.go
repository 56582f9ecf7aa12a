package audit

import (
	"testing"

	"go.uber.org/goleak"
)

// Every Logger starts a writer goroutine; each test must close it.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
