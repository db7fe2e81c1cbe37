package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// Checkpoint is a C2SP tlog-checkpoint: the origin naming the log (one per
// gateway replica), the tree size and the RFC 6962 root hash at that size.
// Signed as a note (golang.org/x/mod/sumdb/note) it commits the gateway to
// every record up to Size: whoever holds it and the verifier key can detect
// any later rewrite of those records.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   []byte
}

// maxCheckpoint bounds a signed checkpoint read from a file or a witness.
const maxCheckpoint = 16 << 10

// Text returns the checkpoint body: origin, decimal size and base64 root,
// each line ending in a newline.
func (c Checkpoint) Text() string {
	return c.Origin + "\n" + strconv.FormatUint(c.Size, 10) + "\n" + base64.StdEncoding.EncodeToString(c.Root) + "\n"
}

// String is a short form for messages.
func (c Checkpoint) String() string {
	return fmt.Sprintf("%s size %d root %s", sanitize(c.Origin), c.Size, base64.StdEncoding.EncodeToString(c.Root))
}

// ErrCheckpoint marks a checkpoint that cannot be parsed or verified.
var ErrCheckpoint = errors.New("bad checkpoint")

// ParseCheckpoint parses a checkpoint body (the note text). It is strict:
// exactly three lines, a non-empty origin, a decimal size without leading
// zeros and a 32-byte root in standard base64. Extension lines are refused
// (the gateway never writes them).
func ParseCheckpoint(text string) (Checkpoint, error) {
	var c Checkpoint
	if !strings.HasSuffix(text, "\n") {
		return c, fmt.Errorf("%w: the text does not end in a newline", ErrCheckpoint)
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) != 3 {
		return c, fmt.Errorf("%w: want 3 lines (origin, size, root), got %d", ErrCheckpoint, len(lines))
	}
	c.Origin = lines[0]
	if c.Origin == "" || strings.ContainsAny(c.Origin, "\r\t") || strings.TrimSpace(c.Origin) != c.Origin {
		return c, fmt.Errorf("%w: empty or malformed origin", ErrCheckpoint)
	}
	s := lines[1]
	if s == "" || (len(s) > 1 && s[0] == '0') || strings.TrimLeft(s, "0123456789") != "" {
		return c, fmt.Errorf("%w: size %q is not a decimal without leading zeros", ErrCheckpoint, truncate(s, 40))
	}
	size, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return c, fmt.Errorf("%w: size: %w", ErrCheckpoint, err)
	}
	c.Size = size
	root, err := base64.StdEncoding.Strict().DecodeString(lines[2])
	if err != nil || len(root) != 32 {
		return c, fmt.Errorf("%w: root is not 32 bytes of standard base64", ErrCheckpoint)
	}
	c.Root = root
	return c, nil
}

// SignCheckpoint returns c as a signed note.
func SignCheckpoint(c Checkpoint, s note.Signer) ([]byte, error) {
	msg, err := note.Sign(&note.Note{Text: c.Text()}, s)
	if err != nil {
		return nil, fmt.Errorf("signing checkpoint: %w", err)
	}
	return msg, nil
}

// OpenCheckpoint verifies a signed checkpoint with v and parses it.
func OpenCheckpoint(msg []byte, v note.Verifier) (Checkpoint, error) {
	if len(msg) > maxCheckpoint {
		return Checkpoint{}, fmt.Errorf("%w: larger than %d bytes", ErrCheckpoint, maxCheckpoint)
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: signature of key %s: %w", ErrCheckpoint, v.Name(), err)
	}
	return ParseCheckpoint(n.Text)
}

// GenerateKey returns a new Ed25519 note signer key and its verifier key,
// both named name (see `gateway audit keygen`).
func GenerateKey(name string) (skey, vkey string, err error) {
	skey, vkey, err = note.GenerateKey(rand.Reader, name)
	if err != nil {
		return "", "", fmt.Errorf("generating checkpoint key %q: %w", name, err)
	}
	return skey, vkey, nil
}

// LoadSigner reads a note signer key file (NAME.key) and returns the signer
// and the matching verifier.
func LoadSigner(path string) (note.Signer, note.Verifier, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("reading checkpoint key: %w", err)
	}
	skey := string(bytes.TrimSpace(b))
	s, err := note.NewSigner(skey)
	if err != nil {
		return nil, nil, fmt.Errorf("checkpoint key %s is not a note signer key: %w", path, err)
	}
	vkey, err := verifierKey(skey)
	if err != nil {
		return nil, nil, fmt.Errorf("checkpoint key %s: %w", path, err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, nil, fmt.Errorf("checkpoint key %s: %w", path, err)
	}
	return s, v, nil
}

