package audit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// Problem names why Verify rejected a record.
type Problem string

// Problems reported by Verify.
const (
	// ProblemEdited: the line does not match its hash, or it is chained
	// after a record other than the one before it with the expected seq (the
	// previous record was replaced).
	ProblemEdited Problem = "edited"
	// ProblemDeleted: records are missing before this one (seq jumps
	// forward and the missing seq does not appear later), or the chain does
	// not start at a first record.
	ProblemDeleted Problem = "deleted"
	// ProblemReordered: the records are present but out of order.
	ProblemReordered Problem = "reordered"
	// ProblemTorn: the line is not a complete record and no gap record
	// follows it (a crash not yet recovered by Open, or damage).
	ProblemTorn Problem = "torn"
)

// tornTailDetail explains a torn run at the very end of the chain.
const tornTailDetail = "not a complete record at the end of the log (a crash not yet recovered by Open, or damage)"

// maxLine is the longest line Verify and Show read; longer lines are torn.
const maxLine = 1 << 20

// BadRecord is the first record that breaks the chain.
type BadRecord struct {
	File    string
	Line    int // 1-based line number in File
	ID      string
	Seq     uint64
	Problem Problem
	Detail  string
}

// String formats b for a command-line message.
func (b *BadRecord) String() string {
	id := b.ID
	if id == "" {
		id = "?"
	}
	return fmt.Sprintf("%s:%d: record %s (seq %d): %s: %s", b.File, b.Line, sanitize(id), b.Seq, b.Problem, b.Detail)
}

// Gap is an explicit KindGap record found by Verify.
type Gap struct {
	File      string
	Line      int
	ID        string
	Seq       uint64
	Reason    string
	TornLines int // unreadable lines just before the gap record
}

// VerifyResult is the outcome of Verify.
type VerifyResult struct {
	// Files are the files read, in order.
	Files []string
	// Records is the number of valid records read before Bad (or in all).
	Records int
	// Gaps lists the gap records; they do not fail verification.
	Gaps []Gap
	// FirstPrev is the Prev of the first record: ZeroHash for a complete
	// chain, otherwise the hash of the last record of an earlier file that
	// was not given (pruned by rotation).
	FirstPrev string
	// LastHash and LastSeq identify the last valid record: keep them
	// elsewhere to detect truncation of the end of the chain, which no
	// hash chain can detect by itself.
	LastHash string
	LastSeq  uint64
	// Bad is the first bad record; nil when the chain is intact.
	Bad *BadRecord
}

// OK reports whether the chain is intact.
func (r *VerifyResult) OK() bool { return r.Bad == nil }

// Verify checks the chain through paths, read in the order given (oldest
// first, as Files returns them). A bad chain is reported in the result's Bad
// field; the error is for I/O problems only.
//
// Rules: every line must be a complete record whose hash matches; each
// record's Prev is the previous record's Hash and its Seq the previous Seq+1.
// The first record has Prev ZeroHash, unless it is a KindRotate or KindGap
// record (a chain whose older files were pruned). A run of unreadable lines
// is accepted only when the next record is a KindGap record chained to the
// last valid record (written by Open after a crash).
func Verify(paths ...string) (*VerifyResult, error) {
	if len(paths) == 0 {
		return nil, errors.New("verifying audit log: no files")
	}
	return verify(&lineSource{paths: paths, open: openFile})
}

func openFile(name string) (io.ReadCloser, error) { return os.Open(name) }

