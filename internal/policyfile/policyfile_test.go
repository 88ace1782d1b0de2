package policyfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

const header = "apiVersion: okproxy/v1\nkind: Policy\n"

func mustLoad(t *testing.T, src string) *File {
	t.Helper()
	f, err := Load("p.yaml", []byte(src))
	if err != nil {
		t.Fatalf("load:\n%s\n%v", src, err)
	}
	return f
}

// Every problem names its line, object and field, and all are reported.
func TestLoadProblems(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		src  string
		want []string // "line|substring" (line empty: any), in order
	}{
		{"empty", "", []string{"1|empty"}},
		{"not yaml", "rules: [\n", []string{"|not valid YAML"}},
		{"no header", "rules: []\n", []string{"1|apiVersion: is required", "1|kind: is required"}},
		{"wrong version", "apiVersion: okproxy/v2\nkind: Policy\nrules: []\n", []string{`1|"okproxy/v2" is not supported`}},
		{"no sections", header, []string{"|neither a rules: nor a quotas:"}},
		{"two documents", header + "rules: []\n---\n" + header, []string{"4|more than one YAML document"}},
		{"unknown field", header + "rules:\n  - name: a\n    path: /a\n    alow: [X]\n", []string{`6|rule "a": unknown field "alow"`}},
		{"bad types", header + "rules:\n  - name: a\n    path: /a\n    public: yes please\n    methods: {x: 1}\n", []string{
			"6|public: must be true or false", "7|methods: must be a list"}},
		{"repeated key", header + "rules:\n  - name: a\n    path: /a\n    path: /b\n    public: true\n", []string{`6|path: repeated key (first on line 5)`}},
		{"duplicate names", header + "rules:\n  - name: a\n    path: /a\n    public: true\n  - name: a\n    path: /b\n    public: true\n", []string{
			`7|rule "a": name: duplicate rule name (first defined on line 4)`}},
		{"rule without name", header + "rules:\n  - path: /a\n    public: true\n", []string{`4|rule #1: name: is required`}},
		{"bad group", header + "rules:\n  - name: a\n    path: /a\n    allow: [{name: X, idd: 1}]\n", []string{`6|rule "a": unknown field "idd"`}},
		{"public with allow", header + "rules:\n  - name: a\n    path: /a\n    allow: [X]\n    public: true\n", []string{`7|rule "a": public: cannot be combined`}},
		{"quota problems", header + "quotas:\n  - name: q\n    group: G\n    limit: 0\n    window: 1h\n  - name: r\n    group: G\n    limit: 5\n    window: 1x\n  - name: s\n    limit: 5\n    window: 1h\n", []string{
			`6|quota "q": limit: must be a positive`, `11|quota "r": window: invalid duration`, `12|quota "s": group: is required`}},
		{"sequence root", "- a\n", []string{"1|the document must be a mapping"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load("p.yaml", []byte(c.src))
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("want Problems, got %v", err)
			}
			if len(ps) != len(c.want) {
				t.Fatalf("got %d problems, want %d:\n%v", len(ps), len(c.want), ps)
			}
			for i, w := range c.want {
				line, sub, _ := strings.Cut(w, "|")
				got := ps[i].Error()
				if line != "" && !strings.HasPrefix(got, "p.yaml:"+line+":") || !strings.Contains(got, sub) {
					t.Errorf("problem %d = %q, want line %s and %q", i, got, line, sub)
				}
			}
		})
	}
}

// One bad rule among ten: exactly that rule is named, at its line.
func TestLoadOneBadAmongTen(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "policy", "bad.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Load("bad.yaml", data)
	var ps Problems
	if !errors.As(err, &ps) || len(ps) != 1 {
		t.Fatalf("want one problem, got %v", err)
	}
	if got := ps[0].Error(); got != `bad.yaml:35: rule "r10-bad": path: pattern "ten/**": must start with /` {
		t.Fatalf("problem: %s", got)
	}
}

