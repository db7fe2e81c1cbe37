package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
)

func openLog(t testing.TB, cfg Config) *Log {
	t.Helper()
	l, err := Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

func callRecord(i int) *Record {
	return &Record{
		Action:           ActionCall,
		Decision:         DecisionAllow,
		Reason:           "support may read customers",
		Subject:          "alice",
		Issuer:           "https://idp.example.com",
		Agent:            "copilot",
		Tool:             fmt.Sprintf("crm_get_customer_%d", i),
		Upstream:         "crm",
		Protocol:         "2026-07-28",
		Status:           200,
		Redactions:       2,
		RedactionKinds:   map[string]int{"secret": 1, "path": 1},
		DurationMS:       12.345,
		PolicyDecisionID: "d-1",
		Environment:      "test",
	}
}

// writeChain writes n call records to a fresh log and returns its path and lines.
func writeChain(t testing.TB, n int) (string, []string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, Config{Path: path, Fsync: FsyncNever})
	for i := range n {
		if err := l.Write(context.Background(), callRecord(i)); err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return path, readLines(t, path)
}

func readLines(t testing.TB, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func writeLines(t *testing.T, path string, lines []string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustVerify(t *testing.T, paths ...string) *VerifyResult {
	t.Helper()
	res, err := Verify(paths...)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !res.OK() {
		t.Fatalf("Verify: chain broken: %s", res.Bad)
	}
	return res
}

func TestWriteFillsAndChains(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, Config{Path: path, Fsync: FsyncAlways})
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}))
	r := callRecord(1)
	r.Time = time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600))
	if err := l.Write(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if r.ID == "" || len(r.ID) != 36 || r.ID[14] != '7' {
		t.Errorf("ID = %q, want a UUIDv7", r.ID)
	}
	if r.TraceID != tid.String() {
		t.Errorf("TraceID = %q, want %q", r.TraceID, tid)
	}
	if r.Seq != 2 || len(r.Hash) != 64 || len(r.Prev) != 64 || r.Prev == ZeroHash {
		t.Errorf("Seq/Prev/Hash = %d/%q/%q, want 2 after the start record", r.Seq, r.Prev, r.Hash)
	}
	lines := readLines(t, path)
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want start + 1", len(lines))
	}
	var start Record
	if err := json.Unmarshal([]byte(lines[0]), &start); err != nil {
		t.Fatal(err)
	}
	if start.Kind != KindStart || start.Prev != ZeroHash || start.Seq != 1 || r.Prev != start.Hash {
		t.Errorf("start record = %+v", start)
	}
	if !strings.Contains(lines[1], `"time":"2026-01-02T02:04:05.000000006Z"`) {
		t.Errorf("time not UTC RFC 3339 with nanoseconds: %s", lines[1])
	}
	if !strings.HasSuffix(lines[1], `"hash":"`+r.Hash+`"}`) {
		t.Errorf("hash is not the last field: %s", lines[1])
	}
	for _, forbidden := range []string{"token", "arguments", "secret\":\""} {
		if strings.Contains(lines[1], forbidden) {
			t.Errorf("line contains %q: %s", forbidden, lines[1])
		}
	}
	res := mustVerify(t, path)
	if res.Records != 2 || res.FirstPrev != ZeroHash || res.LastHash != r.Hash || res.LastSeq != 2 {
		t.Errorf("result = %+v", res)
	}
}

func TestOpenRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"empty path", Config{}},
		{"bad fsync", Config{Path: filepath.Join(t.TempDir(), "a"), Fsync: "sometimes"}},
		{"negative size", Config{Path: filepath.Join(t.TempDir(), "a"), MaxSize: -1}},
		{"missing dir", Config{Path: filepath.Join(t.TempDir(), "no", "such", "a")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if l, err := Open(context.Background(), tt.cfg, nil); err == nil {
				_ = l.Close()
				t.Fatal("Open succeeded, want an error")
			}
		})
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	_, clean := writeChain(t, 6) // 7 lines: start + 6
	reencode := func(line string, edit func(*Record)) string {
		var r Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		edit(&r)
		b, err := encode(&r)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	tests := []struct {
		name     string
		mutate   func([]string) []string
		wantLine int
		want     Problem
	}{
		{"edited field", func(l []string) []string {
			l[2] = strings.Replace(l[2], `"subject":"alice"`, `"subject":"mallory"`, 1)
			return l
		}, 3, ProblemEdited},
		{"edited with recomputed hash", func(l []string) []string {
			l[2] = reencode(l[2], func(r *Record) { r.Decision = DecisionDeny })
			return l
		}, 4, ProblemEdited},
		{"extra whitespace", func(l []string) []string {
			l[4] = strings.Replace(l[4], `,"seq"`, `, "seq"`, 1)
			return l
		}, 5, ProblemEdited},
		{"deleted record", func(l []string) []string {
			return append(l[:2:2], l[3:]...)
		}, 3, ProblemDeleted},
		{"deleted first record", func(l []string) []string { return l[1:] }, 1, ProblemDeleted},
		{"swapped records", func(l []string) []string {
			l[2], l[3] = l[3], l[2]
			return l
		}, 3, ProblemReordered},
		{"record moved to the end", func(l []string) []string {
			moved := l[1]
			return append(append(l[:1:1], l[2:]...), moved)
		}, 2, ProblemReordered},
		{"duplicated record", func(l []string) []string {
			return append(l[:4:4], l[3:]...)
		}, 5, ProblemReordered},
		{"forged seq", func(l []string) []string {
			l[6] = reencode(l[6], func(r *Record) { r.Seq = 99 })
			return l
		}, 7, ProblemEdited},
		{"torn last line", func(l []string) []string {
			l[6] = l[6][:len(l[6])/2]
			return l
		}, 7, ProblemTorn},
		{"garbage line in the middle", func(l []string) []string {
			return append(l[:3:3], append([]string{"not json"}, l[3:]...)...)
		}, 4, ProblemTorn},
		{"forged gap covering an edit", func(l []string) []string {
			// Replacing a record by garbage and a gap record that does not
			// chain to the last good record is still caught.
			g := reencode(l[4], func(r *Record) { r.Kind = KindGap })
			return append(l[:3:3], "garbage", g, l[5], l[6])
		}, 5, ProblemDeleted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines := tt.mutate(append([]string(nil), clean...))
			path := filepath.Join(t.TempDir(), "audit.log")
			writeLines(t, path, lines)
			res, err := Verify(path)
			if err != nil {
				t.Fatal(err)
			}
			if res.OK() {
				t.Fatal("Verify passed a tampered chain")
			}
			if res.Bad.Problem != tt.want || res.Bad.Line != tt.wantLine || res.Bad.File != path {
				t.Errorf("Bad = %s, want %s at line %d", res.Bad, tt.want, tt.wantLine)
			}
			if !strings.Contains(res.Bad.String(), string(tt.want)) {
				t.Errorf("String() = %q", res.Bad.String())
			}
		})
	}
}

func TestVerifyNoFiles(t *testing.T) {
	if _, err := Verify(); err == nil {
		t.Error("Verify() with no files succeeded")
	}
	if _, err := Verify(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("Verify of a missing file succeeded")
	}
}

