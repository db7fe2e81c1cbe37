package server

import (
	"context"
	"log/slog"
)

// principalAttrs names the human and the agent on every log line written
// with a context that carries a principal (every line about a call): sub
// alone may be opaque (Dex's is a base64 blob), so email and name go next
// to it when the token has them.
type principalAttrs struct{ slog.Handler }

func (h principalAttrs) Handle(ctx context.Context, r slog.Record) error {
	if p := principalFrom(ctx); p != nil {
		attrs := []slog.Attr{slog.String("subject", p.Subject)}
		if p.Email != "" {
			attrs = append(attrs, slog.String("email", p.Email))
		}
		if p.Name != "" {
			attrs = append(attrs, slog.String("name", p.Name))
		}
		if p.Agent != "" {
			attrs = append(attrs, slog.String("agent", p.Agent))
		}
		have := map[string]bool{} // a line that names one itself keeps its own
		r.Attrs(func(a slog.Attr) bool { have[a.Key] = true; return true })
		r = r.Clone()
		for _, a := range attrs {
			if !have[a.Key] {
				r.AddAttrs(a)
			}
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h principalAttrs) WithAttrs(as []slog.Attr) slog.Handler {
	return principalAttrs{h.Handler.WithAttrs(as)}
}

func (h principalAttrs) WithGroup(name string) slog.Handler {
	return principalAttrs{h.Handler.WithGroup(name)}
}
