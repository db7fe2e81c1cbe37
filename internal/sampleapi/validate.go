package sampleapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"unicode/utf8"
)

// validationError is one entry of FastAPI's (pydantic v2's) 422 answer.
type validationError struct {
	Type  string         `json:"type"`
	Loc   []any          `json:"loc"`
	Msg   string         `json:"msg"`
	Input any            `json:"input"`
	Ctx   map[string]any `json:"ctx,omitempty"`
}

// validator collects every problem of one request, as pydantic does, so a
// client sees them all in one 422 answer.
type validator struct {
	errs []validationError
}

func (v *validator) add(typ string, loc []any, msg string, input any, ctx map[string]any) {
	v.errs = append(v.errs, validationError{Type: typ, Loc: loc, Msg: msg, Input: input, Ctx: ctx})
}

// err returns the collected problems as a 422 httpError, or nil.
func (v *validator) err() error {
	if len(v.errs) == 0 {
		return nil
	}
	return &httpError{status: 422, detail: v.errs}
}

func at(loc []any, name any) []any {
	out := make([]any, 0, len(loc)+1)
	out = append(out, loc...)
	return append(out, name)
}

// object decodes a JSON request body into an object, recording pydantic's
// errors for an empty, malformed or non-object body. ok is false when the
// body could not be read as an object at all; err is a 413 when the body is
// larger than the limit the handler set.
func (v *validator) object(r io.Reader) (obj map[string]any, ok bool, err error) {
	raw, err := io.ReadAll(r)
	if err != nil {
		if mbe, isMBE := errors.AsType[*http.MaxBytesError](err); isMBE {
			return nil, false, &httpError{status: http.StatusRequestEntityTooLarge, detail: fmt.Sprintf("request body larger than %d bytes", mbe.Limit)}
		}
		return nil, false, fmt.Errorf("read request body: %w", err)
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		v.add("missing", []any{"body"}, "Field required", nil, nil)
		return nil, false, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var val any
	if err := dec.Decode(&val); err != nil {
		v.add("json_invalid", []any{"body", dec.InputOffset()}, "JSON decode error", map[string]any{}, map[string]any{"error": jsonErrorText(err)})
		return nil, false, nil
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		v.add("json_invalid", []any{"body", dec.InputOffset()}, "JSON decode error", map[string]any{}, map[string]any{"error": "Extra data"})
		return nil, false, nil
	}
	obj, isObj := val.(map[string]any)
	if !isObj {
		v.add("model_attributes_type", []any{"body"}, "Input should be a valid dictionary or object to extract fields from", val, nil)
		return nil, false, nil
	}
	return obj, true, nil
}

// jsonErrorText is a short, input-free description of a JSON syntax error.
func jsonErrorText(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return se.Error()
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return "unexpected end of JSON input"
	}
	return "invalid JSON"
}

// strField reads a string member. A missing or null member is nil; required
// members report "missing". minLen/maxLen count characters; 0 means no bound.
func (v *validator) strField(obj map[string]any, loc []any, name string, required bool, minLen, maxLen int) *string {
	raw, present := obj[name]
	if !present || (raw == nil && !required) {
		if required {
			v.add("missing", at(loc, name), "Field required", obj, nil)
		}
		return nil
	}
	s, ok := raw.(string)
	if !ok {
		v.add("string_type", at(loc, name), "Input should be a valid string", raw, nil)
		return nil
	}
	n := utf8.RuneCountInString(s)
	if minLen > 0 && n < minLen {
		v.add("string_too_short", at(loc, name), fmt.Sprintf("String should have at least %d %s", minLen, plural(minLen, "character")), s, map[string]any{"min_length": minLen})
		return nil
	}
	if maxLen > 0 && n > maxLen {
		v.add("string_too_long", at(loc, name), fmt.Sprintf("String should have at most %d %s", maxLen, plural(maxLen, "character")), s, map[string]any{"max_length": maxLen})
		return nil
	}
	return &s
}

