// Package replay decides the inputs recorded in the audit trail again with
// another policy and reports whose access changes: allow→deny, deny→allow,
// and changed redaction, context, rate limit, approval and detectors,
// grouped by tool, human and agent. It compares with the decisions the
// records hold, or with a baseline policy decided the same way (so that a
// changed data.json alone shows). Records that cannot be replayed are
// counted and named with the reason, never skipped silently.
//
// The policy package does the deciding (policy.Engine.Replay: prepared
// query, one worker per GOMAXPROCS, at each record's time, no decision
// reuse); this package reads records, compares and renders.
package replay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/agentharness/harness/internal/audit"
	"github.com/agentharness/harness/policy"
)

// Line is one line of an audit trail and where it came from.
type Line struct {
	// Source names the file (or URL) and N the line number.
	Source string
	N      int
	// Data is the line without its newline.
	Data []byte
}

// Options configure Run.
type Options struct {
	// New is the policy under review.
	New *policy.Engine
	// Baseline, when set, is decided too and compared with instead of the
	// recorded decisions.
	Baseline *policy.Engine
	// Since and Until bound the records' times (Until exclusive); zero is
	// unbounded.
	Since, Until time.Time
	// Examples is the number of example records per group (default 3).
	Examples int
}

// Change kinds, in report order.
const (
	AllowToDeny = "allow→deny"
	DenyToAllow = "deny→allow"
)

// Example is one record behind a group.
type Example struct {
	ID   string    `json:"id"`
	Time time.Time `json:"time"`
	// Note adds detail: the policy error of a failed decision, or the
	// place of an unreadable line.
	Note string `json:"note,omitempty"`
}

// Group counts the records of one change for one tool, human and agent.
type Group struct {
	// Change is AllowToDeny, DenyToAllow, or the aspect of an allowed call
	// that changed (policy.ChangeRedact, …).
	Change   string    `json:"change"`
	Tool     string    `json:"tool"`
	Human    string    `json:"human"`
	Agent    string    `json:"agent"`
	Count    int       `json:"count"`
	Examples []Example `json:"examples"`
}

// Skipped counts the records that could not be replayed for one reason.
type Skipped struct {
	Reason   string    `json:"reason"`
	Count    int       `json:"count"`
	Examples []Example `json:"examples"`
}

// Report is the result of Run.
type Report struct {
	// Policy is the revision of the new policy, Baseline that of the
	// baseline ("" when comparing with the recorded decisions).
	Policy   string `json:"policy"`
	Baseline string `json:"baseline,omitempty"`
	// Decisions counts the decision records in the window (and lines that
	// are no complete record), Replayed those
	// decided again, Changed those whose outcome changed.
	Decisions int `json:"decisions"`
	Replayed  int `json:"replayed"`
	Changed   int `json:"changed"`
	// From and To are the times of the first and last decision replayed.
	From time.Time `json:"from,omitzero"`
	To   time.Time `json:"to,omitzero"`
	// OutsideWindow counts decision records outside --since/--until; Other
	// the records that are no decisions (start, rotate, grant…).
	OutsideWindow int `json:"outside_window"`
	Other         int `json:"other"`
	// Changes and NotReplayable are sorted: by change kind, then count
	// (most first), tool, human, agent.
	Changes       []Group   `json:"changes"`
	NotReplayable []Skipped `json:"not_replayable"`
}

// NotReplayableCount is the number of records that could not be replayed.
func (r *Report) NotReplayableCount() int {
	n := 0
	for _, s := range r.NotReplayable {
		n += s.Count
	}
	return n
}

// Reasons a record cannot be replayed.
const (
	ReasonUnreadable = "not a complete audit record (torn or damaged line)"
	ReasonAltered    = "hash does not match the record (altered): not trusted"
	ReasonNoInput    = "no input recorded (written before records carried inputs, or with audit.record_input: none)"
	ReasonNotDecided = "refused before the policy was asked (e.g. an unknown tool): nothing to replay"
	ReasonNoTool     = "the recorded input names no tool (the tool is unknown, so the decision cannot be reproduced)"
	ReasonBadInput   = "the recorded input cannot be decoded"
	ReasonNoDecision = "no recorded decision to compare with (use --baseline)"
)

// entry is one decision record being replayed.
type entry struct {
	rec      *audit.Record
	in       *policy.Input
	recorded policy.Outcome
	skip     string
	note     string
}

// BatchSize is how many lines a caller should hand to Replayer.Add at a
// time: memory stays bounded whatever the length of the trail.
const BatchSize = 8192

// Replayer replays a trail batch by batch (Add) and reports (Report).
type Replayer struct {
	o   Options
	rep *Report
	b   *builder
}

