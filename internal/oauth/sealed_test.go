package oauth

import (
	"bytes"
	"strings"
	"testing"
)

func TestSealer(t *testing.T) {
	s, err := newSealer(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := newSealer(bytes.Repeat([]byte{8}, 32))
	box := s.seal("rt-secret", "ad-1")
	if strings.Contains(box, "rt-secret") || box == s.seal("rt-secret", "ad-1") {
		t.Fatal("sealed value leaks or repeats")
	}
	if got, err := s.open(box, "ad-1"); err != nil || got != "rt-secret" {
		t.Fatalf("open = %q, %v", got, err)
	}
	flipped := []byte(box)
	flipped[len(flipped)-3] ^= 1
	for name, try := range map[string]func() (string, error){
		"other ad":  func() (string, error) { return s.open(box, "ad-2") },
		"other key": func() (string, error) { return other.open(box, "ad-1") },
		"tampered":  func() (string, error) { return s.open(string(flipped), "ad-1") },
		"garbage":   func() (string, error) { return s.open("!!", "ad-1") },
		"short":     func() (string, error) { return s.open("AAAA", "ad-1") },
	} {
		if _, err := try(); err == nil {
			t.Errorf("%s: opened", name)
		}
	}
	if _, err := newSealer([]byte("short")); err == nil {
		t.Error("short key accepted")
	}
}

func FuzzSealerOpen(f *testing.F) {
	s, _ := newSealer(bytes.Repeat([]byte{7}, 32))
	f.Add(s.seal("x", "ad"))
	f.Add("")
	f.Add("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Fuzz(func(t *testing.T, in string) {
		_, _ = s.open(in, "ad") // never panics
	})
}
