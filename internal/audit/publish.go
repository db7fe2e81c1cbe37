package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// DefaultCheckpointEvery is how often the gateway signs and publishes a
// checkpoint by default.
const DefaultCheckpointEvery = 10 * time.Second

// publishTimeout bounds one publication to one witness.
const publishTimeout = 5 * time.Second

// PublisherConfig configures NewPublisher.
type PublisherConfig struct {
	// Log is the audit log, opened with Merkle.
	Log *Log
	// Signer signs the checkpoints (LoadSigner).
	Signer note.Signer
	// Origin names this replica's log, e.g. gw.example.com/audit/replica-1.
	Origin string
	// Witnesses receive every signed checkpoint.
	Witnesses []Witness
	// Every is the publication interval; default DefaultCheckpointEvery.
	Every  time.Duration
	Logger *slog.Logger
}

// Publisher signs a checkpoint of the log every interval (when the tree
// grew or the last publication failed) and on Close, and publishes it to
// every witness. It runs beside the calls and never blocks them.
type Publisher struct {
	cfg    PublisherConfig
	stop   chan struct{}
	done   chan struct{}
	pubMu  sync.Mutex // serialises publications
	last   []byte     // the last signed checkpoint published everywhere
	lastSz uint64
	clean  bool
	// started is set by Start (before Close may be called).
	started bool

	errMu sync.Mutex
	errs  map[string]error // by witness name: the last publication's failure
}

// NewPublisher returns a publisher; call Start, and Close at the end.
func NewPublisher(cfg PublisherConfig) (*Publisher, error) {
	if cfg.Log == nil || cfg.Signer == nil || cfg.Origin == "" {
		return nil, errors.New("checkpoint publisher: log, signer and origin are required")
	}
	if _, _, ok := cfg.Log.TreeHead(); !ok {
		return nil, errors.New("checkpoint publisher: the audit log was opened without its Merkle tree")
	}
	if cfg.Every <= 0 {
		cfg.Every = DefaultCheckpointEvery
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Publisher{cfg: cfg, stop: make(chan struct{}), done: make(chan struct{}), errs: map[string]error{}}, nil
}

// Start publishes every interval, in a goroutine, until Close.
func (p *Publisher) Start() {
	p.started = true
	go p.run()
}

func (p *Publisher) run() {
	defer close(p.done)
	t := time.NewTicker(p.cfg.Every)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), publishTimeout*time.Duration(max(1, len(p.cfg.Witnesses))))
			_, _ = p.Publish(ctx, false) // failures are logged and reported by Ready
			cancel()
		}
	}
}

// Publish signs the current tree head and sends it to every witness. Unless
// force is set, nothing is done when the tree did not grow since the last
// publication that reached every witness. It returns the signed checkpoint.
func (p *Publisher) Publish(ctx context.Context, force bool) ([]byte, error) {
	p.pubMu.Lock()
	defer p.pubMu.Unlock()
	size, root, _ := p.cfg.Log.TreeHead()
	if !force && p.clean && size == p.lastSz {
		return p.last, nil
	}
	signed, err := SignCheckpoint(Checkpoint{Origin: p.cfg.Origin, Size: size, Root: root}, p.cfg.Signer)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, w := range p.cfg.Witnesses {
		wctx, cancel := context.WithTimeout(ctx, publishTimeout)
		werr := w.Publish(wctx, p.cfg.Origin, signed)
		cancel()
		p.errMu.Lock()
		p.errs[w.Name()] = werr
		p.errMu.Unlock()
		if werr != nil {
			p.cfg.Logger.Warn("audit checkpoint not published to witness", "witness", w.Name(), "size", size, "error", werr)
			errs = append(errs, werr)
		}
	}
	if !bytes.Equal(p.last, signed) {
		p.cfg.Logger.Debug("audit checkpoint", "origin", p.cfg.Origin, "size", size)
	}
	p.last, p.lastSz, p.clean = signed, size, len(errs) == 0
	return signed, errors.Join(errs...)
}

