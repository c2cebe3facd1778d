package domain

import "testing"

// TestNamesRefuseSpoofing checks that every kind of name (usernames, display
// names, group names) refuses bidi embeddings, overrides and isolates, and
// names made only of invisible characters, and still takes ordinary
// non-Latin names and names with a zero-width joiner between letters.
func TestNamesRefuseSpoofing(t *testing.T) {
	refused := map[string]string{
		"right-to-left override":    "alice\u202Egnp.exe",
		"left-to-right embedding":   "\u202Abob",
		"pop directional":           "bob\u202C",
		"left-to-right override":    "b\u202Dob",
		"right-to-left isolate":     "x\u2067y",
		"first strong isolate":      "x\u2068y",
		"pop directional isolate":   "xy\u2069",
		"zero-width spaces only":    "\u200B\u200B",
		"zero-width joiners only":   "\u200D\u200C\u2060",
		"byte order mark only":      "\uFEFF",
		"soft hyphen only":          "\u00AD",
		"hangul filler only":        "\u3164",
		"braille blank only":        "\u2800",
		"invisible and spaces only": " \u200B \u00A0\u2003 ",
		"variation selector only":   "\uFE0F",
	}
	accepted := []string{"Zoë", "Анна", "小明", "👩\u200D💻 dev", "עברית"}
	registered := []Event{UserRegistered{User: uid(1), Username: "alice", PasswordHash: hash}}
	team := teamHistory(false)
	kinds := []struct {
		name   string
		decide func(name string) error
	}{
		{"username", func(n string) error {
			_, err := NormalizeUsername(n)
			return err
		}},
		{"display name at registration", func(n string) error {
			u, _ := RebuildUser(uid(1), nil)
			_, err := u.Decide(RegisterUser{User: uid(1), Username: "alice", PasswordHash: hash, DisplayName: n}, t0, DefaultPolicy())
			return err
		}},
		{"display name update", func(n string) error {
			u, _ := RebuildUser(uid(1), registered)
			_, err := u.Decide(UpdateProfile{DisplayName: n}, t0, DefaultPolicy())
			return err
		}},
		{"group name at creation", func(n string) error {
			g, _ := RebuildGroup(g1, nil)
			_, err := g.Decide(CreateGroup{Group: g1, Name: n, Owner: owner}, t0, DefaultPolicy())
			return err
		}},
		{"group rename", func(n string) error {
			g, _ := RebuildGroup(g1, team)
			_, err := g.Decide(RenameGroup{Actor: owner, Name: n}, t0, DefaultPolicy())
			return err
		}},
	}
	for _, k := range kinds {
		for what, n := range refused {
			t.Run(k.name+" with "+what+" is invalid", func(t *testing.T) {
				wantCode(t, k.decide(n), EInvalid)
			})
		}
		if k.name == "username" {
			continue // usernames are ASCII only
		}
		for _, n := range accepted {
			t.Run(k.name+" "+n+" is accepted", func(t *testing.T) {
				wantCode(t, k.decide(n), "")
			})
		}
	}
}
