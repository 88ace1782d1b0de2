package policy

import (
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// forbidden lists packages that do I/O or read the clock. policy is the pure
// core: anything here would mean a decision could depend on more than its
// inputs. Entries ending in / are prefixes.
var forbidden = []string{
	"net", "net/", "os", "os/", "time", "syscall", "internal/poll", "internal/syscall/",
	"database/", "log", "log/", "io/fs", "io/ioutil", "path/filepath", "plugin",
	"crypto/rand", "math/rand", "math/rand/", "runtime/cgo", "embed",
	"github.com/jackc/",
}

func isForbidden(pkg string) bool {
	for _, f := range forbidden {
		if pkg == f || strings.HasSuffix(f, "/") && strings.HasPrefix(pkg, f) {
			return true
		}
	}
	return false
}

func TestDeps(t *testing.T) {
	t.Parallel()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go tool not on PATH: %v", err)
	}
	const self = "github.com/okproxy/okproxy/internal/policy"
	out, err := exec.Command(goTool, "list", "-deps", "-f", "{{.ImportPath}} {{.Standard}}", self).CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for line := range strings.Lines(string(out)) {
		pkg, std, _ := strings.Cut(strings.TrimSpace(line), " ")
		if isForbidden(pkg) {
			t.Errorf("policy depends on %s; it must stay free of I/O and the clock", pkg)
		}
		if std != "true" && pkg != self {
			t.Errorf("policy depends on non-standard package %s", pkg)
		}
	}
}

// TestDirectImports catches the same mistake without the go tool, from the
// package's own (non-test) source files.
func TestDirectImports(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			pkg, _ := strconv.Unquote(imp.Path.Value)
			if isForbidden(pkg) || pkg == "fmt" || strings.Contains(pkg, ".") {
				// fmt pulls in os; strconv and strings do what we need.
				t.Errorf("%s imports %s", name, pkg)
			}
		}
	}
}
