package cli

import (
	"bytes"
	"testing"

	"github.com/spf13/cobra"
)

// Every command's --help shows an example (issue 7): walk the whole tree.
func TestEveryCommandHasAnExample(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	app := &App{Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" {
			return
		}
		if c.Example == "" {
			t.Errorf("%q has no Example in its --help", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	root := app.rootCommand()
	root.InitDefaultCompletionCmd()
	walk(root)
}
