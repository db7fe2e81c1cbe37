package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/mod/sumdb/note"
)

// Witness keeps signed checkpoints somewhere the log's own disk is not.
type Witness interface {
	// Name describes the witness for messages (never with credentials).
	Name() string
	// Publish stores (or sends) the latest signed checkpoint of origin.
	Publish(ctx context.Context, origin string, signed []byte) error
	// Latest returns the latest signed checkpoint of origin, nil when the
	// witness holds none. ErrWriteOnly: the witness cannot be read back.
	Latest(ctx context.Context, origin string) ([]byte, error)
}

// ErrWriteOnly is returned by Latest of a witness that only receives.
var ErrWriteOnly = errors.New("witness cannot be read back")

// RedisCheckpointPrefix prefixes the Redis key holding an origin's latest
// signed checkpoint: harness:audit:checkpoint:<origin>.
const RedisCheckpointPrefix = "harness:audit:checkpoint:"

// RedisWitness keeps the latest checkpoint of each origin under its own key.
// A checkpoint smaller than the stored one, or of the same size with a
// different root, is refused: the witness never goes back.
type RedisWitness struct {
	Client redis.UniversalClient
}

// Name implements Witness.
func (w *RedisWitness) Name() string { return "redis" }

// publishScript stores ARGV[1] (a signed checkpoint of size ARGV[2], root
// line ARGV[3]) unless the stored one is larger or forks at the same size.
var publishScript = redis.NewScript(`
local old = redis.call('GET', KEYS[1])
if old then
  local _, _, size, root = string.find(old, "^[^\n]*\n(%d+)\n([^\n]*)\n")
  if size then
    local o, n = tonumber(size), tonumber(ARGV[2])
    if o > n then return redis.error_reply('witness holds a larger checkpoint (size ' .. size .. ')') end
    if o == n and root ~= ARGV[3] then return redis.error_reply('witness holds a different root at size ' .. size) end
  end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
`)

// Publish implements Witness.
func (w *RedisWitness) Publish(ctx context.Context, origin string, signed []byte) error {
	c, err := ParseCheckpoint(noteText(signed))
	if err != nil {
		return err
	}
	lines := strings.SplitN(c.Text(), "\n", 4)
	if err := publishScript.Run(ctx, w.Client, []string{RedisCheckpointPrefix + origin}, signed, c.Size, lines[2]).Err(); err != nil {
		return fmt.Errorf("redis witness: %w", err)
	}
	return nil
}

// Latest implements Witness.
func (w *RedisWitness) Latest(ctx context.Context, origin string) ([]byte, error) {
	b, err := w.Client.Get(ctx, RedisCheckpointPrefix+origin).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("redis witness: %w", err)
	}
	return b, nil
}

// Origins lists the origins the Redis witness holds checkpoints for.
func (w *RedisWitness) Origins(ctx context.Context) ([]string, error) {
	var out []string
	iter := w.Client.Scan(ctx, 0, RedisCheckpointPrefix+"*", 100).Iterator()
	for iter.Next(ctx) {
		out = append(out, strings.TrimPrefix(iter.Val(), RedisCheckpointPrefix))
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("redis witness: %w", err)
	}
	return out, nil
}

// FileWitness keeps the latest signed checkpoint in Path, replaced
// atomically (a temporary file in the same directory, fsynced, renamed).
type FileWitness struct {
	Path string
}

// Name implements Witness.
func (w *FileWitness) Name() string { return "file:" + w.Path }

// Publish implements Witness. The origin is in the checkpoint itself.
func (w *FileWitness) Publish(_ context.Context, _ string, signed []byte) error {
	dir := filepath.Dir(w.Path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(w.Path)+".tmp*")
	if err != nil {
		return fmt.Errorf("file witness: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(signed)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, w.Path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("file witness: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// Latest implements Witness: the file's checkpoint if it is of origin.
func (w *FileWitness) Latest(_ context.Context, origin string) ([]byte, error) {
	b, err := readLimited(w.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("file witness: %w", err)
	}
	if first, _, _ := strings.Cut(string(b), "\n"); first != origin {
		return nil, nil
	}
	return b, nil
}

// HTTPWitness POSTs every signed checkpoint (text/plain) to URL: a witness
// service, a transparency log's submission endpoint, a ticketing webhook.
type HTTPWitness struct {
	URL    string
	Client *http.Client // default: a client with a 5 s timeout
}

// Name implements Witness.
func (w *HTTPWitness) Name() string {
	u := w.URL
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		u = u[:i]
	}
	return u
}

// Publish implements Witness.
func (w *HTTPWitness) Publish(ctx context.Context, _ string, signed []byte) error {
	c := w.Client
	if c == nil {
		c = &http.Client{Timeout: 5 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(signed))
	if err != nil {
		return fmt.Errorf("witness %s: %w", w.Name(), withoutURL(err))
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("witness %s: %w", w.Name(), withoutURL(err))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("witness %s: status %d", w.Name(), resp.StatusCode)
	}
	return nil
}

// withoutURL drops the URL of a *url.Error, which names it in full, query
// included, where Name leaves the query out (it may carry a credential):
// errors, and the logs they reach, keep only the cause.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Latest implements Witness: an HTTP witness is write-only.
func (w *HTTPWitness) Latest(context.Context, string) ([]byte, error) { return nil, ErrWriteOnly }

// readLimited reads a checkpoint file of at most maxCheckpoint bytes.
func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCheckpoint+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxCheckpoint {
		return nil, fmt.Errorf("%s: %w: larger than %d bytes", path, ErrCheckpoint, maxCheckpoint)
	}
	return b, nil
}

// ReadCheckpointFile reads and verifies a signed checkpoint file.
func ReadCheckpointFile(path string, v note.Verifier) (Checkpoint, []byte, error) {
	b, err := readLimited(path)
	if err != nil {
		return Checkpoint{}, nil, fmt.Errorf("reading checkpoint: %w", err)
	}
	c, err := OpenCheckpoint(b, v)
	if err != nil {
		return Checkpoint{}, nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, b, nil
}

// noteText returns the text of a signed note (before the blank line).
func noteText(signed []byte) string {
	s := string(signed)
	if i := strings.Index(s, "\n\n"); i >= 0 {
		return s[:i+1]
	}
	return s
}
