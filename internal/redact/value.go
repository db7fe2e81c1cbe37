package redact

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"strings"
)

// contextAllowedValue reports whether a decoded context value is allowed.
func contextAllowedValue(v any, allowed []string) bool {
	switch t := v.(type) {
	case string:
		return allowedScalar(t, allowed)
	case json.Number:
		return allowedScalar(t.String(), allowed)
	case float64:
		return allowedScalar(strconv.FormatFloat(t, 'f', -1, 64), allowed)
	case bool:
		return allowedScalar(strconv.FormatBool(t), allowed)
	case []any:
		if len(t) == 0 {
			return false
		}
		for _, e := range t {
			switch e.(type) {
			case []any, map[string]any:
				return false
			}
			if !contextAllowedValue(e, allowed) {
				return false
			}
		}
		return true
	}
	return false
}

// Value redacts an already decoded JSON value (map[string]any, []any,
// string, json.Number, float64, bool, nil), such as structuredContent, with
// the same rules as [Redactor.JSON]. The input is not modified; the result
// is a new value. Other Go types are encoded to JSON, redacted and decoded
// (numbers as json.Number); a value that cannot be encoded becomes the
// field mask. When the whole value is out of context the result is nil and
// [Report.ContextEmpty] is set.
func (r *Redactor) Value(v any) (any, Report) {
	w := valueWalker{r: r}
	out, removed := w.walk(v, 0)
	if removed {
		return nil, w.c.report(true)
	}
	return out, w.c.report(false)
}

type valueWalker struct {
	r    *Redactor
	c    counts
	path []pathElem
	ms   []match
}

// str returns s with findings masked.
func (w *valueWalker) str(s string) string {
	w.ms = w.r.det.find([]byte(s), w.ms[:0])
	if len(w.ms) == 0 {
		return s
	}
	var b []byte
	last := 0
	for _, m := range w.ms {
		b = append(b, s[last:m.start]...)
		b = append(b, masks[m.k]...)
		w.c[m.k]++
		last = m.end
	}
	return string(append(b, s[last:]...))
}

func (w *valueWalker) walk(v any, depth int) (any, bool) {
	if depth > maxDepth {
		w.c[kField]++
		return masks[kField], false
	}
	switch t := v.(type) {
	case nil, bool:
		return t, false
	case string:
		return w.str(t), false
	case json.Number:
		if s := w.str(string(t)); s != string(t) {
			return s, false
		}
		return t, false
	case float64:
		if t == math.Trunc(t) && math.Abs(t) >= 1e12 && math.Abs(t) < 1e20 {
			s := strconv.FormatFloat(t, 'f', -1, 64)
			if m := w.str(s); m != s {
				return m, false
			}
		}
		return t, false
	case []any:
		return w.array(t, depth), false
	case map[string]any:
		return w.object(t, depth)
	default:
		b, err := json.Marshal(t)
		if err != nil {
			w.c[kField]++
			return masks[kField], false
		}
		var x any
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		if d.Decode(&x) != nil {
			w.c[kField]++
			return masks[kField], false
		}
		return w.walk(x, depth)
	}
}

func (w *valueWalker) array(a []any, depth int) []any {
	track := depth < w.r.maxDepth
	if track {
		w.path = append(w.path, pathElem{idx: true})
		defer func() { w.path = w.path[:len(w.path)-1] }()
	}
	masked := track && w.r.rootedMatch(w.path)
	out := make([]any, 0, len(a))
	for _, e := range a {
		if masked {
			removed := false
			if len(w.r.context) > 0 { // only a foreign record below matters
				snap := w.c
				_, removed = w.walk(e, depth+1)
				w.c = snap
			}
			if removed {
				w.c[kContext]++
			} else {
				w.c[kField]++
				out = append(out, masks[kField])
			}
			continue
		}
		x, removed := w.walk(e, depth+1)
		if !removed {
			out = append(out, x)
		}
	}
	return out
}

func (w *valueWalker) object(m map[string]any, depth int) (any, bool) {
	snap := w.c
	out := func() (any, bool) {
		w.c = snap
		w.c[kContext]++
		return nil, true
	}
	if len(w.r.context) > 0 {
		for k, x := range m {
			if allowed, ok := w.r.context[foldKey(k)]; ok && !contextAllowedValue(x, allowed) {
				return out()
			}
		}
	}
	track := depth < w.r.maxDepth
	res := make(map[string]any, len(m))
	for k, x := range m {
		mk := w.str(k)
		fk := k
		if w.r.keyRules() || track {
			fk = foldKey(k)
		}
		if track {
			w.path = append(w.path, pathElem{key: fk})
		}
		maskKind := kind(nKinds)
		if _, ok := w.r.keys[fk]; ok || (track && w.r.rootedMatch(w.path)) {
			maskKind = kField
		} else if s, ok := x.(string); ok && s != "" && w.r.det&bSecret != 0 && strings.EqualFold(k, awsSecretKey) {
			maskKind = kSecret
		}
		var removed bool
		if maskKind != nKinds {
			if len(w.r.context) > 0 { // only a foreign record below matters
				snap2 := w.c
				_, removed = w.walk(x, depth+1)
				w.c = snap2
			}
			w.c[maskKind]++
			res[mk] = masks[maskKind]
		} else {
			var y any
			if y, removed = w.walk(x, depth+1); !removed {
				res[mk] = y
			}
		}
		if track {
			w.path = w.path[:len(w.path)-1]
		}
		if removed {
			// A foreign record below removes this whole object.
			return out()
		}
	}
	return res, false
}

// Scan runs the named detectors over v (typically a call's decoded
// arguments: keys, strings and integers) and returns the number of findings
// per kind, without masking anything; nil when there are none. Unknown
// detector names are ignored: validate them with [Compile].
func Scan(v any, detectors []string) map[string]int {
	var d detSet
	for _, n := range detectors {
		if k, ok := detectorKind(n); ok {
			d |= 1 << k
		}
	}
	if d == 0 {
		return nil
	}
	w := valueWalker{r: &Redactor{det: d}}
	w.walk(v, 0)
	return w.c.report(false).Counts
}
