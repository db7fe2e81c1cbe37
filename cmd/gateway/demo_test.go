package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/agentharness/harness/policy"
)

// TestDemoClaudeDesktopMatchesDocs: the Claude Desktop snippet the demo
// prints is the bearer snippet of docs/clients.md, with the demo's URL and
// token filled in.
func TestDemoClaudeDesktopMatchesDocs(t *testing.T) {
	const mcpURL, token = "http://127.0.0.1:7777/mcp", "tok-alice"
	var out bytes.Buffer
	printDemo(&out, mcpURL, "http://127.0.0.1:1", "http://127.0.0.1:3/mcp", "http://127.0.0.1:2", "audit.log", []string{token, "b", "c"}, nil)
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

// TestDemoPreviewBundle: the demo preview's policy bundle loads with the
// bundle reader previews use, and makes the preview's owner an admin there
// while a viewer stays read-only; without a preview, roles are the token's.
func TestDemoPreviewBundle(t *testing.T) {
	b, err := demoPreviewBundle()
	if err != nil {
		t.Fatal(err)
	}
	eng, err := policy.FromBundle(context.Background(), b, policy.BundleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	preview := &policy.Preview{Name: demoPreviewName, Branch: demoBranch, PullRequest: demoPR, Repository: demoRepository, Owner: "alice"}
	refunds := policy.Tool{Name: "crm_list_refunds", Upstream: "crm", Operation: "list_refunds", Method: "GET", Path: "/refunds", Tags: []string{"refunds"}}
	ticket := policy.Tool{Name: "crm_create_ticket", Upstream: "crm", Operation: "create_ticket", Method: "POST", Path: "/tickets", Tags: []string{"tickets"}}
	loyalty := policy.Tool{Name: "crm_get_customer_loyalty", Upstream: "crm", Operation: "get_customer_loyalty", Method: "GET", Path: "/customers/{customer_id}/loyalty", Tags: []string{"customers"}}
	alice := policy.Subject{Sub: "alice", Email: "alice@acme.example", Roles: []string{"support"}, Claims: map[string]any{}}
	carol := policy.Subject{Sub: "carol", Email: "carol@globex.example", Roles: []string{"viewer"}, Claims: map[string]any{}}
	for _, tc := range []struct {
		name    string
		who     policy.Subject
		tool    policy.Tool
		preview *policy.Preview
		allow   bool
	}{
		{"author reads refunds in the preview", alice, refunds, preview, true},
		{"author writes in the preview", alice, ticket, preview, true},
		{"author outside the preview keeps support", alice, refunds, nil, false},
		{"viewer reads in the preview", carol, loyalty, preview, true},
		{"viewer may not write in the preview", carol, ticket, preview, false},
		{"another preview's owner", alice, refunds, &policy.Preview{Name: "pr-7", Owner: "dave"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := &policy.Input{Action: "call", Subject: tc.who, Tool: tc.tool, Arguments: map[string]any{},
				Environment: "demo", Preview: tc.preview, Time: time.Now().UTC().Format(time.RFC3339)}
			if tc.preview != nil {
				in.Environment = tc.preview.Name
			}
			d, err := eng.Decide(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			if d.Allow != tc.allow {
				t.Errorf("allow = %v (%s), want %v", d.Allow, d.Reason, tc.allow)
			}
		})
	}
}
