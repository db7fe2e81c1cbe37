package main

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// TestDemoClaudeDesktopMatchesDocs: the Claude Desktop snippet the demo
// prints is the bearer snippet of docs/clients.md, with the demo's URL and
// token filled in.
func TestDemoClaudeDesktopMatchesDocs(t *testing.T) {
	const mcpURL, token = "http://127.0.0.1:7777/mcp", "tok-alice"
	var out bytes.Buffer
	printDemo(&out, mcpURL, "http://127.0.0.1:1", "http://127.0.0.1:3/mcp", "http://127.0.0.1:2", "audit.log", []string{token, "b", "c"})
	_, after, ok := strings.Cut(out.String(), "Claude Desktop")
	if !ok {
		t.Fatalf("no Claude Desktop snippet:\n%s", out.String())
	}
	start := strings.Index(after, "{")
	var got any
	if err := json.NewDecoder(strings.NewReader(after[start:])).Decode(&got); err != nil {
		t.Fatalf("demo snippet: %v", err)
	}

	doc, err := os.ReadFile("../../docs/clients.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(doc), "## Claude Desktop")
	var want any
	for _, m := range regexp.MustCompile("(?s)```json\n(.*?)```").FindAllStringSubmatch(section, -1) {
		if strings.Contains(m[1], "--header") {
			js := strings.ReplaceAll(m[1], "http://localhost:8080/mcp", mcpURL)
			js = strings.ReplaceAll(js, "Bearer paste-a-token-here", "Bearer "+token)
			if err := json.Unmarshal([]byte(js), &want); err != nil {
				t.Fatalf("docs snippet: %v", err)
			}
			break
		}
	}
	if want == nil {
		t.Fatal("docs/clients.md has no Claude Desktop bearer snippet")
	}
	if !reflect.DeepEqual(got, want) {
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		t.Errorf("demo prints\n%s\ndocs/clients.md shows\n%s", g, w)
	}
}
