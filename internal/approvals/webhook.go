package approvals

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"
)

// SignatureHeader carries "sha256=" + hex HMAC-SHA256 of the body under
// approvals.webhook_secret.
const SignatureHeader = "X-Harness-Signature"

// Webhook POSTs each new request to a URL from a bounded queue served by
// one goroutine: Notify never blocks the call path; when the queue is
// full the notification is dropped and logged.
type Webhook struct {
	url     string
	secret  []byte
	client  *http.Client
	log     *slog.Logger
	queue   chan webhookEvent
	retries int
	backoff time.Duration
}

type webhookEvent struct {
	Text        string    `json:"text"`
	ID          string    `json:"id"`
	URL         string    `json:"url"`
	Tool        string    `json:"tool"`
	Subject     string    `json:"subject"`
	Email       string    `json:"email,omitempty"`
	Agent       string    `json:"agent,omitempty"`
	Environment string    `json:"environment,omitempty"`
	Reason      string    `json:"reason"`
	Approvers   []string  `json:"approvers"`
	Expires     time.Time `json:"expires"`
}

// WebhookQueue bounds the notifications waiting to be sent.
const WebhookQueue = 256

// NewWebhook starts the sender; it stops when ctx ends.
func NewWebhook(ctx context.Context, url, secret string, client *http.Client, log *slog.Logger) *Webhook {
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	w := &Webhook{url: url, secret: []byte(secret), client: client, log: log,
		queue: make(chan webhookEvent, WebhookQueue), retries: 3, backoff: time.Second}
	go w.run(ctx)
	return w
}

// Notify queues a notification of r, whose page is at link.
func (w *Webhook) Notify(r Request, link string) {
	who := r.Email
	if who == "" {
		who = r.Subject
	}
	ev := webhookEvent{
		Text: fmt.Sprintf("Approval needed: %s's agent %s wants to call %s (%s). Approve or deny at %s before %s.",
			who, r.Agent, r.Tool, r.Reason, link, r.Expires.UTC().Format(time.RFC3339)),
		ID: r.ID, URL: link, Tool: r.Tool, Subject: r.Subject, Email: r.Email, Agent: r.Agent,
		Environment: r.Environment, Reason: r.Reason, Approvers: r.Approvers, Expires: r.Expires,
	}
	select {
	case w.queue <- ev:
	default:
		w.log.Warn("approvals: webhook queue full, notification dropped", "request", r.ID)
	}
}

func (w *Webhook) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-w.queue:
			w.send(ctx, ev)
		}
	}
}

// Sign is the signature header value of body under secret.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func (w *Webhook) send(ctx context.Context, ev webhookEvent) {
	body, err := json.Marshal(ev)
	if err != nil {
		return
	}
	delay := w.backoff
	for attempt := 1; ; attempt++ {
		err := w.post(ctx, body)
		if err == nil {
			return
		}
		if attempt > w.retries || ctx.Err() != nil {
			w.log.Warn("approvals: webhook failed, notification dropped", "request", ev.ID, "attempts", attempt, "err", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay *= 2
	}
}

func (w *Webhook) post(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if len(w.secret) > 0 {
		req.Header.Set(SignatureHeader, Sign(w.secret, body))
	}
	resp, err := w.client.Do(req)
	if err != nil {
		// A *url.Error names the full URL, and a webhook URL is a secret
		// (a Slack incoming webhook's path is its credential): keep only
		// the cause, so the log line never carries it.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("webhook: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook answered %d", resp.StatusCode)
	}
	return nil
}
