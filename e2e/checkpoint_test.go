package e2e

// Audit checkpoints through the real binary: a rewritten trail, even with
// its chain recomputed, is caught by verify and by the gateway itself at
// start; proofs are checked by the CLI and independently here.

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/agentharness/harness/internal/redistest"
)

// cpKeygen runs `gateway audit keygen NAME` in dir.
func cpKeygen(t *testing.T, dir, name string) {
	t.Helper()
	cmd := exec.Command(gatewayBin, "audit", "keygen", name)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	st, err := os.Stat(filepath.Join(dir, name+".key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
}

var (
	cpSeqRe  = regexp.MustCompile(`"seq":\d+,`)
	cpTailRe = regexp.MustCompile(`"prev":"[0-9a-f]{64}","hash":"[0-9a-f]{64}"\}$`)
)

// cpRechain drops the call records drop selects and recomputes seq, prev
// and hash of every line: the attack of issue 17.
func cpRechain(t *testing.T, path string, drop func(audLine) bool) int {
	t.Helper()
	prev, seq, removed := strings.Repeat("0", 64), 0, 0
	var out []string
	for _, l := range audRead(t, path) {
		if drop(l) {
			removed++
			continue
		}
		seq++
		line := cpSeqRe.ReplaceAllString(l.raw, fmt.Sprintf(`"seq":%d,`, seq))
		line = cpTailRe.ReplaceAllString(line, fmt.Sprintf(`"prev":"%s","hash":""}`, prev))
		sum := sha256.Sum256([]byte(line))
		prev = hex.EncodeToString(sum[:])
		out = append(out, strings.TrimSuffix(line, `""}`)+`"`+prev+`"}`)
	}
	if err := os.WriteFile(path, []byte(strings.Join(out, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return removed
}

func TestAuditCheckpointsCatchRewriteAndProve(t *testing.T) {
	keys := t.TempDir()
	cpKeygen(t, keys, "harness-audit")
	pub := filepath.Join(keys, "harness-audit.pub")
	vkey, _ := os.ReadFile(pub)
	verifier, err := note.NewVerifier(strings.TrimSpace(string(vkey)))
	if err != nil {
		t.Fatal(err)
	}
	redisURL := redistest.Start(t)
	logDir := t.TempDir()
	path := filepath.Join(logDir, "audit.log")
	cpFile := filepath.Join(logDir, "checkpoint")
	st := startAuditStackAt(t, path, fmt.Sprintf(`  checkpoint:
    key: %q
    every: 1s
    witness: ["file:%s", redis]
    replica: r1
ratelimit:
  redis_url: %q
  redis_timeout: 2s
`, filepath.Join(keys, "harness-audit.key"), cpFile, redisURL))
	calls := func(n int) {
		t.Helper()
		for i := range n {
			who := []string{"bob", "alice", "carol"}[i%3]
			c := connect(t, st.gw.URL, st.tokens[who], eras[0])
			callTool(t, c, "probe_echo", map[string]any{"q": who})
			callTool(t, c, "crm_delete_ticket", map[string]any{"ticket_id": "T-9999"}) // denied but for bob
		}
	}
	calls(6)
	st.gw.stop() // publishes a final checkpoint
	cp1 := filepath.Join(logDir, "cp1")
	copyFile(t, cpFile, cp1)
	if out, code := audRunGateway(t, "audit", "verify", path, "--checkpoint", cp1, "--key", pub); code != 0 {
		t.Fatalf("verify with the checkpoint: exit %d\n%s", code, out)
	}
	st.startGateway(t) // matches its checkpoint: starts
	calls(6)
	st.gw.stop()
	cp2 := filepath.Join(logDir, "cp2")
	copyFile(t, cpFile, cp2)

	// Inclusion proof of one denied call, checked by the CLI and here.
	var denied audLine
	for _, l := range audRead(t, path) {
		if l.str("decision") == "deny" {
			denied = l
			break
		}
	}
	out, code := audRunGateway(t, "audit", "prove", path, "--id", denied.str("id"), "--checkpoint", cp2)
	if code != 0 {
		t.Fatalf("prove: exit %d\n%s", code, out)
	}
	proofFile := filepath.Join(logDir, "proof.json")
	writeFile(t, proofFile, out)
	if out, code := audRunGateway(t, "audit", "verify", "--proof", proofFile, "--key", pub); code != 0 || !strings.Contains(out, "proved: record "+denied.str("id")) {
		t.Fatalf("verify --proof: exit %d\n%s", code, out)
	}
	var p struct {
		Record     string   `json:"record"`
		LeafIndex  uint64   `json:"leaf_index"`
		TreeSize   uint64   `json:"tree_size"`
		Hashes     []string `json:"hashes"`
		From       string   `json:"from"`
		Checkpoint string   `json:"checkpoint"`
	}
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatal(err)
	}
	size, root := cpOpen(t, verifier, p.Checkpoint)
	recHash, _ := hex.DecodeString(p.Record[len(p.Record)-66 : len(p.Record)-2])
	if p.Record != denied.raw || size != p.TreeSize {
		t.Fatalf("proof record/size: %q %d", p.Record, size)
	}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, p.LeafIndex, p.TreeSize, rfc6962.DefaultHasher.HashLeaf(recHash), cpDecode(t, p.Hashes), root); err != nil {
		t.Fatalf("independent inclusion check: %v", err)
	}
	// Consistency proof between the two checkpoints.
	out, code = audRunGateway(t, "audit", "prove", "--from", cp1, "--to", cp2, path)
	if code != 0 {
		t.Fatalf("prove consistency: exit %d\n%s", code, out)
	}
	writeFile(t, proofFile, out)
	if out, code := audRunGateway(t, "audit", "verify", "--proof", proofFile, "--key", pub); code != 0 || !strings.Contains(out, "append-only") {
		t.Fatalf("verify consistency: exit %d\n%s", code, out)
	}
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatal(err)
	}
	s1, r1 := cpOpen(t, verifier, p.From)
	s2, r2 := cpOpen(t, verifier, p.Checkpoint)
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, s1, s2, cpDecode(t, p.Hashes), r1, r2); err != nil || s1 >= s2 {
		t.Fatalf("independent consistency check (%d→%d): %v", s1, s2, err)
	}

	// The attack: drop denied records, recompute the chain.
	removed := cpRechain(t, path, func(l audLine) bool { return l.str("decision") == "deny" })
	if removed < 3 {
		t.Fatalf("only %d denials to remove", removed)
	}
	if out, code := audRunGateway(t, "audit", "verify", path); code != 0 {
		t.Fatalf("the recomputed chain should pass the chain check: exit %d\n%s", code, out)
	}
	for _, args := range [][]string{
		{"--checkpoint", cp2},
		{"--witness", "file:" + cpFile},
		{"--witness", redisURL},
	} {
		out, code := audRunGateway(t, append([]string{"audit", "verify", path, "--key", pub}, args...)...)
		if code != 1 || !strings.Contains(out, "TAMPERED: truncated") {
			t.Errorf("verify %v on the rewritten log: exit %d\n%s", args, code, out)
		}
	}
	out, code = audRunGateway(t, "audit", "verify", path, "--key", pub, "--checkpoint", cp1)
	if code != 1 || !strings.Contains(out, "TAMPERED: rewritten: root mismatch at size") {
		t.Errorf("verify with the first checkpoint: exit %d\n%s", code, out)
	}

	// The gateway refuses to carry on the rewritten log.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := exec.CommandContext(ctx, gatewayBin, "serve", "--config", filepath.Join(st.gw.Dir, "harness.yaml")).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 || !strings.Contains(string(res), "refusing to extend the audit log") || !strings.Contains(string(res), "truncated") {
		t.Fatalf("serve on the rewritten log: %v\n%s", err, res)
	}
}

