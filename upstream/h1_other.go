//go:build !unix || aix

package upstream

// open reports an idle connection as open: without a non-blocking peek, a
// connection the provider closed is found when it is used.
func (c *h1Conn) open() bool { return true }
