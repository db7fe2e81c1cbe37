package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRunUsage(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr error
		wantOut string
	}{
		{"no command", nil, errUsage, "Commands:"},
		{"unknown command", []string{"frobnicate"}, errUsage, `unknown command "frobnicate"`},
		{"help", []string{"--help"}, nil, "Commands:"},
		{"version", []string{"version"}, nil, "gateway dev"},
		{"serve without config", []string{"serve"}, errUsage, "--config FILE is required"},
		{"serve help", []string{"serve", "--help"}, flag.ErrHelp, "Usage: gateway serve"},
		{"validate without config", []string{"validate"}, errUsage, "--config FILE is required"},
		{"audit without subcommand", []string{"audit"}, errUsage, "audit verify"},
		{"audit unknown", []string{"audit", "erase"}, errUsage, `unknown subcommand "erase"`},
		{"policy without subcommand", []string{"policy"}, errUsage, "policy test"},
		{"policy eval without input", []string{"policy", "eval"}, errUsage, "Usage: gateway policy eval"},
		{"bad flag", []string{"demo", "--nope"}, errUsage, "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), tt.args, &out, &out)
			if !errors.Is(err, tt.wantErr) && !(err == nil && tt.wantErr == nil) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("output lacks %q:\n%s", tt.wantOut, out.String())
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(p, []byte("listen: nope\nauth: {issuers: []}\nextra: 1\n"), 0o600)
	var out bytes.Buffer
	err := run(context.Background(), []string{"validate", "--config", p}, &out, &out)
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"listen:", "auth.issuers:", "extra: unknown key"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

func TestPolicyTestCommand(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"policy", "test"}, &out, &out); err != nil {
		t.Fatalf("the embedded policy's tests failed: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "PASS") {
		t.Errorf("no summary: %s", out.String())
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if got, err := parseSince("1h", now); err != nil || !got.Equal(now.Add(-time.Hour)) {
		t.Errorf("1h = %v %v", got, err)
	}
	if got, err := parseSince("2026-01-01T00:00:00Z", now); err != nil || got.Day() != 1 {
		t.Errorf("rfc3339 = %v %v", got, err)
	}
	if _, err := parseSince("yesterday", now); err == nil {
		t.Error("nonsense accepted")
	}
}

func TestLogFlags(t *testing.T) {
	for _, lf := range []logFlags{{"text", "info"}, {"json", "debug"}} {
		if _, err := lf.logger(&bytes.Buffer{}); err != nil {
			t.Errorf("%+v: %v", lf, err)
		}
	}
	for _, lf := range []logFlags{{"xml", "info"}, {"text", "loud"}} {
		if _, err := lf.logger(&bytes.Buffer{}); err == nil {
			t.Errorf("%+v accepted", lf)
		}
	}
}
