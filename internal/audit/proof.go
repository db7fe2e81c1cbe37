package audit

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// Proof types of Proof.Type.
const (
	ProofInclusion   = "inclusion"
	ProofConsistency = "consistency"
)

// maxProofHashes bounds the hashes of a proof (a tree of 2^64 leaves needs
// at most 64 for inclusion, about 128 for consistency).
const maxProofHashes = 130

// maxProof bounds a proof document.
const maxProof = 2 << 20

// Proof is what `gateway audit prove` prints and `verify --proof` checks
// without the log: one record and the path from it to a signed checkpoint
// (inclusion), or the path between two signed checkpoints (consistency).
// Hashes are standard base64, as in the checkpoint.
type Proof struct {
	Type string `json:"type"`
	// Inclusion: the record's exact line and its leaf index.
	Record    string `json:"record,omitempty"`
	LeafIndex uint64 `json:"leaf_index,omitempty"`
	// TreeSize is the checkpoint's size (inclusion).
	TreeSize uint64 `json:"tree_size,omitempty"`
	// Hashes are the proof's node hashes (RFC 6962 / RFC 9162 order).
	Hashes []string `json:"hashes"`
	// Checkpoint is the signed checkpoint (inclusion), or the larger one
	// (consistency); From is the smaller one (consistency).
	From       string `json:"from,omitempty"`
	Checkpoint string `json:"checkpoint"`
}

// ErrProof marks a proof that does not hold.
var ErrProof = errors.New("proof does not verify")

// ParseProof parses a proof document strictly (unknown fields refused).
func ParseProof(b []byte) (*Proof, error) {
	if len(b) > maxProof {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrProof, maxProof)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p Proof
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: not a proof document: %w", ErrProof, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the proof", ErrProof)
	}
	if p.Type != ProofInclusion && p.Type != ProofConsistency {
		return nil, fmt.Errorf("%w: type %q is not inclusion or consistency", ErrProof, truncate(p.Type, 40))
	}
	if len(p.Hashes) > maxProofHashes {
		return nil, fmt.Errorf("%w: %d hashes", ErrProof, len(p.Hashes))
	}
	return &p, nil
}

func (p *Proof) hashes() ([][]byte, error) {
	out := make([][]byte, len(p.Hashes))
	for i, s := range p.Hashes {
		b, err := base64.StdEncoding.Strict().DecodeString(s)
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("%w: hash %d is not 32 bytes of base64", ErrProof, i)
		}
		out[i] = b
	}
	return out, nil
}

// ProofResult describes a verified proof.
type ProofResult struct {
	Type string
	// Record is the proved record (inclusion).
	Record *Record
	Index  uint64
	// From and To are the checkpoints (From only for consistency).
	From, To Checkpoint
}

// VerifyProof checks p with the verifier key v: the checkpoint signatures,
// the record line's own hash (inclusion), and the Merkle path.
func VerifyProof(p *Proof, v note.Verifier) (*ProofResult, error) {
	hs, err := p.hashes()
	if err != nil {
		return nil, err
	}
	to, err := OpenCheckpoint([]byte(p.Checkpoint), v)
	if err != nil {
		return nil, err
	}
	res := &ProofResult{Type: p.Type, To: to}
	switch p.Type {
	case ProofInclusion:
		if p.TreeSize != to.Size {
			return nil, fmt.Errorf("%w: tree_size %d is not the checkpoint's size %d", ErrProof, p.TreeSize, to.Size)
		}
		r, ok, derr := decodeLine([]byte(p.Record))
		if derr != nil || !ok {
			return nil, fmt.Errorf("%w: the record line does not match its own hash", ErrProof)
		}
		leaf, err := LeafHash(r.Hash)
		if err != nil {
			return nil, err
		}
		if r.Seq != p.LeafIndex+1 {
			return nil, fmt.Errorf("%w: record seq %d is not at leaf index %d", ErrProof, r.Seq, p.LeafIndex)
		}
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, p.LeafIndex, p.TreeSize, leaf, hs, to.Root); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrProof, err)
		}
		res.Record, res.Index = r, p.LeafIndex
	case ProofConsistency:
		from, err := OpenCheckpoint([]byte(p.From), v)
		if err != nil {
			return nil, err
		}
		if from.Origin != to.Origin {
			return nil, fmt.Errorf("%w: checkpoints of different origins %q and %q", ErrProof, sanitize(from.Origin), sanitize(to.Origin))
		}
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, from.Size, to.Size, hs, from.Root, to.Root); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrProof, err)
		}
		res.From = from
	}
	return res, nil
}

// openMaybe verifies signed with v, or only parses it when v is nil.
func openMaybe(signed []byte, v note.Verifier) (Checkpoint, error) {
	if v != nil {
		return OpenCheckpoint(signed, v)
	}
	if len(signed) > maxCheckpoint {
		return Checkpoint{}, fmt.Errorf("%w: larger than %d bytes", ErrCheckpoint, maxCheckpoint)
	}
	return ParseCheckpoint(noteText(signed))
}

// ProveInclusion builds the inclusion proof of the record with id in the
// tree of signed checkpoint cp (verified with v unless v is nil), from the log's paths. The
// log must match the checkpoint.
func ProveInclusion(paths []string, id string, signed []byte, v note.Verifier) (*Proof, error) {
	cp, err := openMaybe(signed, v)
	if err != nil {
		return nil, err
	}
	if _, err := CheckLog(paths, cp); err != nil {
		return nil, fmt.Errorf("the log does not match the checkpoint: %w", err)
	}
	leaves, leaf, err := leafHashes(paths, cp.Size, id)
	if err != nil {
		return nil, err
	}
	if leaf == nil {
		return nil, fmt.Errorf("no record %q among the %d records of the checkpoint", sanitize(id), cp.Size)
	}
	nodes, err := proof.Inclusion(leaf.Index, cp.Size)
	if err != nil {
		return nil, err
	}
	hs, err := proofHashes(leaves, nodes)
	if err != nil {
		return nil, err
	}
	return &Proof{Type: ProofInclusion, Record: string(leaf.Text), LeafIndex: leaf.Index, TreeSize: cp.Size,
		Hashes: b64All(hs), Checkpoint: string(signed)}, nil
}

// ProveConsistency builds the consistency proof from signed checkpoint
// from to signed checkpoint to, from the log's paths (which must match both).
func ProveConsistency(paths []string, from, to []byte, v note.Verifier) (*Proof, error) {
	c1, err := openMaybe(from, v)
	if err != nil {
		return nil, err
	}
	c2, err := openMaybe(to, v)
	if err != nil {
		return nil, err
	}
	if c1.Size > c2.Size {
		c1, c2, from, to = c2, c1, to, from
	}
	if _, err := CheckLog(paths, c1, c2); err != nil {
		return nil, fmt.Errorf("the log does not match the checkpoints: %w", err)
	}
	leaves, _, err := leafHashes(paths, c2.Size, "")
	if err != nil {
		return nil, err
	}
	nodes, err := proof.Consistency(c1.Size, c2.Size)
	if err != nil {
		return nil, err
	}
	hs, err := proofHashes(leaves, nodes)
	if err != nil {
		return nil, err
	}
	return &Proof{Type: ProofConsistency, Hashes: b64All(hs), From: string(from), Checkpoint: string(to)}, nil
}

func b64All(hs [][]byte) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = base64.StdEncoding.EncodeToString(h)
	}
	return out
}
