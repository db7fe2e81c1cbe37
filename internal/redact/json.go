package redact

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth bounds nesting, like encoding/json.
const maxDepth = 10000

// ErrInvalidJSON is returned (wrapped) by [Redactor.JSON] for input that is
// not one valid JSON value.
var ErrInvalidJSON = errors.New("invalid json")

var fieldMask = []byte(`"` + masks[kField] + `"`)

// JSON redacts one JSON value in a single pass and returns it compacted
// (insignificant whitespace dropped). Numbers keep their exact text, except
// a number holding a finding (a card number), which becomes a string with
// the finding masked. Strings with
// invalid UTF-8 are repaired (U+FFFD). When the whole value is out of
// context the output is null and [Report.ContextEmpty] is set. Invalid
// JSON is an error wrapping [ErrInvalidJSON]; nothing is ever cut silently.
func (r *Redactor) JSON(data []byte) ([]byte, Report, error) {
	w := jsonWalker{r: r, in: data, out: make([]byte, 0, len(data)+len(data)/16+16)}
	removed, err := w.value(0)
	if err == nil {
		w.ws()
		if w.i < len(w.in) {
			err = w.fail("data after the value")
		}
	}
	if err != nil {
		return nil, Report{}, err
	}
	if removed {
		return []byte("null"), w.c.report(true), nil
	}
	return w.out, w.c.report(false), nil
}

type jsonWalker struct {
	r    *Redactor
	in   []byte
	i    int
	out  []byte
	c    counts
	path []pathElem
	ms   []match
	buf  []byte
	kbuf []byte // a folded key
}

func (w *jsonWalker) fail(what string) error {
	return fmt.Errorf("%w: %s at offset %d", ErrInvalidJSON, what, w.i)
}

func (w *jsonWalker) ws() {
	for w.i < len(w.in) {
		switch w.in[w.i] {
		case ' ', '\t', '\n', '\r':
			w.i++
		default:
			return
		}
	}
}

// value emits the value at w.i; removed reports an out-of-context object
// (nothing emitted).
func (w *jsonWalker) value(depth int) (removed bool, err error) {
	if depth > maxDepth {
		return false, w.fail("nesting too deep")
	}
	w.ws()
	if w.i >= len(w.in) {
		return false, w.fail("unexpected end")
	}
	switch c := w.in[w.i]; c {
	case '{':
		return w.object(depth)
	case '[':
		return false, w.array(depth)
	case '"':
		raw, dec, err := w.str()
		if err != nil {
			return false, err
		}
		w.emitString(raw, dec)
		return false, nil
	case 't':
		return false, w.lit("true")
	case 'f':
		return false, w.lit("false")
	case 'n':
		return false, w.lit("null")
	default:
		return false, w.number()
	}
}

func (w *jsonWalker) lit(l string) error {
	if len(w.in)-w.i < len(l) || string(w.in[w.i:w.i+len(l)]) != l {
		return w.fail("invalid literal")
	}
	w.out = append(w.out, l...)
	w.i += len(l)
	return nil
}

func (w *jsonWalker) number() error {
	in, st := w.in, w.i
	j := st
	if j < len(in) && in[j] == '-' {
		j++
	}
	switch {
	case j < len(in) && in[j] == '0':
		j++
	case j < len(in) && in[j] >= '1' && in[j] <= '9':
		j = run(in, j, cDigit)
	default:
		return w.fail("invalid value")
	}
	if j < len(in) && in[j] == '.' {
		k := run(in, j+1, cDigit)
		if k == j+1 {
			return w.fail("invalid number")
		}
		j = k
	}
	if j < len(in) && (in[j] == 'e' || in[j] == 'E') {
		j++
		if j < len(in) && (in[j] == '+' || in[j] == '-') {
			j++
		}
		k := run(in, j, cDigit)
		if k == j {
			return w.fail("invalid number")
		}
		j = k
	}
	w.i = j
	lit := in[st:j]
	if j-st >= 13 && w.r.det&bCard != 0 {
		if w.ms = w.r.det.find(lit, w.ms[:0]); len(w.ms) > 0 {
			w.out = append(w.out, '"')
			w.out = w.applyMasks(w.out, lit, w.ms, false)
			w.out = append(w.out, '"')
			return nil
		}
	}
	w.out = append(w.out, lit...)
	return nil
}

