// Package migrations embeds okproxy's goose SQL migrations into the binary.
package migrations

import "embed"

// FS holds the migration files, applied in order by goose.
//
//go:embed *.sql
var FS embed.FS