// TestAuditCheckpointsTwoReplicasOneRedis: each replica has its own log and
// origin; one Redis witness keeps both.
func TestAuditCheckpointsTwoReplicasOneRedis(t *testing.T) {
	keys := t.TempDir()
	cpKeygen(t, keys, "harness-audit")
	pub := filepath.Join(keys, "harness-audit.pub")
	redisURL := redistest.Start(t)
	dir := t.TempDir()
	extra := func(replica string) string {
		return fmt.Sprintf(`  checkpoint:
    key: %q
    every: 1s
    witness: [redis]
    replica: %s
ratelimit:
  redis_url: %q
  redis_timeout: 2s
`, filepath.Join(keys, "harness-audit.key"), replica, redisURL)
	}
	st := startAuditStackAt(t, filepath.Join(dir, "r1.log"), extra("r1"))
	cfg2 := strings.ReplaceAll(strings.ReplaceAll(st.cfg, "r1.log", "r2.log"), "replica: r1", "replica: r2")
	gw2 := startGateway(t, cfg2)
	for _, url := range []string{st.gw.URL, gw2.URL} {
		tok := mint(t, st.iss, url, map[string]any{"sub": "bob", "azp": "cursor-e2e", "roles": []string{"admin"}})
		c := connect(t, url, tok, eras[0])
		callTool(t, c, "probe_echo", map[string]any{"q": "x"})
	}
	st.gw.stop()
	gw2.stop()
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	keysFound, err := rdb.Keys(context.Background(), "harness:audit:checkpoint:*").Result()
	if err != nil || len(keysFound) != 2 {
		t.Fatalf("witness keys %v, %v; want one per replica", keysFound, err)
	}
	for _, r := range []string{"r1", "r2"} {
		out, code := audRunGateway(t, "audit", "verify", filepath.Join(dir, r+".log"), "--key", pub, "--witness", redisURL, "--origin", "127.0.0.1/audit/"+r)
		if code != 0 || !strings.Contains(out, "127.0.0.1/audit/"+r) {
			t.Errorf("verify %s against the shared witness: exit %d\n%s", r, code, out)
		}
	}
	// r1's log against r2's checkpoint: a different log.
	out, code := audRunGateway(t, "audit", "verify", filepath.Join(dir, "r1.log"), "--key", pub, "--witness", redisURL, "--origin", "127.0.0.1/audit/r2")
	if code != 1 {
		t.Errorf("r1's log against r2's checkpoint: exit %d\n%s", code, out)
	}
	if out, code := audRunGateway(t, "audit", "verify", filepath.Join(dir, "r1.log"), "--key", pub, "--witness", redisURL); code == 0 || !strings.Contains(out, "--origin") {
		t.Errorf("two origins without --origin: exit %d\n%s", code, out)
	}
}

func cpOpen(t *testing.T, v note.Verifier, signed string) (uint64, []byte) {
	t.Helper()
	n, err := note.Open([]byte(signed), note.VerifierList(v))
	if err != nil {
		t.Fatalf("note.Open: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "127.0.0.1/audit/") {
		t.Fatalf("checkpoint text %q", n.Text)
	}
	var size uint64
	if _, err := fmt.Sscan(lines[1], &size); err != nil {
		t.Fatal(err)
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil {
		t.Fatal(err)
	}
	return size, root
}

func cpDecode(t *testing.T, in []string) [][]byte {
	t.Helper()
	out := make([][]byte, len(in))
	for i, s := range in {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = b
	}
	return out
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, to, string(b))
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}
