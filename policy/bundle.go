package policy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
)

// Limits of a bundle given as bytes (FromBundle).
const (
	// MaxBundleUncompressed bounds the bundle's content once decompressed:
	// a small archive may not expand into gigabytes.
	MaxBundleUncompressed = 16 << 20
	// MaxBundleFiles bounds the number of entries in the archive.
	MaxBundleFiles = 1000
)

// UntrustedBuiltins are the builtins a policy from a bundle (FromBundle)
// may not use: they reach outside the gateway (the network, the process's
// environment and configuration, its files: a JSON schema's $ref of
// file:// is read from the gateway's disk). A preview's policy comes from
// a branch.
var UntrustedBuiltins = []string{"http.send", "net.lookup_ip_addr", "opa.runtime", "net.cidr_expand", "json.match_schema", "json.verify_schema"}

// BundleOptions configure FromBundle.
type BundleOptions struct {
	// Query is the decision; default data.harness.decision.
	Query string
	// Logger receives errors; nil discards them.
	Logger *slog.Logger
	// Timeout bounds one evaluation (a decision, or a tools/list filter)
	// of the bundle's policy; past it the evaluation fails and the call is
	// refused (fail closed). A branch's policy is code from the branch:
	// it must not hold a gateway's CPU. Default DefaultBundleTimeout.
	Timeout time.Duration
}

// DefaultBundleTimeout bounds one evaluation of a bundle's policy unless
// BundleOptions.Timeout says otherwise.
const DefaultBundleTimeout = 500 * time.Millisecond

// FromBundle compiles an OPA bundle (.tar.gz, as `opa build` writes it)
// read with OPA's bundle reader into an Engine that is never reloaded. It
// is checked as a policy directory is: every module must parse and
// compile, and a rule must define the query. Errors wrap ErrLoad and name
// the bundle's file and line (policy/harness.rego:12: …). The builtins in
// UntrustedBuiltins are refused, as are WebAssembly and plan modules.
func FromBundle(ctx context.Context, data []byte, opts BundleOptions) (*Engine, error) {
	if opts.Query == "" {
		opts.Query = DefaultQuery
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ref, err := ast.ParseRef(opts.Query)
	if err != nil || !ref.HasPrefix(ast.DefaultRootRef) {
		return nil, fmt.Errorf("%w: query %q must be a data reference", ErrLoad, opts.Query)
	}
	if err := checkArchive(data); err != nil {
		return nil, fmt.Errorf("%w: bundle: %w", ErrLoad, err)
	}
	caps := bundleCapabilities()
	b, err := bundle.NewCustomReader(bundle.NewTarballLoader(bytes.NewReader(data))).
		WithRegoVersion(ast.RegoV1).
		WithCapabilities(caps).
		WithSkipBundleVerification(true).
		WithSizeLimitBytes(MaxBundleUncompressed).
		Read()
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrLoad, trimSlashes(err.Error()))
	}
	if len(b.WasmModules) > 0 || len(b.PlanModules) > 0 {
		return nil, fmt.Errorf("%w: bundle: WebAssembly and plan modules are not supported, only .rego and data files", ErrLoad)
	}
	src := newSources()
	if err := src.addBundle("", &b); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLoad, err)
	}
	e := &Engine{opts: Options{Query: opts.Query, Logger: opts.Logger}, log: log.With("component", "policy"), pollInt: time.Second, static: true, caps: caps, timeout: opts.Timeout}
	if e.timeout <= 0 {
		e.timeout = DefaultBundleTimeout
	}
	st := &state{revision: src.revision(opts.Query)}
	st.fingerprint = st.revision
	st, err = e.compile(ctx, ref, src, st)
	if err != nil {
		// compile's errors start with ErrLoad's text; keep the wrap, drop the
		// tarball reader's leading slashes from the file names.
		return nil, fmt.Errorf("%w: %s", ErrLoad, trimSlashes(strings.TrimPrefix(err.Error(), ErrLoad.Error()+": ")))
	}
	e.cur.Store(st)
	return e, nil
}

// addBundle adds a read bundle's modules and data to s; name (the bundle's
// path, or "") prefixes module names.
func (s *sources) addBundle(name string, b *bundle.Bundle) error {
	s.record("bundle\x00revision", []byte(b.Manifest.Revision))
	for _, mf := range b.Modules {
		s.record("bundle\x00"+mf.Path, mf.Raw)
		mod := mf.Path
		if name != "" {
			mod = name + ":" + mf.Path
		}
		if _, dup := s.modules[mod]; dup {
			return fmt.Errorf("%s: duplicate module", mod)
		}
		s.modules[mod] = mf.Parsed
	}
	data, err := json.Marshal(b.Data) // map keys are sorted: a stable hash
	if err != nil {
		return fmt.Errorf("%s: data: %w", name, err)
	}
	s.record("bundle\x00data", data)
	if err := mergeDoc(s.docs, nil, b.Data); err != nil {
		return fmt.Errorf("%s: data: %w", name, err)
	}
	return nil
}

// bundleCapabilities are this OPA's capabilities without UntrustedBuiltins.
func bundleCapabilities() *ast.Capabilities {
	caps := ast.CapabilitiesForThisVersion()
	kept := caps.Builtins[:0]
	for _, b := range caps.Builtins {
		untrusted := false
		for _, u := range UntrustedBuiltins {
			untrusted = untrusted || b.Name == u
		}
		if !untrusted {
			kept = append(kept, b)
		}
	}
	caps.Builtins = kept
	caps.AllowNet = []string{}
	return caps
}

// checkArchive refuses an archive that is not gzip, expands beyond
// MaxBundleUncompressed or holds more than MaxBundleFiles entries, before
// OPA's reader (which keeps every file in memory) sees it.
func checkArchive(data []byte) error {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return errors.New("not a gzip-compressed tar archive (make one with: opa build -o bundle.tar.gz DIR)")
	}
	lr := &io.LimitedReader{R: zr, N: MaxBundleUncompressed + 1}
	tr := tar.NewReader(lr)
	for n := 0; ; n++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if lr.N <= 0 {
				return fmt.Errorf("larger than %d MiB uncompressed", MaxBundleUncompressed>>20)
			}
			return fmt.Errorf("not a valid tar archive: %w", err)
		}
		if n >= MaxBundleFiles {
			return fmt.Errorf("more than %d files", MaxBundleFiles)
		}
		if strings.Contains(h.Name, "..") {
			return fmt.Errorf("%q: a path with .. is not allowed", h.Name)
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			if lr.N <= 0 {
				return fmt.Errorf("larger than %d MiB uncompressed", MaxBundleUncompressed>>20)
			}
			return fmt.Errorf("not a valid tar archive: %w", err)
		}
	}
	if lr.N <= 0 {
		return fmt.Errorf("larger than %d MiB uncompressed", MaxBundleUncompressed>>20)
	}
	return nil
}

// trimSlashes drops the leading "/" OPA's tarball reader puts before file
// names, so errors read policy/harness.rego:3 rather than /policy/harness.rego:3.
func trimSlashes(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, " /", " "), "\"/", "\"")
}