// NewReplayer starts a replay with o.
func NewReplayer(o Options) (*Replayer, error) {
	if o.New == nil {
		return nil, errors.New("replay: no policy")
	}
	if o.Examples <= 0 {
		o.Examples = 3
	}
	rep := &Report{Policy: o.New.Revision(), Changes: []Group{}, NotReplayable: []Skipped{}}
	if o.Baseline != nil {
		rep.Baseline = o.Baseline.Revision()
	}
	return &Replayer{o: o, rep: rep, b: newBuilder(o.Examples)}, nil
}

// Run replays lines at once: NewReplayer, Add in batches, Report.
func Run(ctx context.Context, o Options, lines []Line) (*Report, error) {
	r, err := NewReplayer(o)
	if err != nil {
		return nil, err
	}
	for len(lines) > 0 {
		n := min(len(lines), BatchSize)
		if err := r.Add(ctx, lines[:n]); err != nil {
			return nil, err
		}
		lines = lines[n:]
	}
	return r.Report(), nil
}

// AddFiles reads the audit files (oldest first) and adds their lines in
// batches of BatchSize: memory does not grow with the trail.
func (r *Replayer) AddFiles(ctx context.Context, paths []string) error {
	batch := make([]Line, 0, BatchSize)
	err := audit.ReadLines(paths, func(file string, n int, line []byte) error {
		batch = append(batch, Line{Source: file, N: n, Data: line})
		if len(batch) < BatchSize {
			return nil
		}
		err := r.Add(ctx, batch)
		batch = batch[:0]
		return err
	})
	if err != nil {
		return err
	}
	return r.Add(ctx, batch)
}

// Report returns the report of everything added so far.
func (r *Replayer) Report() *Report {
	rep := *r.rep
	rep.Changes, rep.NotReplayable = r.b.sorted()
	return &rep
}

