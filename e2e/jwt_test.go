package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"testing"
)

func base64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// hs256 signs input with key as an HMAC JWT: the algorithm-confusion attack
// that uses a public value as the secret.
func hs256(t testing.TB, input string, key []byte) string {
	t.Helper()
	m := hmac.New(sha256.New, key)
	m.Write([]byte(input))
	return input + "." + base64url(m.Sum(nil))
}
