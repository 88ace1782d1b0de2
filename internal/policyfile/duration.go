package policyfile

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// ParseDuration accepts Go duration syntax plus a leading whole number of
// days ("90d", "1d12h"), as every okproxy duration flag does (SPEC §2).
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty duration")
	}
	var days time.Duration
	if i := strings.IndexByte(s, 'd'); i > 0 {
		n, err := strconv.ParseInt(s[:i], 10, 32)
		if err != nil || n < 0 {
			return 0, errors.New("invalid duration " + strconv.Quote(s) + " (want e.g. 90s, 15m, 1h, 7d)")
		}
		days = time.Duration(n) * 24 * time.Hour
		s = s[i+1:]
		if s == "" {
			return days, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("invalid duration " + strconv.Quote(s) + " (want e.g. 90s, 15m, 1h, 7d)")
	}
	return days + d, nil
}

// FormatDuration writes d in the form ParseDuration reads back and `okproxy
// quotas list` prints: whole days, hours, minutes and seconds, zero units
// left out ("1h30m", "7d", "1d12h"). Sub-second parts are dropped: quota
// windows are whole seconds.
func FormatDuration(d time.Duration) string {
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