// verifierKey derives the verifier key of an Ed25519 signer key
// (PRIVATE+KEY+<name>+<hash>+<base64(0x01 ‖ seed)>).
func verifierKey(skey string) (string, error) {
	parts := strings.SplitN(skey, "+", 5)
	if len(parts) != 5 || parts[0] != "PRIVATE" || parts[1] != "KEY" {
		return "", errors.New("malformed signer key")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return "", errors.New("not an Ed25519 signer key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	return note.NewEd25519VerifierKey(parts[2], pub)
}

// LoadVerifier reads a verifier key file (NAME.pub).
func LoadVerifier(path string) (note.Verifier, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading verifier key: %w", err)
	}
	v, err := note.NewVerifier(string(bytes.TrimSpace(b)))
	if err != nil {
		return nil, fmt.Errorf("%s is not a note verifier key: %w", path, err)
	}
	return v, nil
}

// CheckProblem names why a log does not match a checkpoint.
type CheckProblem string

// Problems reported by CheckLog.
const (
	// CheckRewritten: the root at the checkpoint's size differs: a record
	// up to that size was edited, removed, inserted or reordered, even if
	// the chain was recomputed.
	CheckRewritten CheckProblem = "rewritten"
	// CheckTruncated: the log holds fewer records than the checkpoint.
	CheckTruncated CheckProblem = "truncated"
	// CheckFork: two checkpoints of the same origin disagree.
	CheckFork CheckProblem = "fork"
	// CheckOrigin: checkpoints of different origins were given.
	CheckOrigin CheckProblem = "origin"
)

// CheckError is a log that does not match its checkpoint(s).
type CheckError struct {
	Problem CheckProblem
	Detail  string
}

func (e *CheckError) Error() string { return string(e.Problem) + ": " + e.Detail }

// CheckLog recomputes the Merkle tree over paths and checks it against
// every checkpoint: each must be of the same origin, no larger than the log,
// and its root must be the log's root at its size. Checkpoints that
// disagree with each other are a fork. When one checkpoint matches and a
// larger one does not, the first differing record lies between the two
// sizes, and the error says so. It returns the log's size.
func CheckLog(paths []string, cps ...Checkpoint) (uint64, error) {
	if err := checkForks(cps); err != nil {
		return 0, err
	}
	sizes := make([]uint64, len(cps))
	for i, c := range cps {
		sizes[i] = c.Size
	}
	roots, n, err := RootsAt(paths, sizes...)
	if err != nil {
		return n, err
	}
	var good uint64
	hasGood := false
	var bad *Checkpoint
	for i := range cps {
		c := cps[i]
		if c.Size > n {
			return n, &CheckError{Problem: CheckTruncated, Detail: fmt.Sprintf(
				"the log holds %d records but checkpoint %s commits to %d: records were removed or the end was cut off", n, c.String(), c.Size)}
		}
		if bytes.Equal(roots[c.Size], c.Root) {
			if !hasGood || c.Size > good {
				good, hasGood = c.Size, true
			}
		} else if bad == nil || c.Size < bad.Size {
			bad = &cps[i]
		}
	}
	if bad == nil {
		return n, nil
	}
	detail := fmt.Sprintf("root mismatch at size %d (checkpoint %s): a record among the first %d was edited, removed, inserted or reordered, even if the chain was recomputed",
		bad.Size, bad.String(), bad.Size)
	if hasGood && good < bad.Size {
		if good+1 == bad.Size {
			detail += fmt.Sprintf("; the log matches size %d, so the first differing record is seq %d", good, bad.Size)
		} else {
			detail += fmt.Sprintf("; the log matches size %d, so the first differing record is between seq %d and %d", good, good+1, bad.Size)
		}
	}
	if hasGood && good > bad.Size {
		// A larger checkpoint matches the log but a smaller one does not:
		// both cannot be true of one log.
		return n, &CheckError{Problem: CheckFork, Detail: fmt.Sprintf(
			"checkpoint of size %d matches the log but checkpoint of size %d does not: the two signed checkpoints describe different logs", good, bad.Size)}
	}
	return n, &CheckError{Problem: CheckRewritten, Detail: detail}
}

// checkForks reports checkpoints of one origin with the same size and
// different roots, and checkpoints of different origins.
func checkForks(cps []Checkpoint) error {
	for i := range cps {
		for j := i + 1; j < len(cps); j++ {
			a, b := cps[i], cps[j]
			if a.Origin != b.Origin {
				return &CheckError{Problem: CheckOrigin, Detail: fmt.Sprintf("checkpoints of different logs: %q and %q", sanitize(a.Origin), sanitize(b.Origin))}
			}
			if a.Size == b.Size && !bytes.Equal(a.Root, b.Root) {
				return &CheckError{Problem: CheckFork, Detail: fmt.Sprintf(
					"two checkpoints of %s at size %d have different roots: the log was forked (the gateway, or someone with its key, showed two histories)", sanitize(a.Origin), a.Size)}
			}
		}
	}
	return nil
}
