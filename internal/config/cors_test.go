package config

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestCORSAllowedOrigins(t *testing.T) {
	base := "auth: {issuers: [{issuer: https://i}]}\n"
	cfg, err := Parse([]byte(base+"cors: {allowed_origins: [https://app.example.com, http://127.0.0.1:5173]}"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"https://app.example.com", "http://127.0.0.1:5173"}; !slices.Equal(cfg.CORS.AllowedOrigins, want) {
		t.Errorf("allowed_origins = %v, want %v", cfg.CORS.AllowedOrigins, want)
	}
	if cfg, err := Parse([]byte(base), env(nil)); err != nil || len(cfg.CORS.AllowedOrigins) != 0 {
		t.Errorf("default allowed_origins = %v (%v), want none", cfg.CORS.AllowedOrigins, err)
	}
	for _, tc := range []struct{ origin, want string }{
		{"*", "allowed only for the metadata documents"},
		{"app.example.com", "is not an origin"},
		{"https://app.example.com/", "no path"},
		{"https://app.example.com/x", "no path"},
		{"ftp://app.example.com", "is not an origin"},
		{"https://App.example.com", "lower case"},
	} {
		_, err := Parse([]byte(base+"cors: {allowed_origins: [\""+tc.origin+"\"]}"), env(nil))
		var ps Problems
		if !errors.As(err, &ps) || !strings.Contains(err.Error(), "cors.allowed_origins[0]: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want cors.allowed_origins[0] … %q", tc.origin, err, tc.want)
		}
	}
}
