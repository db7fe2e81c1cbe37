package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/agentharness/harness/internal/audit"
	"github.com/agentharness/harness/internal/config"
	"github.com/agentharness/harness/internal/redact"
	"github.com/agentharness/harness/policy"
)

// Policy replay, the gateway's side: each decided record carries the input
// the policy saw and what it decided (policy.Outcome), so that `gateway
// policy replay` can decide it again with another policy; and a read-only
// admin endpoint hands recent records to a replay run elsewhere.

// maxRecordedInput bounds the input kept in a record: a larger one (huge
// arguments) is left out, and the record cannot be replayed, rather than
// making a line the audit tools cannot read.
const maxRecordedInput = 256 << 10

// recordDecision fills rec.Input (as audit.record_input says) and
// rec.PolicyDecision for a decision of in. A failed evaluation records a
// denial, as it was enforced.
func (s *Server) recordDecision(ctx context.Context, rec *audit.Record, in *policy.Input, dec policy.Decision, err error) {
	o := policy.Outcome{}
	if err == nil {
		o = policy.OutcomeOf(dec)
	}
	if b, merr := json.Marshal(o); merr == nil {
		rec.PolicyDecision = b
	}
	mode := s.cfg.Audit.RecordInput
	if mode == config.RecordInputNone {
		return
	}
	rin := *in
	if mode != config.RecordInputFull && len(in.Arguments) > 0 {
		masked, ok := s.maskArguments(in.Arguments)
		if !ok {
			s.log.WarnContext(ctx, "arguments cannot be masked: the record keeps no input", "tool", in.Tool.Name)
			return
		}
		rin.Arguments = masked
	}
	b, merr := json.Marshal(&rin)
	if merr != nil || len(b) > maxRecordedInput {
		s.log.WarnContext(ctx, "policy input too large or not encodable: the record keeps no input", "tool", in.Tool.Name, "bytes", len(b))
		return
	}
	rec.Input = b
}

// maskArguments returns args with every value the configured detectors
// find masked ([REDACTED:kind]); the input is not modified.
func (s *Server) maskArguments(args map[string]any) (map[string]any, bool) {
	s.argMaskerOnce.Do(func() {
		s.argMasker, _ = redact.Compile(redact.Rules{Detectors: s.cfg.Redaction.Detectors})
	})
	if s.argMasker == nil {
		return nil, false
	}
	v, _ := s.argMasker.Value(args)
	m, ok := v.(map[string]any)
	return m, ok
}

// Bounds of GET /admin/audit/records.
const (
	adminDefaultLimit = 10000
	adminMaxLimit     = 100000
	adminMaxBytes     = 64 << 20
)

// adminAuditRecords serves GET /admin/audit/records?since=&until=&limit=:
// the newest decided records (call, list, read) of the local audit trail,
// rotated files included, as JSON lines exactly as written (so their hashes
// can be checked), oldest first. since and until are RFC 3339 times or
// durations back from now; limit defaults to 10000 (at most 100000) and the
// answer to 64 MiB — Harness-Truncated: true says older records were left
// out. It needs server.admin_token as the bearer token (compared in
// constant time); without one configured the endpoint does not exist.
func (s *Server) adminAuditRecords(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Server.AdminToken == "" {
		writeError(w, r, http.StatusNotFound, "not found: the admin endpoints are off (server.admin_token is not set)")
		return
	}
	if !s.isAdmin(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="harness-admin"`)
		writeError(w, r, http.StatusUnauthorized, "unauthorized: the admin endpoint needs server.admin_token as the bearer token")
		return
	}
	q := r.URL.Query()
	now := time.Now()
	since, err := adminTime(q.Get("since"), now, time.Time{})
	if err != nil {
		writeError(w, r, http.StatusBadRequest, "since: "+err.Error())
		return
	}
	until, err := adminTime(q.Get("until"), now, time.Time{})
	if err != nil {
		writeError(w, r, http.StatusBadRequest, "until: "+err.Error())
		return
	}
	limit := adminDefaultLimit
	if l := q.Get("limit"); l != "" {
		if limit, err = strconv.Atoi(l); err != nil || limit < 1 || limit > adminMaxLimit {
			writeError(w, r, http.StatusBadRequest, "limit: a number from 1 to "+strconv.Itoa(adminMaxLimit))
			return
		}
	}
	if s.cfg.Audit.Path == "-" {
		writeError(w, r, http.StatusNotFound, "not found: the audit trail goes to stdout, not to a file the gateway can read")
		return
	}
	files, err := audit.Files(s.cfg.Audit.Path)
	if err != nil {
		s.log.ErrorContext(r.Context(), "admin: listing audit files", "err", err)
		writeError(w, r, http.StatusInternalServerError, "the audit trail cannot be read")
		return
	}
	// A ring of the newest matching lines, bounded in count and bytes.
	var ring [][]byte
	size, dropped := 0, false
	err = audit.ReadLines(files, func(_ string, _ int, line []byte) error {
		if err := r.Context().Err(); err != nil {
			return err
		}
		rec, perr := audit.ParseLine(line)
		if rec == nil || (perr != nil && !errors.Is(perr, audit.ErrHashMismatch)) || !rec.IsDecision() {
			return nil
		}
		if (!since.IsZero() && rec.Time.Before(since)) || (!until.IsZero() && !rec.Time.Before(until)) {
			return nil
		}
		ring = append(ring, line)
		size += len(line) + 1
		for len(ring) > limit || size > adminMaxBytes {
			size -= len(ring[0]) + 1
			ring[0] = nil
			ring = ring[1:]
			dropped = true
		}
		return nil
	})
	if err != nil {
		s.log.ErrorContext(r.Context(), "admin: reading audit trail", "err", err)
		writeError(w, r, http.StatusInternalServerError, "the audit trail cannot be read")
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Harness-Truncated", strconv.FormatBool(dropped))
	w.Header().Set("Harness-Records", strconv.Itoa(len(ring)))
	w.WriteHeader(http.StatusOK)
	for _, line := range ring {
		_, _ = w.Write(line)
		_, _ = w.Write([]byte{'\n'})
	}
}

// adminTime parses an RFC 3339 time or a duration back from now; empty is def.
func adminTime(v string, now, def time.Time) (time.Time, error) {
	if v == "" {
		return def, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, errors.New("an RFC 3339 time or a duration such as 24h")
	}
	return t, nil
}
