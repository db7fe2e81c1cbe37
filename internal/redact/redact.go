package redact

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// NoRecordInContext is the message a caller should give the agent instead
// of a result whose [Report.ContextEmpty] is set.
const NoRecordInContext = "no record in your context"

// Kind names used in [Report.Counts] and [Mask].
const (
	KindField      = "field"       // a value masked by a path or key rule
	KindContext    = "context"     // an object removed by context filtering
	KindSecret     = "secret"      // provider API keys, private keys, JWTs, bearer tokens, URL and password= credentials
	KindCreditCard = "credit_card" // Luhn-valid card numbers
	KindSSN        = "ssn"         // US social security numbers
	KindEmail      = "email"       // e-mail addresses
	KindPhone      = "phone"       // E.164 and NANP phone numbers
	KindIBAN       = "iban"        // mod-97 valid IBANs
)

type kind uint8

const (
	kField kind = iota
	kContext
	kSecret
	kCard
	kSSN
	kEmail
	kPhone
	kIBAN
	nKinds
)

var kindNames = [nKinds]string{KindField, KindContext, KindSecret, KindCreditCard, KindSSN, KindEmail, KindPhone, KindIBAN}

var masks = func() (m [nKinds]string) {
	for k, n := range kindNames {
		m[k] = "[REDACTED:" + n + "]"
	}
	return m
}()

// Mask returns the replacement text for a finding of the given kind,
// "[REDACTED:<kind>]". A value masked by a path or key rule becomes
// Mask(KindField).
func Mask(kind string) string { return "[REDACTED:" + kind + "]" }

// KnownDetectors returns the names of every detector, in a stable order.
func KnownDetectors() []string {
	return []string{KindSecret, KindCreditCard, KindSSN, KindEmail, KindPhone, KindIBAN}
}

// DefaultDetectors returns the detectors applied when the configuration
// names none: secret, credit_card and ssn.
func DefaultDetectors() []string { return []string{KindSecret, KindCreditCard, KindSSN} }

// ErrUnknownDetector is returned (wrapped) for a detector name that does not exist.
var ErrUnknownDetector = errors.New("unknown detector")

// ErrInvalidPath is returned (wrapped) for a redaction path that cannot be parsed.
var ErrInvalidPath = errors.New("invalid redaction path")

// Rules say what to remove from a result. The zero value removes nothing.
type Rules struct {
	// Paths to mask. A bare key ("card_number") masks that key at any depth.
	// A dotted path masks from the root: segments are separated by ".",
	// "[*]" matches every element of an array and "*" any key of an object,
	// e.g. "orders[*].iban", "[*].customer.ssn", "accounts.*.token".
	// Keys match case-insensitively after Unicode NFKC normalisation, with
	// invisible characters (zero-width space, joiners, U+FEFF, …) dropped.
	Paths []string
	// Context maps a key to its allowed values. When an object at any depth
	// holds the key with any other value, the nearest enclosing array
	// element is removed (the whole record, not just the object naming the
	// value); with no enclosing array the whole value is out of context.
	// Keys match like Paths. Strings compare exactly; numbers and booleans
	// by their JSON text; an array value must hold only allowed values;
	// null, objects and an empty allowed list never match.
	Context map[string][]string
	// Detectors to run, by name (see [KnownDetectors]). Empty runs none; the
	// caller resolves the configured default.
	Detectors []string
}

type pseg struct {
	key    string
	anyKey bool
	anyIdx bool
}

// Redactor applies compiled [Rules]. It is immutable and safe for
// concurrent use.
type Redactor struct {
	det      detSet
	keys     map[string]struct{} // bare keys, any depth
	rooted   [][]pseg            // paths from the root
	maxDepth int                 // longest rooted path
	context  map[string][]string
}

