package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Fsync modes of Config.Fsync.
const (
	// FsyncAlways: Write returns only after an fsync that covers its record.
	// Concurrent writers share one fsync (group commit).
	FsyncAlways = "always"
	// FsyncBatch (the default): Write returns after write(2), before the
	// fsync (concurrent writers share one write(2): group write). A background goroutine fsyncs at most BatchInterval after the
	// first unsynced record, or as soon as BatchRecords records are unsynced.
	FsyncBatch = "batch"
	// FsyncNever: the log never fsyncs except on Close; the OS decides.
	FsyncNever = "never"
)

// Defaults of the batch fsync bounds.
const (
	DefaultBatchInterval = 50 * time.Millisecond
	DefaultBatchRecords  = 256
)

// rotatedLayout is the time layout of the suffix of a rotated file name:
// audit.log → audit.log.20261127T065500.123456789Z. Names sort in chain order.
const rotatedLayout = "20060102T150405.000000000Z"

// maxRecoverWindow bounds how far back Open looks for the last valid record.
const maxRecoverWindow = 4 << 20

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("audit log closed")

// ErrCorrupt is returned by Open when the existing log ends in a complete
// record whose hash does not match (an edit, not a torn write): the chain
// cannot be continued safely. Run Verify and move the file aside.
var ErrCorrupt = errors.New("audit log corrupt")

// ErrLocked: another process holds the audit file's lock.
var ErrLocked = errors.New("audit log in use")

// Config configures Open.
type Config struct {
	// Path of the log file; "-" writes to Output (default: standard output),
	// with no fsync, no rotation and a fresh chain at every Open.
	Path string
	// Fsync is FsyncAlways, FsyncBatch (default when empty) or FsyncNever.
	Fsync string
	// MaxSize rotates the file before a record would make it larger than
	// MaxSize bytes; 0 never rotates. The file is renamed to
	// Path + "." + UTC time (layout 20060102T150405.000000000Z) and a new
	// file starts with a KindRotate record chained to the old file.
	MaxSize int64
	// MaxFiles is how many rotated files are kept (oldest deleted first);
	// 0 keeps them all.
	MaxFiles int
	// BatchInterval bounds how long a record may stay unsynced with
	// FsyncBatch; default DefaultBatchInterval.
	BatchInterval time.Duration
	// BatchRecords triggers an fsync once that many records are unsynced
	// with FsyncBatch; default DefaultBatchRecords.
	BatchRecords int
	// Output receives the records when Path is "-"; default os.Stdout.
	Output io.Writer
	// Merkle maintains the RFC 6962 tree over the records (rebuilt from
	// the existing files at Open) so that TreeHead can be checkpointed.
	Merkle bool
}

// Log is an append-only, hash-chained audit log. It is safe for concurrent use.
type Log struct {
	cfg    Config
	logger *slog.Logger

	mu        sync.Mutex // guards the fields below and the order of records
	w         io.Writer  // l.f, or Output for "-"; swapped only with flushMu held too
	size      int64      // bytes in the current file; changed only with flushMu held too
	seq       uint64     // Seq of the last record chained (written or in cur or in flight)
	prev      string     // Hash of the last record chained
	written   uint64     // Seq of the last record written to the file
	rotatable bool       // the current file holds a record other than its rotate record
	pending   int        // records written since the last batch fsync was scheduled
	err       error      // sticky: the log can no longer be trusted to write
	closed    bool
	cur       *batch // records chained but not yet handed to write(2)
	inflight  int64  // bytes of the batch being written

	// flushMu is held by whoever writes a batch (group write): one write(2)
	// for every record chained since the previous one. Lock order: flushMu,
	// then mu.
	flushMu sync.Mutex

	fileMu sync.RWMutex // write-held while swapping or closing f; read-held while fsyncing
	f      *os.File     // nil for "-"
	isFile bool         // Path is not "-"; immutable

	syncMu sync.Mutex // serialises fsyncs; group commit
	synced uint64     // Seq covered by the last successful fsync

	tree *tree // the Merkle tree of the records; nil unless cfg.Merkle; guarded by mu

	kick chan struct{}
	full chan struct{}
	done chan struct{}
	wg   sync.WaitGroup
}

