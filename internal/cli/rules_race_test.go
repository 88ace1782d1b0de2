//go:build race

package cli

// raceEnabled: the race detector slows everything several-fold, so timing
// budgets are only asserted without it.
const raceEnabled = true
