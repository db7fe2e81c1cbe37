package delegation

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestIssueNamesItsGrant: a token issued on a refresh is logged as
// grant=refresh_token, one from a code as grant=authorization_code, and
// both carry the human's email and name (log line and Issued).
func TestIssueNamesItsGrant(t *testing.T) {
	e := newEnv(t)
	var logs bytes.Buffer
	e.ex.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	subj := &Subject{Issuer: "https://idp.test", Subject: "u-8f3a", Email: "alice@acme.example", Name: "Alice"}
	for _, tt := range []struct {
		ctx  context.Context
		want string
	}{
		{context.Background(), "grant=authorization_code"},
		{WithGrant(context.Background(), "refresh_token"), "grant=refresh_token"},
	} {
		logs.Reset()
		_, iss, err := e.ex.Issue(tt.ctx, subj, "copilot", []string{"tool:*"}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		line := logs.String()
		if !strings.Contains(line, tt.want) || !strings.Contains(line, "email=alice@acme.example") || !strings.Contains(line, "name=Alice") {
			t.Errorf("log line %q lacks %s, email or name", line, tt.want)
		}
		if iss.Email != subj.Email || iss.Name != subj.Name {
			t.Errorf("Issued = %+v", iss)
		}
	}
}