// batch is the records of one group write, in chain order.
type batch struct {
	*batchData        // until written
	seqBefore  uint64 // the chain tip before the batch (restored on failure)
	prevBefore string
	// done and err are set by the writer of the batch and read by its
	// records' callers, both with flushMu held.
	done bool
	err  error
}

// batchData is a batch's lines and hashes; reused once written.
type batchData struct {
	buf    []byte   // the lines, newline-terminated
	hashes []string // their hashes, for the Merkle tree
}

var batchDatas = sync.Pool{New: func() any { return new(batchData) }}

// release returns b's data for reuse (not a huge buffer).
func (b *batch) release() {
	d := b.batchData
	b.batchData = nil
	if cap(d.buf) > 1<<20 {
		return
	}
	clear(d.hashes)
	d.buf, d.hashes = d.buf[:0], d.hashes[:0]
	batchDatas.Put(d)
}

// Open opens (or creates) the log. On an existing file it resumes the chain
// from the last complete record; a torn tail left by a crash (bytes after the
// last valid record that do not form a complete record) is left in place,
// terminated by a newline, and followed by a KindGap record whose Prev is the
// last good hash. An empty or missing file continues the chain of the newest
// rotated file, if any. Open then writes and fsyncs a KindStart record, so an
// unwritable log fails here rather than on the first call.
func Open(ctx context.Context, cfg Config, logger *slog.Logger) (*Log, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Fsync == "" {
		cfg.Fsync = FsyncBatch
	}
	var problems []error
	if cfg.Path == "" {
		problems = append(problems, errors.New("audit path is empty"))
	}
	switch cfg.Fsync {
	case FsyncAlways, FsyncBatch, FsyncNever:
	default:
		problems = append(problems, fmt.Errorf("audit fsync %q is not always, batch or never", cfg.Fsync))
	}
	if cfg.MaxSize < 0 || cfg.MaxFiles < 0 || cfg.BatchInterval < 0 || cfg.BatchRecords < 0 {
		problems = append(problems, errors.New("audit max_size, max_files and batch bounds must not be negative"))
	}
	if err := errors.Join(problems...); err != nil {
		return nil, fmt.Errorf("opening audit log: %w", err)
	}
	if cfg.BatchInterval == 0 {
		cfg.BatchInterval = DefaultBatchInterval
	}
	if cfg.BatchRecords == 0 {
		cfg.BatchRecords = DefaultBatchRecords
	}
	l := &Log{
		cfg:    cfg,
		logger: logger,
		prev:   ZeroHash,
		kick:   make(chan struct{}, 1),
		full:   make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	if cfg.Path == "-" {
		l.w = cfg.Output
		if l.w == nil {
			l.w = os.Stdout
		}
		l.cfg.MaxSize = 0
	} else if err := l.openTree(); err != nil {
		return nil, err
	} else if err := l.openFile(ctx); err != nil {
		return nil, err
	}
	start := &Record{Kind: KindStart, Reason: "audit log opened"}
	l.mu.Lock()
	seq, err := l.appendLocked(ctx, start)
	l.mu.Unlock()
	if err == nil && l.isFile {
		err = l.syncTo(seq)
	}
	if err != nil {
		if l.isFile {
			_ = l.f.Close()
		}
		return nil, fmt.Errorf("opening audit log: %w", err)
	}
	if l.cfg.Fsync == FsyncBatch && l.isFile {
		l.wg.Add(1)
		go l.batchLoop()
	}
	return l, nil
}

// openFile recovers the chain state and opens the file for appending.
func (l *Log) openFile(ctx context.Context) error {
	path := l.cfg.Path
	// The file is opened and locked before anything is read or written: a
	// second gateway on the same file stops here, the chain untouched.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("opening audit log: %w", err)
	}
	if err := lockFile(f); err != nil {
		_ = f.Close()
		return fmt.Errorf("opening audit log: %w", err)
	}
	st, err := recoverTail(path)
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("opening audit log: %w", err)
	}
	switch {
	case st.last != nil:
		l.seq, l.prev = st.last.Seq, st.last.Hash
	default:
		// Continue the chain of the newest rotated file, if any.
		rotated, err := rotatedFiles(path)
		if err != nil {
			_ = f.Close()
			return fmt.Errorf("opening audit log: %w", err)
		}
		if n := len(rotated); n > 0 {
			rst, err := recoverTail(rotated[n-1])
			if err != nil {
				_ = f.Close()
				return fmt.Errorf("opening audit log: %w", err)
			}
			if rst.last == nil {
				_ = f.Close()
				return fmt.Errorf("opening audit log: %w: no complete record in %s", ErrCorrupt, rotated[n-1])
			}
			l.seq, l.prev = rst.last.Seq, rst.last.Hash
		}
	}
	l.f, l.w, l.size, l.isFile = f, f, st.size, true
	if st.size == 0 {
		syncDir(path, l.logger)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if st.size > 0 && !st.endsWithNewline {
		if err := l.writeLocked([]byte("\n")); err != nil {
			_ = f.Close()
			return fmt.Errorf("opening audit log: terminating the last line: %w", err)
		}
	}
	if st.badBytes > 0 {
		gap := &Record{Kind: KindGap, Reason: fmt.Sprintf(
			"torn write: %d bytes (%d lines) after record %d are not a complete record; left in place",
			st.badBytes, st.badLines, l.seq)}
		l.logger.WarnContext(ctx, "audit log had a torn tail; continuing after a gap record",
			"path", path, "bytes", st.badBytes, "after_seq", l.seq)
		if _, err := l.appendLocked(ctx, gap); err != nil {
			_ = f.Close()
			return fmt.Errorf("opening audit log: %w", err)
		}
	}
	// A file that was already there may rotate at the next record (not
	// before the gap record: it must follow the torn lines it explains).
	l.rotatable = st.size > 0
	return nil
}

