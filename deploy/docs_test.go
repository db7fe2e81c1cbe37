package deploy

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/agentharness/harness/internal/config"
)

// schemaKeys lists every key path of t ("auth.issuers[].roles_claim"),
// sections included, from the yaml tags.
func schemaKeys(t reflect.Type, prefix string) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		key := prefix + name
		out = append(out, key)
		ft := f.Type
		switch {
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			out = append(out, key+"[]")
			out = append(out, schemaKeys(ft.Elem(), key+"[].")...)
		case ft.Kind() == reflect.Struct:
			out = append(out, schemaKeys(ft, key+".")...)
		}
	}
	return out
}

var (
	backticked = regexp.MustCompile("`([^`\n]+)`")
	// A key path at the start of a code span: auth.issuers[0].roles_claim,
	// ratelimit.redis_url: redis://…, upstreams[].openapi.
	keyPath = regexp.MustCompile(`^([a-z_]+(?:\[\d*\])?(?:\.[a-z_]+(?:\[\d*\])?)*)(.*)$`)
	index   = regexp.MustCompile(`\[\d+\]`)
)

// fileLike are last segments that make "audit.log" or "policy.md" a file name.
var fileLike = []string{"md", "log", "rego", "json", "yaml", "yml", "go", "py", "txt", "toml", "sh"}

// configKeyMentions returns the config key paths named in code spans of doc:
// spans that start with a top-level key of the schema (or oauth, a section
// of the fixed contract) followed by "." or "[", and end there or continue
// with a value (": …", "=…", " …").
func configKeyMentions(doc string, topLevel []string) []string {
	var out []string
	for _, m := range backticked.FindAllStringSubmatch(doc, -1) {
		km := keyPath.FindStringSubmatch(strings.TrimSpace(m[1]))
		if km == nil {
			continue
		}
		key, rest := km[1], km[2]
		if rest != "" && !strings.ContainsAny(rest[:1], ":= ,") {
			continue // policy.Engine, public_url/mcp, audit.log.<time>
		}
		first := key
		if i := strings.IndexAny(key, ".["); i >= 0 {
			first = key[:i]
		} else {
			continue // a bare word: nothing to check beyond itself
		}
		if !slices.Contains(topLevel, first) && first != "oauth" {
			continue
		}
		segs := strings.Split(key, ".")
		if slices.Contains(fileLike, segs[len(segs)-1]) {
			continue
		}
		out = append(out, index.ReplaceAllString(key, "[]"))
	}
	return out
}

// TestDocsNameOnlyRealConfigKeys checks that every config key path named in
// README.md and docs/*.md exists in the configuration schema, so the docs
// cannot drift from it. (internal/config checks the other direction for
// docs/configuration.md: every key is documented there.)
func TestDocsNameOnlyRealConfigKeys(t *testing.T) {
	keys := schemaKeys(reflect.TypeOf(config.Config{}), "")
	var topLevel []string
	for _, k := range keys {
		if !strings.ContainsAny(k, ".[") {
			topLevel = append(topLevel, k)
		}
	}
	files, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, filepath.Join(root, "README.md"))
	checked := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, f)
		seen := map[string]bool{}
		for _, k := range configKeyMentions(string(data), topLevel) {
			checked++
			if seen[k] {
				continue
			}
			seen[k] = true
			if !slices.Contains(keys, k) {
				t.Errorf("%s names the config key `%s`, which the schema (internal/config) does not have", rel, k)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no config key found in the docs: the scanner is broken")
	}
	t.Logf("%d config key mentions in %d files checked against %d schema keys", checked, len(files), len(keys))
}

// TestConfigKeyMentions pins what the scanner takes for a config key.
func TestConfigKeyMentions(t *testing.T) {
	top := []string{"auth", "ratelimit", "audit", "policy", "public_url", "upstreams"}
	doc := "Set `ratelimit.redis_url` or `ratelimit.redis_url: redis://redis:6379/0`, " +
		"`auth.issuers[0].roles_claim`, `upstreams[].openapi`, `HARNESS_AUDIT_PATH=x`, " +
		"see `policy.md`, `audit.log.20261127`, `policy.Engine`, `public_url/mcp`, " +
		"`input.subject.roles`, `oauth.login_issuer`, `audit`, `ratelimit.typo_key`"
	got := configKeyMentions(doc, top)
	want := []string{"ratelimit.redis_url", "ratelimit.redis_url", "auth.issuers[].roles_claim", "upstreams[].openapi", "oauth.login_issuer", "ratelimit.typo_key"}
	if !slices.Equal(got, want) {
		t.Errorf("configKeyMentions:\n got %q\nwant %q", got, want)
	}
}
