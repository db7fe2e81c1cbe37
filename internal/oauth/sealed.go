package oauth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
)

// sealer encrypts what the gateway keeps of the IdP (its refresh tokens) in
// the shared store: AES-256-GCM under oauth.state_key, a random 96-bit
// nonce per value, and additional data binding a value to its human, so
// that a sealed token copied to another grant does not open.
type sealer struct{ aead cipher.AEAD }

func newSealer(key []byte) (*sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("oauth: state key must be 32 bytes, got %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("oauth: state key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("oauth: state key: %w", err)
	}
	return &sealer{aead: aead}, nil
}

// seal returns base64url(nonce || ciphertext) of plain, bound to ad.
func (s *sealer) seal(plain, ad string) string {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(s.aead.Seal(nonce, nonce, []byte(plain), []byte(ad)))
}

var errSealed = errors.New("sealed value cannot be opened (another oauth.state_key, or tampered)")

// open reverses seal; any mismatch (key, ad, tampering) is errSealed.
func (s *sealer) open(sealed, ad string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(sealed)
	if err != nil || len(b) < s.aead.NonceSize()+s.aead.Overhead() {
		return "", errSealed
	}
	n := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, b[:n], b[n:], []byte(ad))
	if err != nil {
		return "", errSealed
	}
	return string(plain), nil
}

// refreshAD binds a sealed IdP refresh token to the human it belongs to.
func refreshAD(h Human) string { return "harness/idp-refresh\x00" + h.Issuer + "\x00" + h.Subject }
