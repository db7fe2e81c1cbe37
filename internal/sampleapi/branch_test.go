package sampleapi

import (
	"net/http"
	"testing"
)

// TestBranchVariant: the branch variant serves production's operations plus
// get_customer_loyalty, documented in its own OpenAPI document (FastAPI's
// shapes, every $ref resolving) and answering as documented with the
// branch's name and the customer's tenant; production neither documents nor
// serves it.
func TestBranchVariant(t *testing.T) {
	if _, err := NewBranch(""); err == nil {
		t.Error("NewBranch accepted an empty branch name")
	}
	a, err := NewBranch("feat-loyalty")
	if err != nil {
		t.Fatal(err)
	}
	h := a.Handler()
	_, _, raw := call(t, h, "GET", "/openapi.json", "", nil)
	doc := raw.(map[string]any)
	op, ok := doc["paths"].(map[string]any)["/customers/{customer_id}/loyalty"].(map[string]any)["get"].(map[string]any)
	if !ok || op["operationId"] != "get_customer_loyalty" {
		t.Fatalf("the branch's document lacks get_customer_loyalty: %v", doc["paths"])
	}
	for path, item := range loadDoc(t)["paths"].(map[string]any) {
		if doc["paths"].(map[string]any)[path] == nil {
			t.Errorf("the branch's document lost production's %s (%v)", path, item)
		}
	}
	status, _, v := call(t, h, "GET", "/customers/c-1/loyalty", "", nil)
	if status != http.StatusOK {
		t.Fatalf("loyalty: %d %v", status, v)
	}
	schema := op["responses"].(map[string]any)["200"].(map[string]any)["content"].(map[string]any)["application/json"].(map[string]any)["schema"].(map[string]any)
	for _, e := range conform(t, doc, schema, v, "$") {
		t.Error(e)
	}
	got := v.(map[string]any)
	if got["branch"] != "feat-loyalty" || got["tenant_id"] != "acme" || got["customer_id"] != "c-1" || got["points"].(float64) <= 0 {
		t.Errorf("loyalty answer = %v", got)
	}
	if status, _, v := call(t, h, "GET", "/customers/c-404/loyalty", "", nil); status != http.StatusNotFound {
		t.Errorf("loyalty of an unknown customer: %d %v", status, v)
	}
	// Production's operations are unchanged in the branch.
	if status, _, _ := call(t, h, "GET", "/customers/c-1", "", nil); status != http.StatusOK {
		t.Errorf("get_customer in the branch: %d", status)
	}

	if status, _, _ := call(t, New().Handler(), "GET", "/customers/c-1/loyalty", "", nil); status != http.StatusNotFound {
		t.Errorf("production serves the branch's endpoint: %d", status)
	}
	if loadDoc(t)["paths"].(map[string]any)["/customers/{customer_id}/loyalty"] != nil {
		t.Error("production's document names the branch's endpoint")
	}
}
