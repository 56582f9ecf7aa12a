package app

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/config"
)

// Exit codes of `audit verify` and `audit query`: 1 is kept for evidence
// of tampering, so that a script can tell it from a typo.
const (
	exitTampered = 1
	exitUsage    = 2
)

func newAuditCmd(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Verify and search the hash-chained audit log",
	}
	cmd.AddCommand(newAuditVerifyCmd(stdout, stderr), newAuditQueryCmd(stdout, stderr))
	return cmd
}

func newAuditVerifyCmd(stdout, stderr io.Writer) *cobra.Command {
	var (
		keyRefs []string
		verbose bool
	)
	cmd := &cobra.Command{
		Use:   "verify [--key env:NAME]... FILE...",
		Short: "Check the hash chain of audit files and report the first changed, removed, inserted or reordered line",
		Long: `verify reads the files in the order given — rotated backups oldest first,
then the current file; a shell glob such as /var/log/gatehouse/audit*.log
lists them in that order — and checks every line's hash, its seq and its
link to the line before. It stops at the first problem and prints it as
file:line and why.

Losses the writer recorded (events dropped while the buffer was full,
writes that failed) are reported as recorded gaps, not as tampering.

Exit status: 0 when the files are intact (with a summary), 1 when a line
was changed, removed, inserted or reordered, 2 when a file cannot be read
or the command line is wrong.

With audit.chainKey set, pass the same reference with --key (env:NAME or
file:PATH); repeat --key for files written before a key rotation.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			files, err := expandFiles(args)
			if err != nil {
				return usageError(stderr, err)
			}
			var keys [][]byte
			for _, ref := range keyRefs {
				k, err := config.ResolveAuditKey(ref)
				if err != nil {
					return usageError(stderr, fmt.Errorf("--key: %w", err))
				}
				keys = append(keys, k)
			}
			rep, err := audit.Verify(audit.Files(files...), keys)
			if err != nil {
				return usageError(stderr, err)
			}
			printReport(stdout, rep, verbose)
			if rep.Problem != nil {
				return &ExitError{Code: exitTampered}
			}
			return nil
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(stderr, err) })
	cmd.Flags().StringArrayVar(&keyRefs, "key", nil, "chain key as env:NAME or file:PATH (repeat for key rotations)")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "list every chain start, gap and torn write (default: the first 20 of each)")
	return cmd
}

// usageError prints err and ends with exit status 2.
func usageError(stderr io.Writer, err error) error {
	fmt.Fprintln(stderr, "gatehouse:", err)
	return &ExitError{Code: exitUsage}
}

// expandFiles keeps each argument in order, expanding a glob pattern that
// the shell left alone (quoted, or on a system without one).
func expandFiles(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		if _, err := os.Stat(a); err == nil || !strings.ContainsAny(a, "*?[") {
			out = append(out, a)
			continue
		}
		m, err := filepath.Glob(a)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", a, err)
		}
		if len(m) == 0 {
			return nil, fmt.Errorf("%s: no such file", a)
		}
		out = append(out, m...)
	}
	return out, nil
}

func printReport(w io.Writer, rep *audit.Report, verbose bool) {
	if p := rep.Problem; p != nil {
		fmt.Fprintf(w, "TAMPERED %s: %s\n", p.Pos, p.Msg)
		fmt.Fprintf(w, "%d %s verified before it, in %d %s\n", rep.Lines, plural(int(rep.Lines), "line", "lines"), rep.Files, plural(rep.Files, "file", "files"))
		if rep.Lines > 0 {
			fmt.Fprintf(w, "last good line: %s seq %d %s\n", rep.Head.Pos, rep.Head.Seq, rep.Head.Time.UTC().Format(time.RFC3339Nano))
		}
		return
	}
	torn := "no torn writes"
	if rep.TornCount > 0 {
		torn = fmt.Sprintf("%d torn %s (%d bytes)", rep.TornCount, plural(rep.TornCount, "write", "writes"), rep.TornBytes)
	}
	fmt.Fprintf(w, "ok: %d %s, %d %s, %d %s, %d %s (%d %s lost), %s\n",
		rep.Files, plural(rep.Files, "file", "files"),
		rep.Lines, plural(int(rep.Lines), "line", "lines"),
		rep.ChainCount, plural(rep.ChainCount, "chain", "chains"),
		rep.GapCount, plural(rep.GapCount, "gap", "gaps"),
		rep.Lost, plural(int(rep.Lost), "event", "events"), torn)
	if rep.Lines == 0 {
		return
	}
	fmt.Fprintf(w, "head: %s seq %d %s hash %s\n", rep.Head.Pos, rep.Head.Seq, rep.Head.Time.UTC().Format(time.RFC3339Nano), rep.HeadHash)
	if rep.Stopped {
		fmt.Fprintln(w, "closed: yes (the last line is audit.stop)")
	} else {
		fmt.Fprintln(w, "closed: no — the writer is running or crashed, or lines were removed from the end; compare the head seq with gatehouse_audit_last_seq")
	}
	limit := 20
	if verbose {
		limit = len(rep.Chains) + len(rep.Gaps) + len(rep.Torn)
	}
	printMarks(w, "chains", rep.Chains, rep.ChainCount, limit, func(m audit.Mark) string { return m.Detail })
	printMarks(w, "gaps (recorded losses)", rep.Gaps, rep.GapCount, limit, func(m audit.Mark) string {
		return fmt.Sprintf("%d %s lost before this line", m.N, plural(int(m.N), "event", "events"))
	})
	printMarks(w, "torn writes (recorded)", rep.Torn, rep.TornCount, limit, func(m audit.Mark) string {
		return fmt.Sprintf("%d bytes of failed writes before this line", m.N)
	})
}

func printMarks(w io.Writer, title string, marks []audit.Mark, count, limit int, text func(audit.Mark) string) {
	if count == 0 {
		return
	}
	fmt.Fprintf(w, "%s:\n", title)
	for i, m := range marks {
		if i == limit {
			break
		}
		fmt.Fprintf(w, "  %s seq %d %s: %s\n", m.Pos, m.Seq, m.Time.UTC().Format(time.RFC3339), text(m))
	}
	if shown := min(len(marks), limit); count > shown {
		fmt.Fprintf(w, "  … and %d more\n", count-shown)
	}
}

func newAuditQueryCmd(stdout, stderr io.Writer) *cobra.Command {
	var (
		f            audit.Filter
		since, until string
		kinds        []string
		output       string
		limit        int
		count        bool
	)
	cmd := &cobra.Command{
		Use:   "query [filters] FILE...",
		Short: "Print the audit lines that match filters, as JSON lines or a table",
		Long: `query streams the files in the order given (rotated backups oldest first,
then the current file) and prints the lines that match every filter given.
A filter repeated matches any of its values; values may hold '*'
wildcards (--subject 'spiffe://prod/*').

--since and --until take an RFC 3339 time (2026-01-02T15:04:05Z), a date
(2026-01-02, UTC) or a duration back from now (90m, 1h, 7d). Times are
compared with each line's event time; --until is exclusive.

JSON output repeats each matching line exactly as written, hash included.
query does not check the chain: run 'gatehouse audit verify' for that.
Lines that are not audit lines are skipped with a warning on standard
error.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			now := time.Now()
			var err error
			if f.Since, err = parseWhen(since, now); err != nil {
				return usageError(stderr, fmt.Errorf("--since: %w", err))
			}
			if f.Until, err = parseWhen(until, now); err != nil {
				return usageError(stderr, fmt.Errorf("--until: %w", err))
			}
			f.Kinds = kinds
			if output != "json" && output != "table" {
				return usageError(stderr, fmt.Errorf("--output: %q is not an output; use json|table", output))
			}
			files, err := expandFiles(args)
			if err != nil {
				return usageError(stderr, err)
			}
			return runQuery(stdout, stderr, files, &f, output, limit, count)
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(stderr, err) })
	fl := cmd.Flags()
	fl.StringVar(&since, "since", "", "only events at or after this time (RFC 3339, date, or duration ago: 1h, 7d)")
	fl.StringVar(&until, "until", "", "only events before this time (RFC 3339, date, or duration ago)")
	fl.StringArrayVar(&f.Subjects, "subject", nil, "subject (repeatable, '*' wildcards)")
	fl.StringArrayVar(&f.Routes, "route", nil, "route id (repeatable)")
	fl.StringArrayVar(&f.Decisions, "decision", nil, "decision: allow, deny, would_deny (repeatable)")
	fl.StringArrayVar(&f.Reasons, "reason", nil, "reason code (repeatable)")
	fl.StringArrayVar(&kinds, "kind", nil, "event kind: authz.decision, webhook.verify, config.change, config.reject, xds.nack, jwks.change, budget.settle, audit.start, audit.stop (repeatable)")
	fl.StringArrayVar(&f.IDs, "id", nil, "decision id, as returned to the client (repeatable)")
	fl.StringArrayVar(&f.RequestIDs, "request-id", nil, "request id (x-request-id) (repeatable)")
	fl.StringVarP(&output, "output", "o", "json", "json (the lines as written) or table")
	fl.IntVar(&limit, "limit", 0, "stop after this many matches (0 = all)")
	fl.BoolVar(&count, "count", false, "print only the number of matching lines")
	return cmd
}

