package audit

import (
	"context"
	"path/filepath"
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
