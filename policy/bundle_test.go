package policy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// tarGz builds a bundle archive from name → content.
func tarGz(t testing.TB, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, content := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

const branchPolicy = `package harness

default decision := {"allow": false, "reason": "not the author"}

decision := {"allow": true, "reason": "the branch's author is admin"} if {
	input.subject.sub == data.preview.author
}
`

// TestFromBundle: a good bundle decides with its own rules and data; a
// broken one is refused with the bundle's file and line; builtins that
// reach outside the gateway are refused; archives that are not gzip, too
// large once expanded, or escape with .. are refused before OPA reads them.
func TestFromBundle(t *testing.T) {
	ctx := context.Background()
	good := tarGz(t, map[string]string{"policy/harness.rego": branchPolicy, "preview/data.json": `{"author": "alice"}`})
	e, err := FromBundle(ctx, good, BundleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := e.Decide(ctx, &Input{Action: ActionCall, Subject: Subject{Sub: "alice"}, Tool: Tool{Name: "crm_x"}})
	if err != nil || !d.Allow {
		t.Fatalf("alice: %+v %v", d, err)
	}
	d, _ = e.Decide(ctx, &Input{Action: ActionCall, Subject: Subject{Sub: "bob"}, Tool: Tool{Name: "crm_x"}})
	if d.Allow {
		t.Fatalf("bob allowed: %+v", d)
	}
	if err := e.Reload(ctx); err != nil || e.Revision() == "" {
		t.Fatalf("reload of a bundle engine: %v", err)
	}

	bomb := func() []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		tw := tar.NewWriter(zw)
		size := int64(MaxBundleUncompressed + 1024)
		_ = tw.WriteHeader(&tar.Header{Name: "big.json", Mode: 0o644, Size: size, Typeflag: tar.TypeReg})
		zeros := make([]byte, 1<<20)
		for w := int64(0); w < size; w += int64(len(zeros)) {
			_, _ = tw.Write(zeros[:min(int64(len(zeros)), size-w)])
		}
		_ = tw.Close()
		_ = zw.Close()
		return buf.Bytes()
	}()
	for _, tc := range []struct {
		name   string
		bundle []byte
		want   string
	}{
		{"parse error", tarGz(t, map[string]string{"policy/harness.rego": "package harness\n\ndecision := {\"allow\": true\n"}), "policy/harness.rego:4: rego_parse_error"},
		{"compile error", tarGz(t, map[string]string{"p/x.rego": "package harness\n\ndecision := {\"allow\": true}\n\nx if {\n\tundefined_fn(1)\n}\n"}), "p/x.rego:6"},
		{"no decision", tarGz(t, map[string]string{"p/x.rego": "package other\n\nallow := true\n"}), "no rule defines the query data.harness.decision"},
		{"http.send", tarGz(t, map[string]string{"p/x.rego": "package harness\n\ndecision := r if {\n\tr := http.send({\"method\": \"GET\", \"url\": \"http://169.254.169.254/\"})\n}\n"}), "p/x.rego:4"},
		{"opa.runtime", tarGz(t, map[string]string{"p/x.rego": "package harness\n\ndecision := {\"allow\": false, \"reason\": opa.runtime().env.SECRET}\n"}), "p/x.rego:3"},
		{"json.match_schema", tarGz(t, map[string]string{"p/x.rego": "package harness\n\ndecision := {\"allow\": true, \"reason\": sprintf(\"%v\", [json.match_schema({}, {\"$ref\": \"file:///etc/harness/secrets.json\"})])}\n"}), "p/x.rego:3"},
		{"json.verify_schema", tarGz(t, map[string]string{"p/x.rego": "package harness\n\ndecision := {\"allow\": true, \"reason\": sprintf(\"%v\", [json.verify_schema({\"$ref\": \"file:///etc/harness/secrets.json\"})])}\n"}), "p/x.rego:3"},
		{"bad data", tarGz(t, map[string]string{"p/x.rego": branchPolicy, "preview/data.json": "{nope"}), "preview/data.json"},
		{"not gzip", []byte("package harness"), "not a gzip-compressed tar archive"},
		{"dot dot", tarGz(t, map[string]string{"../x.rego": branchPolicy}), "a path with .. is not allowed"},
		{"bomb", bomb, "larger than 16 MiB uncompressed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := FromBundle(ctx, tc.bundle, BundleOptions{})
			if !errors.Is(err, ErrLoad) {
				t.Fatalf("err = %v, want a load error", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to name %q", err, tc.want)
			}
		})
	}
}

// TestBundleEvaluationBounded: a branch's policy that would hold the CPU
// (here a comprehension over tens of millions of numbers) is cut off at
// BundleOptions.Timeout; the decision fails, so the call is refused, and
// tools/list lists nothing.
func TestBundleEvaluationBounded(t *testing.T) {
	ctx := context.Background()
	slow := `package harness

decision := {"allow": true} if {
	count([x | some x in numbers.range(1, 50000000); x % 7 == 3]) > 0
}
`
	e, err := FromBundle(ctx, tarGz(t, map[string]string{"policy/harness.rego": slow}), BundleOptions{Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	in := &Input{Action: ActionCall, Subject: Subject{Sub: "alice"}, Tool: Tool{Name: "crm_x"}}
	d, err := e.Decide(ctx, in)
	if err == nil || d.Allow {
		t.Fatalf("slow policy: %+v %v, want an error and no allow", d, err)
	}
	allowed, err := e.Allowed(ctx, &Input{Action: ActionList, Subject: Subject{Sub: "alice"}}, []Tool{{Name: "crm_x"}})
	if err == nil || allowed["crm_x"] {
		t.Fatalf("slow policy, list: %v %v, want an error and nothing listed", allowed, err)
	}
}
