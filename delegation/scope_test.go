package delegation

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestParseScope(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want []string
	}{
		{name: "one", in: "tool:crm_get_customer", want: []string{"tool:crm_get_customer"}},
		{name: "several, deduplicated, extra spaces", in: " tool:a  tool:b_* tool:a ", want: []string{"tool:a", "tool:b_*"}},
		{name: "dots and dashes", in: "tool:git.hub-list", want: []string{"tool:git.hub-list"}},
		{name: "empty", in: ""},
		{name: "blank", in: "   "},
		{name: "not a tool scope", in: "openid"},
		{name: "prefix only", in: "tool:"},
		{name: "uppercase prefix", in: "TOOL:a"},
		{name: "tab separated", in: "tool:a\ttool:b"},
		{name: "slash", in: "tool:a/b"},
		{name: "question mark", in: "tool:a?"},
		{name: "non-ascii", in: "tool:crm_é"},
		{name: "too long", in: "tool:" + strings.Repeat("a", maxScopePattern+1)},
		{name: "too many", in: manyScopes(maxScopes + 1)},
		{name: "max count", in: manyScopes(maxScopes), want: strings.Fields(manyScopes(maxScopes))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseScope(tc.in)
			if tc.want == nil {
				if !errors.Is(err, ErrInvalidScope) {
					t.Errorf("got %v, %v; want ErrInvalidScope", got, err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func manyScopes(n int) string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("tool:t%d", i)
	}
	return strings.Join(s, " ")
}

func TestScopeAllows(t *testing.T) {
	for _, tc := range []struct {
		name   string
		scopes []string
		tool   string
		want   bool
	}{
		{"exact", []string{"tool:crm_get_customer"}, "crm_get_customer", true},
		{"exact is whole-name", []string{"tool:crm_get"}, "crm_get_customer", false},
		{"prefix glob", []string{"tool:crm_*"}, "crm_get_customer", true},
		{"prefix glob needs the prefix", []string{"tool:crm_*"}, "billing_get", false},
		{"star matches empty", []string{"tool:crm_*"}, "crm_", true},
		{"infix glob", []string{"tool:crm_*_customer"}, "crm_delete_customer", true},
		{"infix glob end", []string{"tool:crm_*_customer"}, "crm_delete_customers", false},
		{"all", []string{"tool:*"}, "anything", true},
		{"second scope", []string{"tool:a", "tool:b*"}, "bee", true},
		{"no scopes", nil, "a", false},
		{"empty tool", []string{"tool:*"}, "", false},
		{"non-tool scope ignored", []string{"openid", "crm_*"}, "crm_x", false},
		{"invalid pattern allows nothing", []string{"tool:a/*"}, "a/b", false},
		{"backtracking", []string{"tool:*a*b"}, "xaxbxab", true},
		{"backtracking miss", []string{"tool:*a*b"}, "xaxbxa", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ScopeAllows(tc.scopes, tc.tool); got != tc.want {
				t.Errorf("ScopeAllows(%v, %q) = %v, want %v", tc.scopes, tc.tool, got, tc.want)
			}
		})
	}
}

func TestScopeCovered(t *testing.T) {
	for _, tc := range []struct {
		granted   string
		requested string
		want      bool
	}{
		{"tool:crm_*", "tool:crm_*", true},
		{"tool:crm_*", "tool:crm_get_*", true},
		{"tool:crm_*", "tool:crm_*_x", true},
		{"tool:crm_*", "tool:crm_get", true},
		{"tool:*", "tool:*", true},
		{"tool:*", "tool:a*b*c", true},
		{"tool:*_customer", "tool:crm_*_customer", true},
		{"tool:a*b", "tool:a*xb", true},
		{"tool:*a*", "tool:*a*", true},
		{"tool:*a*", "tool:a*", true},
		{"tool:crm_get", "tool:crm_get", true},
		{"tool:crm_get", "tool:crm_get*", false},
		{"tool:crm_*", "tool:*", false},
		{"tool:crm_*", "tool:cr*", false},
		{"tool:crm_*", "tool:*crm_", false},
		{"tool:a*b", "tool:a*", false},
		{"tool:*a*", "tool:*", false},
		{"tool:*ab*", "tool:*a*b*", false},
		{"tool:a*", "tool:*a", false},
		{"tool:x", "tool:*", false},
	} {
		t.Run(tc.granted+" ⊇ "+tc.requested, func(t *testing.T) {
			if got := scopeCovered([]string{tc.granted}, tc.requested); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// FuzzScopeAllows checks parsing never panics, that ScopeAllows agrees with
// a reference matcher, and that scope containment is sound: when a granted
// pattern covers a requested one, every name the requested pattern matches
// is allowed by the granted one.
func FuzzScopeAllows(f *testing.F) {
	for _, s := range [][3]string{
		{"tool:crm_*", "tool:crm_get_*", "crm_get_customer"},
		{"tool:*a*", "tool:a*", "ba"},
		{"tool:a*b", "tool:a*xb", "axb"},
		{"tool:*", "tool:x", "y"},
		{"tool:crm_*", "tool:*", "hr"},
		{"openid tool:", "tool:\x00", ""},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, granted, requested, name string) {
		if len(name) > 256 {
			name = name[:256] // keeps the quadratic reference matcher fast
		}
		g, gerr := ParseScope(granted)
		_, _ = ParseScope(requested)
		allowed := ScopeAllows(strings.Fields(granted), name)
		if gerr == nil && name != "" {
			want := false
			for _, s := range g {
				want = want || refMatch(s[len(ScopePrefix):], name)
			}
			if allowed != want {
				t.Fatalf("ScopeAllows(%q, %q) = %v, reference says %v", g, name, allowed, want)
			}
		}
		if gerr != nil || !scopeCovered(g, requested) {
			return
		}
		rp := requested[len(ScopePrefix):]
		for _, fill := range []string{"", "a", name[:min(len(name), 16)], "_x_", strings.Repeat("z", 3)} {
			if strings.Contains(fill, "*") {
				continue
			}
			n := strings.ReplaceAll(rp, "*", fill)
			if n != "" && !ScopeAllows(g, n) {
				t.Fatalf("%q covers %q but does not allow %q", g, requested, n)
			}
		}
	})
}

// refMatch is a dynamic-programming glob matcher used as a reference.
func refMatch(p, s string) bool {
	// prev[j]: p[:i] matches s[:j].
	prev := make([]bool, len(s)+1)
	prev[0] = true
	for i := 0; i < len(p); i++ {
		cur := make([]bool, len(s)+1)
		if p[i] == '*' {
			cur[0] = prev[0]
		}
		for j := 1; j <= len(s); j++ {
			if p[i] == '*' {
				cur[j] = prev[j] || cur[j-1]
			} else {
				cur[j] = prev[j-1] && p[i] == s[j-1]
			}
		}
		prev = cur
	}
	return prev[len(s)]
}

func ExampleScopeAllows() {
	scopes := []string{"tool:crm_get_*", "tool:billing_get_invoice"}
	fmt.Println(ScopeAllows(scopes, "crm_get_customer"))
	fmt.Println(ScopeAllows(scopes, "crm_delete_customer"))
	// Output:
	// true
	// false
}
