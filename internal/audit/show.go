package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Format renders r as one human-readable line (times in UTC), e.g.
//
//	10:42:07 DENY alice via copilot → crm_issue_refund — support staff may not write
//	10:42:09 ALLOW bob via cursor → crm_get_customer — support may read (status 200, 12ms, 3 redactions)
//	10:43:00 GAP — torn write: 120 bytes (1 lines) after record 41 …
//
// Control and bidirectional-override characters are escaped, so a crafted
// tool name or reason cannot rewrite the terminal.
func Format(r *Record) string {
	if r == nil {
		return ""
	}
	var b strings.Builder
	b.WriteString(r.Time.UTC().Format("15:04:05"))
	b.WriteByte(' ')
	if r.Kind == KindGrant {
		b.WriteString("GRANT ")
		b.WriteString(who(r))
		b.WriteString(" → ")
		b.WriteString(orDash(r.Agent))
		if r.Reason != "" {
			b.WriteString(" — ")
			b.WriteString(sanitize(r.Reason))
		}
		return b.String()
	}
	if r.Kind == KindEnvironment && r.Preview != nil {
		// 10:42:09 ENVIRONMENT create feat-x by repo:acme/crm:… (alice) — api
		b.WriteString("ENVIRONMENT " + sanitize(r.Action) + " " + sanitize(r.Preview.Name) + " by " + who(r))
		if r.Preview.Actor != "" {
			b.WriteString(" (" + sanitize(r.Preview.Actor) + ")")
		}
		if r.Reason != "" {
			b.WriteString(" — ")
			b.WriteString(sanitize(r.Reason))
		}
		return b.String()
	}
	if r.Kind != "" {
		b.WriteString(strings.ToUpper(sanitize(r.Kind)))
		if r.Event != "" {
			b.WriteString(" " + sanitize(r.Event))
		}
		if r.Count > 1 {
			b.WriteString(" ×" + strconv.Itoa(r.Count))
		}
		if r.Reason != "" {
			b.WriteString(" — ")
			b.WriteString(sanitize(r.Reason))
		}
		return b.String()
	}
	dec := r.Decision
	if dec == "" {
		dec = "?"
	}
	b.WriteString(strings.ToUpper(sanitize(dec)))
	b.WriteByte(' ')
	b.WriteString(who(r))
	if r.Agent != "" {
		b.WriteString(" via ")
		b.WriteString(sanitize(r.Agent))
	}
	b.WriteString(" → ")
	switch {
	case r.Tool != "":
		b.WriteString(sanitize(r.Tool))
	case r.Action == ActionList:
		b.WriteString("tools/list")
	default:
		b.WriteString("-")
	}
	if r.Reason != "" {
		b.WriteString(" — ")
		b.WriteString(sanitize(r.Reason))
	}
	var details []string
	if r.Status != 0 {
		details = append(details, "status "+strconv.Itoa(r.Status))
	}
	if r.DurationMS > 0 {
		details = append(details, formatMS(r.DurationMS))
	}
	if r.Redactions > 0 {
		s := "redactions"
		if r.Redactions == 1 {
			s = "redaction"
		}
		details = append(details, strconv.Itoa(r.Redactions)+" "+s)
	}
	if len(details) > 0 {
		b.WriteString(" (")
		b.WriteString(strings.Join(details, ", "))
		b.WriteByte(')')
	}
	return b.String()
}

func formatMS(ms float64) string {
	switch {
	case ms < 10:
		return strconv.FormatFloat(ms, 'f', 1, 64) + "ms"
	case ms < 10000:
		return strconv.FormatFloat(ms, 'f', 0, 64) + "ms"
	default:
		return strconv.FormatFloat(ms/1000, 'f', 1, 64) + "s"
	}
}

