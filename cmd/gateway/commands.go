package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/agentharness/harness/internal/app"
	"github.com/agentharness/harness/internal/audit"
	"github.com/agentharness/harness/internal/authn"
	"github.com/agentharness/harness/internal/config"
	"github.com/agentharness/harness/policy"
)

func cmdValidate(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("validate", "validate --config FILE [--check-idp [--token-file F]]", stderr)
	cfgPath := fs.String("config", "", "configuration file (YAML); required")
	checkIdP := fs.Bool("check-idp", false, "also fetch each issuer's discovery and keys, and explain what a sample token maps to")
	tokenFile := fs.String("token-file", "", "with --check-idp: a sample token of one of the issuers (ID or access token); never printed")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *cfgPath == "" {
		fmt.Fprintln(stderr, "gateway validate: --config FILE is required")
		fs.Usage()
		return errUsage
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return fmt.Errorf("%s: %w", *cfgPath, err)
	}
	ctx := context.Background()
	pol, err := policy.New(ctx, policy.Options{Dir: cfg.Policy.Dir, Query: cfg.Policy.Query})
	if err != nil {
		return fmt.Errorf("%s: policy: %w", *cfgPath, err)
	}
	src := "embedded default"
	if cfg.Policy.Dir != "" {
		src = cfg.Policy.Dir
	}
	fmt.Fprintf(stdout, "%s: valid\n  listen %s, public URL %s, environment %s\n  %d issuer(s), %d upstream(s)\n  policy %s (revision %s)\n  rate limits %s, audit %s\n",
		*cfgPath, cfg.Listen, cfg.PublicURL, cfg.Environment, len(cfg.Auth.Issuers), len(cfg.Upstreams),
		src, pol.Revision(), orMemory(cfg.RateLimit.RedisURL), cfg.Audit.Path)
	if !*checkIdP {
		if *tokenFile != "" {
			fmt.Fprintln(stderr, "gateway validate: --token-file needs --check-idp")
			return errUsage
		}
		return nil
	}
	return checkIdPs(ctx, cfg, *tokenFile, stdout)
}

// checkIdPs runs authn.CheckIssuer for every issuer; the sample token goes
// to the issuer named by its iss.
func checkIdPs(ctx context.Context, cfg *config.Config, tokenFile string, stdout io.Writer) error {
	token := ""
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return fmt.Errorf("--token-file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	tokIss := authn.TokenIssuer(token)
	problems, matched := 0, false
	for _, is := range cfg.Auth.Issuers {
		var login []string
		if is.Issuer == cfg.OAuth.LoginIssuer {
			login = cfg.OAuth.Scopes
			if len(login) == 0 {
				login = []string{"openid", "profile", "email"}
			}
		}
		sample := ""
		if token != "" && tokIss == is.Issuer {
			sample, matched = token, true
		}
		fmt.Fprintf(stdout, "\nidentity provider %s\n", is.Issuer)
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		fs := authn.CheckIssuer(cctx, nil, authn.IssuerConfig{Issuer: is.Issuer, Audiences: is.Audiences, RolesClaim: is.RolesClaim, AgentClaim: is.AgentClaim}, login, sample)
		cancel()
		for _, f := range fs {
			mark := "ok"
			if f.Problem {
				mark, problems = "!!", problems+1
			}
			fmt.Fprintf(stdout, "  %s %s\n", mark, f.Msg)
		}
	}
	if token != "" && !matched {
		problems++
		fmt.Fprintf(stdout, "\n  !! the sample token's issuer %q is none of auth.issuers (compare character for character)\n", tokIss)
	}
	if problems > 0 {
		return fmt.Errorf("identity provider check: %d problem(s)", problems)
	}
	fmt.Fprintln(stdout, "\nidentity providers: ok")
	return nil
}

func orMemory(redisURL string) string {
	if redisURL == "" {
		return "in memory"
	}
	return "on Redis " + app.RedactURL(redisURL)
}

const auditUsage = `Usage:
  gateway audit verify FILE...   check the hash chain (exit 0 intact, 1 otherwise)
      [--checkpoint CP]... [--witness redis://…|file:PATH] --key VERIFIER
                                 and the Merkle tree against signed checkpoints
  gateway audit verify --proof P --key VERIFIER   check a proof without the log
  gateway audit prove --id ID --checkpoint CP FILE...   inclusion proof of one record
  gateway audit prove --from CP1 --to CP2 FILE...       consistency proof
  gateway audit keygen NAME      write NAME.key (signer) and NAME.pub (verifier)
  gateway audit show FILE...     print the records for humans
  gateway audit tail [flags] FILE  print matching records, --follow to keep going
`

func cmdAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, auditUsage)
		return errUsage
	}
	switch args[0] {
	case "verify":
		return cmdAuditVerify(ctx, args[1:], stdout, stderr)
	case "prove":
		return cmdAuditProve(args[1:], stdout, stderr)
	case "keygen":
		return cmdAuditKeygen(args[1:], stdout, stderr)
	case "show":
		fs := newFlags("audit show", "audit show FILE...", stderr)
		if err := parse(fs, args[1:]); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			fs.Usage()
			return errUsage
		}
		return audit.Show(stdout, fs.Args()...)
	case "tail":
		fs := newFlags("audit tail", "audit tail [--subject S] [--agent A] [--tool T] [--decision D] [--since DUR|TIME] [--follow] FILE", stderr)
		var f audit.Filter
		fs.StringVar(&f.Subject, "subject", "", "only records of this human (subject, or email)")
		fs.StringVar(&f.Agent, "agent", "", "only records of this agent")
		fs.StringVar(&f.Tool, "tool", "", "only this tool (a trailing * matches a prefix)")
		fs.StringVar(&f.Decision, "decision", "", "only this decision: allow, deny, rate_limited or error")
		since := fs.String("since", "", "only records newer than this: a duration (1h) or an RFC 3339 time")
		follow := fs.Bool("follow", false, "keep printing new records as they are written")
		if err := parse(fs, args[1:]); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			fs.Usage()
			return errUsage
		}
		if *since != "" {
			t, err := parseSince(*since, time.Now())
			if err != nil {
				return err
			}
			f.Since = t
		}
		return audit.Tail(ctx, stdout, fs.Arg(0), f, *follow)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, auditUsage)
		return nil
	default:
		fmt.Fprintf(stderr, "gateway audit: unknown subcommand %q\n%s", args[0], auditUsage)
		return errUsage
	}
}

