package server

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/agentharness/harness/internal/authn"
)

// TestLogLinesNameThePerson: a line logged about a call (its context
// carries the principal) names subject, email, name and agent.
func TestLogLinesNameThePerson(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(principalAttrs{slog.NewTextHandler(&buf, nil)}).With("component", "x")
	ctx := context.WithValue(context.Background(), principalKey,
		&authn.Principal{Subject: "CiQw", Email: "dana@acme.example", Name: "Dana Ops", Agent: "copilot-9"})
	log.WarnContext(ctx, "upstream call failed")
	line := buf.String()
	for _, want := range []string{"subject=CiQw", "email=dana@acme.example", `name="Dana Ops"`, "agent=copilot-9", "component=x"} {
		if !strings.Contains(line, want) {
			t.Errorf("log line %q lacks %s", line, want)
		}
	}
	buf.Reset()
	log.ErrorContext(ctx, "policy evaluation failed", "subject", "CiQw")
	if n := strings.Count(buf.String(), "subject="); n != 1 {
		t.Errorf("subject named %d times: %q", n, buf.String())
	}
	buf.Reset()
	log.InfoContext(context.Background(), "no call")
	if strings.Contains(buf.String(), "subject=") {
		t.Errorf("a line without a principal names one: %q", buf.String())
	}
}