// tailState is what Open learns from the end of an existing file.
type tailState struct {
	size            int64
	last            *Record // last valid record; nil if none
	badBytes        int64   // bytes after last that are not complete records
	badLines        int
	endsWithNewline bool
}

// recoverTail reads backwards from the end of path to the last valid record.
// Only lines that are not complete records (torn writes) may follow it; a
// complete record with a wrong hash is ErrCorrupt. A missing file is empty.
func recoverTail(path string) (tailState, error) {
	var st tailState
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return st, err
	}
	st.size = fi.Size()
	if st.size == 0 {
		return st, nil
	}
	for win := int64(64 << 10); ; win *= 2 {
		start := max(0, st.size-win)
		buf := make([]byte, st.size-start)
		if _, err := f.ReadAt(buf, start); err != nil && !errors.Is(err, io.EOF) {
			return st, err
		}
		st.endsWithNewline = buf[len(buf)-1] == '\n'
		body := buf
		if st.endsWithNewline {
			body = buf[:len(buf)-1]
		}
		st.last, st.badBytes, st.badLines = nil, 0, 0
		for {
			i := bytes.LastIndexByte(body, '\n')
			if i < 0 && start > 0 {
				break // the line may begin before the window: widen it
			}
			line := body[i+1:]
			r, ok, derr := decodeLine(line)
			switch {
			case derr == nil && ok:
				st.last = r
				st.badBytes = max(0, st.size-(start+int64(i+1)+int64(len(line))+1))
				return st, nil
			case derr == nil:
				return st, fmt.Errorf("%w: %s: record %d (offset %d) does not match its hash",
					ErrCorrupt, path, r.Seq, start+int64(i+1))
			}
			st.badLines++
			if i < 0 {
				// Whole file read, nothing valid.
				st.badBytes = st.size
				return st, nil
			}
			body = body[:i]
		}
		if win >= maxRecoverWindow {
			return st, fmt.Errorf("%w: %s: no complete record in the last %d bytes", ErrCorrupt, path, win)
		}
	}
}

