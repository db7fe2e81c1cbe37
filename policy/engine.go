package policy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// DefaultQuery is the query evaluated when Options.Query is empty.
const DefaultQuery = "data.harness.decision"

// Options configure an Engine.
type Options struct {
	// Dir holds the policy: .rego files (except *_test.rego) and
	// data.json/data.yaml documents. Empty, with no Bundle, means the
	// embedded default policy.
	Dir string
	// Bundle is an optional OPA bundle (a directory or a .tar.gz), loaded in
	// addition to Dir.
	Bundle string
	// Query is the decision to evaluate; default data.harness.decision.
	Query string
	// Logger receives reload events and errors; nil discards them.
	Logger *slog.Logger
	// OnReload, if set, is told of every reload that loaded a new revision
	// (err nil) or was rejected (err set; the last good policy keeps
	// running). revision is the content hash of the policy's files.
	OnReload func(ctx context.Context, revision string, err error)
}

// Engine evaluates a compiled policy. It is safe for concurrent use; Reload
// swaps the policy atomically under running decisions.
type Engine struct {
	opts    Options
	log     *slog.Logger
	cur     atomic.Pointer[state]
	stale   atomic.Pointer[error]
	reload  sync.Mutex    // serialises Reload
	pollInt time.Duration // Watch's polling interval
	// static is set for an engine built from bundle bytes (FromBundle):
	// there is nothing on disk to reload.
	static bool
	// caps, when set, limits the builtins a policy may use.
	caps *ast.Capabilities
	// timeout, when set, bounds each evaluation (FromBundle).
	timeout time.Duration
}

// state is one compiled revision of the policy.
type state struct {
	revision    string
	fingerprint string // what Watch compares against the files on disk
	decide      rego.PreparedEvalQuery
	list        rego.PreparedEvalQuery
	memo        *memo // nil unless the policy's call decisions can be reused
}

// New loads, compiles and prepares the policy described by opts. A broken
// policy is an error (wrapping ErrLoad) naming the file and line.
func New(ctx context.Context, opts Options) (*Engine, error) {
	if opts.Query == "" {
		opts.Query = DefaultQuery
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Engine{opts: opts, log: log.With("component", "policy"), pollInt: time.Second}
	st, err := e.build(ctx)
	if err != nil {
		return nil, err
	}
	e.cur.Store(st)
	return e, nil
}

// build loads and prepares the policy to the side.
func (e *Engine) build(ctx context.Context) (*state, error) {
	ref, err := ast.ParseRef(e.opts.Query)
	if err != nil {
		return nil, fmt.Errorf("%w: query %q is not a reference: %w", ErrLoad, e.opts.Query, err)
	}
	if !ref.HasPrefix(ast.DefaultRootRef) {
		return nil, fmt.Errorf("%w: query %q must start with data", ErrLoad, e.opts.Query)
	}
	src, err := load(&e.opts, false, true)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLoad, err)
	}
	st := &state{revision: src.revision(e.opts.Query)}
	st.fingerprint = st.revision
	if e.opts.Bundle != "" {
		fp, err := load(&e.opts, false, false)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrLoad, err)
		}
		st.fingerprint = fp.revision(e.opts.Query)
	}
	return e.compile(ctx, ref, src, st)
}

// compile compiles src's modules for the query ref and prepares st's
// queries.
func (e *Engine) compile(ctx context.Context, ref ast.Ref, src *sources, st *state) (*state, error) {
	use := analyzeInput(src.modules) // before Compile rewrites the rules
	c := ast.NewCompiler().WithDefaultRegoVersion(ast.RegoV1)
	if e.caps != nil {
		c = c.WithCapabilities(e.caps)
	}
	if c.Compile(src.modules); c.Failed() {
		return nil, fmt.Errorf("%w: %w", ErrLoad, c.Errors)
	}
	if len(c.GetRules(ref)) == 0 && !hasDoc(src.docs, ref) {
		return nil, fmt.Errorf("%w: no rule defines the query %s", ErrLoad, ref)
	}
	if use.cacheable() {
		st.memo = &memo{}
	}
	store := inmem.NewFromObjectWithOpts(src.docs, inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true))
	var err error
	st.decide, err = rego.New(
		rego.Compiler(c), rego.Store(store), rego.ParsedQuery(ast.NewBody(ast.NewExpr(ast.NewTerm(ref)))),
		rego.GenerateJSON(rawTerm),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: query %s: %w", ErrLoad, ref, err)
	}
	// The input is an array of complete per-tool inputs, built in Go sharing
	// every term but the tool. object.get over a wrapper keeps the type
	// checker from rejecting a policy whose decision may not be an object:
	// that is a runtime denial, not a load error.
	listQuery := fmt.Sprintf(`{t.tool.name | some t in input; d := %s with input as t; object.get({"d": d}, ["d", "allow"], false) == true}`, ref)
	st.list, err = rego.New(rego.Compiler(c), rego.Store(store), rego.Query(listQuery), rego.GenerateJSON(rawTerm)).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: list query for %s: %w", ErrLoad, ref, err)
	}
	return st, nil
}

