package cli

import (
	"time"

	"github.com/spf13/pflag"

	"github.com/okproxy/okproxy/internal/audit"
)

// durationValue is a pflag.Value for SPEC §2 durations: Go syntax plus days
// ("90d", "1.5d", "1d12h").
type durationValue time.Duration

func (d *durationValue) Set(s string) error {
	v, err := audit.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = durationValue(v)
	return nil
}

func (d *durationValue) String() string { return time.Duration(*d).String() }
func (d *durationValue) Type() string   { return "duration" }

// durationVar defines a duration flag that also accepts days.
func durationVar(f *pflag.FlagSet, p *time.Duration, name string, def time.Duration, usage string) {
	*p = def
	f.Var((*durationValue)(p), name, usage+" (Go duration or days, e.g. 30s, 90d, 1.5d)")
}
