//go:build race

package e2e

// raceEnabled builds the gateway binary with the race detector when the
// tests themselves run with it (make test does).
const raceEnabled = true