// who names the human of r: "Name <email> (sub)" with what the record has,
// or the bare subject.
func who(r *Record) string {
	var parts []string
	if r.Name != "" {
		parts = append(parts, sanitize(r.Name))
	}
	if r.Email != "" {
		parts = append(parts, "<"+sanitize(r.Email)+">")
	}
	if len(parts) == 0 {
		return orDash(r.Subject)
	}
	if r.Subject != "" {
		parts = append(parts, "("+sanitize(r.Subject)+")")
	}
	return strings.Join(parts, " ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return sanitize(s)
}

// sanitize escapes control and bidi characters for terminal output.
func sanitize(s string) string {
	clean := true
	for _, c := range s {
		if unsafeRune(c) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for _, c := range s {
		if unsafeRune(c) {
			q := strconv.QuoteRuneToASCII(c)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

func unsafeRune(c rune) bool {
	return unicode.IsControl(c) || unicode.Is(unicode.Bidi_Control, c) || c == unicode.ReplacementChar
}

// Filter selects records for Show and Tail. Empty fields match anything.
type Filter struct {
	// Subject matches the record's subject exactly, or its email
	// (case-insensitively).
	Subject string
	Agent   string
	// Tool matches exactly, or as a prefix when it ends in "*".
	Tool string
	// Decision matches case-insensitively.
	Decision string
	// Since drops records older than this time.
	Since time.Time
}

// Match reports whether r passes the filter. Special records (start, gap,
// rotate) carry no subject, agent, tool or decision, so they only match a
// filter that sets none of those.
func (f Filter) Match(r *Record) bool {
	if r == nil {
		return false
	}
	if !f.Since.IsZero() && r.Time.Before(f.Since) {
		return false
	}
	if f.Subject != "" && r.Subject != f.Subject && (r.Email == "" || !strings.EqualFold(r.Email, f.Subject)) {
		return false
	}
	if f.Agent != "" && r.Agent != f.Agent {
		return false
	}
	if f.Tool != "" {
		if p, ok := strings.CutSuffix(f.Tool, "*"); ok {
			if !strings.HasPrefix(r.Tool, p) {
				return false
			}
		} else if r.Tool != f.Tool {
			return false
		}
	}
	if f.Decision != "" && !strings.EqualFold(r.Decision, f.Decision) {
		return false
	}
	return true
}

// printer writes formatted records with a date line when the day changes.
type printer struct {
	w    io.Writer
	f    Filter
	day  string
	file string
}

func (p *printer) line(n int, line []byte) error {
	r, ok, err := decodeLine(line)
	if err != nil {
		_, werr := fmt.Fprintf(p.w, "?? %s:%d: not a complete record (%d bytes)\n", p.file, n, len(line))
		return werr
	}
	if !p.f.Match(r) {
		return nil
	}
	if day := r.Time.UTC().Format(time.DateOnly); day != p.day {
		p.day = day
		if _, err := fmt.Fprintf(p.w, "── %s ──\n", day); err != nil {
			return err
		}
	}
	prefix := ""
	if !ok {
		prefix = "EDITED "
	}
	_, err = fmt.Fprintf(p.w, "%s%s\n", prefix, Format(r))
	return err
}

// Show writes every record of paths, in order, as Format lines. Lines that
// are not complete records are shown as "??" lines, and records that do not
// match their hash are prefixed with "EDITED" (run Verify for the chain).
func Show(w io.Writer, paths ...string) error {
	return show(w, &lineSource{paths: paths, open: openFile})
}

func show(w io.Writer, src *lineSource) error {
	p := &printer{w: w}
	defer src.close()
	for {
		ref, line, err := src.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("showing audit log: %w", err)
		}
		p.file = ref.file
		if err := p.line(ref.n, line); err != nil {
			return fmt.Errorf("showing audit log: %w", err)
		}
	}
}

// tailPoll is how often Tail looks for new records when following.
var tailPoll = 200 * time.Millisecond

// Tail writes the records of path that match f as Format lines. With follow
// it then keeps waiting for new records, like tail -f, and follows the log
// across rotation (when path is replaced by a new file it finishes the old
// one, then any files rotated since, and continues with the new one from its
// start). It returns nil when ctx ends.
func Tail(ctx context.Context, w io.Writer, path string, f Filter, follow bool) error {
	p := &printer{w: w, f: f, file: path}
	file, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("tailing audit log: %w", err)
	}
	defer func() { _ = file.Close() }()
	var (
		partial []byte
		next    *os.File
		n       int
	)
	buf := make([]byte, 64<<10)
	for {
		// Drain what is there.
		for {
			k, rerr := file.Read(buf)
			partial = append(partial, buf[:k]...)
			for {
				i := bytes.IndexByte(partial, '\n')
				if i < 0 {
					break
				}
				n++
				if err := p.line(n, partial[:i]); err != nil {
					return fmt.Errorf("tailing audit log: %w", err)
				}
				partial = partial[i+1:]
			}
			if len(partial) > maxLine {
				n++
				if err := p.line(n, partial[:maxLine]); err != nil {
					return fmt.Errorf("tailing audit log: %w", err)
				}
				partial = nil
			}
			if errors.Is(rerr, io.EOF) || (rerr == nil && k == 0) {
				break
			}
			if rerr != nil {
				return fmt.Errorf("tailing audit log: %w", rerr)
			}
		}
		if next != nil {
			// The old file has been drained after the rotation was seen.
			if len(partial) > 0 {
				n++
				if err := p.line(n, partial); err != nil {
					_ = next.Close()
					return fmt.Errorf("tailing audit log: %w", err)
				}
			}
			_ = file.Close()
			file, next, partial, n = next, nil, nil, 0
			continue
		}
		if !follow {
			if len(partial) > 0 {
				return p.line(n+1, partial)
			}
			return nil
		}
		// Rotated? Drain the old file once more (a record may have been
		// appended just before the rename), then switch to the new one.
		if cur, err := file.Stat(); err == nil {
			now, err := os.Stat(path)
			switch {
			case err == nil && !os.SameFile(cur, now):
				if next, err = openNext(path, cur); err == nil {
					continue
				}
				next = nil
			case err != nil && !errors.Is(err, fs.ErrNotExist):
				return fmt.Errorf("tailing audit log: %w", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(tailPoll):
		}
	}
}

// nextFile returns the file that follows the (rotated) file cur in the chain
// of path: the next rotated file if several rotations happened since the
// last look, otherwise path itself.
// openNext opens the file that follows cur in the chain. When that is the
// live file, a rotation between listing and opening would skip a rotated
// file, so the choice is checked again after opening.
func openNext(path string, cur os.FileInfo) (*os.File, error) {
	for range 16 {
		name := nextFile(path, cur)
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		if name != path || nextFile(path, cur) == path {
			return f, nil
		}
		_ = f.Close() // rotated meanwhile: take the rotated file instead
	}
	return nil, errors.New("the audit log rotates too fast to follow")
}

func nextFile(path string, cur os.FileInfo) string {
	files, err := Files(path)
	if err != nil {
		return path
	}
	for i, f := range files[:max(0, len(files)-1)] {
		if fi, err := os.Stat(f); err == nil && os.SameFile(fi, cur) {
			return files[i+1]
		}
	}
	return path
}