// Write appends r to the log, filling r.ID (a UUIDv7) if empty, r.Time
// (now) if zero, r.TraceID from the span in ctx if empty, and always r.Seq,
// r.Prev and r.Hash. Time is stored in UTC. Cancellation of ctx does not
// abort the write: a refused or abandoned call is audited too.
//
// Records of concurrent callers are chained in order and written together
// (group write): one write(2) for all the records chained while the
// previous one was in progress. Write returns once that write(2) has
// succeeded or failed (with FsyncAlways, once an fsync covers the record).
// An error means the record is not in the file and the caller must refuse
// the call; when a group write fails, every record of the group fails and
// the chain resumes after the last record written. After an unrecoverable
// I/O error every later Write fails too (fail closed).
func (l *Log) Write(ctx context.Context, r *Record) error {
	if r == nil {
		return errors.New("writing audit record: nil record")
	}
	l.mu.Lock()
	b, err := l.enqueueLocked(ctx, r)
	l.mu.Unlock()
	switch {
	case errors.Is(err, errRotate):
		err = l.writeRotating(ctx, r)
	case err == nil:
		err = l.flushFor(b)
	}
	if err != nil {
		return err
	}
	if l.isFile && l.cfg.Fsync == FsyncAlways {
		return l.syncTo(r.Seq)
	}
	return nil
}

// errRotate: the record does not fit in the current file; Write takes the
// rotation path.
var errRotate = errors.New("audit file full: rotate")

// enqueueLocked fills in r, chains it and appends its line to the current
// batch, which it returns. l.mu must be held.
func (l *Log) enqueueLocked(ctx context.Context, r *Record) (*batch, error) {
	if err := l.usableLocked(); err != nil {
		return nil, err
	}
	fillRecord(ctx, r)
	r.Seq, r.Prev = l.seq+1, l.prev
	b := l.cur
	if b == nil {
		b = &batch{batchData: batchDatas.Get().(*batchData), seqBefore: l.seq, prevBefore: l.prev}
	}
	n := len(b.buf)
	buf, err := appendEncoded(b.buf, r)
	if err == nil && l.isFile && l.cfg.MaxSize > 0 {
		queued := l.inflight + int64(n)
		if (l.rotatable || queued > 0) && l.size+queued+int64(len(buf)-n)+1 > l.cfg.MaxSize {
			b.buf, err = buf[:n], errRotate
		}
	}
	if err != nil {
		if b != l.cur {
			b.release()
		}
		return nil, err
	}
	b.buf = append(buf, '\n')
	b.hashes = append(b.hashes, r.Hash)
	l.cur = b
	l.seq, l.prev = r.Seq, r.Hash
	return b, nil
}

// flushFor returns once b has been written, writing it (with every record
// chained after it so far) unless another caller already has.
func (l *Log) flushFor(b *batch) error {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	if !b.done {
		l.flushLocked() // b is l.cur: batches leave it only when done
	}
	return b.err
}

// flushLocked writes the current batch in one write(2), without holding
// l.mu. l.flushMu must be held, l.mu not.
func (l *Log) flushLocked() {
	l.mu.Lock()
	b := l.cur
	if b == nil {
		l.mu.Unlock()
		return
	}
	l.cur = nil
	l.inflight = int64(len(b.buf))
	l.mu.Unlock()
	err, sticky := l.writeBatch(b.buf)
	l.mu.Lock()
	l.finishLocked(b, err, sticky)
	l.mu.Unlock()
}

// drainLocked writes the current batch holding l.mu (for rotation and
// Close). l.flushMu and l.mu must be held.
func (l *Log) drainLocked() {
	if b := l.cur; b != nil {
		l.cur = nil
		err, sticky := l.writeBatch(b.buf)
		l.finishLocked(b, err, sticky)
	}
}

