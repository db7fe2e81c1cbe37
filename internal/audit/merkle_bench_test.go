package audit

import (
	"context"
	"path/filepath"
	"testing"
)

// BenchmarkTreeRebuild measures what a start with checkpoints costs: the
// tree recomputed over the whole trail (b.N records).
func BenchmarkTreeRebuild(b *testing.B) {
	path := filepath.Join(b.TempDir(), "audit.log")
	l := openLog(b, Config{Path: path, Fsync: FsyncNever})
	for i := range b.N {
		if err := l.Write(context.Background(), callRecord(i)); err != nil {
			b.Fatal(err)
		}
	}
	_ = l.Close()
	b.ResetTimer()
	if _, n, err := RootsAt([]string{path}); err != nil || n != uint64(b.N)+1 {
		b.Fatalf("RootsAt: %d, %v", n, err)
	}
}

// BenchmarkWriteMerkle is Write with the tree maintained.
func BenchmarkWriteMerkle(b *testing.B) {
	l := openLog(b, Config{Path: filepath.Join(b.TempDir(), "audit.log"), Fsync: FsyncNever, Merkle: true})
	defer l.Close()
	r := callRecord(0)
	b.ResetTimer()
	for range b.N {
		rc := *r
		if err := l.Write(context.Background(), &rc); err != nil {
			b.Fatal(err)
		}
	}
}
