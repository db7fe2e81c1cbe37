package server

// A copy of mcp-go v1.6.0's server/jsonrpc_strict.go (MIT License,
// Copyright (c) 2024 Anthropic, PBC), which is unexported: the tools/call
// fast path (fastcall.go) must refuse exactly the member names mcp-go
// refuses, so it leaves those requests to mcp-go.

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Member names that encoding/json would also match as "Method", "paramſ" and
// so on. Keys that fold onto none of them are left alone.
var (
	rpcEnvelopeMembers = []string{"jsonrpc", "method", "id", "params", "result", "error"}

	rpcParamsMembers = []string{
		"name", "arguments", "uri", "cursor", "_meta", "protocolVersion",
		"capabilities", "clientInfo", "level", "ref", "argument", "requestId",
		"progressToken", "taskId", "reason", "requestState", "task", "context",
		"inputResponses", "notifications", "progress", "total", "message",
	}
)

// validateMemberNames rejects envelope and params member names that
// differ from the defined ones only by case or Unicode folding, and repeated
// members. It scans the bytes without decoding values. Malformed JSON is left
// to the caller's Unmarshal.
func validateMemberNames(message json.RawMessage) error {
	_, err := checkRPCMembers(message, rpcSkipSpace(message, 0), rpcEnvelopeMembers, "")
	return err
}

// checkRPCMembers checks the member names of the object starting at b[i] and
// returns the index just past it. A value that is not an object is skipped.
func checkRPCMembers(b []byte, i int, defined []string, path string) (int, error) {
	if i >= len(b) || b[i] != '{' {
		return rpcSkipValue(b, i), nil
	}
	var seen []string
	i = rpcSkipSpace(b, i+1)
	for i < len(b) && b[i] == '"' {
		end := rpcSkipString(b, i)
		if end < 0 {
			return len(b), nil
		}
		key := string(b[i+1 : end-1])
		if strings.IndexByte(key, '\\') >= 0 {
			if json.Unmarshal(b[i:end], &key) != nil {
				return len(b), nil
			}
		}
		if err := checkRPCMemberName(key, defined, seen, path); err != nil {
			return 0, err
		}
		// Tracking only defined names keeps this linear in the member count.
		if slices.Contains(defined, key) {
			seen = append(seen, key)
		}

		i = rpcSkipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return len(b), nil
		}
		i = rpcSkipSpace(b, i+1)
		if path == "" && key == "params" {
			var err error
			if i, err = checkRPCMembers(b, i, rpcParamsMembers, "params."); err != nil {
				return 0, err
			}
		} else {
			i = rpcSkipValue(b, i)
		}
		i = rpcSkipSpace(b, i)
		if i < len(b) && b[i] == ',' {
			i = rpcSkipSpace(b, i+1)
		}
	}
	return i + 1, nil
}

func checkRPCMemberName(key string, defined, seen []string, path string) error {
	if slices.Contains(seen, key) {
		return fmt.Errorf("duplicate member %q", path+key)
	}
	if slices.Contains(defined, key) {
		return nil
	}
	for _, name := range defined {
		if strings.EqualFold(key, name) {
			return fmt.Errorf("member %q is not the defined name %q", path+key, path+name)
		}
	}
	return nil
}

func rpcSkipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// rpcSkipString returns the index just past the string starting at b[i], or -1.
func rpcSkipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return -1
}

// rpcSkipValue returns the index just past the value starting at b[i].
func rpcSkipValue(b []byte, i int) int {
	depth := 0
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			end := rpcSkipString(b, i)
			if end < 0 {
				return len(b)
			}
			i = end - 1
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return i
			}
			depth--
		case ',':
			if depth == 0 {
				return i
			}
		}
		if depth == 0 && (b[i] == '"' || b[i] == '}' || b[i] == ']') {
			return i + 1
		}
	}
	return i
}
