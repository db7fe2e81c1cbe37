package samplemcp

import (
	"context"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
)

func TestHandbook(t *testing.T) {
	ctx := context.Background()
	url, stop, err := Start(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stop(context.Background()) })
	if _, _, err := Start(ctx, "0.0.0.0:0"); err == nil {
		t.Error("listened beyond loopback")
	}
	c, err := client.NewStreamableHttpClient(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Initialize(ctx, mcp.InitializeRequest{}); err != nil {
		t.Fatal(err)
	}
	req := mcp.CallToolRequest{}
	req.Params.Name, req.Params.Arguments = "search_handbook", map[string]any{"query": "refund"}
	res, err := c.CallTool(ctx, req)
	if err != nil || !strings.Contains(res.Content[0].(mcp.TextContent).Text, "Refunds:") {
		t.Fatalf("search: %v %+v", err, res)
	}
	rs, err := c.ListResources(ctx, mcp.ListResourcesRequest{})
	if err != nil || len(rs.Resources) != 3 {
		t.Errorf("resources: %v %v", err, rs)
	}
}
