package replay

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"testing"
	"time"

	"github.com/agentharness/harness/internal/audit"
)

// BenchmarkReplay100k replays a trail of 100,000 call records (the
// default policy, varied humans, roles, agents, tools and arguments)
// against a changed data.json, as `gateway policy replay` does: reading the
// file in batches, decoding every record and input, deciding each with the
// new policy, comparing and grouping.
// The figure in docs/policy.md is its ns/op.
func BenchmarkReplay100k(b *testing.B) {
	const n = 100_000
	old := engine(b, policyDir(b, "", ""))
	roles := [][]string{{"support"}, {"viewer"}, {"admin"}, {"support", "viewer"}, nil}
	tools := []call{
		{tool: "crm_get_customer", method: "GET", tags: []string{"customers"}},
		{tool: "crm_update_ticket", method: "POST", tags: []string{"tickets"}},
		{tool: "crm_refund", method: "POST", tags: []string{"payments"}},
		{tool: "crm_list_orders", method: "GET", tags: []string{"orders"}},
	}
	// Distinct calls are decided once; records differ in id, time, subject
	// and arguments (which the default policy does not read).
	var protos []audit.Record
	for i, r := range roles {
		for j, tc := range tools {
			c := tc
			c.sub, c.agent, c.roles = fmt.Sprintf("user-%d", i), fmt.Sprintf("agent-%d", j%2), r
			c.args = map[string]any{"customer_id": "c-1", "note": "please refund order 1234", "amount": 12.5}
			protos = append(protos, record(b, old, c, t0))
		}
	}
	path := filepath.Join(b.TempDir(), "audit.log")
	l, err := audit.Open(context.Background(), audit.Config{Path: path, Fsync: audit.FsyncNever}, nil)
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		r := protos[i%len(protos)]
		r.ID, r.Time = "", t0.Add(time.Duration(i)*time.Second)
		if err := l.Write(context.Background(), &r); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	next := engine(b, policyDir(b, "", dataNew))
	defer debug.SetGCPercent(debug.SetGCPercent(400)) // as the gateway binary runs
	b.ResetTimer()
	cpu0 := cpuTime()
	for b.Loop() {
		r, err := NewReplayer(Options{New: next})
		if err != nil {
			b.Fatal(err)
		}
		if err := r.AddFiles(context.Background(), []string{path}); err != nil {
			b.Fatal(err)
		}
		rep := r.Report()
		if rep.Replayed != n || rep.Changed == 0 {
			b.Fatalf("replayed %d, changed %d", rep.Replayed, rep.Changed)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the process's CPU time: on a shared machine steadier than
// wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
