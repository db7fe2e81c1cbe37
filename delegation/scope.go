package delegation

import (
	"errors"
	"fmt"
	"strings"
)

// ScopePrefix starts every scope this package grants: "tool:<glob>".
const ScopePrefix = "tool:"

const (
	maxScopes       = 64
	maxScopePattern = 128
)

// ErrInvalidScope reports a scope string that is not a non-empty,
// space-separated list of "tool:<glob>" values.
var ErrInvalidScope = errors.New("invalid scope")

// ParseScope splits a space-separated scope string (RFC 6749 §3.3) into its
// distinct "tool:<glob>" values, in order. The glob after "tool:" is made of
// letters, digits, '_', '-', '.' and the wildcard '*' (any run of
// characters). An empty list, any other scope, or more than 64 scopes is an
// error wrapping [ErrInvalidScope].
func ParseScope(s string) ([]string, error) {
	fields := strings.Split(s, " ")
	out := make([]string, 0, len(fields))
	seen := map[string]bool{}
	for _, f := range fields {
		if f == "" {
			continue // tolerate repeated spaces
		}
		if err := checkScope(f); err != nil {
			return nil, err
		}
		if seen[f] {
			continue
		}
		seen[f] = true
		out = append(out, f)
		if len(out) > maxScopes {
			return nil, fmt.Errorf("%w: more than %d scopes", ErrInvalidScope, maxScopes)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no scope requested", ErrInvalidScope)
	}
	return out, nil
}

func checkScope(f string) error {
	pat, ok := strings.CutPrefix(f, ScopePrefix)
	if !ok {
		return fmt.Errorf("%w: %q is not a tool: scope", ErrInvalidScope, truncate(f, 64))
	}
	if pat == "" || len(pat) > maxScopePattern {
		return fmt.Errorf("%w: bad tool pattern length", ErrInvalidScope)
	}
	for i := 0; i < len(pat); i++ {
		c := pat[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '_', c == '-', c == '.', c == '*':
		default:
			return fmt.Errorf("%w: %q has a character outside [A-Za-z0-9_.*-]", ErrInvalidScope, truncate(f, 64))
		}
	}
	return nil
}

// ScopeAllows reports whether a grant's scopes allow the tool named tool: some
// valid "tool:<glob>" scope matches the whole name. Invalid scopes allow
// nothing.
func ScopeAllows(scopes []string, tool string) bool {
	if tool == "" {
		return false
	}
	for _, s := range scopes {
		if checkScope(s) != nil {
			continue
		}
		if globMatch(s[len(ScopePrefix):], tool) {
			return true
		}
	}
	return false
}

// ScopesCover reports whether every requested scope is covered by one of the
// granted scopes: each name the requested glob can match is matched by that
// granted glob; it returns the first that is not. The check is conservative
// (sound): it may refuse a request that only a union of granted patterns
// covers.
func ScopesCover(granted, requested []string) (string, bool) {
	for _, r := range requested {
		if !scopeCovered(granted, r) {
			return r, false
		}
	}
	return "", true
}

func scopeCovered(granted []string, requested string) bool {
	if checkScope(requested) != nil {
		return false
	}
	rp := requested[len(ScopePrefix):]
	for _, g := range granted {
		if checkScope(g) != nil {
			continue
		}
		if globMatch(g[len(ScopePrefix):], rp) {
			return true
		}
	}
	return false
}

// globMatch matches pattern (literals and '*', which matches any run of
// characters) against the whole of text.
//
// When text is itself a pattern, a match proves containment: pattern
// literals are never '*', so each '*' of text is consumed by a '*' of pattern,
// which can absorb whatever text's '*' expands to. Hence every expansion of
// text matches pattern (sound, though not complete for all pattern pairs).
//
// The algorithm is the linear backtracking matcher that remembers only the
// last star; it is exact for patterns whose only wildcard is '*'.
func globMatch(pattern, text string) bool {
	p, t := 0, 0
	starP, starT := -1, 0
	for t < len(text) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			starP, starT = p, t
			p++
		case p < len(pattern) && pattern[p] == text[t]:
			p++
			t++
		case starP >= 0:
			starT++
			p, t = starP+1, starT
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
