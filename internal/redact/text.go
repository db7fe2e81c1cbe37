package redact

import (
	"mime"
	"strings"
	"unicode/utf8"
)

// Text runs the detectors over non-JSON text (plain text, HTML, error
// pages) and returns it with every finding masked. Path and context rules
// do not apply to text.
func (r *Redactor) Text(s string) (string, Report) {
	var c counts
	ms := r.det.find([]byte(s), nil)
	if len(ms) == 0 {
		return s, c.report(false)
	}
	var b strings.Builder
	b.Grow(len(s))
	last := 0
	for _, m := range ms {
		b.WriteString(s[last:m.start])
		b.WriteString(masks[m.k])
		c[m.k]++
		last = m.end
	}
	b.WriteString(s[last:])
	return b.String(), c.report(false)
}

// IsText reports whether a response should be redacted as text (JSON or
// [Redactor.Text]) rather than handled as binary. It fails closed: a body
// is text when its declared media type is textual (text/*, JSON, XML,
// YAML, JavaScript, form data) or when it looks like text whatever the
// declared type (valid UTF-8 without NUL or other control bytes besides
// tab, newline, carriage return and form feed).
func IsText(contentType string, body []byte) bool {
	if mt, _, err := mime.ParseMediaType(contentType); err == nil {
		switch {
		case strings.HasPrefix(mt, "text/"),
			strings.HasSuffix(mt, "+json"), strings.HasSuffix(mt, "+xml"), strings.HasSuffix(mt, "+yaml"),
			strings.HasSuffix(mt, "/json"), strings.HasSuffix(mt, "/xml"), strings.HasSuffix(mt, "/yaml"),
			strings.HasSuffix(mt, "/x-yaml"), strings.HasSuffix(mt, "/javascript"), strings.HasSuffix(mt, "/ecmascript"),
			mt == "application/x-www-form-urlencoded", mt == "application/x-ndjson", mt == "application/jsonl":
			return true
		}
	}
	return looksLikeText(body)
}

func looksLikeText(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, c := range b {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f' {
			return false
		}
	}
	return true
}