// writeBatch writes buf in one write(2) (os.File repeats it on a short
// write). On failure after part of buf it truncates the file back so that
// no torn line is left for the next record to be glued to; sticky is set
// when that is impossible. l.flushMu must be held (l.w, l.f and l.size are
// stable then).
func (l *Log) writeBatch(buf []byte) (err, sticky error) {
	n, err := l.w.Write(buf)
	if err == nil && n < len(buf) {
		err = io.ErrShortWrite
	}
	if err == nil || n == 0 {
		return err, nil
	}
	if !l.isFile {
		return err, err // a stream cannot be repaired
	}
	if terr := l.f.Truncate(l.size); terr != nil {
		return err, errors.Join(err, terr)
	}
	return err, nil
}

// finishLocked records the outcome of writing b: on success the records
// join the file, the Merkle tree and the fsync batch; on failure they all
// fail, and so do the records chained after them (in l.cur), and the chain
// resumes after the last record written. l.flushMu and l.mu must be held.
func (l *Log) finishLocked(b *batch, err, sticky error) {
	l.inflight = 0
	b.done = true
	defer b.release()
	if err == nil {
		l.size += int64(len(b.buf))
		l.written = b.seqBefore + uint64(len(b.hashes))
		for _, h := range b.hashes {
			l.treeAppendLocked(h)
		}
		l.rotatable = true
		l.notePendingLocked(len(b.hashes))
		return
	}
	if sticky != nil && l.err == nil {
		l.err = sticky
	}
	b.err = fmt.Errorf("writing audit record: %w", err)
	l.seq, l.prev = b.seqBefore, b.prevBefore
	if c := l.cur; c != nil {
		l.cur = nil
		c.release()
		c.done = true
		c.err = fmt.Errorf("writing audit record: a record chained before it failed: %w", err)
	}
}

// notePendingLocked counts n written records towards the next batch fsync
// (FsyncBatch) and wakes the batch loop. l.mu must be held.
func (l *Log) notePendingLocked(n int) {
	if !l.isFile || l.cfg.Fsync != FsyncBatch || n == 0 {
		return
	}
	first := l.pending == 0
	l.pending += n
	switch {
	case l.pending >= l.cfg.BatchRecords:
		signal(l.full)
		signal(l.kick)
	case first:
		signal(l.kick)
	}
}

// writeRotating writes r when it does not fit in the current file: the
// records chained before it are written to the current file, which is then
// rotated, and r is written to the new one, all with both locks held.
func (l *Log) writeRotating(ctx context.Context, r *Record) error {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.drainLocked()
	if _, err := l.appendLocked(ctx, r); err != nil {
		return err
	}
	l.notePendingLocked(1)
	return nil
}

// usableLocked is nil if records can be written. l.mu must be held.
func (l *Log) usableLocked() error {
	if l.closed {
		return ErrClosed
	}
	if l.err != nil {
		return fmt.Errorf("writing audit record: log failed earlier: %w", l.err)
	}
	return nil
}

