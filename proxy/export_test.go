package proxy

import "time"

// SetBodyReadTimeout shortens the body deadline for a test and returns
// what puts it back.
func SetBodyReadTimeout(d time.Duration) (restore func()) {
	old := bodyReadTimeout
	bodyReadTimeout = d
	return func() { bodyReadTimeout = old }
}