// str scans the string at w.i (an opening quote). raw is its content as
// written; dec is non-nil when raw had escapes or invalid UTF-8, and is
// then the decoded text (valid UTF-8, in w.buf).
func (w *jsonWalker) str() (raw, dec []byte, err error) {
	in := w.in
	st := w.i + 1
	j := st
	esc, hi := false, false
	for {
		for j < len(in) && in[j] >= 0x20 && in[j] != '"' && in[j] != '\\' && in[j] < 0x80 {
			j++
		}
		if j >= len(in) {
			w.i = j
			return nil, nil, w.fail("unterminated string")
		}
		switch c := in[j]; {
		case c == '"':
			raw = in[st:j]
			w.i = j + 1
			if esc || (hi && !utf8.Valid(raw)) {
				w.buf = unescape(w.buf[:0], raw)
				return raw, w.buf, nil
			}
			return raw, nil, nil
		case c == '\\':
			esc = true
			if j+1 >= len(in) {
				w.i = j
				return nil, nil, w.fail("unterminated string")
			}
			switch in[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				if len(in)-j < 6 || !isHex4(in[j+2:j+6]) {
					w.i = j
					return nil, nil, w.fail("invalid \\u escape")
				}
				j += 6
			default:
				w.i = j
				return nil, nil, w.fail("invalid escape")
			}
		case c < 0x20:
			w.i = j
			return nil, nil, w.fail("control character in string")
		default:
			hi = true
			j++
		}
	}
}

func isHex4(b []byte) bool {
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c-'a') + 10
		default:
			r |= rune(c-'A') + 10
		}
	}
	return r
}

// unescape decodes a validated JSON string body, replacing invalid UTF-8
// and lone surrogates with U+FFFD like encoding/json.
func unescape(dst, raw []byte) []byte {
	for i := 0; i < len(raw); {
		c := raw[i]
		switch {
		case c == '\\':
			switch raw[i+1] {
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				r := hex4(raw[i+2 : i+6])
				i += 6
				if utf16.IsSurrogate(r) {
					if len(raw)-i >= 6 && raw[i] == '\\' && raw[i+1] == 'u' {
						if r2 := utf16.DecodeRune(r, hex4(raw[i+2:i+6])); r2 != utf8.RuneError {
							r = r2
							i += 6
						} else {
							r = utf8.RuneError
						}
					} else {
						r = utf8.RuneError
					}
				}
				dst = utf8.AppendRune(dst, r)
				continue
			default: // " \ /
				dst = append(dst, raw[i+1])
			}
			i += 2
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			i++
		default:
			r, n := utf8.DecodeRune(raw[i:])
			dst = utf8.AppendRune(dst, r)
			i += n
		}
	}
	return dst
}

// emitString writes a string value or key, masking findings.
func (w *jsonWalker) emitString(raw, dec []byte) {
	src, encode := raw, false
	if dec != nil {
		src, encode = dec, true
	}
	w.ms = w.r.det.find(src, w.ms[:0])
	if len(w.ms) == 0 && (dec == nil || utf8.Valid(raw)) {
		w.out = append(w.out, '"')
		w.out = append(w.out, raw...)
		w.out = append(w.out, '"')
		return
	}
	w.out = append(w.out, '"')
	w.out = w.applyMasks(w.out, src, w.ms, encode)
	w.out = append(w.out, '"')
}

// applyMasks appends s with the findings ms replaced by their masks; with
// encode, the kept text is JSON-escaped (s is decoded text).
func (w *jsonWalker) applyMasks(dst, s []byte, ms []match, encode bool) []byte {
	last := 0
	for _, m := range ms {
		dst = appendText(dst, s[last:m.start], encode)
		dst = append(dst, masks[m.k]...)
		w.c[m.k]++
		last = m.end
	}
	return appendText(dst, s[last:], encode)
}

const hexDigits = "0123456789abcdef"

