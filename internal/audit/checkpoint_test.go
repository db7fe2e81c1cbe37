package audit

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

const testOrigin = "gw.example.com/audit/replica-1"

// testKey returns a fresh signer and the verifier parsed from the public
// key text, as an auditor would.
func testKey(t testing.TB) (note.Signer, note.Verifier, string) {
	t.Helper()
	skey, vkey, err := GenerateKey("harness-test")
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v, skey
}

// mixedRecord is record i of a trail where every fifth call is denied and
// every seventh rate limited.
func mixedRecord(i int) *Record {
	r := callRecord(i)
	switch {
	case i%5 == 0:
		r.Decision, r.Reason = DecisionDeny, "no role grants refunds"
	case i%7 == 0:
		r.Decision, r.Reason = DecisionRateLimited, "5 per 1m"
	}
	return r
}

// signedAt signs the tree head of l.
func signedAt(t testing.TB, l *Log, s note.Signer) ([]byte, Checkpoint) {
	t.Helper()
	size, root, ok := l.TreeHead()
	if !ok {
		t.Fatal("log opened without Merkle")
	}
	c := Checkpoint{Origin: testOrigin, Size: size, Root: root}
	b, err := SignCheckpoint(c, s)
	if err != nil {
		t.Fatal(err)
	}
	return b, c
}

// rechain rewrites path keeping only the records keep accepts, with seq,
// prev and hash recomputed: the attack the hash chain alone cannot detect.
func rechain(t *testing.T, path string, keep func(*Record) bool) int {
	t.Helper()
	removed := 0
	prev, seq := ZeroHash, uint64(0)
	var out []string
	for _, line := range readLines(t, path) {
		r, ok, err := decodeLine([]byte(line))
		if err != nil || !ok {
			t.Fatalf("bad line %q", line)
		}
		if !keep(r) {
			removed++
			continue
		}
		seq++
		r.Seq, r.Prev = seq, prev
		b, err := encode(r)
		if err != nil {
			t.Fatal(err)
		}
		prev = r.Hash
		out = append(out, string(b))
	}
	writeLines(t, path, out)
	return removed
}

