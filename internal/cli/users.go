package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/okproxy/okproxy/internal/okta"
	"github.com/okproxy/okproxy/internal/store"
)

func (a *App) usersCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "users",
		Example: "  okproxy users show alice@example.com",
		Short:   "Inspect synced Okta users",
	}
	cmd.AddCommand(a.usersShow())
	return cmd
}

type userGroupView struct {
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	Assignments []okta.Assignment `json:"assignments"`
	Explanation string            `json:"explanation"`
}

type userView struct {
	okta.User
	// Active is false for every status but ACTIVE: such a user is granted
	// nothing, whatever their groups.
	Active     bool            `json:"active"`
	LastSynced time.Time       `json:"last_synced"`
	Groups     []userGroupView `json:"groups"`
}

func (a *App) usersShow() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "show LOGIN|ID",
		Short: "Show a synced user: status, groups, and the Okta group rule behind each membership",
		Example: `  okproxy users show alice@example.com
  okproxy users show 00u1ero7vZFVEIYLWPBN -o json`,
		Args: exactArgs("LOGIN|ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(output, "table", "json", "yaml"); err != nil {
				return err
			}
			ctx := cmd.Context()
			st, err := a.openStore(ctx)
			if err != nil {
				return err
			}
			defer st.Close()
			u, err := st.GetUser(ctx, args[0])
			if errors.Is(err, store.ErrNotFound) {
				return usageErrorf("user: unknown user %q (not in the synced directory)", args[0])
			}
			if err != nil {
				return err
			}
			rules, err := st.ListOktaGroupRules(ctx)
			if err != nil {
				return err
			}
			synced, err := st.UserSyncedAt(ctx, u.ID)
			if err != nil {
				return err
			}
			v := userView{User: oktaUser(u), Active: u.Active(), LastSynced: synced, Groups: []userGroupView{}}
			member := groupMap(u)
			for _, g := range u.Groups {
				as := okta.Explain(v.User, g.ID, member, rules)
				v.Groups = append(v.Groups, userGroupView{ID: g.ID, Name: g.Name, Assignments: as, Explanation: explain(as, g.Name)})
			}
			switch output {
			case "json":
				return writeJSON(a.Stdout, v)
			case "yaml":
				return writeYAML(a.Stdout, v)
			}
			printUserView(a.Stdout, v)
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, json or yaml")
	return cmd
}

func printUserView(w io.Writer, v userView) {
	status := v.Status
	if !v.Active {
		status += " — okproxy grants this user nothing"
	}
	textf(w, "User:         %s\nID:           %s\nStatus:       %s\n", v.Login, v.ID, status)
	if name := strings.TrimSpace(v.FirstName + " " + v.LastName); name != "" {
		textf(w, "Name:         %s\n", name)
	}
	for _, f := range [][2]string{{"Email", v.Email}, {"Department", v.Department}, {"Title", v.Title}} {
		if f[1] != "" {
			textf(w, "%-14s%s\n", f[0]+":", f[1])
		}
	}
	textf(w, "Last synced:  %s\nGroups:\n", v.LastSynced.Format(time.RFC3339))
	if len(v.Groups) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, g := range v.Groups {
		textf(w, "  %s\n", g.Explanation)
	}
}
