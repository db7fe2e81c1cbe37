package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// gateWriter is a stream whose calls to Write are counted; the call number
// block (1-based) waits until release is closed, and the call number fail
// fails with "disk full" having written nothing.
type gateWriter struct {
	mu      sync.Mutex
	out     bytes.Buffer
	calls   int
	block   int
	fail    int
	entered chan struct{}
	release chan struct{}
}

func newGateWriter(block, fail int) *gateWriter {
	return &gateWriter{block: block, fail: fail, entered: make(chan struct{}), release: make(chan struct{})}
}

func (w *gateWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.calls++
	n := w.calls
	w.mu.Unlock()
	if n == w.block {
		close(w.entered)
		<-w.release
	}
	if n == w.fail {
		return 0, errors.New("disk full")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.out.Write(p)
}

func (w *gateWriter) stats() (calls int, out []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.calls, bytes.Clone(w.out.Bytes())
}

// queued is how many records wait in the current batch.
func queued(l *Log) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur == nil {
		return 0
	}
	return len(l.cur.hashes)
}

// groupRun writes record A, holds its write(2) in the writer until n more
// records are queued behind it, then lets it go. It returns the errors of
// the n others and A's.
func groupRun(t *testing.T, l *Log, w *gateWriter, n int) (errs []error, errA error) {
	t.Helper()
	doneA := make(chan error, 1)
	go func() { doneA <- l.Write(context.Background(), callRecord(-1)) }()
	<-w.entered
	errs = make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = l.Write(context.Background(), callRecord(i)) })
	}
	waitFor(t, func() bool { return queued(l) == n })
	close(w.release)
	wg.Wait()
	return errs, <-doneA
}

func verifyStream(t *testing.T, out []byte) *VerifyResult {
	t.Helper()
	path := filepath.Join(t.TempDir(), "copy.log")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return mustVerify(t, path)
}

// TestGroupWrite: records chained while a write(2) is in progress are
// written together in one write(2) after it, and the chain verifies.
func TestGroupWrite(t *testing.T) {
	w := newGateWriter(2, 0) // call 1 is Open's start record
	l := openLog(t, Config{Path: "-", Output: w, Merkle: true})
	errs, errA := groupRun(t, l, w, 10)
	if err := errors.Join(append(errs, errA)...); err != nil {
		t.Fatal(err)
	}
	calls, out := w.stats()
	if calls != 3 {
		t.Errorf("%d write calls for the start record and 11 records, want 3 (start, A, one group of 10)", calls)
	}
	if res := verifyStream(t, out); res.Records != 12 || res.LastSeq != 12 {
		t.Errorf("Records %d LastSeq %d, want 12", res.Records, res.LastSeq)
	}
	if size, _, _ := l.TreeHead(); size != 12 {
		t.Errorf("Merkle tree size %d, want 12", size)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestGroupWriteFailureRefusesTheGroup: when the group write fails, every
// caller of the group learns of it (each would refuse its call), and the
// chain resumes after the last record written: a later record verifies.
func TestGroupWriteFailureRefusesTheGroup(t *testing.T) {
	w := newGateWriter(2, 3) // A is written; the group of 10 fails
	l := openLog(t, Config{Path: "-", Output: w, Merkle: true})
	errs, errA := groupRun(t, l, w, 10)
	if errA != nil {
		t.Errorf("A: %v", errA)
	}
	for i, err := range errs {
		if err == nil {
			t.Errorf("record %d of the failed group: Write succeeded", i)
		}
	}
	if err := l.Write(context.Background(), callRecord(99)); err != nil {
		t.Fatalf("Write after a failed group: %v", err)
	}
	_, out := w.stats()
	if res := verifyStream(t, out); res.Records != 3 || res.LastSeq != 3 {
		t.Errorf("Records %d LastSeq %d, want 3 (start, A, the later record)", res.Records, res.LastSeq)
	}
	if size, _, _ := l.TreeHead(); size != 3 {
		t.Errorf("Merkle tree size %d, want 3: failed records must not enter it", size)
	}
}

// TestGroupWriteFailureRefusesRecordsChainedAfter: when A's write fails,
// the records queued behind it (chained to A) fail too, without a write.
func TestGroupWriteFailureRefusesRecordsChainedAfter(t *testing.T) {
	w := newGateWriter(2, 2) // A's write fails
	l := openLog(t, Config{Path: "-", Output: w})
	errs, errA := groupRun(t, l, w, 5)
	if errA == nil {
		t.Error("A: Write succeeded on a failing writer")
	}
	for i, err := range errs {
		if err == nil {
			t.Errorf("record %d chained after the failed one: Write succeeded", i)
		}
	}
	calls, _ := w.stats()
	if calls != 2 {
		t.Errorf("%d write calls, want 2: records chained to a failed one must not be written", calls)
	}
	if err := l.Write(context.Background(), callRecord(99)); err != nil {
		t.Fatal(err)
	}
	_, out := w.stats()
	if res := verifyStream(t, out); res.Records != 2 {
		t.Errorf("Records %d, want 2 (start, the later record)", res.Records)
	}
}

// TestManyConcurrentWritesVerify: many writers on a file, with rotation
// and the Merkle tree; every record is in the chain exactly once, the
// chain verifies across the files and the tree covers every record.
func TestManyConcurrentWritesVerify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, Config{Path: path, Fsync: FsyncBatch, MaxSize: 64 << 10, Merkle: true})
	const goroutines, perG = 32, 100
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range perG {
				r := callRecord(i)
				r.Subject = fmt.Sprintf("user-%d", g)
				if err := l.Write(context.Background(), r); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	size, _, _ := l.TreeHead()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := Files(path)
	if len(files) < 2 {
		t.Fatalf("files %v: no rotation happened", files)
	}
	res := mustVerify(t, files...)
	seen := map[string]int{}
	for _, f := range files {
		for _, line := range readLines(t, f) {
			r, _, _ := decodeLine([]byte(line))
			if r.Kind == "" {
				seen[r.Subject+"/"+r.Tool]++
			}
		}
	}
	if len(seen) != goroutines*perG {
		t.Errorf("%d distinct call records, want %d", len(seen), goroutines*perG)
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s written %d times", k, n)
		}
	}
	if size != uint64(res.Records) {
		t.Errorf("Merkle tree size %d, records %d", size, res.Records)
	}
}
