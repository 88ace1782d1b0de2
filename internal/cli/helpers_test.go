package cli

import "time"

var timeZero time.Time
