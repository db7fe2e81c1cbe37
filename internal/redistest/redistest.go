// Package redistest starts throw-away Redis servers for tests.
//
// Start returns the URL of a Redis that a test may use freely: either the
// server named by the REDIS_URL environment variable (a private, flushed
// database number on it) or a fresh redis-server child process on a free
// 127.0.0.1 port. StartServer always starts a child process, which a test can
// stop and restart to simulate an outage.
//
// Neither ever touches the machine's shared Redis on 127.0.0.1:6379: a
// REDIS_URL pointing at a loopback address on port 6379 is ignored.
package redistest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// readyTimeout bounds how long a started server may take to answer PING.
const readyTimeout = 10 * time.Second

// Start returns the URL of a Redis database private to the test.
//
// When REDIS_URL is set (and does not name loopback port 6379), Start claims
// one of the databases 1 to 15 on that server with a lock key in database 0,
// flushes it, and releases the lock in t.Cleanup. Otherwise it starts
// redis-server from PATH (the test fails when it is missing) and stops it in
// t.Cleanup.
func Start(t testing.TB) string {
	t.Helper()
	if u := os.Getenv("REDIS_URL"); u != "" {
		if sharedLocal(u) {
			t.Logf("redistest: ignoring REDIS_URL on loopback port 6379 (the machine's shared Redis)")
		} else {
			return claimDB(t, u)
		}
	}
	return StartServer(t).URL()
}

// sharedLocal reports whether raw names a loopback host on port 6379.
func sharedLocal(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	port := u.Port()
	if port == "" {
		port = "6379"
	}
	if port != "6379" {
		return false
	}
	h := u.Hostname()
	if h == "" || h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// claimDB locks a free database number on the server at raw, flushes it and
// returns a URL selecting it.
func claimDB(t testing.TB, raw string) string {
	t.Helper()
	opts, err := redis.ParseURL(raw)
	if err != nil {
		t.Fatalf("redistest: REDIS_URL: %v", err)
	}
	opts.DB = 0
	ctx := context.Background()
	c0 := redis.NewClient(opts)
	defer func() { _ = c0.Close() }()
	lockVal := strconv.Itoa(os.Getpid()) + ":" + strconv.FormatInt(time.Now().UnixNano(), 10)
	for db := 1; db <= 15; db++ {
		lock := fmt.Sprintf("harness:redistest:lock:%d", db)
		ok, err := c0.SetNX(ctx, lock, lockVal, 10*time.Minute).Result()
		if err != nil {
			t.Fatalf("redistest: REDIS_URL unreachable: %v", err)
		}
		if !ok {
			continue
		}
		o := *opts
		o.DB = db
		c := redis.NewClient(&o)
		err = c.FlushDB(ctx).Err()
		_ = c.Close()
		if err != nil {
			t.Fatalf("redistest: flushing database %d: %v", db, err)
		}
		t.Cleanup(func() {
			c := redis.NewClient(opts)
			defer func() { _ = c.Close() }()
			if v, _ := c.Get(context.Background(), lock).Result(); v == lockVal {
				_ = c.Del(context.Background(), lock).Err()
			}
		})
		u, _ := url.Parse(raw)
		q := u.Query()
		q.Del("db")
		u.RawQuery = q.Encode()
		u.Path = "/" + strconv.Itoa(db)
		return u.String()
	}
	t.Fatalf("redistest: no free database on REDIS_URL (all of 1-15 locked)")
	return ""
}

// Server is a redis-server child process owned by one test. Its methods are
// safe for concurrent use.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan error // receives the result of cmd.Wait
}

// StartServer starts redis-server on a free 127.0.0.1 port with persistence
// off, waits until it answers PING and stops it in t.Cleanup. The test fails
// when redis-server is not on PATH.
func StartServer(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redistest: redis-server not found on PATH (install it, e.g. apt-get install redis-server; .ci/run does): %v", err)
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir()}
	var lastErr error
	for range 5 {
		s.port, err = freePort()
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		if lastErr = s.start(); lastErr == nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("redistest: starting redis-server: %v", lastErr)
	return nil
}

// URL returns the server's redis:// URL.
func (s *Server) URL() string {
	return "redis://" + s.Addr()
}

// Addr returns the server's host:port.
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Stop kills the server (SIGKILL, like a crash) and waits for it to exit.
// Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd, s.exited = nil, nil
}

// Restart stops the server if it runs and starts it again on the same port,
// empty. The test fails when it does not come back.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	var err error
	for range 50 { // the port may linger briefly after a kill
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("redistest: restarting redis-server on port %d: %v", s.port, err)
}

// start launches the process on s.port and waits for PING.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &bytes.Buffer{}
	cmd := exec.Command(s.bin,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--daemonize", "no",
		"--loglevel", "warning",
	)
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("running %s: %w", s.bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(readyTimeout)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("redis-server exited: %v: %s", err, strings.TrimSpace(out.String()))
		default:
		}
		if ping(s.Addr()) == nil {
			s.cmd, s.exited = cmd, exited
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	<-exited
	return fmt.Errorf("redis-server on port %d did not answer PING within %v: %s", s.port, readyTimeout, out.String())
}

// ping sends one RESP PING to addr and expects +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("unexpected ping reply %q", line)
	}
	return nil
}

// freePort asks the kernel for a free loopback port (never 6379).
func freePort() (int, error) {
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("finding a free port: %w", err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if p != 6379 {
			return p, nil
		}
	}
}
