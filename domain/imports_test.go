package domain

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
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

// TestImportsStandardLibraryOnly keeps domain free of dependencies: an import
// path whose first element has a dot is not the standard library.
func TestImportsStandardLibraryOnly(t *testing.T) {
	for name, f := range parsePackage(t, parser.ImportsOnly) {
		for _, imp := range f.Imports {
			path, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				t.Fatal(err)
			}
			if first, _, _ := strings.Cut(path, "/"); strings.Contains(first, ".") {
				t.Errorf("%s imports %q; domain imports only the standard library", name, path)
			}
		}
	}
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
