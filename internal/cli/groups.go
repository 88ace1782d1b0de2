package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/okproxy/okproxy/internal/directory"
	"github.com/okproxy/okproxy/internal/okta"
	"github.com/okproxy/okproxy/internal/store"
)

func (a *App) groupsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "groups",
		Example: "  okproxy groups sync --okta-org-url https://example.okta.com\n  okproxy groups list -o json",
		Short:   "Sync and inspect the Okta groups okproxy decides with",
		Long: `okproxy keeps a copy of the Okta directory — groups, memberships, users with their
status, and Okta group rules — synced from cron with "okproxy groups sync". Rules bind to
group ids once a group is synced, so renaming a group in Okta does not break them.`,
	}
	cmd.AddCommand(a.groupsSync(), a.groupsList(), a.groupsShow())
	return cmd
}

func (a *App) groupsList() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List synced groups and the last sync run",
		Example: "  okproxy groups list\n  okproxy groups list -o json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(output, "table", "json", "yaml", "csv"); err != nil {
				return err
			}
			ctx := cmd.Context()
			st, err := a.openStore(ctx)
			if err != nil {
				return err
			}
			defer st.Close()
			gs, err := st.ListOktaGroups(ctx)
			if err != nil {
				return err
			}
			if gs == nil {
				gs = []store.OktaGroupSummary{}
			}
			status, err := lastSyncLine(ctx, st)
			if err != nil {
				return err
			}
			switch output {
			case "json", "yaml", "csv":
				// A list is one array (SPEC §2): the run status goes to stderr.
				fmt.Fprintln(a.Stderr, status)
				switch output {
				case "json":
					return writeJSON(a.Stdout, gs)
				case "csv":
					rows := make([][]string, 0, len(gs))
					for _, g := range gs {
						rows = append(rows, []string{g.ID, g.Name, g.Type, strconv.Itoa(g.Members), strconv.Itoa(g.MembersTotal), csvTime(g.LastSynced)})
					}
					return writeCSV(a.Stdout, []string{"id", "name", "type", "members", "members_total", "last_synced"}, rows)
				}
				return writeYAML(a.Stdout, gs)
			}
			t := newTable(a.Stdout, "NAME", "ID", "TYPE", "MEMBERS", "LAST SYNCED")
			for _, g := range gs {
				members := strconv.Itoa(g.Members)
				if g.MembersTotal != g.Members {
					members += fmt.Sprintf(" (+%d inactive)", g.MembersTotal-g.Members)
				}
				t.row(g.Name, g.ID, g.Type, members, g.LastSynced.Format(time.RFC3339))
			}
			if err := t.flush(); err != nil {
				return err
			}
			fmt.Fprintln(a.Stdout, status)
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, json, yaml or csv (MEMBERS counts ACTIVE users only)")
	return cmd
}

// lastSyncLine says how fresh the directory is, so a stale one is visible.
func lastSyncLine(ctx context.Context, st *store.Store) (string, error) {
	last, err := st.LatestSyncRun(ctx, "")
	if errors.Is(err, store.ErrNotFound) {
		return "last sync: none yet (run okproxy groups sync)", nil
	}
	if err != nil {
		return "", err
	}
	s := fmt.Sprintf("last sync: %s, started %s (run %d)", last.Status, last.StartedAt.Format(time.RFC3339), last.ID)
	if last.Error != "" {
		s += ": " + escapeText(last.Error)
	}
	if last.Status != okta.RunOK {
		ok, err := st.LatestSyncRun(ctx, okta.RunOK)
		switch {
		case errors.Is(err, store.ErrNotFound):
			s += "; no sync has ever succeeded"
		case err != nil:
			return "", err
		default:
			s += fmt.Sprintf("; last successful sync started %s (run %d)", ok.StartedAt.Format(time.RFC3339), ok.ID)
		}
	}
	return s, nil
}

// memberView is one member with how they came to be in the group.
type memberView struct {
	ID          string            `json:"id"`
	Login       string            `json:"login"`
	Email       string            `json:"email,omitempty"`
	Status      string            `json:"status"`
	Department  string            `json:"department,omitempty"`
	Title       string            `json:"title,omitempty"`
	Assignments []okta.Assignment `json:"assignments"`
	Explanation string            `json:"explanation"`
}

type groupView struct {
	okta.Group
	LastSynced   time.Time            `json:"last_synced"`
	Members      int                  `json:"members"`
	MembersTotal int                  `json:"members_total"`
	GroupRules   []okta.GroupRule     `json:"group_rules"`
	Rules        []store.RuleGroupUse `json:"okproxy_rules"`
	MemberList   []memberView         `json:"member_list"`
}

