package policy

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/open-policy-agent/opa/v1/format"
)

// TestRegoFormatted keeps the shipped Rego in canonical `opa fmt` form.
// Run with HARNESS_REGO_FMT=write to rewrite the files.
func TestRegoFormatted(t *testing.T) {
	files, err := filepath.Glob("*.rego")
	if err != nil {
		t.Fatal(err)
	}
	examples, err := filepath.Glob("../examples/policies/*/*.rego")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, examples...)
	if len(files) < 10 {
		t.Fatalf("found only %d rego files", len(files))
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := format.Source(f, src)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if !bytes.Equal(got, src) {
			if os.Getenv("HARNESS_REGO_FMT") == "write" {
				if err := os.WriteFile(f, got, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			t.Errorf("%s is not formatted (opa fmt); run HARNESS_REGO_FMT=write go test -run TestRegoFormatted", f)
		}
	}
}
