package config

import (
	"os"
	"strings"
	"testing"
)

// TestCheckpointWitnessURL: an http(s) witness is https (plain http only on
// loopback, as for every other URL the gateway sends to) and carries no
// credentials.
func TestCheckpointWitnessURL(t *testing.T) {
	key := t.TempDir() + "/audit.key"
	if err := os.WriteFile(key, []byte("unused"), 0o600); err != nil {
		t.Fatal(err)
	}
	doc := envBase + `
audit:
  path: ./audit.log
  checkpoint:
    key: ` + key + `
    witness: ["http://witness.example.com/cp", "http://127.0.0.1:9/cp", "https://u:p@witness.example.com/cp", "https://witness.example.com/cp"]
`
	_, err := Parse([]byte(doc), env(nil))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		"audit.checkpoint.witness[0]: \"http://witness.example.com/cp\" must use https",
		"audit.checkpoint.witness[2]: must not carry credentials",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("problems lack %q:\n%v", want, err)
		}
	}
	for _, ok := range []string{"witness[1]", "witness[3]"} {
		if strings.Contains(err.Error(), ok) {
			t.Errorf("%s refused:\n%v", ok, err)
		}
	}
}
