package audit

import (
	"fmt"
)

// openTree rebuilds the Merkle tree over the existing files of the chain
// when cfg.Merkle is set. It runs before Open writes anything.
func (l *Log) openTree() error {
	if !l.cfg.Merkle {
		return nil
	}
	t := newTree()
	files, err := Files(l.cfg.Path)
	if err != nil {
		return fmt.Errorf("opening audit log: %w", err)
	}
	if len(files) > 0 {
		if _, err := scanLeaves(files, func(lf Leaf) error { return t.rng.Append(lf.Hash, nil) }); err != nil {
			return fmt.Errorf("opening audit log: rebuilding the Merkle tree: %w", err)
		}
	}
	l.tree = t
	return nil
}

// treeAppendLocked adds a written record to the tree. l.mu must be held.
func (l *Log) treeAppendLocked(hash string) {
	if l.tree == nil {
		if l.cfg.Merkle && !l.isFile {
			l.tree = newTree() // "-": a fresh chain at every Open
		} else {
			return
		}
	}
	if err := l.tree.appendHash(hash); err != nil && l.err == nil {
		l.err = fmt.Errorf("merkle tree: %w", err)
	}
}

// TreeHead returns the size and root of the Merkle tree over every record
// written so far; ok is false when the log was opened without Merkle.
func (l *Log) TreeHead() (size uint64, root []byte, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.tree == nil {
		return 0, nil, false
	}
	return l.tree.size(), l.tree.root(), true
}