// Export output read back gives the same document and the same bytes, in
// YAML and in JSON; hand-written shorthands normalise to the same form.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "policy", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	f := mustLoad(t, string(data))
	y1, err := f.Doc.EncodeYAML()
	if err != nil {
		t.Fatal(err)
	}
	j1, err := f.Doc.EncodeJSON()
	if err != nil {
		t.Fatal(err)
	}
	fy := mustLoad(t, string(y1))
	fj := mustLoad(t, string(j1))
	y2, _ := fy.Doc.EncodeYAML()
	j2, _ := fj.Doc.EncodeJSON()
	if !bytes.Equal(y1, y2) || !bytes.Equal(j1, j2) {
		t.Fatalf("not stable:\n%s\n---\n%s", y1, y2)
	}
	if y3, _ := fj.Doc.EncodeYAML(); !bytes.Equal(y1, y3) {
		t.Fatalf("JSON and YAML disagree:\n%s\n---\n%s", y1, y3)
	}
	if p := Diff(f.Doc, fy.Doc, DiffOptions{Rules: true, Quotas: true, Prune: true}); !p.Empty() {
		t.Fatalf("round trip differs: %+v", p)
	}
	// Sorted: rules by name, groups by name; a long description is not wrapped.
	if !strings.Contains(string(y1), "  - name: api-developers\n") || strings.Index(string(y1), "Auditors") > strings.Index(string(y1), "- name: Finance") {
		t.Fatalf("not sorted:\n%s", y1)
	}
	// Values YAML would otherwise read as something else survive the trip.
	tricky := Document{Rules: []Rule{{Name: "2024", Path: "/*/x/**", Hosts: []string{"*.example.com"}, Scopes: []string{"a:b", "#x", "null"},
		Allow:       []Group{{Name: "yes"}, {Name: "123"}, {Name: "null"}, {Name: "- dash: colon", ID: "00g1"}, {Name: "Ünïcode 'q' \"d\""}},
		Description: "line one\nline two: with colon\n", Enabled: true}},
		Quotas: []Quota{{Name: "q", Group: Group{Name: "~"}, Limit: 1, Window: "90s"}}}
	for _, enc := range []func(Document) ([]byte, error){Document.EncodeYAML, Document.EncodeJSON} {
		b, err := enc(tricky)
		if err != nil {
			t.Fatal(err)
		}
		back := mustLoad(t, string(b))
		if p := Diff(tricky, back.Doc, DiffOptions{Rules: true, Quotas: true, Prune: true}); !p.Empty() {
			t.Fatalf("tricky values changed:\n%s\n%+v", b, p)
		}
		if r := back.Doc.Rules[0]; r.Name != "2024" || r.Allow[0].Name != "- dash: colon" || r.Description != tricky.Rules[0].Description {
			t.Fatalf("tricky values: %+v", r)
		}
	}

	long := header + "rules:\n  - name: a\n    path: /a\n    public: true\n    description: " + strings.Repeat("word ", 40) + "end\n"
	ly, _ := mustLoad(t, long).Doc.EncodeYAML()
	if !strings.Contains(string(ly), "word end\n") {
		t.Fatalf("long line wrapped:\n%s", ly)
	}
}

