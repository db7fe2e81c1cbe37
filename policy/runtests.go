package policy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
)

// RunTests runs the Rego tests (rules named test_*) of the policy in dir, or
// of the embedded default policy when dir is "". With verbose it prints a
// PASS, FAIL, ERROR or SKIP line per test; it always prints a summary line.
// passed is false when any test failed or errored. err reports a policy that
// does not load or compile, or one without any test.
func RunTests(ctx context.Context, dir string, verbose bool, w io.Writer) (passed bool, err error) {
	src := newSources()
	if dir == "" {
		err = src.loadFS(defaultFS, "", true, true)
	} else if st, serr := os.Stat(dir); serr != nil {
		err = fmt.Errorf("policy directory: %w", serr)
	} else if !st.IsDir() {
		err = fmt.Errorf("policy directory %s is not a directory", dir)
	} else {
		err = src.loadFS(os.DirFS(dir), dir, true, true)
	}
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrLoad, err)
	}
	store := inmem.NewFromObjectWithOpts(src.docs, inmem.OptRoundTripOnWrite(false))
	ch, err := tester.NewRunner().
		SetDefaultRegoVersion(ast.RegoV1).
		SetStore(store).
		CapturePrintOutput(verbose).
		SetModules(src.modules).
		RunTests(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrLoad, err)
	}
	var results []*tester.Result
	for r := range ch {
		results = append(results, r)
	}
	sort.Slice(results, func(i, j int) bool {
		a, b := results[i], results[j]
		if a.Package != b.Package {
			return a.Package < b.Package
		}
		return a.Name < b.Name
	})
	var pass, fail, errs, skip int
	for _, r := range results {
		outcome := "PASS"
		switch {
		case r.Skip:
			outcome = "SKIP"
			skip++
		case r.Error != nil:
			outcome = "ERROR"
			errs++
		case r.Fail:
			outcome = "FAIL"
			fail++
		default:
			pass++
		}
		if verbose || outcome == "FAIL" || outcome == "ERROR" {
			loc := ""
			if r.Location != nil {
				loc = fmt.Sprintf(" (%s:%d)", r.Location.File, r.Location.Row)
			}
			fmt.Fprintf(w, "%-5s %s.%s%s\n", outcome, strings.TrimPrefix(r.Package, "data."), r.Name, loc)
			if r.Error != nil {
				fmt.Fprintf(w, "      %s\n", strings.ReplaceAll(r.Error.Error(), "\n", "\n      "))
			}
			if verbose && len(r.Output) > 0 {
				fmt.Fprintf(w, "      %s\n", strings.ReplaceAll(strings.TrimSpace(string(r.Output)), "\n", "\n      "))
			}
		}
	}
	total := pass + fail + errs + skip
	if total == 0 {
		return false, errors.New("no tests found: name test rules test_*")
	}
	passed = fail == 0 && errs == 0
	verdict := "PASS"
	if !passed {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "%s: %d/%d passed", verdict, pass, total)
	if fail+errs > 0 {
		fmt.Fprintf(w, ", %d failed, %d errors", fail, errs)
	}
	if skip > 0 {
		fmt.Fprintf(w, ", %d skipped", skip)
	}
	fmt.Fprintln(w)
	return passed, nil
}
