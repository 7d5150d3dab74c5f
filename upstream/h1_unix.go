//go:build unix && !aix

package upstream

import "syscall"

// open peeks at an idle connection without waiting: it is open when there
// is nothing to read yet. One the provider closed reads as its end, and
// one on which the provider sent something unasked cannot be trusted with
// the next answer.
func (c *h1Conn) open() bool {
	if c.raw == nil {
		return true
	}
	var buf [1]byte
	open := false
	err := c.raw.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		open = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
		return true
	})
	return err == nil && open
}
