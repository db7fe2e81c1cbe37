package main

import (
	"testing"
	"time"
)

func TestParsePprofTop(t *testing.T) {
	out := `File: gateway
Type: cpu
Duration: 5.01s, Total samples = 4.20s (83.83%)
Showing nodes accounting for 4.20s, 100% of 4.20s total
      flat  flat%   sum%        cum   cum%
         0     0%     0%      3.10s 73.81%  net/http.(*conn).serve
     0.02s  0.48%  0.48%      1.50s 35.71%  github.com/agentharness/harness/internal/server.(*Server).callTool
     0.01s  0.24%  0.71%      450ms 10.71%  github.com/agentharness/harness/internal/ratelimit.(*Redis).Allow
     0.01s  0.24%  0.95%      200ms  4.76%  github.com/agentharness/harness/internal/ratelimit.gcra
     0.02s  0.48%  1.43%      100ms  2.38%  encoding/json.(*decodeState).object
     10ms  0.24%  1.67%       20ms  0.48%  encoding/json.Marshal
     0.05s  1.19%  2.86%       50ms  1.19%  internal/runtime/syscall/linux.Syscall6
         0     0%  2.86%       40ms  0.95%  github.com/agentharness/harness/internal/audit.(*Log).Write
         0     0%  2.86%       20ms  0.71%  github.com/agentharness/harness/internal/audit.(*Log).writeBatch
         0     0%  2.86%       20ms  0.48%  go.opentelemetry.io/otel/sdk/trace.(*tracer).Start
`
	res, err := parsePprofTop(out, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if res.total != 4200*time.Microsecond {
		t.Errorf("total per call = %v, want 4.2ms", res.total)
	}
	if len(res.top) != 10 || res.top[1].name != "github.com/agentharness/harness/internal/server.(*Server).callTool" || res.top[1].perCall != 1500*time.Microsecond {
		t.Errorf("top = %+v", res.top)
	}
	want := map[string]time.Duration{
		"whole request (HTTP server connection)":                             3100 * time.Microsecond,
		"tool pipeline (`callTool`)":                                         1500 * time.Microsecond,
		"rate limiter (`internal/ratelimit`)":                                450 * time.Microsecond, // the outermost, not the sum
		"audit (`internal/audit`)":                                           40 * time.Microsecond,
		"audit: the group write(2) of a batch of records (`Log.writeBatch`)": 20 * time.Microsecond,
		"tracing: spans started (sampled calls only)":                        20 * time.Microsecond,
		"own code of encoding/json":                                          30 * time.Microsecond, // flat, summed
		"syscalls (own CPU, i.e. in the kernel)":                             50 * time.Microsecond,
	}
	for _, s := range res.stages {
		if w, ok := want[s.name]; ok && s.perCall != w {
			t.Errorf("stage %q = %v, want %v", s.name, s.perCall, w)
		}
	}
	if _, err := parsePprofTop("garbage", 10); err == nil {
		t.Error("garbage parsed")
	}
	if _, err := parsePprofTop(out, 0); err == nil {
		t.Error("no calls accepted")
	}
}
