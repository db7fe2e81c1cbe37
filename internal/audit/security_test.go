package audit

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
)

func TestSecurityAggregationIsBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, Config{Path: path, Fsync: FsyncNever})
	s := NewSecurity(l, "test", nil)
	s.maxKeys = 3
	for i := range 10 {
		for range 5 {
			s.TokenRefused("token expired", "https://idp", fmt.Sprintf("10.0.0.%d", i))
		}
	}
	s.Close(context.Background())
	_ = l.Close()
	var recs []map[string]any
	for _, l := range readLines(t, path) {
		r, ok, err := decodeLine([]byte(l))
		if err != nil || !ok {
			t.Fatal(l)
		}
		if r.Kind == KindSecurity {
			recs = append(recs, map[string]any{"ip": r.ClientIP, "count": r.Count, "event": r.Event})
		}
	}
	// Three keys, then everything else under the overflow key.
	if len(recs) != 4 {
		t.Fatalf("records %v, want 4", recs)
	}
	total := 0
	for _, r := range recs {
		total += r["count"].(int)
	}
	// The overflow reason sorts first.
	if total != 50 || recs[0]["ip"] != "*" || recs[0]["count"] != 35 {
		t.Fatalf("records %v (total %d), want 50 refusals in 3 keys + overflow", recs, total)
	}
	if res := mustVerify(t, path); !res.OK() {
		t.Fatal(res.Bad)
	}
}