// fillRecord sets r's time (UTC), id and trace id when not set.
func fillRecord(ctx context.Context, r *Record) {
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	r.Time = r.Time.UTC()
	if r.ID == "" {
		r.ID = newID(r.Time)
	}
	if r.TraceID == "" {
		if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
			r.TraceID = sc.TraceID().String()
		}
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// appendLocked fills in r and writes its line at once, rotating first if
// needed: Open's records, and Write's rotation path. It returns r.Seq.
// l.mu must be held, and no batch may be pending (l.cur nil, and l.flushMu
// held unless Open is still running).
func (l *Log) appendLocked(ctx context.Context, r *Record) (uint64, error) {
	if err := l.usableLocked(); err != nil {
		return 0, err
	}
	fillRecord(ctx, r)
	r.Seq, r.Prev = l.seq+1, l.prev
	line, err := encode(r)
	if err != nil {
		return 0, err
	}
	if l.isFile && l.cfg.MaxSize > 0 && l.rotatable && l.size+int64(len(line))+1 > l.cfg.MaxSize {
		if err := l.rotateLocked(ctx, r.Time); err != nil {
			return 0, err
		}
		r.Seq, r.Prev = l.seq+1, l.prev
		if line, err = encode(r); err != nil {
			return 0, err
		}
	}
	line = append(line, '\n')
	if err := l.writeLocked(line); err != nil {
		return 0, fmt.Errorf("writing audit record: %w", err)
	}
	l.seq, l.prev, l.written = r.Seq, r.Hash, r.Seq
	l.treeAppendLocked(r.Hash)
	if r.Kind != KindRotate {
		l.rotatable = true
	}
	return r.Seq, nil
}

// writeLocked writes b at once (see writeBatch); if a torn line cannot be
// removed the log becomes unusable. l.mu must be held, and l.flushMu
// unless Open is still running.
func (l *Log) writeLocked(b []byte) error {
	err, sticky := l.writeBatch(b)
	if err == nil {
		l.size += int64(len(b))
		return nil
	}
	if sticky != nil && l.err == nil {
		l.err = sticky
	}
	return err
}

// lockRotated locks the file created by a rotation (a variable so that a
// test can make it fail).
var lockRotated = lockFile

// rotateLocked fsyncs and renames the current file, opens a new one and
// writes its KindRotate record. l.mu must be held.
func (l *Log) rotateLocked(ctx context.Context, now time.Time) error {
	path := l.cfg.Path
	old := l.f
	if err := old.Sync(); err != nil {
		l.err = fmt.Errorf("fsync before rotation: %w", err)
		return fmt.Errorf("rotating audit log: %w", l.err)
	}
	name, err := l.rotatedName()
	if err != nil {
		return fmt.Errorf("rotating audit log: %w", err)
	}
	l.fileMu.Lock()
	if err := os.Rename(path, name); err != nil {
		l.fileMu.Unlock()
		return fmt.Errorf("rotating audit log: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		l.fileMu.Unlock()
		l.err = fmt.Errorf("creating %s after rotation: %w", path, err)
		return fmt.Errorf("rotating audit log: %w", l.err)
	}
	if err := lockRotated(f); err != nil {
		// The lock moves to the new file; a file this log cannot lock may
		// be another process's to append to: fail closed, as above.
		l.fileMu.Unlock()
		_ = f.Close()
		l.err = fmt.Errorf("locking %s after rotation: %w", path, err)
		return fmt.Errorf("rotating audit log: %w", l.err)
	}
	l.f, l.w, l.size, l.rotatable = f, f, 0, false
	l.fileMu.Unlock()
	if err := old.Close(); err != nil {
		l.logger.WarnContext(ctx, "closing rotated audit file", "path", name, "error", err)
	}
	syncDir(path, l.logger)
	l.pruneLocked(ctx)
	rec := &Record{Time: now, Kind: KindRotate, Reason: "continues " + filepath.Base(name)}
	rec.Seq, rec.Prev = l.seq+1, l.prev
	rec.ID = newID(now)
	line, err := encode(rec)
	if err != nil {
		return err
	}
	if err := l.writeLocked(append(line, '\n')); err != nil {
		return fmt.Errorf("rotating audit log: %w", err)
	}
	l.seq, l.prev, l.written = rec.Seq, rec.Hash, rec.Seq
	l.treeAppendLocked(rec.Hash)
	return nil
}

// rotatedName names the next rotated file after the current time, but
// always after the newest existing one, so names sort in chain order even if
// the clock steps back.
func (l *Log) rotatedName() (string, error) {
	path := l.cfg.Path
	t := time.Now().UTC()
	rotated, err := rotatedFiles(path)
	if err != nil {
		return "", err
	}
	if n := len(rotated); n > 0 {
		last, err := time.Parse(rotatedLayout, strings.TrimPrefix(rotated[n-1], path+"."))
		if err == nil && !t.After(last) {
			t = last.Add(time.Nanosecond)
		}
	}
	name := path + "." + t.Format(rotatedLayout)
	if _, err := os.Lstat(name); err == nil {
		return "", fmt.Errorf("%s already exists", name)
	}
	return name, nil
}

// pruneLocked deletes the oldest rotated files beyond MaxFiles.
func (l *Log) pruneLocked(ctx context.Context) {
	if l.cfg.MaxFiles <= 0 {
		return
	}
	rotated, err := rotatedFiles(l.cfg.Path)
	if err != nil {
		l.logger.WarnContext(ctx, "listing rotated audit files", "error", err)
		return
	}
	for len(rotated) > l.cfg.MaxFiles {
		if err := os.Remove(rotated[0]); err != nil {
			l.logger.WarnContext(ctx, "removing old audit file", "path", rotated[0], "error", err)
		}
		rotated = rotated[1:]
	}
}

// syncTo makes sure an fsync covering record seq has happened. Concurrent
// callers share fsyncs: whoever holds syncMu syncs everything written so far.
func (l *Log) syncTo(seq uint64) error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.mu.Lock()
	upTo, sticky := l.written, l.err
	l.mu.Unlock()
	if sticky != nil {
		return fmt.Errorf("syncing audit log: %w", sticky)
	}
	if l.synced >= seq {
		return nil
	}
	l.fileMu.RLock()
	err := l.f.Sync()
	l.fileMu.RUnlock()
	if err != nil {
		// After a failed fsync the page cache state is unknown: fail closed.
		l.mu.Lock()
		if l.err == nil {
			l.err = fmt.Errorf("fsync: %w", err)
		}
		l.mu.Unlock()
		l.logger.Error("audit log fsync failed; refusing further records", "path", l.cfg.Path, "error", err)
		return fmt.Errorf("syncing audit log: %w", err)
	}
	l.synced = upTo
	return nil
}

// batchLoop performs the FsyncBatch group commits.
func (l *Log) batchLoop() {
	defer l.wg.Done()
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		select {
		case <-l.kick:
		case <-l.done:
			return
		}
		t.Reset(l.cfg.BatchInterval)
		select {
		case <-t.C:
		case <-l.full:
			t.Stop()
		case <-l.done:
			t.Stop()
			return
		}
		l.mu.Lock()
		upTo := l.written
		l.pending = 0
		l.mu.Unlock()
		_ = l.syncTo(upTo) // logged inside; later Writes fail
	}
}

