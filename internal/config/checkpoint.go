package config

import (
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"
)

// replicaName is what audit.checkpoint.replica accepts (it enters the
// checkpoint's origin line).
var replicaName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// validateCheckpoint checks audit.checkpoint.
func (c *Config) validateCheckpoint() Problems {
	var ps Problems
	bad := func(path, format string, args ...any) {
		ps = append(ps, Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	if e := c.Audit.Export.OTLPEndpoint; e != "" {
		if err := checkURL(e, false); err != nil {
			bad("audit.export.otlp_endpoint", "%v", err)
		}
	}
	cp := c.Audit.Checkpoint
	if cp.Every < Duration(time.Second) {
		bad("audit.checkpoint.every", "must be at least 1s, got %s", cp.Every)
	}
	if cp.Replica != "" && !replicaName.MatchString(cp.Replica) {
		bad("audit.checkpoint.replica", "%q must be 1-63 characters of A-Z a-z 0-9 . _ - (it names the replica in the checkpoint origin)", cp.Replica)
	}
	if cp.Key == "" {
		if len(cp.Witness) > 0 {
			bad("audit.checkpoint.key", "required when audit.checkpoint.witness is set")
		}
		return ps
	}
	if c.Audit.Path == "-" {
		bad("audit.checkpoint.key", "checkpoints need an audit file, not stdout (audit.path: -)")
	}
	if c.Audit.MaxFiles > 0 {
		bad("audit.max_files", "must be 0 with audit.checkpoint.key: the Merkle tree is recomputed from the whole trail at start; archive rotated files instead of deleting them")
	}
	if _, err := os.Stat(cp.Key); err != nil {
		bad("audit.checkpoint.key", "%v", err)
	}
	if len(cp.Witness) == 0 {
		bad("audit.checkpoint.witness", "name at least one witness (redis, file:PATH or https://…): a checkpoint kept only beside the log proves nothing")
	}
	for i, w := range cp.Witness {
		p := fmt.Sprintf("audit.checkpoint.witness[%d]", i)
		switch {
		case w == "redis":
			if c.RateLimit.RedisURL == "" {
				bad(p, "redis needs ratelimit.redis_url")
			}
		case strings.HasPrefix(w, "file:"):
			if strings.TrimPrefix(w, "file:") == "" {
				bad(p, "file: needs a path")
			}
		case strings.HasPrefix(w, "https://"), strings.HasPrefix(w, "http://"):
			u, err := url.Parse(w)
			switch {
			case err != nil || u.Host == "":
				bad(p, "not a URL")
			case u.User != nil:
				bad(p, "must not carry credentials")
			default:
				if err := secureURL(w); err != nil {
					bad(p, "%v", err)
				}
			}
		default:
			bad(p, "%q is not redis, file:PATH or an https:// URL", w)
		}
	}
	return ps
}

// CheckpointOrigin returns this replica's checkpoint origin:
// <public_url host>/audit/<replica>, the replica defaulting to the host name.
func (c *Config) CheckpointOrigin() string {
	host := c.PublicURL
	if u, err := url.Parse(c.PublicURL); err == nil && u.Hostname() != "" {
		host = u.Hostname() // not the port: the origin outlives a port change
	}
	replica := c.Audit.Checkpoint.Replica
	if replica == "" {
		replica, _ = os.Hostname()
		if replica == "" {
			replica = "gateway"
		}
	}
	return host + "/audit/" + replica
}
