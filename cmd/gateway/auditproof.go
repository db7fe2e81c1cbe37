package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"strings"

	"github.com/agentharness/harness/internal/audit"
	"github.com/agentharness/harness/internal/ratelimit"
	"golang.org/x/mod/sumdb/note"
)

// listFlag is a flag that may be given several times.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// parseMixed parses flags given before, between or after the positional
// arguments (gateway audit verify FILE... --checkpoint CP).
func parseMixed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parse(fs, args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// cmdAuditKeygen writes NAME.key (0600) and NAME.pub in the current directory.
func cmdAuditKeygen(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("audit keygen", "audit keygen NAME   (writes NAME.key, the signer key, and NAME.pub, the verifier key)", stderr)
	pos, err := parseMixed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || strings.ContainsAny(pos[0], `/\`) || strings.HasPrefix(pos[0], ".") {
		fs.Usage()
		return errUsage
	}
	name := pos[0]
	skey, vkey, err := audit.GenerateKey(name)
	if err != nil {
		return err
	}
	if err := writeNew(name+".key", skey+"\n", 0o600); err != nil {
		return err
	}
	if err := writeNew(name+".pub", vkey+"\n", 0o644); err != nil {
		_ = os.Remove(name + ".key")
		return err
	}
	fmt.Fprintf(stdout, "wrote %s.key (signer key: audit.checkpoint.key; keep it secret) and %s.pub (verifier key: hand it to auditors)\n", name, name)
	return nil
}

func writeNew(path, content string, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("writing key: %w", err)
	}
	if _, err := f.WriteString(content); err != nil {
		_ = f.Close()
		return fmt.Errorf("writing key: %w", err)
	}
	return f.Close()
}

// cmdAuditVerify checks the chain and, with checkpoints, the Merkle tree;
// or, with --proof, a proof without the log.
func cmdAuditVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("audit verify", `audit verify [--checkpoint CP]... [--witness redis://…|file:PATH] [--origin O] --key VERIFIER FILE...
       audit verify --proof P --key VERIFIER
  (a rotated trail: name every file, oldest first)`, stderr)
	var cpFiles listFlag
	fs.Var(&cpFiles, "checkpoint", "a signed checkpoint file; may be given several times")
	keyPath := fs.String("key", "", "the verifier key (NAME.pub); needed with --checkpoint, --witness and --proof")
	witness := fs.String("witness", "", "fetch the latest checkpoint: redis://… or file:PATH")
	origin := fs.String("origin", "", "the origin to fetch from a Redis witness (default: the only one it holds)")
	proofPath := fs.String("proof", "", "check a proof from `gateway audit prove` (no log needed)")
	files, err := parseMixed(fs, args)
	if err != nil {
		return err
	}
	var v note.Verifier
	if *keyPath != "" {
		if v, err = audit.LoadVerifier(*keyPath); err != nil {
			return err
		}
	}
	if *proofPath != "" {
		if v == nil || len(files) > 0 {
			fs.Usage()
			return errUsage
		}
		return verifyProofFile(*proofPath, v, stdout)
	}
	if len(files) == 0 {
		fs.Usage()
		return errUsage
	}
	if (len(cpFiles) > 0 || *witness != "") && v == nil {
		fmt.Fprintln(stderr, "gateway audit verify: --key VERIFIER is required to check checkpoints")
		return errUsage
	}
	res, err := audit.Verify(files...)
	if err != nil {
		return err
	}
	for _, g := range res.Gaps {
		fmt.Fprintf(stdout, "gap: %s:%d: %s\n", g.File, g.Line, g.Reason)
	}
	failed := false
	if !res.OK() {
		fmt.Fprintf(stdout, "TAMPERED after %d intact record(s): %s\n", res.Records, res.Bad.String())
		failed = true
	}
	var cps []audit.Checkpoint
	for _, p := range cpFiles {
		c, _, err := audit.ReadCheckpointFile(p, v)
		if err != nil {
			return err
		}
		cps = append(cps, c)
	}
	if *witness != "" {
		c, err := fetchWitness(ctx, *witness, *origin, v)
		if err != nil {
			return err
		}
		cps = append(cps, c)
	}
	if len(cps) > 0 {
		n, err := audit.CheckLog(files, cps...)
		var ce *audit.CheckError
		switch {
		case errors.As(err, &ce):
			fmt.Fprintf(stdout, "TAMPERED: %s\n", ce.Error())
			return exitError{code: 1}
		case err != nil:
			fmt.Fprintf(stdout, "TAMPERED: %v\n", err)
			return exitError{code: 1}
		}
		for _, c := range cps {
			fmt.Fprintf(stdout, "checkpoint %s: matches the first %d of %d record(s)\n", c.String(), c.Size, n)
		}
	}
	if failed {
		return exitError{code: 1}
	}
	fmt.Fprintf(stdout, "intact: %d record(s)\n", res.Records)
	return nil
}

// fetchWitness reads the latest checkpoint from redis://… or file:PATH.
func fetchWitness(ctx context.Context, w, origin string, v note.Verifier) (audit.Checkpoint, error) {
	var b []byte
	switch {
	case strings.HasPrefix(w, "file:"):
		c, _, err := audit.ReadCheckpointFile(strings.TrimPrefix(w, "file:"), v)
		if err != nil {
			return audit.Checkpoint{}, err
		}
		if origin != "" && c.Origin != origin {
			return audit.Checkpoint{}, fmt.Errorf("witness %s holds a checkpoint of %q, not %q", w, c.Origin, origin)
		}
		return c, nil
	case strings.HasPrefix(w, "redis://"), strings.HasPrefix(w, "rediss://"):
		rdb, err := ratelimit.ParseRedisURL(w)
		if err != nil {
			return audit.Checkpoint{}, fmt.Errorf("--witness: %w", err)
		}
		defer rdb.Close()
		rw := &audit.RedisWitness{Client: rdb}
		if origin == "" {
			origins, err := rw.Origins(ctx)
			if err != nil {
				return audit.Checkpoint{}, err
			}
			if len(origins) != 1 {
				return audit.Checkpoint{}, fmt.Errorf("the Redis witness holds checkpoints of %d origins (%s): name one with --origin", len(origins), strings.Join(origins, ", "))
			}
			origin = origins[0]
		}
		if b, err = rw.Latest(ctx, origin); err != nil {
			return audit.Checkpoint{}, err
		}
		if b == nil {
			return audit.Checkpoint{}, fmt.Errorf("the Redis witness holds no checkpoint of %s", origin)
		}
		return audit.OpenCheckpoint(b, v)
	default:
		return audit.Checkpoint{}, fmt.Errorf("--witness %q: use redis://… or file:PATH", w)
	}
}

func verifyProofFile(path string, v note.Verifier, stdout io.Writer) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading proof: %w", err)
	}
	p, err := audit.ParseProof(b)
	if err != nil {
		return err
	}
	res, err := audit.VerifyProof(p, v)
	if err != nil {
		fmt.Fprintf(stdout, "INVALID: %v\n", err)
		return exitError{code: 1}
	}
	switch res.Type {
	case audit.ProofInclusion:
		fmt.Fprintf(stdout, "proved: record %s (seq %d) is leaf %d of checkpoint %s\n  %s\n",
			res.Record.ID, res.Record.Seq, res.Index, res.To.String(), audit.Format(res.Record))
	default:
		fmt.Fprintf(stdout, "proved: checkpoint %s extends checkpoint %s (append-only)\n", res.To.String(), res.From.String())
	}
	return nil
}

// cmdAuditProve prints an inclusion or consistency proof as JSON.
func cmdAuditProve(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("audit prove", `audit prove --id ID --checkpoint CP [--key VERIFIER] FILE...
       audit prove --from CP1 --to CP2 [--key VERIFIER] FILE...`, stderr)
	id := fs.String("id", "", "the record to prove (its id)")
	cpPath := fs.String("checkpoint", "", "the signed checkpoint the record is proved against")
	from := fs.String("from", "", "consistency: the older signed checkpoint")
	to := fs.String("to", "", "consistency: the newer signed checkpoint")
	keyPath := fs.String("key", "", "the verifier key (NAME.pub): check the checkpoints' signatures first")
	files, err := parseMixed(fs, args)
	if err != nil {
		return err
	}
	inclusion := *id != "" && *cpPath != "" && *from == "" && *to == ""
	consistency := *from != "" && *to != "" && *id == "" && *cpPath == ""
	if len(files) == 0 || inclusion == consistency {
		fs.Usage()
		return errUsage
	}
	var v note.Verifier // nil: the checkpoints' signatures are checked by whoever verifies the proof
	if *keyPath != "" {
		if v, err = audit.LoadVerifier(*keyPath); err != nil {
			return err
		}
	}
	read := func(p string) ([]byte, error) {
		b, err := os.ReadFile(p)
		if errors.Is(err, iofs.ErrNotExist) {
			return nil, fmt.Errorf("checkpoint %s does not exist", p)
		}
		return b, err
	}
	var p *audit.Proof
	if inclusion {
		cp, err := read(*cpPath)
		if err != nil {
			return err
		}
		p, err = audit.ProveInclusion(files, *id, cp, v)
		if err != nil {
			return err
		}
	} else {
		b1, err := read(*from)
		if err != nil {
			return err
		}
		b2, err := read(*to)
		if err != nil {
			return err
		}
		p, err = audit.ProveConsistency(files, b1, b2, v)
		if err != nil {
			return err
		}
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(p)
}
