package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/agentharness/harness/internal/audit"
	"github.com/agentharness/harness/internal/config"
	"github.com/redis/go-redis/v9"
	"golang.org/x/mod/sumdb/note"
)

// checkpointing is what the audit checkpoints need once the log is open.
type checkpointing struct {
	cfg       *config.Config
	origin    string
	signer    note.Signer
	witnesses []audit.Witness
}

// auditAnchor loads the checkpoint key and witnesses and, before the audit
// log is opened (and so extended), refuses a log that does not match its
// last published checkpoint. nil when audit.checkpoint.key is not set.
func auditAnchor(ctx context.Context, cfg *config.Config, rdb redis.UniversalClient, log *slog.Logger, opts Options) (*checkpointing, error) {
	cp := cfg.Audit.Checkpoint
	if cp.Key == "" {
		log.Info("audit checkpoints off: the hash chain alone does not stop a rewrite of the whole file (set audit.checkpoint.key)")
		return nil, nil
	}
	signer, verifier, err := audit.LoadSigner(cp.Key)
	if err != nil {
		return nil, fmt.Errorf("audit.checkpoint.key: %w", err)
	}
	var ws []audit.Witness
	for _, w := range cp.Witness {
		switch {
		case w == "redis":
			if rdb == nil {
				return nil, fmt.Errorf("audit.checkpoint.witness: redis needs ratelimit.redis_url")
			}
			ws = append(ws, &audit.RedisWitness{Client: rdb})
		case strings.HasPrefix(w, "file:"):
			ws = append(ws, &audit.FileWitness{Path: strings.TrimPrefix(w, "file:")})
		default:
			ws = append(ws, &audit.HTTPWitness{URL: w, Client: &http.Client{Timeout: 5 * time.Second}})
		}
	}
	origin := cfg.CheckpointOrigin()
	alog := log.With("component", "audit")
	if err := audit.CheckStart(ctx, audit.StartCheck{
		Path: cfg.Audit.Path, Origin: origin, Verifier: verifier, Witnesses: ws,
		AcceptNewOrigin: opts.AcceptNewAuditOrigin, Logger: alog,
	}); err != nil {
		return nil, err
	}
	return &checkpointing{cfg: cfg, origin: origin, signer: signer, witnesses: ws}, nil
}

// start publishes a first checkpoint (the start record included) and
// starts the periodic publication.
func (c *checkpointing) start(l *audit.Log, log *slog.Logger) (*audit.Publisher, error) {
	names := make([]string, len(c.witnesses))
	for i, w := range c.witnesses {
		names[i] = w.Name()
	}
	pub, err := audit.NewPublisher(audit.PublisherConfig{
		Log: l, Signer: c.signer, Origin: c.origin, Witnesses: c.witnesses,
		Every: c.cfg.Audit.Checkpoint.Every.D(), Logger: log.With("component", "audit"),
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := pub.Publish(ctx, true); err != nil {
		log.Warn("first audit checkpoint not published everywhere; retried every interval and reported by /readyz", "error", err)
	}
	pub.Start()
	log.Info("audit checkpoints signed and published", "origin", c.origin, "key", c.signer.Name(),
		"every", c.cfg.Audit.Checkpoint.Every, "witnesses", strings.Join(names, ","))
	return pub, nil
}
