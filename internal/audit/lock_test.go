//go:build unix

package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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

// TestRotationFailsClosedWhenTheNewFileCannotBeLocked: a rotation whose
// new file cannot be locked (another process took it first) stops the
// log: the write fails, and so does every later one, rather than two
// processes appending to one file.
func TestRotationFailsClosedWhenTheNewFileCannotBeLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(context.Background(), Config{Path: path, MaxSize: 2000}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	lockRotated = func(f *os.File) error { return fmt.Errorf("%w: %s is locked by another process", ErrLocked, f.Name()) }
	defer func() { lockRotated = lockFile }()
	var werr error
	for i := 0; i < 40 && werr == nil; i++ {
		werr = l.Write(context.Background(), callRecord(i))
	}
	if !errors.Is(werr, ErrLocked) {
		t.Fatalf("the write that rotated: err = %v, want ErrLocked", werr)
	}
	if err := l.Write(context.Background(), callRecord(99)); !errors.Is(err, ErrLocked) {
		t.Fatalf("a later write: err = %v, want the log failed on ErrLocked", err)
	}
}
