package cli

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Human output prints text that others chose: paths and user agents of
// callers, group names and descriptions from Okta, rule descriptions,
// actors. Written raw, an ESC sequence in it would drive the reader's
// terminal (recolour, retitle, move the cursor, rewrite earlier lines) and a
// newline would forge a line of output. So tables and text views escape it;
// json, yaml and csv carry it unchanged, escaped by their own syntax.

// printable reports whether r may be written to a terminal as it is: a
// graphic character or a plain space. C0 and C1 controls, DEL and invisible
// format characters (bidi overrides, zero-width) are not.
func printable(r rune) bool {
	return r == ' ' || unicode.IsPrint(r)
}

// escapeText returns s with every rune that is not printable written as a Go
// escape (\x1b, \n, \r, \t, \u202e) and every byte that is not UTF-8 as \xNN.
// Text with nothing to escape is returned as it is.
func escapeText(s string) string {
	// RuneError stands for an invalid byte here (and for U+FFFD itself,
	// which the loop below then writes as it is).
	i := strings.IndexFunc(s, func(r rune) bool { return r == utf8.RuneError || !printable(r) })
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.WriteString(s[:i])
	for s = s[i:]; s != ""; {
		r, size := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[0])
		case printable(r):
			b.WriteString(s[:size])
		default:
			q := strconv.QuoteRune(r) // '\x1b', '\n', '\u202e'
			b.WriteString(q[1 : len(q)-1])
		}
		s = s[size:]
	}
	return b.String()
}

// maxActorBytes bounds --actor, which every admin event and policy version
// records and every history prints.
const maxActorBytes = 200

// checkActor refuses an --actor (or OKPROXY_ACTOR) that could forge lines or
// drive a terminal wherever it is printed, or bloat every record: control
// and invisible format characters, bytes that are not UTF-8, more than
// maxActorBytes. The message quotes it escaped.
func checkActor(s string) error {
	const what = "actor (--actor or OKPROXY_ACTOR)"
	if len(s) > maxActorBytes {
		return usageErrorf("%s: %d bytes, at most %d", what, len(s), maxActorBytes)
	}
	if !utf8.ValidString(s) {
		return usageErrorf("%s: %q is not valid UTF-8", what, s)
	}
	for _, r := range s {
		if !printable(r) {
			return usageErrorf("%s: %q contains %U, a control or invisible character; an actor is one line of text", what, s, r)
		}
	}
	return nil
}

// textf is fmt.Fprintf for human output: every string argument is escaped
// with escapeText, so only the format itself lays out lines.
func textf(w io.Writer, format string, args ...any) {
	for i, a := range args {
		if s, ok := a.(string); ok {
			args[i] = escapeText(s)
		}
	}
	fmt.Fprintf(w, format, args...)
}