func appendText(dst, s []byte, encode bool) []byte {
	if !encode {
		return append(dst, s...)
	}
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// tracking reports whether the path is kept at this depth (a rooted rule
// may still match below it).
func (w *jsonWalker) tracking(depth int) bool { return depth < w.r.maxDepth }

func (w *jsonWalker) object(depth int) (bool, error) {
	start, snap := len(w.out), w.c
	w.i++
	w.out = append(w.out, '{')
	w.ws()
	if w.i < len(w.in) && w.in[w.i] == '}' {
		w.i++
		w.out = append(w.out, '}')
		return false, nil
	}
	track := w.tracking(depth)
	outOfContext := false
	for n := 0; ; {
		w.ws()
		if w.i >= len(w.in) || w.in[w.i] != '"' {
			return false, w.fail("expected object key")
		}
		raw, dec, err := w.str()
		if err != nil {
			return false, err
		}
		key := raw
		if dec != nil {
			key = dec
		}
		// fk is the key as rules compare it; key itself stays valid only
		// until the next string is scanned.
		fk := key
		if w.r.keyRules() || track {
			scratch := dec != nil
			if !foldedASCII(key) {
				w.kbuf = appendFoldKey(w.kbuf[:0], key)
				fk, scratch = w.kbuf, true
			}
			if track && scratch {
				fk = append([]byte(nil), fk...) // kept in w.path below
			}
		}
		aws := w.r.det&bSecret != 0 && isAWSSecretKey(key)
		w.ws()
		if w.i >= len(w.in) || w.in[w.i] != ':' {
			return false, w.fail("expected colon")
		}
		w.i++
		if n > 0 {
			w.out = append(w.out, ',')
		}
		w.emitString(raw, dec)
		w.out = append(w.out, ':')

		if track {
			w.path = append(w.path, pathElem{raw: fk})
		}
		maskKind := kind(nKinds)
		if w.r.keyMasked(fk) || (track && w.r.rootedMatch(w.path)) {
			maskKind = kField
		}
		allowed, isCtx := w.r.context[string(fk)]
		w.ws()
		vstart := w.i
		if maskKind == nKinds && aws && vstart+1 < len(w.in) && w.in[vstart] == '"' && w.in[vstart+1] != '"' {
			maskKind = kSecret
		}
		removed := false
		if maskKind != nKinds {
			m2, snap2 := len(w.out), w.c
			removed, err = w.value(depth + 1)
			w.out, w.c = w.out[:m2], snap2
			w.out = append(w.out, '"')
			w.out = append(w.out, masks[maskKind]...)
			w.out = append(w.out, '"')
			w.c[maskKind]++
		} else {
			removed, err = w.value(depth + 1)
		}
		if track {
			w.path = w.path[:len(w.path)-1]
		}
		if err != nil {
			return false, err
		}
		// A foreign record below removes this whole object: the nearest
		// enclosing array element (or the result) goes, not just the part
		// that named the foreign value.
		if removed || (isCtx && !contextAllowedJSON(w.in[vstart:w.i], allowed)) {
			outOfContext = true
		}
		n++
		w.ws()
		if w.i >= len(w.in) {
			return false, w.fail("unterminated object")
		}
		if w.in[w.i] == ',' {
			w.i++
			continue
		}
		if w.in[w.i] != '}' {
			return false, w.fail("expected , or }")
		}
		w.i++
		break
	}
	if outOfContext {
		w.out, w.c = w.out[:start], snap
		w.c[kContext]++
		return true, nil
	}
	w.out = append(w.out, '}')
	return false, nil
}

func (w *jsonWalker) array(depth int) error {
	w.i++
	w.out = append(w.out, '[')
	w.ws()
	if w.i < len(w.in) && w.in[w.i] == ']' {
		w.i++
		w.out = append(w.out, ']')
		return nil
	}
	track := w.tracking(depth)
	if track {
		w.path = append(w.path, pathElem{idx: true})
	}
	masked := track && w.r.rootedMatch(w.path)
	for n := 0; ; {
		mark := len(w.out)
		if n > 0 {
			w.out = append(w.out, ',')
		}
		var removed bool
		var err error
		if masked {
			m2, snap2 := len(w.out), w.c
			removed, err = w.value(depth + 1)
			w.out, w.c = w.out[:m2], snap2
			if removed {
				w.c[kContext]++
			} else {
				w.out = append(w.out, fieldMask...)
				w.c[kField]++
			}
		} else {
			removed, err = w.value(depth + 1)
		}
		if err != nil {
			return err
		}
		if removed {
			w.out = w.out[:mark]
		} else {
			n++
		}
		w.ws()
		if w.i >= len(w.in) {
			return w.fail("unterminated array")
		}
		if w.in[w.i] == ',' {
			w.i++
			continue
		}
		if w.in[w.i] != ']' {
			return w.fail("expected , or ]")
		}
		w.i++
		break
	}
	if track {
		w.path = w.path[:len(w.path)-1]
	}
	w.out = append(w.out, ']')
	return nil
}

// contextAllowedJSON reports whether the raw JSON value of a context key is
// allowed. Only strings, numbers, booleans and arrays of those can be.
func contextAllowedJSON(raw []byte, allowed []string) bool {
	if len(raw) == 0 {
		return false
	}
	switch raw[0] {
	case '"':
		body := raw[1 : len(raw)-1]
		for _, c := range body {
			if c == '\\' || c >= 0x80 {
				var s string
				if json.Unmarshal(raw, &s) != nil {
					return false
				}
				return allowedScalar(s, allowed)
			}
		}
		return allowedScalar(string(body), allowed)
	case '{', 'n':
		return false
	case '[':
		if bytes.ContainsAny(raw[1:], "[{") {
			return false // nested values are never allowed; no decoding work
		}
		var v any
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		if d.Decode(&v) != nil {
			return false
		}
		return contextAllowedValue(v, allowed)
	default: // number, true, false
		return allowedScalar(string(raw), allowed)
	}
}