// rawTerm keeps results as OPA values: decoding them directly saves a
// conversion to Go maps per decision.
func rawTerm(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }

// hasDoc reports whether the data documents hold a value at ref.
func hasDoc(docs map[string]any, ref ast.Ref) bool {
	var cur any = docs
	for _, t := range ref[1:] {
		s, ok := t.Value.(ast.String)
		m, isMap := cur.(map[string]any)
		if !ok || !isMap {
			return false
		}
		if cur, ok = m[string(s)]; !ok {
			return false
		}
	}
	return true
}

// newID returns a fresh random decision id.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	return hex.EncodeToString(b[:])
}

// Decide evaluates the policy for in. It fails closed: an evaluation error,
// an undefined or a malformed decision yields Allow false, a reason saying
// the policy failed, and a non-nil error (ErrEvaluation, ErrUndefined or
// ErrMalformed). Every decision carries a fresh ID and the policy Revision.
func (e *Engine) Decide(ctx context.Context, in *Input) (Decision, error) {
	st := e.cur.Load()
	key := ""
	now := time.Now()
	if st.memo != nil && in != nil {
		key = memoKey(in)
	}
	if key != "" {
		if d, ok := st.memo.get(key, now); ok {
			d.ID, d.Revision = newID(), st.revision
			return d, nil
		}
	}
	if e.timeout > 0 { // a memo hit needs no timer
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, e.timeout)
		defer cancel()
	}
	d, err := st.evalDecision(ctx, in)
	if err != nil {
		d = failed(err)
	} else if key != "" {
		st.memo.put(key, d, now)
	}
	d.ID = newID()
	d.Revision = st.revision
	return d, err
}

func (st *state) evalDecision(ctx context.Context, in *Input) (d Decision, err error) {
	defer recoverEval(&err)
	if in == nil {
		return Decision{}, fmt.Errorf("%w: no input", ErrEvaluation)
	}
	action := in.Action
	if action == "" {
		action = ActionCall
	}
	v, err := in.value(action, true)
	if err != nil {
		return Decision{}, fmt.Errorf("%w: input: %w", ErrEvaluation, err)
	}
	rs, err := st.decide.Eval(ctx, rego.EvalParsedInput(v))
	if err != nil {
		return Decision{}, fmt.Errorf("%w: %w", ErrEvaluation, err)
	}
	switch {
	case len(rs) == 0 || len(rs[0].Expressions) == 0:
		return Decision{}, ErrUndefined
	case len(rs) > 1 || len(rs[0].Expressions) > 1:
		return Decision{}, fmt.Errorf("%w: more than one result", ErrMalformed)
	}
	t, ok := rs[0].Expressions[0].Value.(*ast.Term)
	if !ok {
		return Decision{}, fmt.Errorf("%w: unexpected result %T", ErrMalformed, rs[0].Expressions[0].Value)
	}
	return decodeDecision(t.Value)
}

// Eval evaluates the query for an arbitrary input document (a value as
// decoded from JSON) and returns the result as the policy produced it, in
// JSON-compatible form: what `gateway policy eval` prints. It does not
// check the decision's shape; an undefined result is ErrUndefined.
func (e *Engine) Eval(ctx context.Context, input any) (out any, err error) {
	defer recoverEval(&err)
	v, err := ast.InterfaceToValue(input)
	if err != nil {
		return nil, fmt.Errorf("%w: input: %w", ErrEvaluation, err)
	}
	rs, err := e.cur.Load().decide.Eval(ctx, rego.EvalParsedInput(v))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrEvaluation, err)
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return nil, ErrUndefined
	}
	t, ok := rs[0].Expressions[0].Value.(*ast.Term)
	if !ok {
		return nil, fmt.Errorf("%w: unexpected result %T", ErrMalformed, rs[0].Expressions[0].Value)
	}
	return ast.JSON(t.Value)
}

// Allowed filters tools/list: it reports, for each tool, whether the policy
// allows it for in with action "list" (whatever in.Action says; in.Tool is
// ignored). The whole list is decided in ONE evaluation. It fails closed: on
// error every tool maps to false (the map is never nil).
func (e *Engine) Allowed(ctx context.Context, in *Input, tools []Tool) (map[string]bool, error) {
	if e.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, e.timeout)
		defer cancel()
	}
	out := make(map[string]bool, len(tools))
	for i := range tools {
		out[tools[i].Name] = false
	}
	allowed, err := e.allowed(ctx, in, tools)
	if err != nil {
		return out, err
	}
	for name := range allowed {
		if _, listed := out[name]; listed {
			out[name] = true
		}
	}
	return out, nil
}

