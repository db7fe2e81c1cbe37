package sampleapi

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// The "branch" variant is the sample API as a pull request's preview
// deployment serves it: production plus one new endpoint, GET
// /customers/{customer_id}/loyalty (operation get_customer_loyalty), whose
// answer names the branch, as examples/fastapi does with
// HARNESS_SAMPLE_BRANCH. `gateway demo` serves it in a preview environment
// next to production, so the difference shows in tools/list and in a call.

// loyaltyRoute is the branch's one new operation.
var loyaltyRoute = route{"GET", "/customers/{customer_id}/loyalty", "get_customer_loyalty", func(a *API) handlerFunc { return a.getCustomerLoyalty }}

// loyalty is the answer of get_customer_loyalty. It carries the customer's
// tenant_id so that a policy's tenant context confines it like the rest.
type loyalty struct {
	CustomerID string `json:"customer_id"`
	TenantID   string `json:"tenant_id"`
	Points     int    `json:"points"`
	Branch     string `json:"branch"`
}

// NewBranch returns an API holding a fresh copy of the sample data that
// serves, besides every production operation, the branch's
// get_customer_loyalty naming branch in its answers. branch must not be
// empty.
func NewBranch(branch string) (*API, error) {
	if branch == "" {
		return nil, fmt.Errorf("sample api branch variant: the branch name is empty")
	}
	doc, err := branchDoc()
	if err != nil {
		return nil, err
	}
	a := New()
	a.branch, a.doc = branch, doc
	return a, nil
}

// getCustomerLoyalty answers a customer's loyalty points: ten per euro
// spent on their orders.
func (a *API) getCustomerLoyalty(r *http.Request) (int, any, error) {
	c, ok := a.customers[r.PathValue("customer_id")]
	if !ok {
		return 0, nil, notFound("customer")
	}
	spent := 0
	for _, o := range a.orders {
		if o.CustomerID == c.CustomerID {
			spent += o.TotalCents
		}
	}
	return http.StatusOK, loyalty{CustomerID: c.CustomerID, TenantID: c.TenantID, Points: spent / 10, Branch: a.branch}, nil
}

// branchDoc is the production document plus the branch's operation and its
// Loyalty schema, in FastAPI's shapes.
func branchDoc() ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		return nil, fmt.Errorf("sample api document: %w", err)
	}
	paths, ok1 := doc["paths"].(map[string]any)
	comps, ok2 := doc["components"].(map[string]any)
	schemas, ok3 := comps["schemas"].(map[string]any)
	if !ok1 || !ok2 || !ok3 {
		return nil, fmt.Errorf("sample api document: no paths or components.schemas")
	}
	str := func(title, desc string) map[string]any {
		m := map[string]any{"type": "string", "title": title}
		if desc != "" {
			m["description"] = desc
		}
		return m
	}
	schemas["Loyalty"] = map[string]any{
		"type": "object", "title": "Loyalty",
		"description": "A customer's loyalty points (the branch's new feature).",
		"required":    []string{"customer_id", "tenant_id", "points", "branch"},
		"properties": map[string]any{
			"customer_id": str("Customer Id", ""),
			"tenant_id":   str("Tenant Id", ""),
			"points":      map[string]any{"type": "integer", "title": "Points"},
			"branch":      str("Branch", "The branch whose deployment answered"),
		},
	}
	paths[loyaltyRoute.path] = map[string]any{"get": map[string]any{
		"tags":        []string{"customers"},
		"summary":     "Get a customer's loyalty points",
		"description": "Loyalty points of one customer: ten per euro spent.",
		"operationId": loyaltyRoute.operationID,
		"parameters": []any{map[string]any{
			"name": "customer_id", "in": "path", "required": true,
			"schema":      str("Customer Id", "The customer's id, e.g. c-1"),
			"description": "The customer's id, e.g. c-1",
		}},
		"responses": map[string]any{
			"200": map[string]any{"description": "Successful Response", "content": map[string]any{
				"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/Loyalty"}}}},
			"404": map[string]any{"description": "No such customer"},
			"422": map[string]any{"description": "Validation Error", "content": map[string]any{
				"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/HTTPValidationError"}}}},
		},
	}}
	return json.Marshal(doc)
}