// enumField reads a string member that must be one of values.
func (v *validator) enumField(obj map[string]any, loc []any, name string, required bool, values []string) *string {
	raw, present := obj[name]
	if !present || (raw == nil && !required) {
		if required {
			v.add("missing", at(loc, name), "Field required", obj, nil)
		}
		return nil
	}
	s, ok := raw.(string)
	if !ok || !isOneOf(s, values) {
		v.enumError(at(loc, name), raw, values)
		return nil
	}
	return &s
}

func (v *validator) enumError(loc []any, input any, values []string) {
	exp := enumList(values)
	v.add("enum", loc, "Input should be "+exp, input, map[string]any{"expected": exp})
}

// intField reads an integer member greater than gt (when gt is not nil).
func (v *validator) intField(obj map[string]any, loc []any, name string, required bool, gt *int64) *int {
	raw, present := obj[name]
	if !present || (raw == nil && !required) {
		if required {
			v.add("missing", at(loc, name), "Field required", obj, nil)
		}
		return nil
	}
	num, ok := raw.(json.Number)
	if !ok {
		v.add("int_type", at(loc, name), "Input should be a valid integer", raw, nil)
		return nil
	}
	i, err := strconv.ParseInt(string(num), 10, 64)
	if err != nil {
		f, ferr := num.Float64()
		switch {
		case ferr == nil && f == math.Trunc(f) && math.Abs(f) < 1<<53:
			i = int64(f)
		case ferr == nil && f != math.Trunc(f):
			v.add("int_from_float", at(loc, name), "Input should be a valid integer, got a number with a fractional part", raw, nil)
			return nil
		default:
			v.add("int_parsing_size", at(loc, name), "Unable to parse input string as an integer, exceeded maximum size", raw, nil)
			return nil
		}
	}
	if i > math.MaxInt32 || i < math.MinInt32 {
		v.add("int_parsing_size", at(loc, name), "Unable to parse input string as an integer, exceeded maximum size", raw, nil)
		return nil
	}
	if gt != nil && i <= *gt {
		v.add("greater_than", at(loc, name), fmt.Sprintf("Input should be greater than %d", *gt), raw, map[string]any{"gt": *gt})
		return nil
	}
	n := int(i)
	return &n
}

// messageField reads a TicketMessage member (recursive through replies).
func (v *validator) messageField(obj map[string]any, loc []any, name string) *ticketMessage {
	raw, present := obj[name]
	if !present || raw == nil {
		return nil
	}
	m, ok := v.message(raw, at(loc, name), 0)
	if !ok {
		return nil
	}
	return &m
}

// maxReplyDepth bounds the nesting of replies so a hostile body cannot make
// validation recurse without limit (the JSON decoder already caps depth).
const maxReplyDepth = 32

func (v *validator) message(raw any, loc []any, depth int) (ticketMessage, bool) {
	obj, ok := raw.(map[string]any)
	if !ok {
		v.add("model_attributes_type", loc, "Input should be a valid dictionary or object to extract fields from", raw, nil)
		return ticketMessage{}, false
	}
	before := len(v.errs)
	author := v.strField(obj, loc, "author", true, 0, 0)
	body := v.strField(obj, loc, "body", true, 0, 0)
	out := ticketMessage{Replies: []ticketMessage{}}
	if rr, present := obj["replies"]; present && rr != nil {
		list, isList := rr.([]any)
		switch {
		case !isList:
			v.add("list_type", at(loc, "replies"), "Input should be a valid list", rr, nil)
		case depth >= maxReplyDepth && len(list) > 0:
			v.add("too_long", at(loc, "replies"), fmt.Sprintf("Replies should nest at most %d levels", maxReplyDepth), nil, nil)
		default:
			for i, item := range list {
				if m, ok := v.message(item, at(at(loc, "replies"), i), depth+1); ok {
					out.Replies = append(out.Replies, m)
				}
			}
		}
	}
	if len(v.errs) != before {
		return ticketMessage{}, false
	}
	out.Author, out.Body = *author, *body
	return out, true
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