func (a *App) groupsShow() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "show NAME|ID",
		Short: "Show a synced group: its members and why each is a member, and the rules using it",
		Example: `  okproxy groups show Developers
  okproxy groups show 00g1emaKYZTWRYYRRTSK -o json`,
		Args: exactArgs("NAME|ID"),
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
			v, err := loadGroupView(ctx, st, args[0])
			var amb *store.AmbiguousGroupError
			switch {
			case errors.Is(err, store.ErrNotFound):
				return usageErrorf("group: unknown group %q (not in the synced directory; see okproxy groups list)", args[0])
			case errors.As(err, &amb):
				return usageErrorf("group: %v", amb)
			case err != nil:
				return err
			}
			switch output {
			case "json":
				return writeJSON(a.Stdout, v)
			case "yaml":
				return writeYAML(a.Stdout, v)
			}
			return printGroupView(a.Stdout, v)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, json or yaml")
	return cmd
}

func loadGroupView(ctx context.Context, st *store.Store, ref string) (*groupView, error) {
	g, synced, err := st.FindOktaGroup(ctx, ref)
	if err != nil {
		return nil, err
	}
	v := &groupView{Group: g, LastSynced: synced, GroupRules: []okta.GroupRule{}}
	rules, err := st.ListOktaGroupRules(ctx)
	if err != nil {
		return nil, err
	}
	for _, r := range rules {
		for _, id := range r.GroupIDs {
			if id == g.ID {
				v.GroupRules = append(v.GroupRules, r)
			}
		}
	}
	if v.Rules, err = st.RulesUsingGroup(ctx, g.ID, g.Name); err != nil {
		return nil, err
	}
	if v.Rules == nil {
		v.Rules = []store.RuleGroupUse{}
	}
	members, err := st.OktaGroupMembers(ctx, g.ID)
	if err != nil {
		return nil, err
	}
	v.MemberList = make([]memberView, 0, len(members))
	for _, u := range members {
		as := okta.Explain(oktaUser(u), g.ID, groupMap(u), v.GroupRules)
		v.MemberList = append(v.MemberList, memberView{ID: u.ID, Login: u.Login, Email: u.Email, Status: u.Status,
			Department: u.Department, Title: u.Title, Assignments: as, Explanation: explain(as, g.Name)})
		v.MembersTotal++
		if u.Active() {
			v.Members++
		}
	}
	return v, nil
}

func oktaUser(u directory.User) okta.User {
	return okta.User{ID: u.ID, Login: u.Login, Email: u.Email, Status: u.Status, FirstName: u.FirstName,
		LastName: u.LastName, Department: u.Department, Title: u.Title}
}

func groupMap(u directory.User) map[string]string {
	m := make(map[string]string, len(u.Groups))
	for _, g := range u.Groups {
		m[g.ID] = g.Name
	}
	return m
}

func explain(as []okta.Assignment, groupName string) string {
	s := ""
	for i, a := range as {
		if i > 0 {
			s += "; "
		}
		s += a.Describe(groupName)
	}
	return s
}

func printGroupView(w io.Writer, v *groupView) error {
	textf(w, "Group:        %s\nID:           %s\nType:         %s\n", v.Name, v.ID, v.Type)
	if v.Description != "" {
		textf(w, "Description:  %s\n", v.Description)
	}
	textf(w, "Members:      %d active, %d in all\nLast synced:  %s\n", v.Members, v.MembersTotal, v.LastSynced.Format(time.RFC3339))
	fmt.Fprintln(w, "Okta group rules assigning to it:")
	if len(v.GroupRules) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, r := range v.GroupRules {
		textf(w, "  %s (%s): %s\n", r.Name, r.Status, r.Expression)
	}
	fmt.Fprintln(w, "okproxy rules using it:")
	if len(v.Rules) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, r := range v.Rules {
		state, bound := "enabled", "bound to its id"
		if !r.Enabled {
			state = "disabled"
		}
		if !r.Bound {
			bound = "by name, not yet bound"
		}
		textf(w, "  %s (%s, %s, %s)\n", r.Rule, r.Kind, state, bound)
	}
	fmt.Fprintln(w, "Members:")
	t := newTable(w, "  LOGIN", "STATUS", "MEMBERSHIP")
	for _, m := range v.MemberList {
		status := m.Status
		if m.Status != directory.StatusActive {
			status += " (grants nothing)"
		}
		t.row("  "+m.Login, status, m.Explanation)
	}
	return t.flush()
}
