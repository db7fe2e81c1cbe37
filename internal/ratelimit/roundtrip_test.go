package ratelimit

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/agentharness/harness/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// BenchmarkRedisRoundTrip measures what the limiter's one EVALSHA costs in
// time, against the same EVALSHA written on a bare socket, back to back and
// with the process idle between calls (as at concurrency 1 behind a
// gateway, where Redis sleeps between calls). It reports p50-µs, the median
// round trip; docs/operations.md quotes it. Run it with
//
//	go test -run '^$' -bench RedisRoundTrip -benchtime 3000x ./internal/ratelimit
func BenchmarkRedisRoundTrip(b *testing.B) {
	raw := redistest.Start(b)
	rdb := testClient(b, raw)
	r := NewRedis(rdb, RedisOptions{Timeout: 2 * time.Second})
	ctx := context.Background()
	limits := []Limit{lim(Key("bench", "all"), 1<<30, time.Second, 0), lim(Key("bench", "tool"), 1<<30, time.Second, 0)}
	if _, err := r.Allow(ctx, limits); err != nil { // loads the script
		b.Fatal(err)
	}
	u, err := url.Parse(raw)
	if err != nil {
		b.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	br := bufio.NewReader(conn)
	bs, err := validate(limits)
	if err != nil {
		b.Fatal(err)
	}
	cmd := respCommand("EVALSHA", gcraScript.Hash(), "2", r.prefix+limits[0].Key, r.prefix+limits[1].Key, "",
		strconv.FormatInt(bs[0].interval/1000, 10), strconv.FormatInt(bs[0].tolerance/1000, 10),
		strconv.FormatInt(bs[1].interval/1000, 10), strconv.FormatInt(bs[1].tolerance/1000, 10))
	calls := map[string]func() error{
		"raw": func() error {
			if _, err := conn.Write(cmd); err != nil {
				return err
			}
			for range 5 { // *4 and four integers
				line, err := br.ReadString('\n')
				if err != nil {
					return err
				}
				if line[0] == '-' {
					return fmt.Errorf("redis: %s", line)
				}
			}
			return nil
		},
		"go-redis": func() error { _, err := r.Allow(ctx, limits); return err },
	}
	for _, gap := range []time.Duration{0, 200 * time.Microsecond} {
		for _, name := range []string{"raw", "go-redis"} {
			b.Run(fmt.Sprintf("%s/idle=%s", name, gap), func(b *testing.B) { reportP50(b, gap, calls[name]) })
		}
	}
}

// reportP50 times call serially, idle for gap (untimed) before each, and
// reports the median in µs (p50-µs).
func reportP50(b *testing.B, gap time.Duration, call func() error) {
	var d []time.Duration
	for b.Loop() {
		if gap > 0 {
			b.StopTimer()
			time.Sleep(gap)
			b.StartTimer()
		}
		s := time.Now()
		if err := call(); err != nil {
			b.Fatal(err)
		}
		d = append(d, time.Since(s))
	}
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2].Nanoseconds())/1e3, "p50-µs")
}

// respCommand encodes args as a RESP array of bulk strings.
func respCommand(args ...string) []byte {
	b := fmt.Appendf(nil, "*%d\r\n", len(args))
	for _, a := range args {
		b = fmt.Appendf(b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b
}

// BenchmarkRedisAutoPipeline compares the limiter's script on go-redis's
// ordinary pool with the same script through go-redis's (experimental)
// AutoPipeline, serially (p50-µs) and from 16 goroutines (allocations and
// time per call). The limiter does not auto-pipeline: see
// docs/operations.md.
func BenchmarkRedisAutoPipeline(b *testing.B) {
	rdb := testClient(b, redistest.Start(b))
	ap, err := rdb.(*redis.Client).AutoPipeline()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ap.Close() })
	keys := []string{"harness:rl:" + Key("bench", "all"), "harness:rl:" + Key("bench", "tool")}
	for _, face := range []struct {
		name string
		sc   redis.Scripter
	}{{"pool", rdb}, {"autopipeline", ap}} {
		call := func() error {
			_, err := gcraScript.Run(context.Background(), face.sc, keys, "", 1, 1, 1, 1).Int64Slice()
			return err
		}
		b.Run(face.name+"/serial-idle=200µs", func(b *testing.B) { reportP50(b, 200*time.Microsecond, call) })
		b.Run(face.name+"/parallel-16", func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(8) // 16 goroutines on 2 CPUs
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := call(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
