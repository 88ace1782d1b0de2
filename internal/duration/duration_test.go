package duration

import (
	"testing"
	"time"
)

func TestParseFormat(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"90s": "1m30s", "1h": "1h", "3600s": "1h", "7d": "7d", "1d12h": "1d12h",
		"36h": "1d12h", "90m": "1h30m", " 90d ": "90d", "0s": "0s",
		// Fractional days, as Go reads fractional hours.
		"1.5d": "1d12h", "0.5d": "12h", "1.5d12h": "2d", "0.25d": "6h", "+1d": "1d", "0.1d": "2h24m",
		".5d": "12h", "1.d": "1d"} {
		d, err := Parse(in)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if got := Format(d); got != want {
			t.Errorf("%s: got %s want %s", in, got, want)
		}
		if back, _ := Parse(want); back != d {
			t.Errorf("%s does not parse back to %v", want, d)
		}
	}
	for _, bad := range []string{"", "d", "1x", "-1d", "-5m", "1d-1h", "d1h", "1dd", "soon",
		".d", "+.d", "1.5.5d", "1,5d", "1e1d", "-0.5d", "0x1d", "1. 5d", "36500.5d", "36500d1h", "99999999999d"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	if d, _ := Parse("14d"); d != 14*24*time.Hour {
		t.Fatal(d)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"90s", "7d", "1d12h", "-1d", "1.5d", "", "1dd"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := Parse(s)
		if err != nil {
			return
		}
		if d < 0 {
			t.Fatalf("%q parsed to negative %v", s, d)
		}
		if back, err := Parse(Format(d)); err != nil || back != d.Truncate(time.Second) {
			t.Fatalf("%q: Format %q parses back to %v (%v), want %v", s, Format(d), back, err, d.Truncate(time.Second))
		}
	})
}