// verify runs the checks of Verify over src.
func verify(src *lineSource) (*VerifyResult, error) {
	paths := src.paths
	res := &VerifyResult{Files: paths}
	defer src.close()
	var torn []lineRef
	started := false
	fail := func(ref lineRef, r *Record, p Problem, detail string) (*VerifyResult, error) {
		b := &BadRecord{File: ref.file, Line: ref.n, Problem: p, Detail: detail}
		if r != nil {
			b.ID, b.Seq = r.ID, r.Seq
		}
		res.Bad = b
		return res, nil
	}
	for {
		ref, line, err := src.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("verifying audit log: %w", err)
		}
		r, ok, derr := decodeLine(line)
		if derr != nil {
			torn = append(torn, ref)
			continue
		}
		if !ok {
			return fail(ref, r, ProblemEdited, "the line does not match its hash")
		}
		if len(torn) > 0 {
			if r.Kind != KindGap {
				return fail(torn[0], nil, ProblemTorn, "not a complete record, and no gap record follows")
			}
		}
		if r.Kind == KindGap {
			res.Gaps = append(res.Gaps, Gap{File: ref.file, Line: ref.n, ID: r.ID, Seq: r.Seq, Reason: r.Reason, TornLines: len(torn)})
		}
		torn = nil
		switch {
		case !started:
			started = true
			res.FirstPrev = r.Prev
			if r.Prev != ZeroHash && r.Kind != KindRotate && r.Kind != KindGap {
				return fail(ref, r, ProblemDeleted, "the chain does not start here: prev is not zero and this is not a rotate record")
			}
		case r.Prev != res.LastHash:
			switch {
			case r.Seq == res.LastSeq+1:
				return fail(ref, r, ProblemEdited, fmt.Sprintf("prev does not match the hash of record %d: that record was replaced", res.LastSeq))
			case r.Seq <= res.LastSeq:
				return fail(ref, r, ProblemReordered, fmt.Sprintf("seq %d follows seq %d", r.Seq, res.LastSeq))
			case src.findSeq(res.LastSeq + 1):
				return fail(ref, r, ProblemReordered, fmt.Sprintf("seq %d follows seq %d; seq %d comes later", r.Seq, res.LastSeq, res.LastSeq+1))
			case r.Seq == res.LastSeq+2:
				return fail(ref, r, ProblemDeleted, fmt.Sprintf("record %d is missing", res.LastSeq+1))
			default:
				return fail(ref, r, ProblemDeleted, fmt.Sprintf("records %d to %d are missing", res.LastSeq+1, r.Seq-1))
			}
		case r.Seq != res.LastSeq+1:
			return fail(ref, r, ProblemEdited, fmt.Sprintf("seq %d does not follow seq %d", r.Seq, res.LastSeq))
		}
		res.Records++
		res.LastHash, res.LastSeq = r.Hash, r.Seq
	}
	if len(torn) > 0 {
		return fail(torn[0], nil, ProblemTorn, tornTailDetail)
	}
	return res, nil
}

type lineRef struct {
	file string
	n    int
}

// lineSource yields the lines of several files in order, without the
// newline. A line longer than maxLine is returned truncated (and so torn).
type lineSource struct {
	paths []string
	open  func(string) (io.ReadCloser, error)
	i     int
	f     io.ReadCloser
	br    *bufio.Reader
	n     int
}

func (s *lineSource) next() (lineRef, []byte, error) {
	for {
		if s.br == nil {
			if s.i >= len(s.paths) {
				return lineRef{}, nil, io.EOF
			}
			f, err := s.open(s.paths[s.i])
			if err != nil {
				return lineRef{}, nil, err
			}
			s.f, s.br, s.n = f, bufio.NewReaderSize(f, 64<<10), 0
		}
		line, err := readLine(s.br)
		if errors.Is(err, io.EOF) && line == nil {
			_ = s.f.Close()
			s.f, s.br = nil, nil
			s.i++
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return lineRef{}, nil, err
		}
		s.n++
		return lineRef{file: s.paths[s.i], n: s.n}, line, nil
	}
}

// findSeq reads on and reports whether a record with that seq appears.
func (s *lineSource) findSeq(seq uint64) bool {
	for {
		_, line, err := s.next()
		if err != nil {
			return false
		}
		if r, ok, derr := decodeLine(line); derr == nil && ok && r.Seq == seq {
			return true
		}
	}
}

func (s *lineSource) close() {
	if s.f != nil {
		_ = s.f.Close()
	}
}

// readLine returns the next line without its newline; nil and io.EOF at the
// end. Lines longer than maxLine are cut to maxLine bytes.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) <= maxLine+1 {
			line = append(line, chunk...)
		} else if len(line) < maxLine {
			line = append(line, chunk[:maxLine-len(line)]...)
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(line) == 0 {
				return nil, io.EOF
			}
			return line, nil
		case err != nil:
			return nil, err
		}
		return bytes.TrimSuffix(line, []byte("\n")), nil
	}
}
