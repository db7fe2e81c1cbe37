package replay

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// Formats of Write.
const (
	FormatText     = "text"
	FormatMarkdown = "markdown"
	FormatJSON     = "json"
)

// Labels names the policies in a report (directories, URL).
type Labels struct {
	// New is the policy under review, Baseline the one compared with (""
	// for the recorded decisions), Source where the records came from.
	New, Baseline, Source string
}

// Write renders rep in format (text, markdown or json).
func Write(w io.Writer, rep *Report, format string, l Labels) error {
	switch format {
	case FormatText, "":
		return writeText(w, rep, l)
	case FormatMarkdown:
		return writeMarkdown(w, rep, l)
	case FormatJSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	default:
		return fmt.Errorf("unknown format %q (text, markdown or json)", format)
	}
}

// changeLabel is how a change kind reads in a report.
func changeLabel(c string) string {
	switch c {
	case AllowToDeny:
		return "allow → deny"
	case DenyToAllow:
		return "deny → allow"
	case "rate_limit":
		return "rate limit changed"
	default:
		return c + " changed"
	}
}

func (l Labels) against(rep *Report) string {
	if rep.Baseline == "" {
		return "the decisions recorded in the trail"
	}
	return fmt.Sprintf("baseline %s (revision %s)", orDash(l.Baseline), short(rep.Baseline))
}

func summary(rep *Report) string {
	s := fmt.Sprintf("%d of %d replayed decisions change", rep.Changed, rep.Replayed)
	if rep.Changed == 0 {
		s = fmt.Sprintf("no change in %d replayed decisions", rep.Replayed)
	}
	if n := rep.NotReplayableCount(); n > 0 {
		s += fmt.Sprintf("; %d not replayable", n)
	}
	return s
}

func period(rep *Report) string {
	if rep.Replayed == 0 {
		return "no records replayed"
	}
	return fmt.Sprintf("records from %s to %s", ts(rep.From), ts(rep.To))
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func writeText(w io.Writer, rep *Report, l Labels) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Policy replay: %s\n", summary(rep))
	fmt.Fprintf(&b, "  policy    %s (revision %s)\n", orDash(l.New), short(rep.Policy))
	fmt.Fprintf(&b, "  against   %s\n", l.against(rep))
	if l.Source != "" {
		fmt.Fprintf(&b, "  trail     %s\n", l.Source)
	}
	fmt.Fprintf(&b, "  %s; %d decision record(s), %d outside the window, %d other record(s)\n",
		period(rep), rep.Decisions, rep.OutsideWindow, rep.Other)
	last := ""
	for _, g := range rep.Changes {
		if g.Change != last {
			fmt.Fprintf(&b, "\n%s:\n", changeLabel(g.Change))
			last = g.Change
		}
		fmt.Fprintf(&b, "  %6d  tool %s  human %s  agent %s\n", g.Count, clean(g.Tool), clean(orDash(g.Human)), clean(orDash(g.Agent)))
		for _, e := range g.Examples {
			fmt.Fprintf(&b, "          e.g. %s at %s%s\n", clean(e.ID), ts(e.Time), noteText(e.Note))
		}
	}
	if len(rep.NotReplayable) > 0 {
		fmt.Fprintf(&b, "\nnot replayable: %d\n", rep.NotReplayableCount())
		for _, s := range rep.NotReplayable {
			fmt.Fprintf(&b, "  %6d  %s\n", s.Count, s.Reason)
			for _, e := range s.Examples {
				fmt.Fprintf(&b, "          e.g. %s at %s%s\n", clean(orDash(e.ID)), ts(e.Time), noteText(e.Note))
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func noteText(n string) string {
	if n == "" {
		return ""
	}
	return " (" + clean(n) + ")"
}

// clean drops control characters, so a record cannot forge report lines.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
			return -1
		}
		return r
	}, s)
}

// md escapes s for a Markdown table cell: no markup, no HTML, one line.
func md(s string) string {
	var b strings.Builder
	for _, r := range clean(s) {
		switch r {
		case '\\', '`', '*', '_', '[', ']', '(', ')', '#', '|', '<', '>', '!', '~', '@', '&':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func writeMarkdown(w io.Writer, rep *Report, l Labels) error {
	var b strings.Builder
	fmt.Fprintf(&b, "### Policy replay: %s\n\n", md(summary(rep)))
	fmt.Fprintf(&b, "Policy %s (revision %s) against %s; %s.\n",
		md(orDash(l.New)), md(short(rep.Policy)), md(l.against(rep)), md(period(rep)))
	if len(rep.Changes) > 0 {
		b.WriteString("\n| change | tool | human | agent | records | examples |\n|---|---|---|---|---:|---|\n")
		for _, g := range rep.Changes {
			ex := make([]string, len(g.Examples))
			for i, e := range g.Examples {
				ex[i] = md(e.ID) + " " + md(ts(e.Time)) + md(noteText(e.Note))
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %d | %s |\n", md(changeLabel(g.Change)), md(g.Tool),
				md(orDash(g.Human)), md(orDash(g.Agent)), g.Count, strings.Join(ex, "<br>"))
		}
	}
	if len(rep.NotReplayable) > 0 {
		fmt.Fprintf(&b, "\n**Not replayable: %d**\n\n| reason | records | examples |\n|---|---:|---|\n", rep.NotReplayableCount())
		for _, s := range rep.NotReplayable {
			ex := make([]string, len(s.Examples))
			for i, e := range s.Examples {
				ex[i] = md(orDash(e.ID)) + " " + md(ts(e.Time)) + md(noteText(e.Note))
			}
			fmt.Fprintf(&b, "| %s | %d | %s |\n", md(s.Reason), s.Count, strings.Join(ex, "<br>"))
		}
	}
	fmt.Fprintf(&b, "\n<sub>%d decision records, %d outside the window, %d other records. `gateway policy replay`</sub>\n",
		rep.Decisions, rep.OutsideWindow, rep.Other)
	_, err := io.WriteString(w, b.String())
	return err
}