func TestDiff(t *testing.T) {
	t.Parallel()
	cur := mustLoad(t, header+`rules:
  - {name: a, path: /a, allow: [{name: Finance, id: 00g1}]}
  - {name: b, path: /b, public: true}
  - {name: c, path: /c, deny: [X]}
quotas:
  - {name: q, group: G, limit: 5, window: 60s}
`).Doc
	want := mustLoad(t, header+`rules:
  - {name: a, path: /a, allow: [{name: Finance Team, id: 00g1}]}
  - {name: b, path: /b, public: true, methods: [get], enabled: false}
  - {name: d, path: /d, allow_authenticated: true}
quotas:
  - {name: q, group: g, limit: 5, window: 1m}
`).Doc
	// A rename in Okta (same id) and a name differing in case only are not changes.
	p := Diff(cur, want, DiffOptions{Rules: true, Quotas: true})
	var b strings.Builder
	if err := p.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	wantText := `~ rule b
    methods: [] → [GET]
    enabled: true → false
  rule c: not in file (kept)
+ rule d
    path: /d
    allow_authenticated: true
    mode: enforce
    enabled: true
rules:  1 added, 1 changed, 0 removed, 1 unchanged, 1 not in file (kept; --prune removes them)
quotas: 0 added, 0 changed, 0 removed, 1 unchanged
`
	if b.String() != wantText {
		t.Fatalf("diff:\n%s\nwant:\n%s", b.String(), wantText)
	}
	p = Diff(cur, want, DiffOptions{Rules: true, Prune: true})
	if p.RuleCounts.Removed != 1 || p.Rules[1].Op != OpRemove || p.ManageQuotas || len(p.Quotas) != 0 {
		t.Fatalf("prune: %+v", p)
	}
	if p := Diff(cur, cur, DiffOptions{Rules: true, Quotas: true, Prune: true}); !p.Empty() {
		t.Fatalf("self diff: %+v", p)
	}
}

