package policy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want []string // substrings of the error
	}{
		{"syntax error", Options{Dir: "testdata/broken_syntax"}, []string{"testdata/broken_syntax/policy.rego:4", "rego_parse_error"}},
		{"compile error", Options{Dir: "testdata/broken_compile"}, []string{"testdata/broken_compile/policy.rego:4", "var x is unsafe"}},
		{"missing query", Options{Dir: "testdata/missing_query"}, []string{"no rule defines the query data.harness.decision"}},
		{"custom query missing", Options{Query: "data.harness.nope"}, []string{"no rule defines the query data.harness.nope"}},
		{"bad query", Options{Query: "data.harness["}, []string{`query "data.harness[" is not a reference`}},
		{"query outside data", Options{Query: "input.x"}, []string{"must start with data"}},
		{"missing dir", Options{Dir: "testdata/does-not-exist"}, []string{"policy directory", "no such file"}},
		{"file not dir", Options{Dir: "testdata/no_tests/policy.rego"}, []string{"is not a directory"}},
		{"conflicting data", Options{Dir: "testdata/data_conflict"}, []string{"data.yaml", `data key "a" is defined twice`}},
		{"missing bundle", Options{Bundle: "testdata/nope.tar.gz"}, []string{"nope.tar.gz"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := New(context.Background(), tc.opts)
			if err == nil {
				t.Fatalf("New succeeded with revision %s", e.Revision())
			}
			if !errors.Is(err, ErrLoad) {
				t.Errorf("error %v does not wrap ErrLoad", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestNewBundle(t *testing.T) {
	e, err := New(context.Background(), Options{Bundle: "testdata/bundle"})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"crm_get_customer": true, "crm_delete_customer": false} {
		in := callInput(nil, "GET", nil, nil)
		in.Tool.Name = name
		d, err := e.Decide(context.Background(), in)
		if err != nil || d.Allow != want || d.Reason != "from the bundle" {
			t.Errorf("%s: Decide = %+v, %v; want allow %v", name, d, err, want)
		}
	}
}

func TestRevision(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	write(t, dir, "policy.rego", "package harness\n\ndecision := {\"allow\": false}\n")
	a, err := New(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if a.Revision() != b.Revision() || len(a.Revision()) != 24 {
		t.Fatalf("revisions %q and %q of the same files differ", a.Revision(), b.Revision())
	}
	write(t, dir, "data.json", `{"x": 1}`)
	c, err := New(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if c.Revision() == a.Revision() {
		t.Error("adding data.json did not change the revision")
	}
	d := newDefault(t)
	if d.Revision() == a.Revision() {
		t.Error("default and directory policies share a revision")
	}
	// Test files are not part of the running policy.
	write(t, dir, "policy_test.rego", "package harness_test\n\ntest_x if true\n")
	e, err := New(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if e.Revision() != c.Revision() {
		t.Error("a _test.rego file changed the running policy's revision")
	}
}

// write replaces dir/name atomically, as an editor or a deployment would.
func write(t testing.TB, dir, name, content string) {
	t.Helper()
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}
