// Command gateway is Harness: an access gateway that lets AI agents reach
// internal APIs over MCP only on behalf of a human, as policy allows, rate
// limited, redacted and audited.
//
//	gateway serve --config FILE     run the gateway
//	gateway demo                    everything on one machine, nothing to install
//	gateway validate --config FILE  check a configuration, listing every problem
//	gateway audit verify FILE...    check the audit trail's hash chain (and, with
//	                                --checkpoint/--witness and --key, its Merkle tree)
//	gateway audit prove FILE...     inclusion or consistency proof against checkpoints
//	gateway audit keygen NAME       checkpoint signer (NAME.key) and verifier (NAME.pub) keys
//	gateway audit show FILE...      print audit records for humans
//	gateway audit tail FILE         follow the audit trail, filtered
//	gateway policy test [DIR]       run the Rego tests of a policy
//	gateway policy eval --input F   print the decision for one input
//	gateway policy replay --dir NEW AUDIT...  what a policy change does to recorded traffic
//	gateway tools pins --config F   list pinned MCP tool definitions and changes
//	gateway tools approve --config F TOOL|--all  approve changed definitions
//	gateway env create NAME --url GATEWAY --token-file F --upstream crm=URL  open a preview environment
//	gateway env list|retire NAME    list or retire preview environments
//	gateway version                 print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `Harness — an access gateway for AI agents.

Usage:
  gateway <command> [flags]

Commands:
  serve     run the gateway (gateway serve --config FILE)
  demo      run everything on one machine with built-in sample API, issuer and tokens
  validate  check a configuration file and list every problem
  audit     verify, prove, show or tail the audit trail; keygen for checkpoints
  policy    test a policy, evaluate one input, or replay the audit trail against a new policy
  tools     list or approve the pinned tool definitions of MCP upstreams
  env       create, list or retire preview environments (per branch, from CI)
  version   print the version

Run 'gateway <command> --help' for a command's flags.
`

// errUsage marks a usage error already reported to the user (exit code 2).
var errUsage = errors.New("usage")

// exitError carries a specific exit code without printing more.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func main() {
	// The gateway allocates per call and holds little: trade memory for
	// fewer collections unless the operator chose (GOGC, GOMEMLIMIT).
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	var ee exitError
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	case errors.As(err, &ee):
		os.Exit(ee.code)
	default:
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return cmdServe(ctx, rest, stdout, stderr)
	case "demo":
		return cmdDemo(ctx, rest, stdout, stderr)
	case "validate":
		return cmdValidate(rest, stdout, stderr)
	case "audit":
		return cmdAudit(ctx, rest, stdout, stderr)
	case "policy":
		return cmdPolicy(ctx, rest, stdout, stderr)
	case "tools":
		return cmdTools(ctx, rest, stdout, stderr)
	case "env":
		return cmdEnv(ctx, rest, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "gateway", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "gateway: unknown command %q\n\n%s", cmd, usage)
		return errUsage
	}
}

// newFlags makes a FlagSet whose --help prints a synopsis and the flags.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: gateway %s\n\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags, turning a parse error into errUsage (already printed).
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	return nil
}
