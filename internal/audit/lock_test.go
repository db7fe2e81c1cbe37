//go:build unix

package audit

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestOpenLocksTheFile: a second Open of a file in use fails with
// ErrLocked and leaves the file byte for byte as it was; once the first
// log is closed, the file opens again.
func TestOpenLocksTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	first, err := Open(context.Background(), Config{Path: path, Fsync: FsyncAlways}, nil)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	if _, err := Open(context.Background(), Config{Path: path, Fsync: FsyncAlways}, nil); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: err = %v, want ErrLocked", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Errorf("the refused Open changed the file:\n%s\n---\n%s", before, after)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := Open(context.Background(), Config{Path: path, Fsync: FsyncAlways}, nil)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	_ = again.Close()
}
