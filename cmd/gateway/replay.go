package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/agentharness/harness/internal/replay"
	"github.com/agentharness/harness/policy"
)

const replaySynopsis = `policy replay --dir NEW [--baseline DIR] [--since T] [--until T] [--format text|markdown|json] AUDIT...
       gateway policy replay --dir NEW --url GATEWAY --token-file F [--since T] [--until T] [--limit N]

Decides every input recorded in the audit trail again with the policy in NEW
and reports whose access changes. Exit 0: no change; 1: changes; 2: error,
or no record could be replayed.`

// cmdReplay is `gateway policy replay`. Every failure is exit 2; changes
// are exit 1.
func cmdReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("policy replay", replaySynopsis, stderr)
	dir := fs.String("dir", "", "the new policy's directory; required")
	baseline := fs.String("baseline", "", "compare with this policy decided the same way, instead of the recorded decisions")
	query := fs.String("query", policy.DefaultQuery, "the decision query")
	since := fs.String("since", "", "only records at or after this: an RFC 3339 time or a duration back from now (168h)")
	until := fs.String("until", "", "only records before this: an RFC 3339 time or a duration back from now")
	format := fs.String("format", replay.FormatText, "report format: text, markdown or json")
	gw := fs.String("url", "", "fetch the records from this gateway's admin endpoint instead of files")
	tokenFile := fs.String("token-file", "", "file holding the gateway's server.admin_token (with --url)")
	limit := fs.Int("limit", 100000, "with --url: the newest N records (at most 100000)")
	examples := fs.Int("examples", 3, "example records shown per group")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case *dir == "":
		fmt.Fprintln(stderr, "gateway policy replay: --dir NEW is required")
	case *gw == "" && fs.NArg() == 0:
		fmt.Fprintln(stderr, "gateway policy replay: name the audit files, or --url GATEWAY --token-file F")
	case *gw != "" && fs.NArg() > 0:
		fmt.Fprintln(stderr, "gateway policy replay: --url and audit files exclude each other")
	case *gw != "" && *tokenFile == "":
		fmt.Fprintln(stderr, "gateway policy replay: --url needs --token-file")
	case *format != replay.FormatText && *format != replay.FormatMarkdown && *format != replay.FormatJSON:
		fmt.Fprintf(stderr, "gateway policy replay: --format %q: use text, markdown or json\n", *format)
	default:
		code, err := runReplay(ctx, replayArgs{
			dir: *dir, baseline: *baseline, query: *query, since: *since, until: *until, format: *format,
			url: *gw, tokenFile: *tokenFile, limit: *limit, examples: *examples, files: fs.Args(),
		}, stdout)
		if err != nil {
			fmt.Fprintln(stderr, "gateway policy replay:", err)
			return exitError{code: 2}
		}
		if code != 0 {
			return exitError{code: code}
		}
		return nil
	}
	fs.Usage()
	return errUsage
}

type replayArgs struct {
	dir, baseline, query, since, until, format, url, tokenFile string
	limit, examples                                            int
	files                                                      []string
}

func runReplay(ctx context.Context, a replayArgs, stdout io.Writer) (int, error) {
	now := time.Now()
	var o replay.Options
	var err error
	if a.since != "" {
		if o.Since, err = parseSince(a.since, now); err != nil {
			return 2, err
		}
	}
	if a.until != "" {
		if o.Until, err = parseSince(a.until, now); err != nil {
			return 2, fmt.Errorf("--until: %w", err)
		}
	}
	o.Examples = a.examples
	if o.New, err = policy.New(ctx, policy.Options{Dir: a.dir, Query: a.query}); err != nil {
		return 2, fmt.Errorf("policy %s: %w", a.dir, err)
	}
	if a.baseline != "" {
		if o.Baseline, err = policy.New(ctx, policy.Options{Dir: a.baseline, Query: a.query}); err != nil {
			return 2, fmt.Errorf("baseline %s: %w", a.baseline, err)
		}
	}
	r, err := replay.NewReplayer(o)
	if err != nil {
		return 2, err
	}
	source := strings.Join(a.files, ", ")
	if a.url != "" {
		source = a.url
		lines, err := fetchRecords(ctx, a, o.Since, o.Until)
		if err != nil {
			return 2, err
		}
		for len(lines) > 0 {
			n := min(len(lines), replay.BatchSize)
			if err := r.Add(ctx, lines[:n]); err != nil {
				return 2, err
			}
			lines = lines[n:]
		}
	} else {
		if err := r.AddFiles(ctx, a.files); err != nil {
			return 2, err
		}
	}
	rep := r.Report()
	if err := replay.Write(stdout, rep, a.format, replay.Labels{New: a.dir, Baseline: a.baseline, Source: source}); err != nil {
		return 2, err
	}
	switch {
	case rep.Changed > 0:
		return 1, nil
	case rep.Replayed == 0 && rep.Decisions > 0:
		return 2, fmt.Errorf("none of %d decision record(s) could be replayed (see the report)", rep.Decisions)
	}
	return 0, nil
}

// maxFetched bounds the admin endpoint's answer as read here.
const maxFetched = 80 << 20

// fetchRecords reads the gateway's recent records from its admin endpoint.
func fetchRecords(ctx context.Context, a replayArgs, since, until time.Time) ([]replay.Line, error) {
	u, token, err := bearerTarget(a.url, a.tokenFile, "admin token")
	if err != nil {
		return nil, err
	}
	u.Path += "/admin/audit/records"
	q := url.Values{"limit": {strconv.Itoa(a.limit)}}
	if !since.IsZero() {
		q.Set("since", since.UTC().Format(time.RFC3339Nano))
	}
	if !until.IsZero() {
		q.Set("until", until.UTC().Format(time.RFC3339Nano))
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := noRedirectClient(2 * time.Minute).Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching records: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxFetched+1))
	if err != nil {
		return nil, fmt.Errorf("fetching records: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching records: %s: %s", resp.Status, firstLine(body))
	}
	if len(body) > maxFetched {
		return nil, fmt.Errorf("fetching records: the answer is larger than %d MiB", maxFetched>>20)
	}
	var lines []replay.Line
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 2<<20)
	for n := 1; sc.Scan(); n++ {
		lines = append(lines, replay.Line{Source: u.Host, N: n, Data: bytes.Clone(sc.Bytes())})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading records: %w", err)
	}
	return lines, nil
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	if len(s) > 200 {
		s = s[:200]
	}
	return strings.TrimSpace(s)
}
