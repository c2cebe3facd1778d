package archtest

import (
	"bufio"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// anyPackage stands for every package of the module in a rule's list.
const anyPackage = "*"

// rule says what the packages under one path of the module may import of
// the module. Paths are relative to the module root and match a package and
// everything under it; a package matches the rule with the longest path. A
// package may always import packages of its own rule. Imports outside the
// module are not checked, except that stdlibOnly packages import only the
// standard library.
type rule struct {
	path string
	// imports lists what the package's non-test files may import.
	imports []string
	// testImports lists what its tests may import besides imports.
	testImports []string
	stdlibOnly  bool
	why         string
}

// rules is the architecture. Every package of the module must match a row:
// a new top-level package fails the test until it is classified here.
var rules = []rule{
	{path: "domain", stdlibOnly: true,
		why: "the vocabulary: imports nothing of ours and only the standard library"},
	{path: "proto", imports: []string{"domain"},
		why: "the wire and log format and its conversion to domain types"},
	{path: "schema", imports: []string{"internal/readmodel"}, testImports: []string{"internal/testsvc"},
		why: "the read models' migrations: plain SQL; the table names come from the read-model contract"},
	{path: "eventstore", imports: []string{"domain", "proto", "internal"},
		why: "the log: never the gateway, the projectors or the read side"},
	{path: "command", imports: []string{"domain", "eventstore", "proto", "internal"},
		why: "the write side: never the gateway, the projectors or the read side"},
	{path: "projectors", imports: []string{"domain", "eventstore", "proto", "internal"},
		testImports: []string{"command", "schema"},
		why:         "the read models' writers: never the gateway or the read side, tests included"},
	{path: "query", imports: []string{"domain", "proto", "internal"},
		testImports: []string{"command", "eventstore", "projectors", "schema"},
		why:         "the read side: reads what projectors wrote through internal contracts; its tests run them"},
	{path: "gateway", imports: []string{"domain", "command", "query", "proto", "internal"},
		testImports: []string{"eventstore", "schema", "gateway/gatewaytest"},
		why:         "translates frames to commands and queries: never the projectors, tests included"},
	{path: "gateway/gatewaytest", imports: []string{"domain", "command", "eventstore", "gateway", "proto", "schema", "client", "internal"},
		why: "the gateway's test harness: a gateway in process on the real write side, never the projectors"},
	{path: "stacktest", testImports: []string{"domain", "command", "eventstore", "gateway", "projectors", "proto", "internal"},
		why: "end-to-end tests of the core in one process: the only tests that run the projectors and the gateway together"},
	{path: "client", imports: []string{"proto", "internal/corknet"},
		testImports: []string{"domain", "command", "eventstore", "query", "gateway", "projectors", "schema", "internal"},
		why:         "the protocol client a Go user imports: the wire format and the socket corking only; its tests run the whole core"},
	{path: "internal", imports: []string{"domain", "proto", "internal"},
		why: "shared infrastructure and contracts below every adapter"},
	{path: "internal/coord", imports: []string{"domain", "proto", "internal"},
		testImports: []string{"projectors"},
		why:         "coordination; its tests assert it implements projectors.Coordinator"},
	{path: "internal/sealed", stdlibOnly: true,
		why: "encrypts secrets (password hashes) before they enter the log: a leaf"},
	{path: "internal/corknet", stdlibOnly: true,
		why: "corks a connection's writes into one (the gateway's and the client's WebSocket): a leaf"},
	{path: "internal/keyscan", imports: []string{}, testImports: []string{"internal/testsvc"},
		why: "the one SCAN loop over a server or a cluster's masters: a leaf (go-redis only)"},
	{path: "internal/pipeline", imports: []string{}, testImports: []string{"internal/testsvc"},
		why: "the one chunked pipeline of many single-key reads, on a server or a cluster: a leaf (go-redis only)"},
	{path: "internal/replwait", imports: []string{}, testImports: []string{"internal/testsvc"},
		why: "holds a checkpoint until the writes before it are on replicas (WAIT per master): a leaf (go-redis only)"},
	{path: "internal/streamid", stdlibOnly: true,
		why: "the stream entry id every layer parses: a leaf"},
	{path: "internal/inbox", imports: []string{"domain", "internal/streamid"},
		why: "the delivery contract between projectors/inbox and gateway/delivery"},
	{path: "internal/testsvc/lazyfs", testImports: []string{"internal/testsvc"},
		why: "test support, a FUSE file system that loses unsynced writes: nothing of ours"},
	{path: "internal/eventjson", imports: []string{"proto", "internal/streamid"},
		why: "the stable JSON line format of log entries (export, tap, tail): the wire format and positions only"},
	{path: "internal/readmodel", imports: []string{"domain", "internal/streamid"},
		why: "the read-model contract between projectors/mysql and query"},
	{path: "push/webhook", imports: []string{"domain", "internal/promreg"}, testImports: []string{"internal/testsvc"},
		why: "sends push notifications to a webhook (the push projector's adapter): the vocabulary and Redis only"},
	{path: "projectors/push", imports: []string{"domain", "eventstore", "proto", "internal", "projectors", "push/webhook"},
		testImports: []string{"command", "query", "schema"},
		why:         "the push projector: reads the log and the cache model (through its own Directory port), calls the webhook sender; never the gateway"},
	{path: "cmd/mpimd", imports: []string{anyPackage}, why: "a composition root"},
	{path: "cmd/mpimctl", imports: []string{anyPackage}, why: "a composition root"},
	{path: "cmd/mpim-bench", imports: []string{anyPackage}, why: "a composition root"},
}

// pkg is one package directory of the module as its files import it.
type pkg struct {
	path        string // relative to the module root
	name        string // package name of the non-test files
	imports     map[string][]string
	testImports map[string][]string // import path -> test files importing it
}

// TestImportsFollowTheRules checks every package of the module, tests
// included, against rules, and that nothing imports a main package.
func TestImportsFollowTheRules(t *testing.T) {
	root, module := moduleRoot(t)
	pkgs := loadPackages(t, root)
	byPath := make(map[string]*pkg, len(pkgs))
	for _, p := range pkgs {
		byPath[p.path] = p
	}
	for _, p := range pkgs {
		for _, imports := range []map[string][]string{p.imports, p.testImports} {
			for _, imp := range slices.Sorted(maps.Keys(imports)) {
				rel, ours := strings.CutPrefix(imp, module+"/")
				if q := byPath[rel]; ours && q != nil && q.name == "main" {
					t.Errorf("%s (%s) imports %s, a main package: nothing imports a main", p.path, strings.Join(imports[imp], ", "), rel)
				}
			}
		}
		r, ok := ruleFor(p.path)
		if !ok {
			t.Errorf("%s has no rule: classify it in rules", p.path)
			continue
		}
		check := func(imports map[string][]string, allowed []string) {
			for _, imp := range slices.Sorted(maps.Keys(imports)) {
				files := strings.Join(imports[imp], ", ")
				rel, ours := strings.CutPrefix(imp, module+"/")
				if !ours {
					if r.stdlibOnly && !isStdlib(imp) {
						t.Errorf("%s (%s) imports %q: %s", p.path, files, imp, r.why)
					}
					continue
				}
				if permitted(r, rel, allowed) {
					continue
				}
				t.Errorf("%s (%s) imports %s: %s", p.path, files, rel, r.why)
			}
		}
		check(p.imports, r.imports)
		check(p.testImports, append(slices.Clone(r.imports), r.testImports...))
	}
}

// TestEveryPackageIsFound guards the walk: the known packages must be seen,
// or the rules would hold vacuously.
func TestEveryPackageIsFound(t *testing.T) {
	root, _ := moduleRoot(t)
	found := make(map[string]bool)
	for _, p := range loadPackages(t, root) {
		found[p.path] = true
	}
	for _, want := range []string{"domain", "eventstore", "command", "gateway", "projectors", "cmd/mpimd", "internal/inbox"} {
		if !found[want] {
			t.Errorf("package %s not found under %s", want, root)
		}
	}
}

// ruleFor returns the rule with the longest path matching the package.
func ruleFor(path string) (rule, bool) {
	var best rule
	found := false
	for _, r := range rules {
		if under(path, r.path) && (!found || len(r.path) > len(best.path)) {
			best, found = r, true
		}
	}
	return best, found
}

// permitted reports whether a package of rule r may import rel, given the
// allowed paths.
func permitted(r rule, rel string, allowed []string) bool {
	if own, _ := ruleFor(rel); own.path == r.path {
		return true
	}
	for _, a := range allowed {
		if a == anyPackage || under(rel, a) {
			return true
		}
	}
	return false
}

// under reports whether path is dir or inside it.
func under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// isStdlib reports whether an import path is of the standard library: its
// first element has no dot.
func isStdlib(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

// moduleRoot finds the directory holding go.mod above the working directory
// and returns it with the module path.
func moduleRoot(tb testing.TB) (string, string) {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		f, err := os.Open(filepath.Join(dir, "go.mod"))
		if err == nil {
			defer f.Close()
			s := bufio.NewScanner(f)
			for s.Scan() {
				if m, ok := strings.CutPrefix(strings.TrimSpace(s.Text()), "module "); ok {
					return dir, strings.Trim(strings.TrimSpace(m), `"`)
				}
			}
			tb.Fatalf("%s/go.mod names no module", dir)
		}
		if !errors.Is(err, os.ErrNotExist) {
			tb.Fatal(err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

// loadPackages parses the imports of every Go file of the module under root,
// whatever its build constraints, skipping testdata, hidden directories and
// nested modules.
func loadPackages(tb testing.TB, root string) []*pkg {
	tb.Helper()
	var pkgs []*pkg
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(dir string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		name := d.Name()
		if dir != root {
			if strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor" {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				return filepath.SkipDir
			}
		}
		p, err := parseDir(fset, root, dir)
		if err != nil {
			return err
		}
		if p != nil {
			pkgs = append(pkgs, p)
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return pkgs
}

// parseDir returns the package in dir, or nil when dir has no Go files.
func parseDir(fset *token.FileSet, root, dir string) (*pkg, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		return nil, err
	}
	rel, err := filepath.Rel(root, dir)
	if err != nil {
		return nil, err
	}
	p := &pkg{path: filepath.ToSlash(rel), imports: map[string][]string{}, testImports: map[string][]string{}}
	for _, file := range files {
		f, err := parser.ParseFile(fset, file, nil, parser.ImportsOnly)
		if err != nil {
			return nil, err
		}
		base := filepath.Base(file)
		into := p.imports
		if strings.HasSuffix(base, "_test.go") {
			into = p.testImports
		} else {
			p.name = f.Name.Name
		}
		for _, imp := range f.Imports {
			path, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", file, err)
			}
			into[path] = append(into[path], base)
		}
	}
	return p, nil
}
