package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/okproxy/okproxy/internal/audit"
	"github.com/okproxy/okproxy/internal/dbtest"
)

func TestEscapeText(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                       "",
		"plain text, é 日本":       "plain text, é 日本",
		"a\x1b[31mred":           `a\x1b[31mred`,
		"line\nforged":           `line\nforged`,
		"cr\roverwrite":          `cr\roverwrite`,
		"tab\tcol":               `tab\tcol`,
		"bell\a del\x7f nul\x00": `bell\a del\x7f nul\x00`,
		"c1 \u009b csi":          `c1 \u009b csi`,
		"bidi \u202e rtl":        `bidi \u202e rtl`,
		"bad \xff\xfe utf8":      `bad \xff\xfe utf8`,
		"replacement \ufffd ok":  "replacement \ufffd ok",
		`back\slash`:             `back\slash`,
	} {
		if got := escapeText(in); got != want {
			t.Errorf("escapeText(%q) = %q, want %q", in, got, want)
		}
	}
}

// rawControl reports the first control byte in human output other than the
// newlines that end its own lines.
func rawControl(s string) (byte, bool) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != '\n' && (c < 0x20 || c == 0x7f) {
			return c, true
		}
	}
	// C1 controls arrive UTF-8 encoded (U+0080..U+009F: C2 80..C2 9F).
	for _, r := range s {
		if r >= 0x80 && r <= 0x9f {
			return byte(r), true
		}
	}
	return 0, false
}

// Text chosen by callers, Okta or whoever wrote the database reaches table
// and text output escaped (no terminal escape sequences, no forged lines),
// and machine output unchanged.
func TestHumanOutputEscapesControlCharacters(t *testing.T) {
	t.Parallel()
	db := dbtest.NewDatabase(t)
	srv := fakeOrg(t)
	const evil = "x\x1b]0;owned\x07\x1b[2J\rFORGED\nline\u009b31m\x7f"
	// Commands refuse such a description; the database may hold one all
	// the same (written by hand, or by an older version).
	mustRun(t, db, "rules", "add", "evil", "--path", "/evil", "--allow", "Developers", "--description", "harmless")
	if r := run(t, db, tokenEnv, syncArgs(srv)...); r.code != 0 {
		t.Fatalf("sync: %+v", r)
	}
	v := "'" + evil + "'" // a standard SQL string holds control characters as they are
	sql(t, db,
		`UPDATE okta_groups SET name = 'Dev' || `+v+`, description = `+v+` WHERE id = '00gDevelopers0000002'`,
		`UPDATE okta_users SET department = `+v+`, first_name = `+v+` WHERE id = '00uAlice000000000001'`,
		`UPDATE rules SET description = `+v+` WHERE name = 'evil'`,
		`UPDATE admin_events SET after = jsonb_set(after, '{description}', to_jsonb(`+v+`::text)) WHERE object_name = 'evil'`,
		`INSERT INTO admin_events (actor, action, object_type, object_name) VALUES (`+v+`, 'rule.add', 'rule', `+v+`)`)
	insertAudit(t, db, ev("e1", time.Minute, func(e *audit.Event) {
		e.Path, e.Subject, e.Host = "/evil"+evil, evil, evil
	}))

	for _, args := range [][]string{
		{"audit", "query"},
		{"audit", "admin"},
		{"rules", "history"},
		{"rules", "history", "evil"},
		{"rules", "show", "evil"},
		{"rules", "list"},
		{"groups", "list"},
		{"groups", "show", "00gDevelopers0000002"},
		{"users", "show", "alice@example.com"},
	} {
		out := mustRun(t, db, args...).stdout
		if c, bad := rawControl(out); bad {
			t.Errorf("okproxy %s prints a raw control character 0x%02x:\n%q", strings.Join(args, " "), c, out)
		}
		if strings.Contains(out, "\nFORGED") || strings.Contains(out, "\nline") {
			t.Errorf("okproxy %s: stored text starts a line of its own:\n%s", strings.Join(args, " "), out)
		}
		if !strings.Contains(out, `\x1b]0;owned\a\x1b[2J\rFORGED\nline\u009b31m\x7f`) {
			t.Errorf("okproxy %s does not show the text escaped:\n%s", strings.Join(args, " "), out)
		}
	}

	// Machine output carries the text as stored.
	var rule struct {
		Description string `json:"description"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, db, "rules", "show", "evil", "-o", "json").stdout), &rule); err != nil || rule.Description != evil {
		t.Fatalf("rules show -o json: %q %v", rule.Description, err)
	}
	var e audit.Event
	if err := json.Unmarshal([]byte(mustRun(t, db, "audit", "query", "-o", "json").stdout), &e); err != nil || e.Subject != evil {
		t.Fatalf("audit query -o json: %q %v", e.Subject, err)
	}
	if out := mustRun(t, db, "audit", "query", "-o", "csv").stdout; !strings.Contains(out, "\x1b]0;owned") {
		t.Fatalf("audit query -o csv escaped its cells:\n%q", out)
	}

	// rules test and rules lint compile the policy, which refuses a stored
	// description with control characters, but not the Okta name of a group
	// a rule is bound to: one renamed group must not stop every replica's
	// policy from compiling. Both print that name escaped.
	sql(t, db, `UPDATE rules SET description = 'harmless' WHERE name = 'evil'`)
	for _, args := range [][]string{{"rules", "test", "--path", "/evil", "--user", "alice@example.com", "--expect", "allow"}, {"rules", "lint"}} {
		r := run(t, db, nil, args...)
		if r.code != 0 && !(args[1] == "lint" && r.code == ExitCheck) {
			t.Fatalf("okproxy %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
		}
		if c, bad := rawControl(r.stdout); bad || !strings.Contains(r.stdout, `Devx\x1b]0;owned`) {
			t.Errorf("okproxy %s: raw control 0x%02x or no escaped group name:\n%q", strings.Join(args, " "), c, r.stdout)
		}
	}
}
