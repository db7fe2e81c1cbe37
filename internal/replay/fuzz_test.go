package replay

import (
	"context"
	"testing"
)

// FuzzReplayLine: any line is classified exactly once (a decision, replayed
// or not replayable, or another record) and never panics the replay.
func FuzzReplayLine(f *testing.F) {
	e := engine(f, policyDir(f, "", ""))
	for _, l := range trail(f, e) {
		f.Add(l.Data)
	}
	f.Add([]byte(`{"time":"2026-11-02T09:00:00Z","id":"torn"`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		rep, err := Run(context.Background(), Options{New: e}, []Line{{Source: "fuzz", N: 1, Data: line}})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Decisions+rep.Other+rep.OutsideWindow != 1 || rep.Replayed+rep.NotReplayableCount() != rep.Decisions || rep.Changed > rep.Replayed {
			t.Fatalf("line %q: decisions %d other %d outside %d replayed %d not replayable %d changed %d", line,
				rep.Decisions, rep.Other, rep.OutsideWindow, rep.Replayed, rep.NotReplayableCount(), rep.Changed)
		}
	})
}