var errLimit = errors.New("limit reached")

func runQuery(stdout, stderr io.Writer, files []string, f *audit.Filter, output string, limit int, count bool) error {
	var tw *tabwriter.Writer
	if output == "table" && !count {
		tw = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "TIME\tSEQ\tKIND\tDECISION\tREASON\tROUTE\tSUBJECT\tMETHOD\tPATH\tID\tDETAIL")
	}
	bw := bufio.NewWriter(stdout)
	n, bad := 0, 0
	err := audit.Scan(audit.Files(files...), func(raw []byte, l *audit.Line) error {
		if !f.Match(&l.Event) {
			return nil
		}
		n++
		switch {
		case count:
		case tw != nil:
			fmt.Fprintln(tw, strings.Join([]string{
				l.Time.UTC().Format("2006-01-02T15:04:05.000Z"), strconv.FormatUint(l.Seq, 10), cell(string(l.Kind), 24),
				cell(l.Decision, 12), cell(l.Reason, 32), cell(l.Route, 32), cell(l.Subject, 48),
				cell(l.Method, 8), cell(l.Path, 48), cell(l.ID, 40), cell(l.Detail, 60),
			}, "\t"))
			// Flush now and then: query streams, and a table of a whole
			// log must not be held in memory.
			if n%256 == 0 {
				if err := tw.Flush(); err != nil {
					return err
				}
			}
		default:
			bw.Write(raw)
			if err := bw.WriteByte('\n'); err != nil {
				return err
			}
		}
		if limit > 0 && n >= limit {
			return errLimit
		}
		return nil
	}, func(p audit.Pos, err error) {
		bad++
		if bad <= 20 {
			fmt.Fprintf(stderr, "warning: %s: skipped: %v\n", p, err)
		}
	})
	if errors.Is(err, errLimit) {
		err = nil
	}
	if err != nil {
		return usageError(stderr, err)
	}
	if bad > 20 {
		fmt.Fprintf(stderr, "warning: %d lines skipped in all\n", bad)
	}
	if tw != nil {
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if count {
		_, err = fmt.Fprintln(stdout, n)
	}
	return err
}

// cell makes a value safe for one table cell: no control characters (a
// subject could otherwise carry terminal escape sequences), at most max
// runes, "-" when empty.
func cell(s string, max int) string {
	if s == "" {
		return "-"
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return '�'
		}
		return r
	}, s)
	if r := []rune(s); len(r) > max {
		s = string(r[:max-1]) + "…"
	}
	return s
}

// parseWhen reads an RFC 3339 time, a date (UTC) or a duration before now
// (with d for days); "" is no bound.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if days, ok := strings.CutSuffix(s, "d"); ok && err != nil {
		var n float64
		if n, err = strconv.ParseFloat(days, 64); err == nil {
			d = time.Duration(n * 24 * float64(time.Hour))
		}
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not a time; use RFC 3339 (2026-01-02T15:04:05Z), a date (2026-01-02) or a duration ago (90m, 1h, 7d)", s)
	}
	if d < 0 {
		return time.Time{}, fmt.Errorf("%q is negative; give how long ago, e.g. 1h", s)
	}
	return now.Add(-d), nil
}
