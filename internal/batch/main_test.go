package batch

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a job leaves a goroutine behind: a
// worker, an embedding call or the progress ticker.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
