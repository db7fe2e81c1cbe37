package audit

import (
	"errors"
	"fmt"
	"io"
)

// ReadLines calls fn with every line of paths (a chain's files, oldest
// first; see Files), without the newline, and its file and line number. A
// line may be torn or not a record at all: ParseLine tells. The slice is
// fn's to keep. An error of fn stops the reading and is returned.
func ReadLines(paths []string, fn func(file string, n int, line []byte) error) error {
	src := &lineSource{paths: paths, open: openFile}
	defer src.close()
	for {
		ref, line, err := src.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading audit trail: %w", err)
		}
		if err := fn(ref.file, ref.n, line); err != nil {
			return err
		}
	}
}

// ErrHashMismatch means a line is a complete record whose hash does not
// match its content: it was altered.
var ErrHashMismatch = errors.New("audit record hash does not match its content")

// ParseLine decodes one record line (without newline). A line that is not a
// complete record is an error wrapping errNotRecord; a record whose hash
// does not match is returned together with ErrHashMismatch. It does not
// check the chain: that is Verify's job.
func ParseLine(line []byte) (*Record, error) {
	r, ok, err := decodeLine(line)
	if err != nil {
		return nil, err
	}
	if !ok {
		return r, ErrHashMismatch
	}
	return r, nil
}

// IsDecision reports whether r records an access the policy was (or should
// have been) asked about: a call, list, read or prompt, or any record that
// carries a policy input or decision. Security events (start, rotate,
// grant, environment changes…) are not.
func (r *Record) IsDecision() bool {
	if len(r.Input) > 0 || len(r.PolicyDecision) > 0 || r.PolicyDecisionID != "" {
		return true
	}
	switch r.Action {
	case ActionCall, ActionList, "read", "prompt":
		return r.Decision != "" && (r.Kind == "" || r.Kind == r.Action)
	}
	return false
}
