// Package duration reads and writes okproxy's duration syntax (SPEC §2): Go
// durations plus a leading number of days ("90d", "1.5d", "1d12h", "36h").
// Every command, flag and policy file uses it, so "7d" means the same
// everywhere.
package duration

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// Parse reads a non-negative duration: Go syntax, optionally preceded by
// days, fractions allowed as in Go's units ("7d", "1.5d", "1d12h").
func Parse(s string) (time.Duration, error) {
	in := s
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty duration (want e.g. 90s, 15m, 1h, 7d)")
	}
	bad := errors.New("invalid duration " + strconv.Quote(in) + " (want e.g. 90s, 15m, 1h, 7d)")
	tooLong := errors.New("duration " + strconv.Quote(in) + " is too long (at most " + strconv.Itoa(MaxDays) + "d)")
	const maxDur = time.Duration(MaxDays) * 24 * time.Hour // time.Duration overflows at about 106,751 days
	var days time.Duration
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		// Days are a decimal number, fractions included, as Go reads
		// hours: 1.5d is 36h just as 1.5h is 90m.
		// ".5d" and "1.d" as Go reads ".5h" and "1.h"; not "d" or ".d".
		whole, frac, _ := strings.Cut(strings.TrimPrefix(s[:i], "+"), ".")
		if whole == "" && frac == "" || whole != "" && !digits(whole) || frac != "" && !digits(frac) {
			return 0, bad
		}
		var n int64
		if whole != "" {
			var err error
			if n, err = strconv.ParseInt(whole, 10, 32); err != nil || n > MaxDays {
				return 0, tooLong // all digits: only too many of them fail
			}
		}
		days = time.Duration(n) * 24 * time.Hour
		if frac != "" {
			h, err := time.ParseDuration("0." + frac + "h") // under an hour, exact to the nanosecond
			if err != nil {
				return 0, bad
			}
			days += 24 * h
		}
		if days > maxDur {
			return 0, tooLong
		}
		if s = s[i+1:]; s == "" {
			return days, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, bad
	}
	if d > maxDur || days+d > maxDur {
		return 0, tooLong
	}
	return days + d, nil
}

// digits reports whether s is one or more ASCII digits.
func digits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// MaxDays bounds every duration (a century): far beyond any retention or
// window, and far from time.Duration's overflow.
const MaxDays = 36500

// Format writes d the way Parse reads it back, largest units first, zero
// units left out, sub-second parts dropped ("1h30m", "7d", "1d12h").
func Format(d time.Duration) string {
	secs := int64(d / time.Second)
	if secs <= 0 {
		return "0s"
	}
	var b strings.Builder
	for _, u := range []struct {
		n    int64
		unit string
	}{{86400, "d"}, {3600, "h"}, {60, "m"}, {1, "s"}} {
		if secs >= u.n {
			b.WriteString(strconv.FormatInt(secs/u.n, 10) + u.unit)
			secs %= u.n
		}
	}
	return b.String()
}