// Close flushes and fsyncs the log and closes the file. Later Writes return
// ErrClosed. Close is idempotent.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	close(l.done)
	l.wg.Wait()
	// Records chained before Close are written (their callers may still be
	// waiting for the group write).
	l.flushMu.Lock()
	l.flushLocked()
	l.flushMu.Unlock()
	if !l.isFile {
		return nil
	}
	l.mu.Lock()
	seq := l.written
	l.mu.Unlock()
	err := l.syncTo(seq)
	l.fileMu.Lock()
	cerr := l.f.Close()
	l.fileMu.Unlock()
	if err = errors.Join(err, cerr); err != nil {
		return fmt.Errorf("closing audit log: %w", err)
	}
	return nil
}

// syncDir fsyncs the directory holding path so a created or renamed file
// survives a crash. Failures are logged: the records themselves are synced.
func syncDir(path string, logger *slog.Logger) {
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		logger.Warn("opening audit directory for fsync", "error", err)
		return
	}
	if err := d.Sync(); err != nil {
		logger.Warn("fsync of audit directory", "error", err)
	}
	_ = d.Close()
}

// rotatedFiles returns the rotated files of path, oldest first.
func rotatedFiles(path string) ([]string, error) {
	matches, err := filepath.Glob(globEscape(path) + ".*")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range matches {
		suffix := strings.TrimPrefix(m, path+".")
		if _, err := time.Parse(rotatedLayout, suffix); err == nil && len(suffix) == len(rotatedLayout) {
			out = append(out, m)
		}
	}
	sort.Strings(out)
	return out, nil
}

func globEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`*?[\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Files returns the files of the chain that ends in path, in chain order:
// its rotated files oldest first, then path itself if it exists. Pass the
// result to Verify or Show.
func Files(path string) ([]string, error) {
	out, err := rotatedFiles(path)
	if err != nil {
		return nil, fmt.Errorf("listing audit files: %w", err)
	}
	if _, err := os.Stat(path); err == nil {
		out = append(out, path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("listing audit files: %w", err)
	}
	return out, nil
}
