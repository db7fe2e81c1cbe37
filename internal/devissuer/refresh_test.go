package devissuer

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// TestRefreshGrant: offline_access gives a refresh token; refresh rotates
// it and carries the user's current roles; a disabled user is refused with
// invalid_grant; an issuer with NoRefreshTokens offers none.
func TestRefreshGrant(t *testing.T) {
	const redirect = "http://127.0.0.1:1/cb"
	opts := Options{
		Users:   []User{{Subject: "alice", Roles: []string{"support", "admin"}}},
		Clients: []Client{{ID: "rp", Secret: "sec", RedirectURIs: []string{redirect}}},
	}
	signIn := func(t *testing.T, i *Issuer) (*oauth2.Config, *oidc.Provider, *oauth2.Token) {
		t.Helper()
		ctx := context.Background()
		p, err := oidc.NewProvider(ctx, i.URL())
		if err != nil {
			t.Fatal(err)
		}
		cfg := &oauth2.Config{ClientID: "rp", ClientSecret: "sec", Endpoint: p.Endpoint(), RedirectURL: redirect, Scopes: []string{"openid", ScopeOfflineAccess}}
		noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		v := oauth2.GenerateVerifier()
		resp, err := noFollow.Get(cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(v), oauth2.SetAuthURLParam("login_hint", "alice")))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, _ := url.Parse(resp.Header.Get("Location"))
		tok, err := cfg.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(v))
		if err != nil {
			t.Fatal(err)
		}
		return cfg, p, tok
	}
	refresh := func(cfg *oauth2.Config, rt string) (*oauth2.Token, error) {
		return cfg.TokenSource(context.Background(), &oauth2.Token{RefreshToken: rt}).Token()
	}

	t.Run("offered", func(t *testing.T) {
		i := start(t, opts)
		var d struct {
			Scopes []string `json:"scopes_supported"`
		}
		p, _ := oidc.NewProvider(context.Background(), i.URL())
		_ = p.Claims(&d)
		if !slices.Contains(d.Scopes, ScopeOfflineAccess) {
			t.Errorf("scopes_supported = %v", d.Scopes)
		}
		cfg, p, tok := signIn(t, i)
		if tok.RefreshToken == "" {
			t.Fatal("no refresh token with offline_access")
		}
		if err := i.SetRoles("alice", []string{"support"}); err != nil {
			t.Fatal(err)
		}
		tok2, err := refresh(cfg, tok.RefreshToken)
		if err != nil {
			t.Fatal(err)
		}
		if tok2.RefreshToken == tok.RefreshToken {
			t.Error("refresh token not rotated")
		}
		raw, _ := tok2.Extra("id_token").(string)
		idt, err := p.Verifier(&oidc.Config{ClientID: "rp"}).Verify(context.Background(), raw)
		if err != nil {
			t.Fatal(err)
		}
		var c struct {
			Roles []string `json:"roles"`
		}
		_ = idt.Claims(&c)
		if !slices.Equal(c.Roles, []string{"support"}) || idt.Subject != "alice" {
			t.Errorf("refreshed ID token: sub %s roles %v", idt.Subject, c.Roles)
		}
		if _, err := refresh(cfg, tok.RefreshToken); !isInvalidGrant(err) {
			t.Errorf("used refresh token: %v", err)
		}
		if err := i.DisableUser("alice", true); err != nil {
			t.Fatal(err)
		}
		if _, err := refresh(cfg, tok2.RefreshToken); !isInvalidGrant(err) {
			t.Errorf("disabled user refreshed: %v", err)
		}
	})

	t.Run("not offered", func(t *testing.T) {
		o := opts
		o.NoRefreshTokens = true
		i := start(t, o)
		_, _, tok := signIn(t, i)
		if tok.RefreshToken != "" {
			t.Error("refresh token from an issuer that offers none")
		}
	})
}

func isInvalidGrant(err error) bool {
	var re *oauth2.RetrieveError
	return errors.As(err, &re) && re.ErrorCode == "invalid_grant"
}
