package config

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"testing"
)

// schemaKeys lists every key path of the schema, lists written "[]".
func schemaKeys(t reflect.Type, prefix string) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		key := prefix + tagName(f)
		out = append(out, key)
		ft := f.Type
		if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
			out = append(out, schemaKeys(ft.Elem(), key+"[].")...)
		} else if ft.Kind() == reflect.Struct {
			out = append(out, schemaKeys(ft, key+".")...)
		}
	}
	return out
}

// TestDocsMatchSchema keeps docs/configuration.md and the schema in step:
// every key documented exists, and every leaf key is documented.
func TestDocsMatchSchema(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_.\\[\\]]+)` \\|").FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]] = true
	}
	keys := schemaKeys(reflect.TypeOf(Config{}), "")
	for k := range documented {
		if !slices.Contains(keys, k) {
			t.Errorf("docs/configuration.md documents %q, which the schema does not have", k)
		}
	}
	for _, k := range keys {
		leafOrList := true
		for _, other := range keys {
			if len(other) > len(k) && other[:len(k)+1] == k+"." {
				leafOrList = false // a section: its keys are documented instead
			}
		}
		if leafOrList && !documented[k] {
			t.Errorf("key %q is not documented in docs/configuration.md", k)
		}
	}
}