// recoverEval turns a panic during evaluation (a bug in a builtin, say)
// into an evaluation error: the engine fails closed rather than crash.
func recoverEval(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%w: %v", ErrEvaluation, r)
	}
}

// allowed returns the names of the tools the policy allows.
func (e *Engine) allowed(ctx context.Context, in *Input, tools []Tool) (names map[string]struct{}, err error) {
	defer recoverEval(&err)
	out := make(map[string]struct{}, len(tools))
	if in == nil {
		return nil, fmt.Errorf("%w: no input", ErrEvaluation)
	}
	if len(tools) == 0 {
		return out, nil
	}
	base, err := in.value(ActionList, false)
	if err != nil {
		return nil, fmt.Errorf("%w: input: %w", ErrEvaluation, err)
	}
	items := make([][2]*ast.Term, 0, base.Len()+1)
	base.Foreach(func(k, v *ast.Term) { items = append(items, [2]*ast.Term{k, v}) })
	items = append(items, [2]*ast.Term{kTool, nil})
	inputs := make([]*ast.Term, len(tools))
	for i := range tools {
		t, err := tools[i].term()
		if err != nil {
			return nil, fmt.Errorf("%w: input: %w", ErrEvaluation, err)
		}
		items[len(items)-1][1] = t
		inputs[i] = ast.ObjectTerm(items...)
	}
	v := ast.NewArray(inputs...)
	rs, err := e.cur.Load().list.Eval(ctx, rego.EvalParsedInput(v))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrEvaluation, err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return nil, ErrUndefined
	}
	t, ok := rs[0].Expressions[0].Value.(*ast.Term)
	if !ok {
		return nil, fmt.Errorf("%w: unexpected result %T", ErrMalformed, rs[0].Expressions[0].Value)
	}
	set, ok := t.Value.(ast.Set)
	if !ok {
		return nil, fmt.Errorf("%w: allowed tools are not a set", ErrMalformed)
	}
	set.Foreach(func(n *ast.Term) {
		if s, ok := n.Value.(ast.String); ok {
			out[string(s)] = struct{}{}
		}
	})
	return out, nil
}

// Revision identifies the running policy: a hash of the query and of every
// file loaded.
func (e *Engine) Revision() string { return e.cur.Load().revision }

// Reload builds the policy again to the side and swaps it in atomically. On
// failure the last good policy keeps running, the error (naming file and
// line) is logged, remembered for Stale, and returned.
func (e *Engine) Reload(ctx context.Context) error {
	if e.static {
		return nil
	}
	e.reload.Lock()
	defer e.reload.Unlock()
	old := e.cur.Load()
	st, err := e.build(ctx)
	if err != nil {
		e.log.ErrorContext(ctx, "policy reload failed, keeping the last good policy",
			"revision", old.revision, "error", err)
		e.stale.Store(&err)
		if e.opts.OnReload != nil {
			e.opts.OnReload(ctx, old.revision, err)
		}
		return err
	}
	if st.revision == old.revision {
		e.stale.Store(nil)
		return nil
	}
	e.cur.Store(st)
	e.stale.Store(nil) // only once the new policy decides
	e.log.InfoContext(ctx, "policy reloaded", "revision", st.revision, "previous", old.revision)
	if e.opts.OnReload != nil {
		e.opts.OnReload(ctx, st.revision, nil)
	}
	return nil
}

// Stale returns nil when the running policy is the newest one loaded, else
// the error of the last failed reload (for /readyz).
func (e *Engine) Stale() error {
	if p := e.stale.Load(); p != nil {
		return fmt.Errorf("policy is stale, running revision %s: %w", e.Revision(), *p)
	}
	return nil
}

// Watch polls Dir (and Bundle) for changes, by content hash, and reloads the
// policy once a change has been stable for one polling interval (about a
// second). It returns nil when ctx ends. With the embedded policy there is
// nothing to watch and it just waits for ctx.
func (e *Engine) Watch(ctx context.Context) error {
	if e.opts.Dir == "" && e.opts.Bundle == "" {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(e.pollInt)
	defer t.Stop()
	seen := e.cur.Load().fingerprint
	pending := ""
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		fp := e.fingerprint()
		switch {
		case fp == seen:
			pending = ""
		case fp != pending:
			pending = fp // wait for the change to settle
		default:
			seen, pending = fp, ""
			_ = e.Reload(ctx) // logged and remembered by Reload
		}
	}
}

// fingerprint hashes the policy files on disk without parsing them.
func (e *Engine) fingerprint() string {
	s, err := load(&e.opts, false, false)
	if err != nil {
		return "error: " + err.Error()
	}
	return s.revision(e.opts.Query)
}
