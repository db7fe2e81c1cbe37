package devissuer

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// TestAuthorizationCodeFlow runs a relying party (go-oidc + x/oauth2)
// against the development issuer: login_hint, PKCE, nonce, ID token.
func TestAuthorizationCodeFlow(t *testing.T) {
	const redirect = "http://127.0.0.1:1/cb"
	i := start(t, Options{
		Users:   []User{{Subject: "alice", Name: "Alice", Email: "a@x", Roles: []string{"support"}, Claims: map[string]any{"tenant": "acme"}}},
		Clients: []Client{{ID: "rp", Secret: "sec", RedirectURIs: []string{redirect}}},
	})
	ctx := context.Background()
	p, err := oidc.NewProvider(ctx, i.URL())
	if err != nil {
		t.Fatal(err)
	}
	cfg := oauth2.Config{ClientID: "rp", ClientSecret: "sec", Endpoint: p.Endpoint(), RedirectURL: redirect, Scopes: []string{"openid"}}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	authorize := func(verifier, hint string) *http.Response {
		t.Helper()
		u := cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier), oidc.Nonce("n-1"), oauth2.SetAuthURLParam("login_hint", hint))
		resp, err := noFollow.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	v := oauth2.GenerateVerifier()
	resp := authorize(v, "alice")
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || loc == nil || loc.Query().Get("state") != "st" || loc.Query().Get("iss") != i.URL() {
		t.Fatalf("authorize: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	code := loc.Query().Get("code")

	if _, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(oauth2.GenerateVerifier())); err == nil {
		t.Error("wrong verifier accepted")
	}
	// The failed attempt spent the code.
	if _, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(v)); err == nil {
		t.Error("a spent code accepted")
	}

	v = oauth2.GenerateVerifier()
	loc, _ = url.Parse(authorize(v, "alice").Header.Get("Location"))
	tok, err := cfg.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(v))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := p.Verifier(&oidc.Config{ClientID: "rp"}).Verify(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	_ = idt.Claims(&c)
	if idt.Subject != "alice" || idt.Nonce != "n-1" || c["tenant"] != "acme" || c["name"] != "Alice" {
		t.Errorf("ID token claims %v", c)
	}
	if _, err := (&oauth2.Config{ClientID: "rp", ClientSecret: "wrong", Endpoint: p.Endpoint(), RedirectURL: redirect}).Exchange(ctx, "x", oauth2.VerifierOption(v)); err == nil {
		t.Error("wrong client secret accepted")
	}

	// Without login_hint: a page to pick a user, no script.
	resp, err = http.Get(cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(v)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `value="alice"`) || !strings.Contains(string(body), "DEVELOPMENT") || strings.Contains(string(body), "<script") {
		t.Errorf("pick page %d:\n%s", resp.StatusCode, body)
	}

	// Checks before any redirect: unknown client, unregistered redirect URI.
	for name, u := range map[string]string{
		"unknown client": strings.Replace(cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(v)), "client_id=rp", "client_id=nobody", 1),
		"other redirect": strings.Replace(cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(v)), url.QueryEscape(redirect), url.QueryEscape("http://127.0.0.1:2/cb"), 1),
	} {
		resp, err := noFollow.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d", name, resp.StatusCode)
		}
	}
	// PKCE is mandatory: an error back to the client.
	resp, err = noFollow.Get(cfg.AuthCodeURL("st", oauth2.SetAuthURLParam("login_hint", "alice")))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc, _ := url.Parse(resp.Header.Get("Location")); loc == nil || loc.Query().Get("error") != "invalid_request" {
		t.Errorf("no PKCE: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}
