package audit

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// seedChains returns log contents for the fuzz seed corpus: intact chains,
// tampered ones, torn ones and non-records.
func seedChains(f *testing.F) [][]byte {
	f.Helper()
	path, lines := writeChain(f, 3)
	clean, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	join := func(l []string) []byte { return []byte(strings.Join(l, "\n") + "\n") }
	swapped := append([]string(nil), lines...)
	swapped[1], swapped[2] = swapped[2], swapped[1]
	edited := append([]string(nil), lines...)
	edited[2] = strings.Replace(edited[2], "alice", "alicf", 1)
	// A recovered crash: torn line then a gap record.
	appendBytes(f, path, lines[2][:33])
	l := openLog(f, Config{Path: path})
	if err := l.Close(); err != nil {
		f.Fatal(err)
	}
	recovered, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	return [][]byte{
		clean, recovered, join(swapped), join(edited), join(lines[1:]),
		clean[:len(clean)/2], nil, []byte("\n"), []byte("{}\n"),
		[]byte(`{"hash":"` + ZeroHash + `"}`), []byte("\xff\xfe{\"seq\":1}\n"),
	}
}

func FuzzVerify(f *testing.F) {
	for _, s := range seedChains(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const path = "audit.log"
		src := func() *lineSource {
			return &lineSource{paths: []string{path}, open: func(string) (io.ReadCloser, error) {
				return io.NopCloser(bytes.NewReader(data)), nil
			}}
		}
		res, err := verify(src())
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		if res.OK() {
			if res.Records > 0 && (len(res.LastHash) != 64 || res.LastSeq == 0) {
				t.Errorf("intact chain with last hash %q seq %d", res.LastHash, res.LastSeq)
			}
		} else if res.Bad.File != path || res.Bad.Line < 1 || res.Bad.Problem == "" {
			t.Errorf("bad record without a location: %+v", res.Bad)
		}
		if err := show(io.Discard, src()); err != nil {
			t.Errorf("Show: %v", err)
		}
	})
}

// FuzzOpen checks the recovery property: whatever a file holds, Open either
// refuses it or continues it so that an intact chain stays intact.
func FuzzOpen(f *testing.F) {
	for _, s := range seedChains(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "audit.log")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		before, err := Verify(path)
		if err != nil {
			t.Fatal(err)
		}
		l, err := Open(context.Background(), Config{Path: path, Fsync: FsyncNever}, nil)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open: %v", err)
			}
			return
		}
		if err := l.Write(context.Background(), callRecord(1)); err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		after, err := Verify(path)
		if err != nil {
			t.Fatal(err)
		}
		if before.OK() && !after.OK() {
			t.Errorf("Open broke an intact chain: %s", after.Bad)
		}
		if !before.OK() && before.Bad.Detail == tornTailDetail && !after.OK() {
			t.Errorf("Open did not recover a torn tail: %s", after.Bad)
		}
	})
}
