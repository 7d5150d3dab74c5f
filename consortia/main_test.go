package consortia_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind: a
// member call, an arbiter stream or a timer the engine did not stop.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
