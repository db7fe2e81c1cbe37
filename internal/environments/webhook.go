package environments

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/agentharness/harness/internal/audit"
)

// MaxWebhookBody bounds a GitHub webhook delivery (GitHub caps payloads at
// 25 MB; pull_request events are far smaller, even with a long description).
const MaxWebhookBody = 5 << 20

// CheckSignature reports whether header is "sha256=" + the lower- or
// upper-case hex HMAC-SHA256 of body under secret, compared in constant
// time. An empty secret never verifies.
func CheckSignature(secret, header string, body []byte) bool {
	if secret == "" {
		return false
	}
	hexSig, ok := strings.CutPrefix(header, "sha256=")
	if !ok || len(hexSig) != 2*sha256.Size {
		return false
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}

// pullRequestEvent is what the webhook reads of a pull_request event.
type pullRequestEvent struct {
	Action      string `json:"action"`
	Number      int    `json:"number"`
	PullRequest struct {
		Number int  `json:"number"`
		Merged bool `json:"merged"`
	} `json:"pull_request"`
	Repository struct {
		FullName string `json:"full_name"`
	} `json:"repository"`
	Sender struct {
		Login string `json:"login"`
	} `json:"sender"`
}

// webhook handles POST /hooks/github: the signature first (401, nothing
// changes), then only pull_request "closed" retires the previews of that
// repository and pull request, merged or not. ping and every other event
// or action are answered and ignored.
func (m *Manager) webhook(w http.ResponseWriter, r *http.Request) error {
	if m.o.WebhookSecret == "" {
		return &apiError{http.StatusNotFound, "not_found", "the GitHub webhook is off (environments.github_webhook_secret is not set)"}
	}
	body, err := readBody(w, r, MaxWebhookBody)
	if err != nil {
		return err
	}
	if !CheckSignature(m.o.WebhookSecret, r.Header.Get("X-Hub-Signature-256"), body) {
		return &apiError{http.StatusUnauthorized, "invalid_signature", "X-Hub-Signature-256 is missing or does not match the body"}
	}
	switch ev := r.Header.Get("X-GitHub-Event"); ev {
	case "ping":
		writeJSON(w, http.StatusOK, map[string]any{"ok": true})
		return nil
	case "pull_request":
	default:
		writeJSON(w, http.StatusAccepted, map[string]any{"ignored": "event " + truncate(ev)})
		return nil
	}
	var ev pullRequestEvent
	if err := json.Unmarshal(body, &ev); err != nil {
		return badRequest("the pull_request event is not valid JSON")
	}
	if ev.Action != "closed" {
		writeJSON(w, http.StatusAccepted, map[string]any{"ignored": "action " + truncate(ev.Action)})
		return nil
	}
	num := ev.PullRequest.Number
	if num == 0 {
		num = ev.Number
	}
	repo := ev.Repository.FullName
	if num <= 0 || repo == "" {
		return badRequest("the pull_request event names no repository.full_name or pull request number")
	}
	ctx := r.Context()
	all, err := m.o.Store.ListEnvironments(ctx)
	if err != nil {
		return err
	}
	why := "webhook: pull_request #" + strconv.Itoa(num) + " closed"
	if ev.PullRequest.Merged {
		why += " (merged)"
	}
	who := &Caller{Subject: "github-webhook", Issuer: "https://github.com", Actor: ev.Sender.Login}
	retired := []string{}
	for name, b := range all {
		e, err := decode(name, b)
		if err != nil || !strings.EqualFold(e.Repository, repo) || e.PullRequest != num {
			continue
		}
		deleted, err := m.o.Store.DeleteEnvironment(ctx, name)
		if err != nil {
			return err
		}
		m.retireHere(ctx, name)
		if deleted {
			_ = m.record(ctx, audit.EnvironmentRetire, e, who, why) // retired all the same; the failure is logged
			retired = append(retired, name)
		}
	}
	sort.Strings(retired)
	writeJSON(w, http.StatusOK, map[string]any{"retired": retired})
	return nil
}