// Ready reports the witnesses whose last publication failed (for /readyz).
func (p *Publisher) Ready(context.Context) error {
	p.errMu.Lock()
	defer p.errMu.Unlock()
	var errs []error
	for name, err := range p.errs {
		if err != nil {
			errs = append(errs, fmt.Errorf("checkpoint witness %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// Close stops the loop and publishes a final checkpoint (call it after the
// last record and before the log is closed).
func (p *Publisher) Close(ctx context.Context) error {
	select {
	case <-p.stop:
		return nil
	default:
	}
	close(p.stop)
	if p.started {
		<-p.done
	}
	_, err := p.Publish(ctx, false)
	return err
}

// StartCheck configures CheckStart.
type StartCheck struct {
	// Path is the audit file; its rotated files are read too.
	Path string
	// Origin is this replica's origin.
	Origin string
	// Verifier checks the witnesses' checkpoints (the gateway's own key).
	Verifier note.Verifier
	// Witnesses are asked for their latest checkpoint of Origin.
	Witnesses []Witness
	// AcceptNewOrigin lets a log with records start a tree history when no
	// witness holds a checkpoint for Origin (the operator's explicit choice).
	AcceptNewOrigin bool
	Logger          *slog.Logger
}

// ErrRefused wraps every reason CheckStart refuses to extend a log.
var ErrRefused = errors.New("refusing to extend the audit log")

// CheckStart refuses to extend a log that does not match the last
// checkpoint published for its origin: it reads the latest checkpoint from
// every witness that can be read back, verifies its signature and
// recomputes the tree over the existing files. A checkpoint larger than the
// log, or whose root differs from the log's root at its size, is a
// rewritten or truncated log. A log with records but no checkpoint anywhere
// is refused unless AcceptNewOrigin.
func CheckStart(ctx context.Context, sc StartCheck) error {
	log := sc.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var cps []Checkpoint
	readable := 0
	for _, w := range sc.Witnesses {
		b, err := w.Latest(ctx, sc.Origin)
		if errors.Is(err, ErrWriteOnly) {
			continue
		}
		readable++
		if err != nil {
			return fmt.Errorf("%w: cannot read the last checkpoint of %s from witness %s: %w", ErrRefused, sc.Origin, w.Name(), err)
		}
		if b == nil {
			continue
		}
		c, err := OpenCheckpoint(b, sc.Verifier)
		if err != nil {
			return fmt.Errorf("%w: witness %s holds a checkpoint of %s that the configured key does not verify: %w", ErrRefused, w.Name(), sc.Origin, err)
		}
		if c.Origin != sc.Origin {
			return fmt.Errorf("%w: witness %s holds a checkpoint of origin %q, not %q", ErrRefused, w.Name(), sanitize(c.Origin), sc.Origin)
		}
		cps = append(cps, c)
	}
	files, err := Files(sc.Path)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		if len(cps) > 0 && maxSize(cps) > 0 {
			return fmt.Errorf("%w: %s does not exist but checkpoint %s commits to %d records: the log was removed",
				ErrRefused, sc.Path, cps[0].String(), maxSize(cps))
		}
		return nil
	}
	n, err := CheckLog(files, cps...)
	if err != nil {
		return fmt.Errorf("%w %s: %w", ErrRefused, sc.Path, err)
	}
	switch {
	case len(cps) > 0:
		log.Info("audit log matches its last published checkpoint", "origin", sc.Origin, "checkpoint_size", maxSize(cps), "log_size", n)
	case readable == 0:
		log.Warn("no witness can be read back: the audit log was not checked against its last checkpoint", "origin", sc.Origin)
	case n > 0 && !sc.AcceptNewOrigin:
		return fmt.Errorf("%w: no witness holds a checkpoint of origin %s, but %s already holds %d records; if this origin is new (first use of checkpoints, or a renamed replica), start once with --accept-new-audit-origin",
			ErrRefused, sc.Origin, sc.Path, n)
	case n > 0:
		log.Warn("accepting a new audit origin for an existing log (--accept-new-audit-origin)", "origin", sc.Origin, "records", n)
	}
	return nil
}

func maxSize(cps []Checkpoint) uint64 {
	var m uint64
	for _, c := range cps {
		m = max(m, c.Size)
	}
	return m
}
