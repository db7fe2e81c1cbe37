package policy

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunTests(t *testing.T) {
	examples, err := filepath.Glob("../examples/policies/*")
	if err != nil {
		t.Fatal(err)
	}
	var exampleDirs []string
	for _, d := range examples {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			exampleDirs = append(exampleDirs, d)
		}
	}
	if len(exampleDirs) < 4 {
		t.Fatalf("found %d example policies, want at least 4", len(exampleDirs))
	}
	type tc struct {
		name    string
		dir     string
		passed  bool
		wantErr string
		output  []string
	}
	tests := []tc{
		{name: "embedded default", dir: "", passed: true, output: []string{"PASS  harness_test.test_support_may_read_customers", "PASS: "}},
		{name: "failing test", dir: "testdata/failing_tests", passed: false, output: []string{"PASS  harness_test.test_passes", "FAIL  harness_test.test_fails (testdata/failing_tests/policy_test.rego:8)", "FAIL: 1/2 passed, 1 failed"}},
		{name: "no tests", dir: "testdata/no_tests", wantErr: "no tests found"},
		{name: "broken", dir: "testdata/broken_syntax", wantErr: "policy.rego:4"},
		{name: "missing", dir: "testdata/nope", wantErr: "no such file"},
	}
	for _, d := range exampleDirs {
		tests = append(tests, tc{name: "example " + filepath.Base(d), dir: d, passed: true, output: []string{"PASS: "}})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			passed, err := RunTests(context.Background(), tc.dir, true, &out)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || passed {
					t.Fatalf("RunTests = %v, %v; want error containing %q", passed, err, tc.wantErr)
				}
				return
			}
			if err != nil || passed != tc.passed {
				t.Fatalf("RunTests = %v, %v; want passed %v\n%s", passed, err, tc.passed, out.String())
			}
			for _, w := range tc.output {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

func TestRunTestsQuiet(t *testing.T) {
	var out bytes.Buffer
	passed, err := RunTests(context.Background(), "testdata/failing_tests", false, &out)
	if err != nil || passed {
		t.Fatalf("RunTests = %v, %v", passed, err)
	}
	if strings.Contains(out.String(), "PASS  ") || !strings.Contains(out.String(), "FAIL  harness_test.test_fails") {
		t.Errorf("quiet output should show failures only:\n%s", out.String())
	}
	if !errors.Is(func() error {
		_, err := RunTests(context.Background(), "testdata/broken_syntax", false, &out)
		return err
	}(), ErrLoad) {
		t.Error("a broken policy is not ErrLoad")
	}
}
