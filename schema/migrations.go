package schema

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

//go:embed schema_migrations.sql
var bookkeepingSQL string

// fileName is the form of a migration file name: a version of at least four
// digits, an underscore and a lower-case name.
var fileName = regexp.MustCompile(`^([0-9]{4,})_([a-z0-9_]+)\.sql$`)

// Migration is one embedded migration file.
type Migration struct {
	// Version is the number the file name starts with; migrations apply in
	// increasing Version order.
	Version uint64
	// Name is the file name without ".sql", e.g. "0001_init".
	Name string
	// Checksum is the hex SHA-256 of the file's bytes. Any edit, even to a
	// comment, changes it.
	Checksum string
	// SQL is the file's text.
	SQL string
}

// Statements splits the migration into statements; see the package comment
// for the rules. It returns an error if the file breaks them.
func (m Migration) Statements() ([]string, error) {
	stmts, err := splitStatements(m.SQL)
	if err != nil {
		return nil, fmt.Errorf("schema: %s: %w", m.Name, err)
	}
	return stmts, nil
}

// Migrations returns the embedded migrations in Version order. It returns an
// error for a file in migrations/ whose name is malformed, for two files with
// the same version, and for a file that does not split into statements.
func Migrations() ([]Migration, error) {
	return loadMigrations(migrationFiles, "migrations")
}

func loadMigrations(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("schema: reading migrations: %w", err)
	}
	var ms []Migration
	for _, e := range entries {
		match := fileName.FindStringSubmatch(e.Name())
		if match == nil || e.IsDir() {
			return nil, fmt.Errorf("schema: migrations/%s: name is not NNNN_name.sql", e.Name())
		}
		v, err := strconv.ParseUint(match[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("schema: migrations/%s: version: %w", e.Name(), err)
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("schema: reading migrations/%s: %w", e.Name(), err)
		}
		sum := sha256.Sum256(b)
		m := Migration{
			Version:  v,
			Name:     strings.TrimSuffix(e.Name(), ".sql"),
			Checksum: hex.EncodeToString(sum[:]),
			SQL:      string(b),
		}
		if _, err := m.Statements(); err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b Migration) int { return cmpUint(a.Version, b.Version) })
	for i := 1; i < len(ms); i++ {
		if ms[i].Version == ms[i-1].Version {
			return nil, fmt.Errorf("schema: migrations %s and %s share version %d", ms[i-1].Name, ms[i].Name, ms[i].Version)
		}
	}
	return ms, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// splitStatements splits src into statements: a statement ends at a line
// whose last non-blank character is ';' (the ';' is dropped). Lines whose
// first non-blank characters are "--" are comments and are dropped; blank
// lines between statements are ignored. Block comments and '#' comments are
// rejected, as is text after the last statement.
func splitStatements(src string) ([]string, error) {
	var stmts []string
	var cur strings.Builder
	lineNo, start := 0, 0
	for line := range strings.Lines(src) {
		lineNo++
		t := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(t, "--"):
			continue
		case t == "" && cur.Len() == 0:
			continue
		case strings.HasPrefix(t, "#") || strings.Contains(t, "/*"):
			return nil, fmt.Errorf("line %d: only -- comments on their own line are supported", lineNo)
		}
		if cur.Len() == 0 {
			start = lineNo
		}
		cur.WriteString(line)
		if !strings.HasSuffix(t, ";") {
			continue
		}
		s := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"))
		cur.Reset()
		if s == "" {
			return nil, fmt.Errorf("line %d: empty statement", lineNo)
		}
		stmts = append(stmts, s)
	}
	if strings.TrimSpace(cur.String()) != "" {
		return nil, fmt.Errorf("line %d: statement does not end with ';' at the end of a line", start)
	}
	if len(stmts) == 0 {
		return nil, fmt.Errorf("no statements")
	}
	return stmts, nil
}
