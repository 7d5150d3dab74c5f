// Package redistest starts real redis-server processes for tests, on free
// loopback ports, with nothing persisted, and stops them when the test
// ends. `make test` installs redis-server when the machine lacks it; a test
// that needs Redis fails (it does not skip) when it is missing, so a green
// run always means the Redis paths ran.
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a running redis-server.
type Server struct {
	Addr string // host:port
	t    testing.TB
	cmd  *exec.Cmd
	port string
}

// URL returns the server's redis:// URL.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// Start runs a redis-server on a free loopback port until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	s := &Server{Addr: "127.0.0.1:" + port, t: t, port: port}
	s.run()
	t.Cleanup(s.Stop)
	return s
}

// run starts the process and waits until it answers.
func (s *Server) run() {
	s.t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		s.t.Fatal("redis-server is not installed: run `make test`, which installs it (apt-get install redis-server)")
	}
	s.cmd = exec.Command(bin, "--port", s.port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "no")
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if s.ping() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("redis-server on %s did not answer within 10s", s.Addr)
}

// ping sends PING and reads +PONG.
func (s *Server) ping() bool {
	c, err := net.DialTimeout("tcp", s.Addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	fmt.Fprint(c, "PING\r\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

// Stop kills the server; what it held is gone.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
}

// Restart starts the server again on the same port, empty.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.run()
}

// Client returns a go-redis client of the server, closed when the test
// ends. Like the proxy's own it does not retry, and timeout bounds its
// dial, reads and writes (if zero, 500ms), so a test of a Redis that
// stops answering ends in bounded time.
func (s *Server) Client(timeout time.Duration) *redis.Client {
	if timeout <= 0 {
		timeout = 500 * time.Millisecond
	}
	c := redis.NewClient(&redis.Options{
		Addr:                  s.Addr,
		DialTimeout:           timeout,
		ReadTimeout:           timeout,
		WriteTimeout:          timeout,
		PoolTimeout:           timeout,
		MaxRetries:            -1,
		ContextTimeoutEnabled: true,
	})
	s.t.Cleanup(func() { c.Close() })
	return c
}