func appendBytes(t testing.TB, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestCrashRecovery(t *testing.T) {
	tests := []struct {
		name      string
		damage    func(t *testing.T, path string, lines []string)
		wantGaps  []int // TornLines of each gap
		wantLines int   // lines in the file after reopening and one Write
	}{
		{"torn last line", func(t *testing.T, path string, lines []string) {
			appendBytes(t, path, lines[1][:40])
		}, []int{1}, 4 + 4},
		{"several torn lines", func(t *testing.T, path string, lines []string) {
			appendBytes(t, path, lines[1][:30]+"\n"+lines[2][:50])
		}, []int{2}, 4 + 5},
		{"complete last record without newline", func(t *testing.T, path string, lines []string) {
			b, _ := os.ReadFile(path)
			if err := os.WriteFile(path, bytes.TrimSuffix(b, []byte("\n")), 0o600); err != nil {
				t.Fatal(err)
			}
		}, nil, 4 + 2},
		{"empty file", func(t *testing.T, path string, lines []string) {
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, nil, 2},
		{"only garbage", func(t *testing.T, path string, lines []string) {
			if err := os.WriteFile(path, []byte("{\"time\":"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, []int{1}, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, lines := writeChain(t, 3)
			tt.damage(t, path, lines)
			before, _ := os.ReadFile(path)
			l := openLog(t, Config{Path: path})
			r := callRecord(9)
			if err := l.Write(context.Background(), r); err != nil {
				t.Fatal(err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			after, _ := os.ReadFile(path)
			if !bytes.HasPrefix(after, before) {
				t.Error("recovery changed existing bytes; torn data must be left in place")
			}
			if got := len(readLines(t, path)); got != tt.wantLines {
				t.Errorf("file has %d lines, want %d", got, tt.wantLines)
			}
			res := mustVerify(t, path)
			if len(res.Gaps) != len(tt.wantGaps) {
				t.Fatalf("gaps = %+v, want %d", res.Gaps, len(tt.wantGaps))
			}
			for i, g := range res.Gaps {
				if g.TornLines != tt.wantGaps[i] || !strings.Contains(g.Reason, "torn") {
					t.Errorf("gap %d = %+v, want %d torn lines", i, g, tt.wantGaps[i])
				}
			}
			if res.LastHash != r.Hash {
				t.Errorf("LastHash = %s, want the new record's %s", res.LastHash, r.Hash)
			}
		})
	}
}

func TestCrashRecoveryTwice(t *testing.T) {
	path, lines := writeChain(t, 2)
	appendBytes(t, path, lines[1][:20])
	l := openLog(t, Config{Path: path})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	appendBytes(t, path, lines[2][:60])
	l = openLog(t, Config{Path: path})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	res := mustVerify(t, path)
	if len(res.Gaps) != 2 {
		t.Errorf("gaps = %+v, want 2", res.Gaps)
	}
}

func TestOpenRefusesEditedTail(t *testing.T) {
	path, lines := writeChain(t, 2)
	lines[2] = strings.Replace(lines[2], `"alice"`, `"mallory"`, 1)
	writeLines(t, path, lines)
	l, err := Open(context.Background(), Config{Path: path}, nil)
	if !errors.Is(err, ErrCorrupt) {
		if l != nil {
			_ = l.Close()
		}
		t.Fatalf("Open = %v, want ErrCorrupt", err)
	}
}

func TestRotation(t *testing.T) {
	tests := []struct {
		name     string
		maxFiles int
	}{
		{"keep all", 0},
		{"keep two", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "audit.log")
			const maxSize = 2000
			l := openLog(t, Config{Path: path, MaxSize: maxSize, MaxFiles: tt.maxFiles})
			var last *Record
			for i := range 40 {
				last = callRecord(i)
				if err := l.Write(context.Background(), last); err != nil {
					t.Fatal(err)
				}
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			files, err := Files(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(files) < 3 || files[len(files)-1] != path {
				t.Fatalf("Files = %v, want rotated files then %s", files, path)
			}
			if tt.maxFiles > 0 && len(files) != tt.maxFiles+1 {
				t.Errorf("kept %d files, want %d rotated + current", len(files), tt.maxFiles)
			}
			for _, f := range files {
				fi, err := os.Stat(f)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Size() > maxSize {
					t.Errorf("%s is %d bytes, over MaxSize", f, fi.Size())
				}
			}
			res := mustVerify(t, files...)
			if res.LastHash != last.Hash {
				t.Errorf("LastHash = %s, want %s", res.LastHash, last.Hash)
			}
			if (tt.maxFiles == 0) != (res.FirstPrev == ZeroHash) {
				t.Errorf("FirstPrev = %s with maxFiles %d", res.FirstPrev, tt.maxFiles)
			}
			// Every file after the first starts with a rotate record.
			for _, f := range files[1:] {
				var r Record
				if err := json.Unmarshal([]byte(readLines(t, f)[0]), &r); err != nil || r.Kind != KindRotate {
					t.Errorf("%s starts with %+v, want a rotate record", f, r)
				}
			}
			// A single rotated-into file verifies on its own (anchored).
			mustVerify(t, path)
			// Files out of order are reported.
			if res, _ := Verify(append(files[1:], files[0])...); res.OK() {
				t.Error("Verify passed files in the wrong order")
			}
			// Reopen continues the chain across files.
			l = openLog(t, Config{Path: path, MaxSize: maxSize, MaxFiles: tt.maxFiles})
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			files, _ = Files(path)
			mustVerify(t, files...)
		})
	}
}

func TestReopenAfterRotationWithoutCurrentFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, Config{Path: path, MaxSize: 1500})
	for i := range 10 {
		if err := l.Write(context.Background(), callRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Simulate a crash between the rename and the first record of the new file.
	files, _ := Files(path)
	if err := os.Rename(path, path+".20991231T000000.000000000Z"); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, Config{Path: path, MaxSize: 1500})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files2, _ := Files(path)
	if len(files2) != len(files)+1 {
		t.Fatalf("Files = %v", files2)
	}
	mustVerify(t, files2...)
}

func TestConcurrentWrites(t *testing.T) {
	const goroutines, perG = 8, 60
	tests := []struct {
		name string
		cfg  Config
	}{
		{"always", Config{Fsync: FsyncAlways}},
		{"batch", Config{Fsync: FsyncBatch, BatchRecords: 16}},
		{"never", Config{Fsync: FsyncNever}},
		{"batch with rotation", Config{Fsync: FsyncBatch, MaxSize: 8 << 10}},
		{"always with rotation", Config{Fsync: FsyncAlways, MaxSize: 8 << 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.log")
			cfg := tt.cfg
			cfg.Path = path
			l := openLog(t, cfg)
			var wg sync.WaitGroup
			errs := make(chan error, goroutines*perG)
			for g := range goroutines {
				wg.Go(func() {
					for i := range perG {
						r := callRecord(i)
						r.Subject = fmt.Sprintf("user-%d", g)
						if err := l.Write(context.Background(), r); err != nil {
							errs <- err
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if err := l.Write(context.Background(), callRecord(0)); !errors.Is(err, ErrClosed) {
				t.Errorf("Write after Close = %v, want ErrClosed", err)
			}
			files, _ := Files(path)
			res := mustVerify(t, files...)
			calls := 0
			for _, f := range files {
				for _, line := range readLines(t, f) {
					r, ok, err := decodeLine([]byte(line))
					if err != nil || !ok {
						t.Fatalf("bad line %q", line)
					}
					if r.Kind == "" {
						calls++
					}
				}
			}
			if calls != goroutines*perG {
				t.Errorf("%d call records, want %d", calls, goroutines*perG)
			}
			if res.LastSeq != uint64(res.Records) {
				t.Errorf("LastSeq %d != Records %d", res.LastSeq, res.Records)
			}
		})
	}
}

func TestStdout(t *testing.T) {
	var out bytes.Buffer
	l := openLog(t, Config{Path: "-", Output: &out, Fsync: FsyncAlways, MaxSize: 10})
	for i := range 3 {
		if err := l.Write(context.Background(), callRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "copy.log")
	if err := os.WriteFile(path, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if res := mustVerify(t, path); res.Records != 4 {
		t.Errorf("Records = %d, want 4", res.Records)
	}
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.n <= 0 {
		return 0, errors.New("disk full")
	}
	w.n--
	return len(p), nil
}

func TestWriteErrorIsReported(t *testing.T) {
	l := openLog(t, Config{Path: "-", Output: &failWriter{n: 1}})
	t.Cleanup(func() { _ = l.Close() })
	if err := l.Write(context.Background(), callRecord(0)); err == nil {
		t.Fatal("Write succeeded on a failing writer")
	}
	// The chain did not advance: the failed record's seq is reused.
	l.mu.Lock()
	seq := l.seq
	l.mu.Unlock()
	if seq != 1 {
		t.Errorf("seq after failed write = %d, want 1", seq)
	}
}

func TestWriteFailsClosedAfterFileError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, Config{Path: path, Fsync: FsyncAlways})
	// Break the descriptor behind the log's back.
	if err := l.f.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := l.Write(context.Background(), callRecord(0)); err == nil {
			t.Fatal("Write succeeded on a closed file")
		}
	}
}

func TestBatchFsyncHappensWithoutFurtherWrites(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"after the interval", Config{Fsync: FsyncBatch, BatchInterval: time.Millisecond, BatchRecords: 1000}},
		{"after enough records", Config{Fsync: FsyncBatch, BatchInterval: time.Hour, BatchRecords: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Path = filepath.Join(t.TempDir(), "audit.log")
			l := openLog(t, cfg)
			t.Cleanup(func() { _ = l.Close() })
			var last *Record
			for i := range 3 {
				last = callRecord(i)
				if err := l.Write(context.Background(), last); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, func() bool {
				l.syncMu.Lock()
				defer l.syncMu.Unlock()
				return l.synced >= last.Seq
			})
		})
	}
}
