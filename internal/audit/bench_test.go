package audit

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// BenchmarkWrite measures Write per fsync mode, from one goroutine and from
// many (where FsyncAlways shares fsyncs between concurrent writers).
func BenchmarkWrite(b *testing.B) {
	for _, mode := range []string{FsyncAlways, FsyncBatch, FsyncNever} {
		for _, parallel := range []bool{false, true} {
			name := mode
			if parallel {
				name += "/parallel"
			}
			b.Run(name, func(b *testing.B) {
				l := openLog(b, Config{Path: filepath.Join(b.TempDir(), "audit.log"), Fsync: mode})
				ctx := context.Background()
				b.ReportAllocs()
				b.ResetTimer()
				if parallel {
					b.SetParallelism(8)
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							if err := l.Write(ctx, callRecord(1)); err != nil {
								b.Error(err)
								return
							}
						}
					})
				} else {
					for b.Loop() {
						if err := l.Write(ctx, callRecord(1)); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.StopTimer()
				if err := l.Close(); err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}

// countingFile counts the write calls that reach a real file.
type countingFile struct {
	f *os.File
	n atomic.Int64
}

func (c *countingFile) Write(p []byte) (int, error) {
	c.n.Add(1)
	return c.f.Write(p)
}

// BenchmarkWriteGroup is 16 concurrent writers on one log whose records go
// to a real file through a counting writer; write-calls/op is how many
// write(2) calls a record cost (1 without the group write; below 1 when
// records share one).
func BenchmarkWriteGroup(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "audit.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	cf := &countingFile{f: f}
	l := openLog(b, Config{Path: "-", Output: cf})
	ctx := context.Background()
	cf.n.Store(0)
	b.ReportAllocs()
	b.SetParallelism(8) // 16 writers on 2 CPUs
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := l.Write(ctx, callRecord(1)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(cf.n.Load())/float64(b.N), "write-calls/op")
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
}
