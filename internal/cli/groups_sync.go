package cli

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/okproxy/okproxy/internal/okta"
)

type groupsSyncOptions struct {
	groupFilter    string
	groupSearch    string
	full           bool
	dryRun         bool
	force          bool
	maxRemoval     float64
	output         string
	orgURL         string
	clientID       string
	privateKeyFile string
	privateKeyID   string
	allowHTTP      bool
}

// oktaFlagNames maps okta.ConfigError fields to what the user typed.
var oktaFlagNames = map[string]string{
	"OrgURL":     "okta-org-url",
	"AllowHTTP":  "okta-allow-http",
	"APIToken":   "OKTA_API_TOKEN",
	"ClientID":   "okta-client-id",
	"PrivateKey": "okta-private-key-file",
}

func (a *App) groupsSync() *cobra.Command {
	var o groupsSyncOptions
	cmd := &cobra.Command{
		Use:   "sync",
		Short: "Sync Okta groups, memberships, users and group rules into the database",
		Long: `Reads the Okta directory through the Management API (okta-sdk-golang/v2) and applies
the difference in one transaction. Incremental by default: members are refetched only
for groups whose lastMembershipUpdated moved, plus users changed since the last run.
Waits out Okta rate limits. Two syncs never run at once (the second exits 0).

Credentials: OKTA_API_TOKEN (an SSWS token), or --okta-client-id with
--okta-private-key-file (an OAuth service app with okta.groups.read and
okta.users.read). Secrets are never printed or logged.

Exit codes: 0 synced (or another sync was running, or a dry run); 1 Okta or the
database failed and nothing was written; 2 invalid flags or a selection Okta refused;
3 the mass-removal guard stopped the sync and nothing was written.`,
		Example: `  OKTA_API_TOKEN=… okproxy groups sync --okta-org-url https://example.okta.com
  okproxy groups sync --group-filter 'type eq "OKTA_GROUP"' --dry-run
  okproxy groups sync --full -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(o.output, "text", "json"); err != nil {
				return err
			}
			started := time.Now().UTC()
			syncer, closeStore, err := a.prepareGroupsSync(cmd, &o)
			if err != nil {
				if o.output == "json" {
					// docs/sync.md: one object, also on failure, so that
					// monitoring reading stdout sees why nothing ran.
					now := time.Now().UTC()
					_ = writeJSON(a.Stdout, &okta.Result{Status: okta.RunFailed, Full: o.full, DryRun: o.dryRun,
						StartedAt: started, FinishedAt: now, DurationMS: now.Sub(started).Milliseconds(), Error: err.Error()})
				}
				return err
			}
			defer closeStore()
			return a.runGroupsSync(cmd, syncer, &o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.groupFilter, "group-filter", "", `Okta filter selecting groups (id, type, lastUpdated, lastMembershipUpdated), e.g. 'type eq "OKTA_GROUP"'`)
	f.StringVar(&o.groupSearch, "group-search", "", `Okta search selecting groups, e.g. 'profile.name sw "app-"'`)
	f.BoolVar(&o.full, "full", false, "refetch the members of every group, not only changed ones")
	f.BoolVar(&o.dryRun, "dry-run", false, "print the changes without writing them")
	f.BoolVar(&o.force, "force", false, "apply even when more than --max-removal of groups or memberships would be removed")
	f.Float64Var(&o.maxRemoval, "max-removal", okta.DefaultMaxRemoval, "largest share (0..1) of groups, or of memberships, a sync may remove without --force")
	f.StringVarP(&o.output, "output", "o", "text", "output format: text or json (a summary for monitoring)")
	f.StringVar(&o.orgURL, "okta-org-url", "", "Okta org URL, e.g. https://example.okta.com (env OKTA_ORG_URL)")
	f.StringVar(&o.clientID, "okta-client-id", "", "OAuth 2.0 service app client id (private key mode)")
	f.StringVar(&o.privateKeyFile, "okta-private-key-file", "", "PEM file with the service app's RSA private key (PKCS#1 or PKCS#8)")
	f.StringVar(&o.privateKeyID, "okta-private-key-id", "", "kid of that key as registered with the service app (optional)")
	f.BoolVar(&o.allowHTTP, "okta-allow-http", false, "permit an http:// org URL on a loopback host (local test doubles only)")
	return cmd
}

// prepareGroupsSync checks the flags, reads the credentials, opens the
// store and builds the syncer: everything that can fail before a sync run
// starts. Errors never carry a secret.
func (a *App) prepareGroupsSync(cmd *cobra.Command, o *groupsSyncOptions) (*okta.Syncer, func(), error) {
	ctx := cmd.Context()
	if !(o.maxRemoval >= 0 && o.maxRemoval <= 1) { // also refuses NaN, which every comparison lets through
		return nil, nil, usageErrorf("max-removal: %v is not a share between 0 and 1 (0.2 = 20%%)", o.maxRemoval)
	}
	if o.groupFilter != "" && o.groupSearch != "" {
		return nil, nil, usageErrorf("group-filter, group-search: give one or the other")
	}
	cc := okta.ClientConfig{
		OrgURL:       cmp.Or(o.orgURL, a.Getenv("OKTA_ORG_URL")),
		APIToken:     a.Getenv("OKTA_API_TOKEN"),
		ClientID:     o.clientID,
		PrivateKeyID: o.privateKeyID,
		AllowHTTP:    o.allowHTTP,
		Logger:       a.Logger,
	}
	if o.privateKeyFile != "" {
		key, err := readKeyFile(o.privateKeyFile, a)
		if err != nil {
			return nil, nil, err
		}
		cc.PrivateKey = key
	}
	src, err := okta.NewSDKSource(ctx, cc)
	var ce *okta.ConfigError
	if errors.As(err, &ce) {
		return nil, nil, usageErrorf("%s: %s", oktaFlagNames[ce.Field], redactURLIn(ce.Msg, cc.OrgURL))
	}
	if err != nil {
		if msg := redactURLIn(err.Error(), cc.OrgURL); msg != err.Error() {
			return nil, nil, errors.New(msg)
		}
		return nil, nil, err
	}
	st, err := a.openStore(ctx)
	if err != nil {
		return nil, nil, err
	}
	cfg := okta.Config{
		Source: src, Store: st, Logger: a.Logger,
		Selection: okta.Selection{Filter: o.groupFilter, Search: o.groupSearch},
		Full:      o.full, DryRun: o.dryRun, Force: o.force, MaxRemoval: o.maxRemoval,
		Actor: a.actorName(),
	}
	if isTerminal(a.Stderr) {
		cfg.Progress = func(msg string) { fmt.Fprintf(a.Stderr, "okproxy: %s\n", msg) }
	}
	syncer, err := okta.New(cfg)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return syncer, st.Close, nil
}

// runGroupsSync runs the sync and reports it: a summary (-o json: one
// object, also on failure) and the exit code.
func (a *App) runGroupsSync(cmd *cobra.Command, syncer *okta.Syncer, o *groupsSyncOptions) error {
	ctx := cmd.Context()
	res, runErr := syncer.Run(ctx)
	if o.output == "json" {
		out := any(res)
		if o.dryRun && res.Plan != nil {
			out = struct {
				*okta.Result
				Diff *okta.Plan `json:"diff"`
			}{res, res.Plan}
		}
		if err := writeJSON(a.Stdout, out); err != nil {
			return err
		}
	} else if runErr == nil || errors.As(runErr, new(*okta.GuardError)) {
		printSyncResult(a.Stdout, res)
	}
	var ge *okta.GuardError
	var se *okta.SelectionError
	switch {
	case runErr == nil:
		return nil
	case errors.Is(runErr, okta.ErrSyncRunning):
		fmt.Fprintln(a.Stderr, "okproxy: another sync is running; nothing to do")
		return nil
	case errors.As(runErr, &ge):
		return checkFailedf("%v", runErr)
	case errors.As(runErr, &se):
		flag := "group-filter"
		if o.groupSearch != "" {
			flag = "group-search"
		}
		return usageErrorf("%s: %v", flag, se.Err)
	}
	return fmt.Errorf("groups sync failed, nothing was written: %w", runErr)
}

// redactURLIn hides the user information (user:password@), the query and
// the fragment of the URL raw, as typed, wherever msg quotes it, whole or as
// net/url's Redacted form (which keeps the user name, itself a secret when
// it holds a token). It does not depend on raw being a valid URL: everything
// between "://" (or the start) and the last "@" before any "?" or "#" is
// hidden, and everything after that "?" or "#".
func redactURLIn(msg, raw string) string {
	start := 0
	if i := strings.Index(raw, "://"); i >= 0 {
		start = i + len("://")
	}
	end := len(raw)
	if i := strings.IndexAny(raw[start:], "?#"); i >= 0 {
		end = start + i
	}
	// The query and fragment go too: an org URL has none, so whatever is
	// there (?token=…) was pasted by mistake and may be a secret.
	rest := raw[start:end]
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		rest = "***" + rest[at:]
	}
	tail := ""
	if end < len(raw) {
		tail = raw[end:end+1] + "***"
	}
	safe := raw[:start] + rest + tail
	if safe == raw {
		return msg
	}
	forms := []string{raw}
	if u, err := url.Parse(raw); err == nil {
		forms = append(forms, u.Redacted(), u.String())
	}
	for _, f := range forms {
		msg = strings.ReplaceAll(msg, strconv.Quote(f), strconv.Quote(safe))
		msg = strings.ReplaceAll(msg, f, safe)
	}
	return msg
}

// readKeyFile reads the private key file, warning when others can read it.
func readKeyFile(path string, a *App) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, usageErrorf("okta-private-key-file: %v", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		a.warnf("%s is readable by group or others (mode %s); chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usageErrorf("okta-private-key-file: %v", err)
	}
	return b, nil
}

// isTerminal reports whether w is a character device (progress is for
// people, not for cron mail).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// listCap bounds each section of a printed diff.
const listCap = 50

func printSyncResult(w io.Writer, r *okta.Result) {
	mode := "incremental"
	if r.Full {
		mode = "full"
	}
	head := fmt.Sprintf("sync %s", r.Status)
	if r.DryRun {
		head = "dry run (nothing written)"
	}
	fmt.Fprintf(w, "%s: %s, %s, %d API calls", head, mode, (time.Duration(r.DurationMS) * time.Millisecond).String(), r.APICalls)
	if r.RateLimited > 0 {
		fmt.Fprintf(w, ", %d rate-limited answers waited out (%s)", r.RateLimited, time.Duration(r.RateLimitWaitMS)*time.Millisecond)
	}
	fmt.Fprintf(w, "\n  groups:      +%d -%d, %d renamed (%d synced, %d refetched)\n", r.GroupsAdded, r.GroupsRemoved, r.GroupsRenamed, r.Groups, r.GroupsRefetched)
	fmt.Fprintf(w, "  memberships: +%d -%d (%d synced)\n", r.MembershipsAdded, r.MembershipsRemoved, r.Memberships)
	fmt.Fprintf(w, "  users:       +%d -%d, %d changed (%d synced)\n", r.UsersAdded, r.UsersRemoved, r.UsersChanged, r.Users)
	fmt.Fprintf(w, "  group rules: %d changed; okproxy rule groups bound: %d\n", r.GroupRulesChanged, r.RuleGroupsBound)
	if r.DryRun && r.Plan != nil {
		printPlan(w, r.Plan)
	}
}

func printPlan(w io.Writer, p *okta.Plan) {
	section := func(title string, n int, line func(i int) string) {
		if n == 0 {
			return
		}
		fmt.Fprintf(w, "%s:\n", title)
		for i := range min(n, listCap) {
			textf(w, "  %s\n", line(i)) // names and logins come from Okta
		}
		if n > listCap {
			fmt.Fprintf(w, "  … and %d more (-o json lists all)\n", n-listCap)
		}
	}
	section("groups added", len(p.GroupsAdded), func(i int) string {
		g := p.GroupsAdded[i]
		return fmt.Sprintf("+ %s (%s, %s)", g.Name, g.ID, g.Type)
	})
	section("groups removed", len(p.GroupsRemoved), func(i int) string {
		g := p.GroupsRemoved[i]
		return fmt.Sprintf("- %s (%s)", g.Name, g.ID)
	})
	section("groups renamed", len(p.GroupsRenamed), func(i int) string {
		r := p.GroupsRenamed[i]
		return fmt.Sprintf("~ %q → %q (%s; rules bound to it follow)", r.From, r.To, r.ID)
	})
	section("memberships added", len(p.MembershipsAdded), func(i int) string {
		m := p.MembershipsAdded[i]
		return fmt.Sprintf("+ %s ∋ %s", p.GroupName(m.GroupID), p.UserLogin(m.UserID))
	})
	section("memberships removed", len(p.MembershipsRemoved), func(i int) string {
		m := p.MembershipsRemoved[i]
		return fmt.Sprintf("- %s ∌ %s", p.GroupName(m.GroupID), p.UserLogin(m.UserID))
	})
	section("users added", len(p.UsersAdded), func(i int) string {
		u := p.UsersAdded[i]
		return fmt.Sprintf("+ %s (%s)", u.Login, u.Status)
	})
	section("users removed", len(p.UsersRemoved), func(i int) string {
		return "- " + p.UsersRemoved[i].Login
	})
	section("users changed", len(p.UsersChanged), func(i int) string {
		return "~ " + describeUserChange(p.UsersChanged[i])
	})
	section("group rules changed", len(p.RulesUpserted)+len(p.RulesRemoved), func(i int) string {
		if i < len(p.RulesUpserted) {
			r := p.RulesUpserted[i]
			return fmt.Sprintf("~ %s (%s): %s", r.Name, r.Status, r.Expression)
		}
		return "- " + p.RulesRemoved[i-len(p.RulesUpserted)].Name
	})
	section("okproxy rule groups to bind", len(p.Bindings), func(i int) string {
		b := p.Bindings[i]
		return fmt.Sprintf("rule %s %s %q → %s", b.Rule, b.Kind, b.GroupName, b.GroupID)
	})
}

func describeUserChange(c okta.UserChange) string {
	var d []string
	add := func(field, from, to string) {
		if from != to {
			d = append(d, fmt.Sprintf("%s %q → %q", field, from, to))
		}
	}
	b, a := c.Before, c.After
	add("status", b.Status, a.Status)
	add("login", b.Login, a.Login)
	add("email", b.Email, a.Email)
	add("department", b.Department, a.Department)
	add("title", b.Title, a.Title)
	add("first name", b.FirstName, a.FirstName)
	add("last name", b.LastName, a.LastName)
	return a.Login + ": " + strings.Join(d, ", ")
}
