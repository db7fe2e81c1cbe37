package policy

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/util"
)

//go:embed harness.rego harness_test.rego data.json
var defaultFS embed.FS

// DefaultFS returns the embedded default policy: harness.rego (package
// harness, query data.harness.decision), its tests harness_test.rego, and
// data.json with the role grants and obligations.
func DefaultFS() fs.FS { return defaultFS }

// ErrLoad marks a policy that could not be loaded or compiled; the message
// names the file and line.
var ErrLoad = errors.New("policy load failed")

// sources is everything loaded for one revision of the policy.
type sources struct {
	modules map[string]*ast.Module
	docs    map[string]any
	sum     hash.Hash
}

func newSources() *sources {
	return &sources{modules: map[string]*ast.Module{}, docs: map[string]any{}, sum: sha256.New()}
}

// revision returns the hash of everything loaded (and of query).
func (s *sources) revision(query string) string {
	s.sum.Write([]byte("query\x00" + query))
	return hex.EncodeToString(s.sum.Sum(nil)[:12])
}

func (s *sources) record(name string, content []byte) {
	s.sum.Write([]byte(name + "\x00" + strconv.Itoa(len(content)) + "\x00"))
	s.sum.Write(content)
}

// isDataFile reports whether name is a data document.
func isDataFile(name string) bool {
	switch path.Base(name) {
	case "data.json", "data.yaml", "data.yml":
		return true
	}
	return false
}

// loadFS loads every .rego file (test files only when tests is set) and every
// data.json/data.yaml under fsys. A data document in a subdirectory a/b is
// placed at data.a.b. Files and directories starting with "." are skipped.
// Names in errors are prefix joined with the file's path.
func (s *sources) loadFS(fsys fs.FS, prefix string, tests bool, parse bool) error {
	return fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != "." && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		isRego := strings.HasSuffix(p, ".rego")
		if isRego && !tests && strings.HasSuffix(p, "_test.rego") {
			return nil
		}
		if !isRego && !isDataFile(p) {
			return nil
		}
		name := p
		if prefix != "" {
			name = filepath.Join(prefix, filepath.FromSlash(p))
		}
		content, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		s.record(p, content)
		if !parse {
			return nil
		}
		if isRego {
			m, err := ast.ParseModuleWithOpts(name, string(content), ast.ParserOptions{RegoVersion: ast.RegoV1})
			if err != nil {
				return err
			}
			s.modules[name] = m
			return nil
		}
		var doc any
		if err := util.Unmarshal(content, &doc); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		var keys []string
		if dir := path.Dir(p); dir != "." {
			keys = strings.Split(dir, "/")
		}
		if err := mergeDoc(s.docs, keys, doc); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	})
}

// loadBundle loads an OPA bundle (directory or .tar.gz).
func (s *sources) loadBundle(p string) error {
	b, err := loader.NewFileLoader().WithRegoVersion(ast.RegoV1).AsBundle(p)
	if err != nil {
		return err
	}
	return s.addBundle(p, b)
}

// mergeDoc merges doc into dst at keys. Two values at the same leaf conflict.
func mergeDoc(dst map[string]any, keys []string, doc any) error {
	for i, k := range keys {
		next, ok := dst[k]
		if !ok {
			m := map[string]any{}
			dst[k] = m
			dst = m
			continue
		}
		m, ok := next.(map[string]any)
		if !ok {
			return fmt.Errorf("data at %s conflicts with another document", strings.Join(keys[:i+1], "."))
		}
		dst = m
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		if len(keys) == 0 {
			return errors.New("data document at the root must be an object")
		}
		return fmt.Errorf("data at %s must be an object", strings.Join(keys, "."))
	}
	for k, v := range obj {
		old, exists := dst[k]
		if !exists {
			dst[k] = v
			continue
		}
		om, ok1 := old.(map[string]any)
		nm, ok2 := v.(map[string]any)
		if !ok1 || !ok2 {
			return fmt.Errorf("data key %q is defined twice", k)
		}
		if err := mergeDoc(om, nil, nm); err != nil {
			return fmt.Errorf("%s.%w", k, err)
		}
	}
	return nil
}

// load reads the policy described by opts. With tests, *_test.rego files are
// included. With parse false only the revision is computed (for Watch).
func load(opts *Options, tests, parse bool) (*sources, error) {
	s := newSources()
	if opts.Dir == "" && opts.Bundle == "" {
		if err := s.loadFS(defaultFS, "", tests, parse); err != nil {
			return nil, err
		}
		return s, nil
	}
	if opts.Dir != "" {
		st, err := os.Stat(opts.Dir)
		if err != nil {
			return nil, fmt.Errorf("policy directory: %w", err)
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("policy directory %s is not a directory", opts.Dir)
		}
		if err := s.loadFS(os.DirFS(opts.Dir), opts.Dir, tests, parse); err != nil {
			return nil, err
		}
	}
	if opts.Bundle != "" {
		if !parse {
			// Fingerprint the bundle by its bytes on disk.
			if err := fingerprintPath(s, opts.Bundle); err != nil {
				return nil, err
			}
		} else if err := s.loadBundle(opts.Bundle); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// fingerprintPath records every file under p (or p itself).
func fingerprintPath(s *sources, p string) error {
	return filepath.WalkDir(p, func(f string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		content, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		s.record(f, content)
		return nil
	})
}
