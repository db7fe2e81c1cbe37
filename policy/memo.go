package policy

import (
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Decision reuse. A policy is a function of its input and its data. When
// the compiled policy calls no non-deterministic built-in and reads neither
// input.arguments nor input.time, its call decision is fixed by the caller's
// credential (subject, agent, delegation), the session, the tool, the
// detections and the environment. Decide then reuses a decision for the
// same Input.CacheKey and those fields for up to memoTTL, per revision.
// Which input fields a policy reads is found by walking its rules as parsed:
// every use of input must be input.<constant key> (or object.get(input,
// [<constant key>, …], …)); anything else (a bare input, input[x]) makes
// the policy uncacheable.

const (
	memoTTL = 10 * time.Second
	memoMax = 10000
)

// inputUse is what a compiled policy reads of its input.
type inputUse struct {
	keys          map[string]bool // top-level input keys read
	everything    bool            // input used whole or with a computed key
	nondetermined bool            // a non-deterministic built-in is called
	skip          map[*ast.Term]bool
}

// memoCovered are the input keys memoKey accounts for (subject, agent and
// delegation through Input.CacheKey). A policy reading any other key — the
// arguments, the time, or a key added to the input later — is not reused.
var memoCovered = map[string]bool{
	"action": true, "subject": true, "agent": true, "delegation": true,
	"tool": true, "environment": true, "detections": true, "resource": true, "prompt": true,
	"preview": true,
}

// cacheable reports whether decisions depend only on what the memo key holds.
func (u inputUse) cacheable() bool {
	if u.everything || u.nondetermined {
		return false
	}
	for k := range u.keys {
		if !memoCovered[k] {
			return false
		}
	}
	return true
}

// analyzeInput walks every rule and import of the policy as written (the
// compiler would hide object.get(input, …) behind a local variable).
func analyzeInput(modules map[string]*ast.Module) inputUse {
	u := inputUse{keys: map[string]bool{}, skip: map[*ast.Term]bool{}}
	var vis *ast.GenericVisitor
	vis = ast.NewGenericVisitor(func(x any) bool {
		switch x := x.(type) {
		case *ast.Term:
			return u.skip[x] // an input already accounted for by call
		case ast.Ref:
			if x.HasPrefix(ast.InputRootRef) {
				if len(x) > 1 {
					if s, ok := x[1].Value.(ast.String); ok {
						u.keys[string(s)] = true
					} else {
						u.everything = true
					}
					for _, t := range x[1:] {
						vis.Walk(t)
					}
				} else {
					u.everything = true
				}
				return true
			}
		case *ast.Expr:
			if x.IsCall() {
				u.call(x.Operator(), x.Operands())
			}
		case ast.Call:
			if len(x) > 0 {
				if ref, ok := x[0].Value.(ast.Ref); ok {
					u.call(ref, x[1:])
				}
			}
		case ast.Var:
			if x.Equal(ast.InputRootDocument.Value) {
				u.everything = true
			}
		}
		return false
	})
	for _, m := range modules {
		vis.Walk(m)
	}
	return u
}

// call notes a built-in call: non-deterministic ones, and object.get over
// the whole input with a constant path, which reads one key.
func (u *inputUse) call(op ast.Ref, args []*ast.Term) {
	name := op.String()
	if b, ok := ast.BuiltinMap[name]; ok && b.Nondeterministic {
		u.nondetermined = true
	}
	if name == ast.ObjectGet.Name && len(args) >= 2 && isWholeInput(args[0]) {
		switch p := args[1].Value.(type) {
		case ast.String:
			u.keys[string(p)] = true
			u.skip[args[0]] = true // accounted for: not a use of the whole input
		case *ast.Array:
			if p.Len() > 0 {
				if s, ok := p.Elem(0).Value.(ast.String); ok {
					u.keys[string(s)] = true
					u.skip[args[0]] = true
				}
			}
		}
	}
}

// memo holds reused decisions of one revision.
type memo struct {
	mu sync.Mutex
	m  map[string]memoEntry
}

type memoEntry struct {
	d       Decision
	expires time.Time
}

func (m *memo) get(key string, now time.Time) (Decision, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.m[key]
	if !ok || now.After(e.expires) {
		return Decision{}, false
	}
	return e.d, true
}

func (m *memo) put(key string, d Decision, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil || len(m.m) >= memoMax {
		m.m = make(map[string]memoEntry) // bounded: start over rather than grow
	}
	m.m[key] = memoEntry{d: d, expires: now.Add(memoTTL)}
}

// memoKey is the key of in's decision; "" when in cannot be memoized.
func memoKey(in *Input) string {
	if in.CacheKey == "" {
		return ""
	}
	var b strings.Builder
	sep := func(s string) { b.WriteString(s); b.WriteByte(0) }
	sep(in.CacheKey)
	sep(in.Action)
	sep(in.Agent.SessionID)
	sep(in.Environment)
	if pv := in.Preview; pv != nil {
		sep("preview")
		sep(pv.Name)
		sep(pv.Branch)
		sep(strconv.Itoa(pv.PullRequest))
		sep(pv.Repository)
		sep(pv.Owner)
		sep(pv.CreatedBy)
		sep(pv.ExpiresAt)
	}
	t := in.Tool
	sep(t.Name)
	sep(t.Upstream)
	sep(t.Operation)
	sep(t.Method)
	sep(t.Path)
	sep(strings.Join(t.Tags, "\x01"))
	sep(t.Kind)
	if len(t.Annotations) > 0 {
		b, _ := json.Marshal(t.Annotations) // keys sorted
		sep(string(b))
	}
	if r := in.Resource; r != nil {
		sep("resource")
		sep(r.URI)
		sep(r.Upstream)
		sep(r.Name)
		sep(r.MimeType)
	}
	if p := in.Prompt; p != nil {
		sep("prompt")
		sep(p.Name)
		sep(p.Upstream)
		sep(p.Operation)
	}
	for _, k := range slices.Sorted(maps.Keys(in.Detections)) {
		sep(k + "=" + strconv.Itoa(in.Detections[k]))
	}
	return b.String()
}

// isWholeInput reports whether t is the input document itself (a bare
// variable, or the one-term reference the compiler makes of it).
func isWholeInput(t *ast.Term) bool {
	switch v := t.Value.(type) {
	case ast.Var:
		return v.Equal(ast.InputRootDocument.Value)
	case ast.Ref:
		return v.Equal(ast.InputRootRef)
	}
	return false
}