// TestCheckpointCatchesRecomputedChain reproduces the attack: 19 deny and
// rate-limited records removed and seq, prev and hash recomputed. The chain
// verifies; the checkpoint does not, and says where.
func TestCheckpointCatchesRecomputedChain(t *testing.T) {
	s, v, _ := testKey(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, Config{Path: path, Fsync: FsyncNever, Merkle: true})
	ctx := context.Background()
	for i := range 60 {
		if err := l.Write(ctx, mixedRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	_, early := signedAt(t, l, s) // an auditor kept this one
	for i := 60; i < 120; i++ {
		if err := l.Write(ctx, mixedRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	signed, late := signedAt(t, l, s)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckLog([]string{path}, early, late); err != nil {
		t.Fatalf("untouched log: %v", err)
	}

	removed := 0
	removed = rechain(t, path, func(r *Record) bool {
		if removed < 19 && r.Seq > early.Size && (r.Decision == DecisionDeny || r.Decision == DecisionRateLimited) {
			removed++
			return false
		}
		return true
	})
	if removed != 19 {
		t.Fatalf("removed %d records, want 19", removed)
	}
	if res := mustVerify(t, path); !res.OK() {
		t.Fatalf("the recomputed chain should fool the chain check, got %v", res.Bad)
	}
	cp, err := OpenCheckpoint(signed, v)
	if err != nil {
		t.Fatal(err)
	}
	_, err = CheckLog([]string{path}, cp)
	var ce *CheckError
	if !errors.As(err, &ce) || ce.Problem != CheckTruncated {
		t.Fatalf("CheckLog = %v, want truncated (the log is 19 records short)", err)
	}
	// The gateway went on writing, so the log is as long as the checkpoint again.
	l = openLog(t, Config{Path: path, Fsync: FsyncNever, Merkle: true})
	for i := range 30 {
		if err := l.Write(ctx, mixedRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = CheckLog([]string{path}, cp)
	if !errors.As(err, &ce) || ce.Problem != CheckRewritten || !strings.Contains(ce.Detail, fmt.Sprintf("root mismatch at size %d", cp.Size)) {
		t.Fatalf("CheckLog = %v, want rewritten with root mismatch at size %d", err, cp.Size)
	}
	_, err = CheckLog([]string{path}, early, cp)
	if !errors.As(err, &ce) || ce.Problem != CheckRewritten || !strings.Contains(ce.Detail, fmt.Sprintf("between seq %d and %d", early.Size+1, cp.Size)) {
		t.Fatalf("CheckLog with an earlier matching checkpoint = %v, want the range of the first differing record", err)
	}
}

func TestCheckpointEditedRecordNamed(t *testing.T) {
	s, _, _ := testKey(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, Config{Path: path, Fsync: FsyncNever, Merkle: true})
	var cps []Checkpoint
	for i := range 10 {
		if err := l.Write(context.Background(), mixedRecord(i)); err != nil {
			t.Fatal(err)
		}
		_, c := signedAt(t, l, s)
		cps = append(cps, c)
	}
	_ = l.Close()
	// Record 7 (a denial) becomes an allow; the chain is recomputed.
	rechain(t, path, func(r *Record) bool {
		if r.Seq == 7 {
			r.Decision = DecisionAllow
		}
		return true
	})
	_, err := CheckLog([]string{path}, cps...)
	var ce *CheckError
	if !errors.As(err, &ce) || ce.Problem != CheckRewritten || !strings.Contains(ce.Detail, "the first differing record is seq 7") {
		t.Fatalf("CheckLog = %v, want the first differing record named (seq 7)", err)
	}
}

func TestCheckpointTruncationAndFork(t *testing.T) {
	s, _, _ := testKey(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, Config{Path: path, Fsync: FsyncNever, Merkle: true})
	for i := range 20 {
		_ = l.Write(context.Background(), mixedRecord(i))
	}
	_, cp := signedAt(t, l, s)
	_ = l.Close()
	lines := readLines(t, path)
	writeLines(t, path, lines[:15])
	if res := mustVerify(t, path); !res.OK() {
		t.Fatalf("a cut-off end is a valid chain: %v", res.Bad)
	}
	_, err := CheckLog([]string{path}, cp)
	var ce *CheckError
	if !errors.As(err, &ce) || ce.Problem != CheckTruncated || !strings.Contains(ce.Detail, "holds 15 records") {
		t.Fatalf("CheckLog = %v, want truncated", err)
	}

	other := cp
	other.Root = bytes.Repeat([]byte{7}, 32)
	_, err = CheckLog([]string{path}, cp, other)
	if !errors.As(err, &ce) || ce.Problem != CheckFork {
		t.Fatalf("CheckLog = %v, want fork", err)
	}
	foreign := cp
	foreign.Origin = "gw.example.com/audit/replica-2"
	_, err = CheckLog([]string{path}, cp, foreign)
	if !errors.As(err, &ce) || ce.Problem != CheckOrigin {
		t.Fatalf("CheckLog = %v, want origin", err)
	}
}

// TestTreeContinuesAcrossRotationAndRestart: the tree the log maintains is
// the tree recomputed over every file, and a reopened log goes on with it.
func TestTreeContinuesAcrossRotationAndRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	for round := range 3 {
		l := openLog(t, Config{Path: path, Fsync: FsyncNever, MaxSize: 2048, Merkle: true})
		for i := range 15 {
			if err := l.Write(context.Background(), callRecord(round*100+i)); err != nil {
				t.Fatal(err)
			}
		}
		size, root, _ := l.TreeHead()
		_ = l.Close()
		files, err := Files(path)
		if err != nil {
			t.Fatal(err)
		}
		if round == 2 && len(files) < 3 {
			t.Fatalf("want rotation, got %d files", len(files))
		}
		roots, n, err := RootsAt(files, size)
		if err != nil {
			t.Fatal(err)
		}
		if n != size || !bytes.Equal(roots[size], root) {
			t.Fatalf("round %d: recomputed tree (%d) differs from the log's (%d)", round, n, size)
		}
	}
}

func TestProofs(t *testing.T) {
	s, v, _ := testKey(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, Config{Path: path, Fsync: FsyncNever, Merkle: true})
	var ids []string
	var sigs [][]byte
	for i := range 37 {
		r := mixedRecord(i)
		if err := l.Write(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
		if i == 12 || i == 36 {
			b, _ := signedAt(t, l, s)
			sigs = append(sigs, b)
		}
	}
	_ = l.Close()
	files := []string{path}
	for _, id := range []string{ids[0], ids[11], ids[12], ids[35]} {
		p, err := ProveInclusion(files, id, sigs[1], v)
		if err != nil {
			t.Fatalf("ProveInclusion(%s): %v", id, err)
		}
		if _, err := VerifyProof(p, v); err != nil {
			t.Fatalf("VerifyProof: %v", err)
		}
		// Independently: the note signature, then the library's proof check.
		n, err := note.Open([]byte(p.Checkpoint), note.VerifierList(v))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(n.Text, "\n")
		root, _ := base64.StdEncoding.DecodeString(lines[2])
		r, ok, err := decodeLine([]byte(p.Record))
		if err != nil || !ok || r.ID != id {
			t.Fatalf("proof record %q", p.Record)
		}
		raw, _ := hexDecode(r.Hash)
		hs := decodeAll(t, p.Hashes)
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, p.LeafIndex, p.TreeSize, rfc6962.DefaultHasher.HashLeaf(raw), hs, root); err != nil {
			t.Fatalf("independent inclusion check: %v", err)
		}
		// A proof for an edited record fails.
		bad := *p
		bad.Record = strings.Replace(p.Record, `"decision":"`, `"decision":"x`, 1)
		if _, err := VerifyProof(&bad, v); err == nil {
			t.Fatal("an edited record line verified")
		}
	}
	if _, err := ProveInclusion(files, ids[20], sigs[0], v); err == nil {
		t.Fatal("a record after the checkpoint was proved")
	}
	cp, err := ProveConsistency(files, sigs[0], sigs[1], v)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyProof(cp, v); err != nil {
		t.Fatalf("consistency: %v", err)
	}
	c1, _ := OpenCheckpoint(sigs[0], v)
	c2, _ := OpenCheckpoint(sigs[1], v)
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, c1.Size, c2.Size, decodeAll(t, cp.Hashes), c1.Root, c2.Root); err != nil {
		t.Fatalf("independent consistency check: %v", err)
	}
	// A checkpoint signed by another key is refused.
	_, v2, _ := testKey(t)
	if _, err := VerifyProof(cp, v2); err == nil {
		t.Fatal("a proof verified with the wrong key")
	}
}

func decodeAll(t *testing.T, in []string) [][]byte {
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

func hexDecode(s string) ([]byte, error) { return hex.DecodeString(s) }

func TestLoadSignerDerivesVerifier(t *testing.T) {
	dir := t.TempDir()
	skey, vkey, err := GenerateKey("k1")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "k1.key"), []byte(skey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "k1.pub"), []byte(vkey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, v, err := LoadSigner(filepath.Join(dir, "k1.key"))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := LoadVerifier(filepath.Join(dir, "k1.pub"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := SignCheckpoint(Checkpoint{Origin: testOrigin, Size: 1, Root: make([]byte, 32)}, s)
	if err != nil {
		t.Fatal(err)
	}
	for _, vv := range []note.Verifier{v, pub} {
		if _, err := OpenCheckpoint(b, vv); err != nil {
			t.Fatalf("OpenCheckpoint: %v", err)
		}
	}
}

// TestCheckStartRefusesRewrittenLog: the gateway does not extend a log that
// no longer matches the checkpoint its witness holds.
func TestCheckStartRefusesRewrittenLog(t *testing.T) {
	s, v, _ := testKey(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	w := &FileWitness{Path: filepath.Join(dir, "checkpoint")}
	sc := StartCheck{Path: path, Origin: testOrigin, Verifier: v, Witnesses: []Witness{w}}
	ctx := context.Background()
	if err := CheckStart(ctx, sc); err != nil {
		t.Fatalf("a new log: %v", err)
	}
	l := openLog(t, Config{Path: path, Fsync: FsyncNever, Merkle: true})
	pub, err := NewPublisher(PublisherConfig{Log: l, Signer: s, Origin: testOrigin, Witnesses: []Witness{w}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		_ = l.Write(ctx, mixedRecord(i))
	}
	if err := pub.Close(ctx); err != nil {
		t.Fatal(err)
	}
	_ = l.Close()
	if err := CheckStart(ctx, sc); err != nil {
		t.Fatalf("the untouched log: %v", err)
	}
	rechain(t, path, func(r *Record) bool { return r.Decision != DecisionDeny })
	err = CheckStart(ctx, sc)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("CheckStart = %v, want a refusal (truncated)", err)
	}
	// An existing log without any checkpoint of its origin needs the operator's word.
	sc.Origin = "gw.example.com/audit/new"
	if err := CheckStart(ctx, sc); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "--accept-new-audit-origin") {
		t.Fatalf("CheckStart of a new origin = %v", err)
	}
	sc.AcceptNewOrigin = true
	if err := CheckStart(ctx, sc); err != nil {
		t.Fatalf("accepted new origin: %v", err)
	}
	// A log that was removed while its checkpoint says otherwise.
	sc = StartCheck{Path: path, Origin: testOrigin, Verifier: v, Witnesses: []Witness{w}}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := CheckStart(ctx, sc); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "removed") {
		t.Fatalf("CheckStart of a removed log = %v", err)
	}
}

func TestParseCheckpoint(t *testing.T) {
	root := base64.StdEncoding.EncodeToString(make([]byte, 32))
	good := "o/audit/a\n12\n" + root + "\n"
	if c, err := ParseCheckpoint(good); err != nil || c.Size != 12 || c.Origin != "o/audit/a" {
		t.Fatalf("ParseCheckpoint(good) = %+v, %v", c, err)
	}
	for name, text := range map[string]string{
		"no newline":   strings.TrimSuffix(good, "\n"),
		"leading zero": "o\n012\n" + root + "\n",
		"negative":     "o\n-1\n" + root + "\n",
		"short root":   "o\n1\nAAAA\n",
		"extension":    good + "ext\n",
		"empty origin": "\n1\n" + root + "\n",
		"overflow":     "o\n18446744073709551616\n" + root + "\n",
	} {
		if _, err := ParseCheckpoint(text); !errors.Is(err, ErrCheckpoint) {
			t.Errorf("%s: err = %v, want ErrCheckpoint", name, err)
		}
	}
}

func FuzzParseCheckpoint(f *testing.F) {
	root := base64.StdEncoding.EncodeToString(make([]byte, 32))
	f.Add("o/audit/a\n12\n" + root + "\n")
	f.Add("o\n0\n" + root + "\n\n— k abc\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCheckpoint(s)
		if err != nil {
			return
		}
		if c.Text() != s {
			t.Fatalf("round trip: %q → %q", s, c.Text())
		}
	})
}

func FuzzParseProof(f *testing.F) {
	f.Add([]byte(`{"type":"inclusion","record":"{}","leaf_index":1,"tree_size":2,"hashes":["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="],"checkpoint":"o\n2\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"}`))
	f.Add([]byte(`{"type":"consistency","hashes":[],"from":"","checkpoint":""}`))
	f.Add([]byte(`{"type":"x"}`))
	_, v, _ := testKey(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseProof(b)
		if err != nil {
			return
		}
		// Without a valid signature nothing may verify.
		if _, err := VerifyProof(p, v); err == nil {
			t.Fatalf("an unsigned proof verified: %q", b)
		}
	})
}
