package domain

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// parsePackage parses the package's non-test Go files.
func parsePackage(tb testing.TB, mode parser.Mode) map[string]*ast.File {
	tb.Helper()
	names, err := filepath.Glob("*.go")
	if err != nil {
		tb.Fatal(err)
	}
	files := make(map[string]*ast.File)
	fset := token.NewFileSet()
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			tb.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, mode)
		if err != nil {
			tb.Fatal(err)
		}
		files[name] = f
	}
	if len(files) == 0 {
		tb.Fatal("no Go files found")
	}
	return files
}

// TestPackageComment checks there is exactly one package comment, in doc.go.
func TestPackageComment(t *testing.T) {
	for name, f := range parsePackage(t, parser.PackageClauseOnly|parser.ParseComments) {
		switch {
		case name == "doc.go" && f.Doc == nil:
			t.Error("doc.go has no package comment")
		case name != "doc.go" && f.Doc != nil:
			t.Errorf("%s has a package comment; it belongs in doc.go", name)
		}
	}
}
