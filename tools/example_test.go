package tools_test

import (
	"context"
	"fmt"

	"github.com/agentharness/harness/tools"
)

func ExampleConvert() {
	doc := []byte(`
openapi: 3.1.0
info: {title: CRM, version: "1"}
paths:
  /customers/{customer_id}:
    get:
      operationId: get_customer
      summary: Get one customer
      tags: [customers]
      parameters:
        - {name: customer_id, in: path, required: true, schema: {type: string}}
`)
	ts, err := tools.Convert("crm", doc)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, t := range ts {
		fmt.Println(t.Name, t.Method, t.Path, t.Tags, t.ReadOnly)
		fmt.Println(string(t.InputSchema))
	}
	// Output:
	// crm_get_customer GET /customers/{customer_id} [customers] true
	// {"additionalProperties":false,"properties":{"customer_id":{"type":"string"}},"required":["customer_id"],"type":"object"}
}

func ExampleTool_NewRequest() {
	ts, _ := tools.Convert("crm", []byte(`{"openapi":"3.0.3","paths":{"/customers/{customer_id}/orders":{"get":{
	  "operationId":"list_orders","parameters":[
	    {"name":"customer_id","in":"path","required":true,"schema":{"type":"string"}},
	    {"name":"sku","in":"query","schema":{"type":"array","items":{"type":"string"}}}]}}}}`))
	up := &tools.Upstream{Name: "crm", BaseURL: "http://127.0.0.1:8000/api"}
	req, err := ts[0].NewRequest(context.Background(), up, map[string]any{
		"customer_id": "c 1?x", "sku": []any{"A", "B&C"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(req.Method, req.URL)
	_, err = ts[0].NewRequest(context.Background(), up, map[string]any{"customer_id": "../admin"})
	fmt.Println(err)
	// Output:
	// GET http://127.0.0.1:8000/api/customers/c%201%3Fx/orders?sku=A&sku=B%26C
	// invalid arguments: path argument "customer_id" must not contain a slash
}