// Compile validates r and returns its [Redactor]. Every problem is reported
// (joined): unknown detectors (the error lists the known ones) and invalid
// paths. Compile is cheap enough to call per request.
func Compile(r Rules) (*Redactor, error) {
	rd := &Redactor{}
	if len(r.Context) > 0 {
		rd.context = make(map[string][]string, len(r.Context))
		for k, allowed := range r.Context {
			fk := foldKey(k)
			if prev, ok := rd.context[fk]; ok {
				// Two rules for keys that match alike: a value must pass both.
				allowed = slices.DeleteFunc(slices.Clone(prev), func(v string) bool { return !slices.Contains(allowed, v) })
			}
			rd.context[fk] = allowed
		}
	}
	var errs []error
	for _, name := range r.Detectors {
		k, ok := detectorKind(name)
		if !ok {
			errs = append(errs, fmt.Errorf("%w %q (known: %s)", ErrUnknownDetector, name, strings.Join(KnownDetectors(), ", ")))
			continue
		}
		rd.det |= 1 << k
	}
	for _, p := range r.Paths {
		segs, bare, err := parsePath(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if bare {
			if rd.keys == nil {
				rd.keys = make(map[string]struct{}, len(r.Paths))
			}
			rd.keys[foldKey(p)] = struct{}{}
			continue
		}
		rd.rooted = append(rd.rooted, segs)
		rd.maxDepth = max(rd.maxDepth, len(segs))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return rd, nil
}

func detectorKind(name string) (kind, bool) {
	switch name {
	case KindSecret:
		return kSecret, true
	case KindCreditCard:
		return kCard, true
	case KindSSN:
		return kSSN, true
	case KindEmail:
		return kEmail, true
	case KindPhone:
		return kPhone, true
	case KindIBAN:
		return kIBAN, true
	}
	return 0, false
}

// parsePath parses one redaction path. bare reports a single plain key.
func parsePath(p string) (segs []pseg, bare bool, err error) {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrInvalidPath, p, why) }
	if p == "" {
		return nil, false, bad("empty")
	}
	if !strings.ContainsAny(p, ".[]*") {
		return nil, true, nil
	}
	rest := p
	first := true
	for rest != "" {
		switch {
		case strings.HasPrefix(rest, "[*]"):
			segs = append(segs, pseg{anyIdx: true})
			rest = rest[3:]
		case rest[0] == '[':
			return nil, false, bad("only [*] is supported inside brackets")
		default:
			if !first {
				if rest[0] != '.' {
					return nil, false, bad("expected . or [*]")
				}
				rest = rest[1:]
			}
			end := strings.IndexAny(rest, ".[")
			if end < 0 {
				end = len(rest)
			}
			key := rest[:end]
			switch {
			case key == "":
				return nil, false, bad("empty segment")
			case key == "*":
				segs = append(segs, pseg{anyKey: true})
			case strings.ContainsAny(key, "]*"):
				return nil, false, bad("unexpected ] or *")
			default:
				segs = append(segs, pseg{key: foldKey(key)})
			}
			rest = rest[end:]
		}
		first = false
	}
	if len(segs) == 1 && segs[0].anyKey {
		return nil, false, bad("a lone * would mask everything")
	}
	return segs, false, nil
}

// counts is a cheap-to-copy tally per kind.
type counts [nKinds]int

func (c *counts) report(contextEmpty bool) Report {
	r := Report{ContextEmpty: contextEmpty}
	for k, n := range c {
		if n == 0 {
			continue
		}
		if r.Counts == nil {
			r.Counts = make(map[string]int, 2)
		}
		r.Counts[kindNames[k]] = n
	}
	return r
}

// Report tells what a redaction removed.
type Report struct {
	// Counts holds the number of removals per kind (only kinds that
	// occurred): "field", "context" and the detector names.
	Counts map[string]int
	// ContextEmpty is set when the whole result was out of context; the
	// redacted data is then null and the caller should answer
	// [NoRecordInContext].
	ContextEmpty bool
}

// Total returns the number of removals of every kind.
func (r Report) Total() int {
	t := 0
	for _, n := range r.Counts {
		t += n
	}
	return t
}

// Detectors returns the names of the detectors r runs.
func (r *Redactor) Detectors() []string {
	var out []string
	for k := kSecret; k < nKinds; k++ {
		if r.det&(1<<k) != 0 {
			out = append(out, kindNames[k])
		}
	}
	return out
}

// HasContext reports whether r filters by context.
func (r *Redactor) HasContext() bool { return len(r.context) > 0 }

// NeedsJSON reports whether r has rules that only JSON can satisfy: field
// masks (paths, keys) or a context filter. A caller holding a result that
// is not JSON (plain text, HTML, NDJSON) cannot apply them and should
// withhold it when NeedsJSON is true; [Redactor.Text] applies only the
// detectors.
func (r *Redactor) NeedsJSON() bool {
	return len(r.context) > 0 || len(r.keys) > 0 || len(r.rooted) > 0
}

// keyRules reports whether any rule looks at object keys.
func (r *Redactor) keyRules() bool { return len(r.context) > 0 || len(r.keys) > 0 }

// keyMasked reports whether a folded member key is masked by a bare-key rule.
func (r *Redactor) keyMasked(fk []byte) bool {
	if len(r.keys) == 0 {
		return false
	}
	_, ok := r.keys[string(fk)]
	return ok
}

// rootedMatch reports whether path (from the root) is masked by a rooted rule.
func (r *Redactor) rootedMatch(path []pathElem) bool {
	for _, rule := range r.rooted {
		if len(rule) != len(path) {
			continue
		}
		ok := true
		for i, s := range rule {
			e := path[i]
			switch {
			case s.anyIdx:
				ok = e.idx
			case s.anyKey:
				ok = !e.idx
			case e.raw != nil:
				ok = !e.idx && string(e.raw) == s.key
			default:
				ok = !e.idx && e.key == s.key
			}
			if !ok {
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// pathElem is one step from the root: an array element (idx) or an object
// key, held as raw bytes (JSON) or a string (Value).
type pathElem struct {
	raw []byte
	key string
	idx bool
}

// allowedScalar reports whether a context value's text is in allowed.
func allowedScalar(v string, allowed []string) bool { return slices.Contains(allowed, v) }