func TestDiffJSON(t *testing.T) {
	t.Parallel()
	fs, err := DiffJSON([]byte(`{"name":"a","path":"/a","methods":["GET"],"allow":[{"id":"00g1","name":"F"}],"enabled":true,"mode":"enforce"}`),
		[]byte(`{"name":"a","path":"/a","allow":[{"name":"F"}],"public":false,"enabled":false,"mode":"enforce"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := []FieldChange{{"methods", "[GET]", ""}, {"allow", "[F (00g1)]", "[F]"}, {"enabled", "true", "false"}}
	if !reflect.DeepEqual(fs, want) {
		t.Fatalf("got %+v", fs)
	}
	add, _ := DiffJSON(nil, []byte(`{"name":"a","path":"/a","limit":5}`))
	if len(add) != 2 || add[0].Field != "path" || add[1].After != "5" {
		t.Fatalf("add: %+v", add)
	}
}

func TestResolve(t *testing.T) {
	t.Parallel()
	dir := NewDirectory(true, []Group{
		{ID: "00gfinance00000000000", Name: "Finance"},
		{ID: "00gdup1", Name: "Dup"}, {ID: "00gdup2", Name: "dup"},
	})
	f := mustLoad(t, header+`rules:
  - name: a
    path: /a
    allow:
      - finance
      - {name: Old Name, id: 00gfinance00000000000}
      - Nobody
      - {name: Gone, id: 00ggone}
  - {name: b, path: /b, allow: [Nobody]}
  - {name: c, path: /c, deny: [Dup]}
`)
	warnings, err := f.Resolve(dir)
	var ps Problems
	if !errors.As(err, &ps) || len(ps) != 1 || !strings.Contains(ps[0].Error(), `p.yaml:12: rule "c": deny: group "Dup" matches 2 synced groups (00gdup1, 00gdup2)`) {
		t.Fatalf("ambiguous: %v", err)
	}
	got := f.Doc.Rules[0].Allow
	want := []Group{{Name: "Finance", ID: "00gfinance00000000000"}, {Name: "Finance", ID: "00gfinance00000000000"}, {Name: "Nobody"}, {Name: "Gone", ID: "00ggone"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("resolved %+v", got)
	}
	text := warnings.Error()
	for _, w := range []string{`p.yaml:8: rule "a": allow: group 00gfinance00000000000 is now called "Finance"`,
		`p.yaml:9: rule "a": allow: group "Nobody" is not in the synced directory; stored as written (used 2 times)`,
		`p.yaml:10: rule "a": allow: group "Gone (00ggone)" is not in the synced directory`} {
		if !strings.Contains(text, w) {
			t.Errorf("warnings lack %q:\n%s", w, text)
		}
	}
	// Before any sync: one note rather than one warning per group.
	f = mustLoad(t, header+"rules:\n  - {name: a, path: /a, allow: [X, Y]}\n")
	warnings, err = f.Resolve(NewDirectory(false, nil))
	if err != nil || len(warnings) != 1 || !strings.Contains(warnings[0].Message, "2 group(s) stored as written because the Okta directory has never been synced") {
		t.Fatalf("unsynced: %v %v", warnings, err)
	}
}

func TestLoadCases(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "policy", "cases.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cf, err := LoadCases("cases.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	if len(cf.Cases) != 12 || cf.Cases[1].Method != "HEAD" || cf.Cases[0].Line != 8 || !cf.Cases[6].Caller.IsAnonymous() {
		t.Fatalf("cases: %+v", cf.Cases[:2])
	}
	_, err = LoadCases("c.yaml", []byte(`cases:
  - name: x
    path: billing
    expect: maybe
  - path: /a
    expect: allow
    reason: forbidden
    caller: {anonymous: true, groups: [A]}
  - path: /a
    expect: deny
    reason: nope
    caller: {user: u, shoe: 1}
`))
	want := []string{`c.yaml:3: case "x": path: "billing" must start with /`, `c.yaml:4: case "x": expect: "maybe" is not allow or deny`,
		`c.yaml:7: case #2: reason: "forbidden" contradicts expect: allow`, `c.yaml:8: case #2: caller: anonymous: true cannot be combined`,
		`c.yaml:11: case #3: reason: "nope" is not one of`, `c.yaml:12: case #3: unknown field "shoe"`}
	var ps Problems
	if !errors.As(err, &ps) || len(ps) != len(want) {
		t.Fatalf("got %v", err)
	}
	for i, w := range want {
		if !strings.HasPrefix(ps[i].Error(), w) {
			t.Errorf("problem %d: %s\nwant prefix %s", i, ps[i].Error(), w)
		}
	}
}

// FuzzLoad: no input panics, and whatever loads re-encodes to a fixed point.
func FuzzLoad(f *testing.F) {
	for _, name := range []string{"policy.yaml", "bad.yaml", "cases.yaml"} {
		if b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "policy", name)); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(header + "rules:\n  - {name: a, path: /a, allow: [{name: X, id: 00g1}]}\nquotas: []\n"))
	f.Add([]byte(`{"apiVersion":"okproxy/v1","kind":"Policy","rules":[{"name":"a","path":"/*/b","public":true}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Load("f", data)
		if err != nil {
			return
		}
		y1, err := file.Doc.EncodeYAML()
		if err != nil {
			t.Fatal(err)
		}
		again, err := Load("f", y1)
		if err != nil {
			t.Fatalf("re-load of own output failed: %v\n%s", err, y1)
		}
		if y2, _ := again.Doc.EncodeYAML(); !bytes.Equal(y1, y2) {
			t.Fatalf("not a fixed point:\n%s\n---\n%s", y1, y2)
		}
	})
}

// The JSON Schema in docs/ knows exactly the fields the parser knows.
func TestSchemaMatchesParser(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "policy.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Properties map[string]any `json:"properties"`
		Defs       map[string]struct {
			Properties map[string]any `json:"properties"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	keys := func(m map[string]any) []string {
		out := make([]string, 0, len(m))
		for k := range m {
			out = append(out, k)
		}
		slices.Sort(out)
		return out
	}
	sorted := func(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }
	for name, want := range map[string][]string{"": rootFieldNames, "rule": ruleFieldNames, "quota": quotaFieldNames} {
		got := keys(s.Properties)
		if name != "" {
			got = keys(s.Defs[name].Properties)
		}
		if !slices.Equal(got, sorted(want)) {
			t.Errorf("schema %q properties %v, parser knows %v", name, got, sorted(want))
		}
	}
}
