//go:build !linux

package redistest

import "os/exec"

// setDeathSignal does nothing here: only Linux kills a child with its
// parent; Main and test cleanups stop the servers.
func setDeathSignal(*exec.Cmd) {}