func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--since %q: use a duration such as 1h or an RFC 3339 time", s)
}

const policyUsage = `Usage:
  gateway policy test [-v] [DIR]                 run the Rego tests (default: the embedded policy)
  gateway policy eval --input FILE [--dir DIR]   print the decision for one input document
  gateway policy replay --dir NEW [--baseline DIR] [--since T] [--until T] [--format text|markdown|json] AUDIT...
                                                 decide the recorded inputs again and report what changes
                                                 (--url GATEWAY --token-file F: the live gateway's records)
`

func cmdPolicy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, policyUsage)
		return errUsage
	}
	switch args[0] {
	case "test":
		fs := newFlags("policy test", "policy test [-v] [DIR]", stderr)
		verbose := fs.Bool("v", false, "list every test")
		if err := parse(fs, args[1:]); err != nil {
			return err
		}
		if fs.NArg() > 1 {
			fs.Usage()
			return errUsage
		}
		passed, err := policy.RunTests(ctx, fs.Arg(0), *verbose, stdout)
		if err != nil {
			return err
		}
		if !passed {
			return exitError{code: 1}
		}
		return nil
	case "eval":
		fs := newFlags("policy eval", "policy eval --input FILE [--dir DIR] [--query Q]", stderr)
		input := fs.String("input", "", "the input document (JSON, the contract's shape); - for stdin")
		dir := fs.String("dir", "", "policy directory (default: the embedded policy)")
		query := fs.String("query", "data.harness.decision", "the decision query")
		if err := parse(fs, args[1:]); err != nil {
			return err
		}
		if *input == "" {
			fs.Usage()
			return errUsage
		}
		var data []byte
		var err error
		if *input == "-" {
			data, err = io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
		} else {
			data, err = os.ReadFile(*input)
		}
		if err != nil {
			return fmt.Errorf("read input: %w", err)
		}
		var in policy.Input
		jd := json.NewDecoder(strings.NewReader(string(data)))
		jd.DisallowUnknownFields()
		if err := jd.Decode(&in); err != nil {
			return fmt.Errorf("input %s is not a policy input document: %w", *input, err)
		}
		eng, err := policy.New(ctx, policy.Options{Dir: *dir, Query: *query})
		if err != nil {
			return err
		}
		// Print the decision as the policy produced it; then say whether the
		// gateway can use it (a malformed decision is a denial).
		raw, rawErr := eng.Eval(ctx, &in)
		if rawErr == nil {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			if err := enc.Encode(raw); err != nil {
				return err
			}
		}
		if _, err := eng.Decide(ctx, &in); err != nil {
			return fmt.Errorf("the policy failed, so the call would be denied: %w", err)
		}
		return nil
	case "replay":
		return cmdReplay(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, policyUsage)
		return nil
	default:
		fmt.Fprintf(stderr, "gateway policy: unknown subcommand %q\n%s", args[0], policyUsage)
		return errUsage
	}
}
