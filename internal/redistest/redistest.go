// Package redistest starts real redis-server processes for tests, on free
// loopback ports, with nothing persisted, and stops them when the test
// ends: one server (Start), a three-node Redis Cluster (StartCluster), a
// master, its replica and three Sentinels (StartSentinel), and all three
// shared by the tests of a package (Backends, with Main in TestMain).
// `make test` installs redis-server when the machine lacks it; a test that
// needs Redis fails (it does not skip) when it is missing, so a green run
// always means the Redis paths ran.
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a running redis-server.
type Server struct {
	Addr   string // host:port
	t      testing.TB
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd has exited
	port   string
	conf   string   // a configuration file, first on the command line
	args   []string // beyond the port, bind and persistence flags
	// dir is the working directory, where a replica writes the data it
	// receives; if "", start makes one (ownDir) and Stop removes it.
	dir    string
	ownDir bool
}

// URL returns the server's redis:// URL.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// Start runs a redis-server on a free loopback port until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := launch(false, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.t = t
	t.Cleanup(s.Stop)
	return s
}

// errExited is a server that exited before it answered: most likely
// something else took its port between freePort and its start.
var errExited = errors.New("redis-server exited at start")

// launch starts a server on a free port (and a free bus port with bus),
// after setup, given the server with its port, adds what it needs; a port
// taken meanwhile is replaced by another.
func launch(bus bool, setup func(*Server) error) (*Server, error) {
	for attempt := 0; ; attempt++ {
		port, err := freePort(bus)
		if err != nil {
			return nil, err
		}
		s := &Server{Addr: "127.0.0.1:" + port, port: port}
		if setup != nil {
			if err := setup(s); err != nil {
				return nil, err
			}
		}
		err = s.start()
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, errExited) || attempt == 3 {
			return nil, err
		}
	}
}

// freePort returns a loopback port nothing listens on. With bus, the port
// is below 55535 and port+10000, a Cluster node's bus port, is free too.
func freePort(bus bool) (string, error) {
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		if !bus {
			ln.Close()
			return strconv.Itoa(port), nil
		}
		if port >= 55535 {
			ln.Close()
			continue
		}
		busLn, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000))
		ln.Close()
		if err != nil {
			continue
		}
		busLn.Close()
		return strconv.Itoa(port), nil
	}
	return "", errors.New("redistest: no free port below 55535 with a free bus port")
}

// binary returns the path of redis-server.
func binary() (string, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", errors.New("redis-server is not installed: run `make test`, which installs it (apt-get install redis-server)")
	}
	return bin, nil
}

// start starts the process and waits until it answers.
func (s *Server) start() error {
	bin, err := binary()
	if err != nil {
		return err
	}
	if s.dir == "" {
		if s.dir, err = os.MkdirTemp("", "redistest-"); err != nil {
			return err
		}
		s.ownDir = true
	}
	var args []string
	if s.conf != "" {
		args = append(args, s.conf)
	}
	// A replica syncs at once, not after the default 5s wait for others.
	args = append(append(args, "--port", s.port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "no", "--repl-diskless-sync-delay", "0", "--dir", s.dir), s.args...)
	cmd := command(bin, args...)
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited
	deadline := time.Now().Add(10 * time.Second)
	for !ping(s.Addr) {
		select {
		case <-exited:
			s.cmd = nil
			if s.ownDir {
				os.RemoveAll(s.dir)
				s.dir, s.ownDir = "", false
			}
			return fmt.Errorf("%w on %s", errExited, s.Addr)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("redis on %s did not answer within 10s", s.Addr)
		}
	}
	return nil
}

// ping sends PING and reads +PONG.
func ping(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	fmt.Fprint(c, "PING\r\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

// command is a child process that the kernel kills if the test binary
// dies first (see setDeathSignal), so no server outlives its tests.
func command(bin string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	setDeathSignal(cmd)
	if os.Getenv("REDISTEST_VERBOSE") != "" {
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	}
	return cmd
}

// Stop kills the server; what it held is gone.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
	if s.ownDir {
		os.RemoveAll(s.dir)
		s.dir, s.ownDir = "", false
	}
}

// Restart starts the server again on the same port, empty.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		s.t.Fatal(err)
	}
}

// Client returns a go-redis client of the server, closed when the test
// ends. Like the proxy's own it does not retry, and timeout bounds its
// dial, reads and writes (if zero, 500ms), so a test of a Redis that
// stops answering ends in bounded time.
func (s *Server) Client(timeout time.Duration) *redis.Client {
	c := redis.NewClient(options(timeout, []string{s.Addr}, "").Simple())
	s.t.Cleanup(func() { c.Close() })
	return c
}

// options are the proxy's client options (see internal/app): no retries,
// and timeout (if zero, 500ms) on every dial, read, write and pool wait.
func options(timeout time.Duration, addrs []string, master string) *redis.UniversalOptions {
	if timeout <= 0 {
		timeout = 500 * time.Millisecond
	}
	return &redis.UniversalOptions{
		Addrs:                 addrs,
		MasterName:            master,
		IsClusterMode:         master == "" && len(addrs) > 1,
		DialTimeout:           timeout,
		ReadTimeout:           timeout,
		WriteTimeout:          timeout,
		PoolTimeout:           timeout,
		MaxRetries:            -1,
		ContextTimeoutEnabled: true,
	}
}

// Client returns a client of the one server at addr (a Cluster node, a
// Sentinel setup's master or replica), closed when the test ends.
func Client(t testing.TB, addr string) *redis.Client {
	c := redis.NewClient(options(0, []string{addr}, "").Simple())
	t.Cleanup(func() { c.Close() })
	return c
}