// Add decides the records among lines again and counts the results. It
// fails only when ctx ends; every problem with a record is in the report.
// Nothing of lines is kept.
func (r *Replayer) Add(ctx context.Context, lines []Line) error {
	o, rep, b := r.o, r.rep, r.b
	entries := parse(lines, o.Baseline == nil)
	var todo []*entry
	for i := range entries {
		e := &entries[i]
		switch {
		case e.rec == nil && e.skip == "":
			rep.Other++
		case e.skip != ReasonUnreadable && !inWindow(e.rec.Time, o.Since, o.Until):
			rep.OutsideWindow++
		default:
			rep.Decisions++
			if e.skip != "" {
				b.skip(e)
				continue
			}
			todo = append(todo, e)
		}
	}
	ins := make([]*policy.Input, len(todo))
	for i, e := range todo {
		ins[i] = e.in
	}
	after := o.New.Replay(ctx, ins)
	var before []policy.Replayed
	if o.Baseline != nil {
		before = o.Baseline.Replay(ctx, ins)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for i, e := range todo {
		was := e.recorded
		if before != nil {
			if before[i].Err != nil && !isPolicyFailure(before[i].Err) {
				e.skip, e.note = ReasonBadInput, before[i].Err.Error()
				b.skip(e)
				continue
			}
			was = before[i].Outcome
		}
		now := after[i]
		if now.Err != nil && !isPolicyFailure(now.Err) {
			e.skip, e.note = ReasonBadInput, now.Err.Error()
			b.skip(e)
			continue
		}
		rep.Replayed++
		if rep.From.IsZero() || e.rec.Time.Before(rep.From) {
			rep.From = e.rec.Time
		}
		if e.rec.Time.After(rep.To) {
			rep.To = e.rec.Time
		}
		changes := was.Changes(now.Outcome)
		if len(changes) == 0 {
			continue
		}
		rep.Changed++
		note := ""
		if now.Err != nil {
			note = "new policy failed: " + now.Err.Error()
		}
		for _, c := range changes {
			if c == policy.ChangeAllow {
				c = AllowToDeny
				if now.Outcome.Allow {
					c = DenyToAllow
				}
			}
			b.change(c, e, note)
		}
	}
	return nil
}

// isPolicyFailure reports whether err is the policy failing (a denial the
// gateway would enforce) rather than an input that cannot be evaluated.
func isPolicyFailure(err error) bool { return !errors.Is(err, policy.ErrBadInput) }

func inWindow(t, since, until time.Time) bool {
	return (since.IsZero() || !t.Before(since)) && (until.IsZero() || t.Before(until))
}

// parse decodes the lines in parallel. An entry with neither record nor
// skip is not a decision.
func parse(lines []Line, needRecorded bool) []entry {
	out := make([]entry, len(lines))
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	per := (len(lines) + workers - 1) / max(workers, 1)
	for w := range workers {
		lo, hi := w*per, min((w+1)*per, len(lines))
		if lo >= hi {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := lo; i < hi; i++ {
				out[i] = parseOne(lines[i], needRecorded)
			}
		}()
	}
	wg.Wait()
	return out
}

func parseOne(l Line, needRecorded bool) entry {
	rec, err := audit.ParseLine(l.Data)
	where := fmt.Sprintf("%s:%d", l.Source, l.N)
	switch {
	case errors.Is(err, audit.ErrHashMismatch):
		return entry{rec: rec, skip: ReasonAltered, note: where}
	case err != nil:
		return entry{rec: &audit.Record{}, skip: ReasonUnreadable, note: where}
	}
	if !rec.IsDecision() {
		return entry{}
	}
	e := entry{rec: rec}
	switch {
	case len(rec.Input) == 0 && rec.PolicyDecisionID == "":
		e.skip = ReasonNotDecided
		return e
	case len(rec.Input) == 0:
		e.skip = ReasonNoInput
		return e
	}
	in, err := policy.ParseInput(rec.Input)
	if err != nil {
		e.skip, e.note = ReasonBadInput, err.Error()
		return e
	}
	if in.Tool.Name == "" && in.Action != policy.ActionList {
		e.skip = ReasonNoTool
		return e
	}
	e.in = in
	if needRecorded {
		if len(rec.PolicyDecision) == 0 {
			e.skip = ReasonNoDecision
			return e
		}
		if err := json.Unmarshal(rec.PolicyDecision, &e.recorded); err != nil {
			e.skip, e.note = ReasonNoDecision, "policy_decision: "+err.Error()
			return e
		}
	}
	return e
}

// builder aggregates groups.
type builder struct {
	examples int
	changes  map[[4]string]*Group
	skipped  map[string]*Skipped
}

func newBuilder(examples int) *builder {
	return &builder{examples: examples, changes: map[[4]string]*Group{}, skipped: map[string]*Skipped{}}
}

func example(e *entry, note string) Example {
	return Example{ID: e.rec.ID, Time: e.rec.Time, Note: note}
}

func (b *builder) change(kind string, e *entry, note string) {
	human := e.rec.Subject
	if e.in != nil && e.in.Subject.Email != "" {
		human = e.in.Subject.Email
	}
	tool := e.rec.Tool
	if e.in != nil && e.in.Tool.Name != "" {
		tool = e.in.Tool.Name
	}
	k := [4]string{kind, tool, human, e.rec.Agent}
	g := b.changes[k]
	if g == nil {
		g = &Group{Change: kind, Tool: tool, Human: human, Agent: e.rec.Agent}
		b.changes[k] = g
	}
	g.Count++
	if len(g.Examples) < b.examples {
		g.Examples = append(g.Examples, example(e, note))
	}
}

func (b *builder) skip(e *entry) {
	s := b.skipped[e.skip]
	if s == nil {
		s = &Skipped{Reason: e.skip}
		b.skipped[e.skip] = s
	}
	s.Count++
	if len(s.Examples) < b.examples {
		note := e.note
		if e.rec.Tool != "" {
			note = strings.TrimSpace(e.rec.Tool + " " + note)
		}
		s.Examples = append(s.Examples, example(e, note))
	}
}

// changeOrder ranks change kinds for the report.
var changeOrder = map[string]int{
	AllowToDeny: 0, DenyToAllow: 1, policy.ChangeRedact: 2, policy.ChangeContext: 3,
	policy.ChangeRateLimit: 4, policy.ChangeApproval: 5, policy.ChangeDetectors: 6,
}

func (b *builder) sorted() ([]Group, []Skipped) {
	gs := make([]Group, 0, len(b.changes))
	for _, g := range b.changes {
		gs = append(gs, *g)
	}
	sort.Slice(gs, func(i, j int) bool {
		a, c := gs[i], gs[j]
		if changeOrder[a.Change] != changeOrder[c.Change] {
			return changeOrder[a.Change] < changeOrder[c.Change]
		}
		if a.Count != c.Count {
			return a.Count > c.Count
		}
		if a.Tool != c.Tool {
			return a.Tool < c.Tool
		}
		if a.Human != c.Human {
			return a.Human < c.Human
		}
		return a.Agent < c.Agent
	})
	ss := make([]Skipped, 0, len(b.skipped))
	for _, s := range b.skipped {
		ss = append(ss, *s)
	}
	sort.Slice(ss, func(i, j int) bool {
		if ss[i].Count != ss[j].Count {
			return ss[i].Count > ss[j].Count
		}
		return ss[i].Reason < ss[j].Reason
	})
	return gs, ss
}
