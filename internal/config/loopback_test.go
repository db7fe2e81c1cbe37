package config

import "testing"

// TestIsLoopbackHost: only "localhost" and loopback IPs are this machine;
// names that merely look like one are not.
func TestIsLoopbackHost(t *testing.T) {
	for h, want := range map[string]bool{
		"localhost": true, "127.0.0.1": true, "127.9.8.7": true, "::1": true,
		"127.0.0.1.attacker.example": false, "localhost.example": false, "": false,
		"10.0.0.1": false, "[::1]": false, "0.0.0.0": false, "LOCALHOST.": false,
	} {
		if got := IsLoopbackHost(h); got != want {
			t.Errorf("IsLoopbackHost(%q) = %v, want %v", h, got, want)
		}
	}
}
