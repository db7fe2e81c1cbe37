package audit

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// The Merkle tree of the trail (RFC 6962, as Certificate Transparency and
// the Go checksum database use). Its leaves are the records in chain order,
// across rotated files and restarts: leaf i is the record with seq i+1, and
// its leaf data are the 32 bytes of the record's hash, so the leaf hash is
// SHA-256(0x00 ‖ record hash). A signed checkpoint (checkpoint.go) commits to
// the tree's size and root; any edit, removal or reordering of a committed
// record changes the root at that size even when seq, prev and hash were
// all recomputed.

var rangeFactory = &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}

// LeafHash returns the RFC 6962 leaf hash of the record whose hash (64 hex
// digits) is recordHash.
func LeafHash(recordHash string) ([]byte, error) {
	b, err := hex.DecodeString(recordHash)
	if err != nil || len(b) != 32 {
		return nil, fmt.Errorf("record hash %q is not 64 hex digits", truncate(recordHash, 80))
	}
	return rfc6962.DefaultHasher.HashLeaf(b), nil
}

// tree is the compact range [0, size) of the trail's Merkle tree: enough to
// append leaves and compute the root, O(log n) hashes.
type tree struct {
	rng *compact.Range
}

func newTree() *tree { return &tree{rng: rangeFactory.NewEmptyRange(0)} }

// appendHash adds the record whose hash is recordHash as the next leaf.
func (t *tree) appendHash(recordHash string) error {
	lh, err := LeafHash(recordHash)
	if err != nil {
		return err
	}
	return t.rng.Append(lh, nil)
}

func (t *tree) size() uint64 { return t.rng.End() }

// root returns the tree's root hash (the RFC 6962 empty root for size 0).
func (t *tree) root() []byte {
	if t.rng.End() == 0 {
		return rfc6962.DefaultHasher.EmptyRoot()
	}
	r, err := t.rng.GetRootHash(nil)
	if err != nil {
		// Only possible for a range not starting at 0, which tree never is.
		panic(fmt.Sprintf("audit: merkle root: %v", err))
	}
	return r
}

// Leaf is one record as a leaf of the tree, with where it was read.
type Leaf struct {
	File string
	Line int
	// Index is the leaf index (0-based position in the tree).
	Index uint64
	// Record is the decoded record (only for the first leaf, and the one
	// leafHashes looks for); Text is its exact line.
	Record *Record
	Text   []byte
	// Hash is the RFC 6962 leaf hash.
	Hash []byte
}

// ErrNotTreeStart means the files given do not begin the chain (their first
// record continues an older file that was not given), so the tree cannot
// be recomputed from them.
var ErrNotTreeStart = errors.New("the files do not start the chain (older rotated files are missing)")

// scanLeaves reads paths in order and calls fn for every record, in tree
// order. Lines that are not complete records (torn writes) are not leaves
// and are skipped; a complete record whose hash does not match its line is
// an error (run Verify for the chain's diagnosis). The first record must
// start the chain (prev is ZeroHash).
func scanLeaves(paths []string, fn func(Leaf) error) (uint64, error) {
	src := &lineSource{paths: paths, open: openFile}
	defer src.close()
	var n uint64
	for {
		ref, line, err := src.next()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("reading audit log: %w", err)
		}
		// Only the first record is decoded (its prev); the others need
		// just their own hash, checked against the line without JSON.
		var r *Record
		stated, ok, isRecord := checkLine(line)
		if isRecord && n == 0 {
			var derr error
			r, ok, derr = decodeLine(line)
			isRecord = derr == nil
		}
		if !isRecord {
			continue
		}
		if !ok {
			return n, fmt.Errorf("%s:%d: %w: the record does not match its hash", ref.file, ref.n, ErrCorrupt)
		}
		if n == 0 && r.Prev != ZeroHash {
			return n, fmt.Errorf("%s:%d: %w", ref.file, ref.n, ErrNotTreeStart)
		}
		lh := rfc6962.DefaultHasher.HashLeaf(stated[:])
		if err := fn(Leaf{File: ref.file, Line: ref.n, Index: n, Record: r, Text: line, Hash: lh}); err != nil {
			return n, err
		}
		n++
	}
}

// RootsAt recomputes the tree over paths and returns its root at each of
// sizes that the log reaches, and the number of leaves in the log. A size
// beyond the log is absent from the map.
func RootsAt(paths []string, sizes ...uint64) (map[uint64][]byte, uint64, error) {
	want := map[uint64]bool{}
	for _, s := range sizes {
		want[s] = true
	}
	out := map[uint64][]byte{}
	t := newTree()
	if want[0] {
		out[0] = t.root()
	}
	n, err := scanLeaves(paths, func(l Leaf) error {
		if err := t.rng.Append(l.Hash, nil); err != nil {
			return err
		}
		if want[t.size()] {
			out[t.size()] = t.root()
		}
		return nil
	})
	if err != nil {
		return nil, n, err
	}
	return out, n, nil
}

// leafHashes returns the leaf hashes of the first size records of paths
// (all when size is 0), and the leaf whose record id is id, if asked.
func leafHashes(paths []string, size uint64, id string) ([][]byte, *Leaf, error) {
	var hashes [][]byte
	var found *Leaf
	errStop := errors.New("stop")
	_, err := scanLeaves(paths, func(l Leaf) error {
		if size > 0 && l.Index >= size {
			return errStop
		}
		hashes = append(hashes, l.Hash)
		if id != "" && found == nil && bytes.Contains(l.Text, []byte(`"id":"`+id+`"`)) {
			if r, ok, err := decodeLine(l.Text); err == nil && ok && r.ID == id {
				lc := l
				lc.Record = r
				lc.Text = append([]byte(nil), l.Text...)
				found = &lc
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, nil, err
	}
	return hashes, found, nil
}

// nodeHash returns the hash of tree node id over leaves.
func nodeHash(leaves [][]byte, id compact.NodeID) ([]byte, error) {
	begin, end := id.Coverage()
	if end > uint64(len(leaves)) {
		return nil, fmt.Errorf("node %v beyond %d leaves", id, len(leaves))
	}
	r := rangeFactory.NewEmptyRange(begin)
	for _, h := range leaves[begin:end] {
		if err := r.Append(h, nil); err != nil {
			return nil, err
		}
	}
	// A node covers a perfect subtree: its compact range is that one node.
	if hs := r.Hashes(); len(hs) == 1 {
		return hs[0], nil
	}
	return nil, fmt.Errorf("node %v is not a perfect subtree", id)
}

// proofHashes materialises the hashes of a proof's nodes over leaves.
func proofHashes(leaves [][]byte, nodes proof.Nodes) ([][]byte, error) {
	hs := make([][]byte, len(nodes.IDs))
	for i, id := range nodes.IDs {
		h, err := nodeHash(leaves, id)
		if err != nil {
			return nil, err
		}
		hs[i] = h
	}
	return nodes.Rehash(hs, rfc6962.DefaultHasher.HashChildren)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
