package ratelimit

import (
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Connection defaults for a gateway: a few tens of milliseconds at most per
// step, a pool sized like go-redis's own default, one retry. A query
// parameter of the same name wins.
const (
	defaultDialTimeout  = 100 * time.Millisecond
	defaultReadTimeout  = 50 * time.Millisecond
	defaultWriteTimeout = 50 * time.Millisecond
	defaultPoolTimeout  = 50 * time.Millisecond
	minPoolSize         = 20
	defaultMaxRetries   = 1
	defaultDialRetries  = 1 // one dial attempt: fail fast while Redis is down
)

// defaultPoolSize is the pool size when the URL sets none: go-redis's own
// default (10 connections per CPU the process may use), and at least
// minPoolSize. Every call in flight holds a connection for one round trip;
// when all are taken the next call waits for one (up to the pool timeout,
// after which it fails closed), so the pool grows with the CPUs that run
// the calls.
func defaultPoolSize() int { return max(minPoolSize, 10*runtime.GOMAXPROCS(0)) }

// redisConfig is a parsed Redis URL: exactly one field is set.
type redisConfig struct {
	simple   *redis.Options
	cluster  *redis.ClusterOptions
	failover *redis.FailoverOptions
}

// ParseRedisURL parses a Redis URL into a client; it does not connect.
//
// Accepted forms (query parameters are go-redis's own, snake_case, e.g.
// dial_timeout=100ms, read_timeout, write_timeout, pool_size, max_retries;
// unknown parameters are errors):
//
//	redis://[user:pass@]host[:6379][/db]         one server
//	rediss://…                                   the same over TLS
//	unix://[user:pass@]/path/redis.sock[?db=N]   a Unix socket
//	redis://host:port?addr=host2:port&addr=…     Redis Cluster (seed nodes)
//	redis+cluster://host:port[?addr=…]           Redis Cluster, also with one seed
//	redis://sentinel:26379[/db]?master_name=m[&addr=sentinel2:26379…][&password=…]
//	redis+sentinel://…                           the same (master_name required)
//
// rediss+cluster:// and rediss+sentinel:// use TLS. For Sentinel the URL's
// user info authenticates to the sentinels and the username/password query
// parameters to the master. Unless given, timeouts default to 100 ms dial,
// 50 ms read/write/pool wait, a pool of 10 connections per CPU
// (GOMAXPROCS, at least 20), one dial attempt
// and one command retry, and
// context deadlines are always honoured. Errors never echo the URL (it may
// hold a password).
//
// timeout, when positive, replaces the default read, write and pool-wait
// timeouts (parameters in the URL still win).
func ParseRedisURL(raw string, timeout ...time.Duration) (redis.UniversalClient, error) {
	d := time.Duration(0)
	if len(timeout) > 0 {
		d = timeout[0]
	}
	c, err := parseRedisURL(raw, d)
	if err != nil {
		return nil, err
	}
	switch {
	case c.cluster != nil:
		return redis.NewClusterClient(c.cluster), nil
	case c.failover != nil:
		return redis.NewFailoverClient(c.failover), nil
	default:
		return redis.NewClient(c.simple), nil
	}
}

// CheckRedisURL reports whether raw is a URL ParseRedisURL accepts, without
// creating a client. Errors never echo the URL (it may hold a password).
func CheckRedisURL(raw string) error {
	_, err := parseRedisURL(raw, 0)
	return err
}

// parseRedisURL does the work of ParseRedisURL without creating a client.
func parseRedisURL(raw string, timeout time.Duration) (redisConfig, error) {
	readTimeout, writeTimeout, poolTimeout := defaultReadTimeout, defaultWriteTimeout, defaultPoolTimeout
	if timeout > 0 {
		readTimeout, writeTimeout, poolTimeout = timeout, timeout, timeout
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // drop the URL, which may hold a password
		}
		return redisConfig{}, fmt.Errorf("ratelimit: invalid redis url: %w", err)
	}
	q := u.Query()
	base, mode, _ := strings.Cut(u.Scheme, "+")
	switch {
	case mode == "" && q.Has("master_name"):
		mode = "sentinel"
	case mode == "" && q.Has("addr"):
		mode = "cluster"
	}
	if base != "redis" && base != "rediss" && !(base == "unix" && mode == "") {
		return redisConfig{}, fmt.Errorf("ratelimit: invalid redis url: unsupported scheme %q", u.Scheme)
	}
	if u.Host == "" && base != "unix" {
		return redisConfig{}, errors.New("ratelimit: invalid redis url: missing host")
	}
	norm := *u
	norm.Scheme = base
	s := norm.String()
	wrap := func(err error) error { return fmt.Errorf("ratelimit: invalid redis url: %w", err) }
	set := func(name string, d time.Duration, dst *time.Duration) {
		if !q.Has(name) {
			*dst = d
		}
	}
	seti := func(name string, n int, dst *int) {
		if !q.Has(name) {
			*dst = n
		}
	}
	// fill applies the gateway's defaults wherever the URL set nothing.
	fill := func(o clientOptions) {
		set("dial_timeout", defaultDialTimeout, o.dial)
		set("read_timeout", readTimeout, o.read)
		set("write_timeout", writeTimeout, o.write)
		set("pool_timeout", poolTimeout, o.pool)
		seti("pool_size", defaultPoolSize(), o.poolSize)
		seti("max_retries", defaultMaxRetries, o.maxRetries)
		seti("dialer_retries", defaultDialRetries, o.dialerRetries)
		*o.ctxTimeout = true // context deadlines always apply
	}
	switch mode {
	case "":
		o, err := redis.ParseURL(s)
		if err != nil {
			return redisConfig{}, wrap(err)
		}
		fill(clientOptions{&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout,
			&o.PoolSize, &o.MaxRetries, &o.DialerRetries, &o.ContextTimeoutEnabled})
		return redisConfig{simple: o}, nil
	case "cluster":
		if u.Path != "" && u.Path != "/" {
			return redisConfig{}, errors.New("ratelimit: invalid redis url: a cluster url has no database path")
		}
		o, err := redis.ParseClusterURL(s)
		if err != nil {
			return redisConfig{}, wrap(err)
		}
		fill(clientOptions{&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout,
			&o.PoolSize, &o.MaxRetries, &o.DialerRetries, &o.ContextTimeoutEnabled})
		return redisConfig{cluster: o}, nil
	case "sentinel":
		if q.Get("master_name") == "" {
			return redisConfig{}, errors.New("ratelimit: invalid redis url: sentinel needs master_name")
		}
		o, err := redis.ParseFailoverURL(s)
		if err != nil {
			return redisConfig{}, wrap(err)
		}
		fill(clientOptions{&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout,
			&o.PoolSize, &o.MaxRetries, &o.DialerRetries, &o.ContextTimeoutEnabled})
		return redisConfig{failover: o}, nil
	default:
		return redisConfig{}, fmt.Errorf("ratelimit: invalid redis url: unsupported scheme %q", u.Scheme)
	}
}

// clientOptions points at the fields go-redis's three option types share.
type clientOptions struct {
	dial, read, write, pool             *time.Duration
	poolSize, maxRetries, dialerRetries *int
	ctxTimeout                          *bool
}
