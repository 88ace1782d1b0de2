package lint

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestPure keeps the package free of I/O: no database, network or files.
// Callers (internal/cli, internal/store) bring the data in.
func TestPure(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			pkg, _ := strconv.Unquote(imp.Path.Value)
			for _, bad := range []string{"os", "net", "database", "syscall", "github.com/jackc"} {
				if pkg == bad || strings.HasPrefix(pkg, bad+"/") {
					t.Errorf("%s imports %s", name, pkg)
				}
			}
		}
	}
}
