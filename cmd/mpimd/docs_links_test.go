package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

var (
	// inlineLink is [text](target) or ![alt](target), with an optional title.
	inlineLink = regexp.MustCompile(`!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)`)
	// refLink is a reference definition: [label]: target.
	refLink    = regexp.MustCompile(`^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)`)
	codeSpan   = regexp.MustCompile("`+[^`]*`+")
	htmlAnchor = regexp.MustCompile(`<a\s+(?:name|id)="([^"]+)"`)
)

// markdownDoc is what the link check needs of one file: its links (with
// line numbers) and the anchors its headings define.
type markdownDoc struct {
	links   []docLink
	anchors map[string]bool
}

type docLink struct {
	line   int
	target string
}

// parseMarkdown collects links and heading anchors outside code blocks and
// code spans. Anchors follow GitHub's rule: the heading text lowercased,
// every character but letters, digits, spaces, '-' and '_' dropped, spaces
// turned into '-'; a repeated heading gets "-1", "-2", ...
func parseMarkdown(text string) markdownDoc {
	d := markdownDoc{anchors: map[string]bool{}}
	seen := map[string]int{}
	fence := ""
	for i, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if fence != "" {
			if strings.HasPrefix(trimmed, fence) {
				fence = ""
			}
			continue
		}
		if strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~") {
			fence = trimmed[:3]
			continue
		}
		if strings.HasPrefix(line, "    ") || strings.HasPrefix(line, "\t") {
			continue // an indented code block (the docs indent examples)
		}
		for _, m := range htmlAnchor.FindAllStringSubmatch(line, -1) {
			d.anchors[m[1]] = true
		}
		if strings.HasPrefix(trimmed, "#") {
			title := strings.TrimSpace(strings.TrimLeft(trimmed, "#"))
			slug := slugify(title)
			if n := seen[slug]; n > 0 {
				d.anchors[slug+"-"+strconv.Itoa(n)] = true
			} else {
				d.anchors[slug] = true
			}
			seen[slug]++
		}
		plain := codeSpan.ReplaceAllString(line, "")
		for _, m := range inlineLink.FindAllStringSubmatch(plain, -1) {
			d.links = append(d.links, docLink{i + 1, m[1]})
		}
		if m := refLink.FindStringSubmatch(plain); m != nil {
			d.links = append(d.links, docLink{i + 1, m[1]})
		}
	}
	return d
}

func slugify(title string) string {
	title = codeSpan.ReplaceAllStringFunc(title, func(s string) string { return strings.Trim(s, "`") })
	var b strings.Builder
	for _, r := range strings.ToLower(title) {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

// TestDocsLinksResolve checks every relative link and #anchor of README.md
// and docs/*.md: the file exists, and the anchor is a heading of it.
func TestDocsLinksResolve(t *testing.T) {
	files, err := filepath.Glob("../../docs/*.md")
	if err != nil || len(files) == 0 {
		t.Fatalf("no docs found: %v", err)
	}
	files = append(files, "../../README.md")
	docs := map[string]markdownDoc{}
	load := func(path string) (markdownDoc, error) {
		if d, ok := docs[path]; ok {
			return d, nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return markdownDoc{}, err
		}
		docs[path] = parseMarkdown(string(b))
		return docs[path], nil
	}
	checked := 0
	for _, f := range files {
		d, err := load(filepath.Clean(f))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range d.links {
			if strings.Contains(l.target, "://") || strings.HasPrefix(l.target, "mailto:") {
				continue
			}
			checked++
			path, anchor, _ := strings.Cut(l.target, "#")
			target := filepath.Clean(f)
			if path != "" {
				target = filepath.Join(filepath.Dir(f), path)
			}
			if _, err := os.Stat(target); err != nil {
				t.Errorf("%s:%d links to %s: %v", filepath.Base(f), l.line, l.target, err)
				continue
			}
			if anchor == "" {
				continue
			}
			if !strings.HasSuffix(target, ".md") {
				t.Errorf("%s:%d links to %s: an anchor in a file that is not Markdown", filepath.Base(f), l.line, l.target)
				continue
			}
			td, err := load(target)
			if err != nil {
				t.Fatal(err)
			}
			if !td.anchors[anchor] {
				t.Errorf("%s:%d links to %s: %s has no heading with anchor #%s", filepath.Base(f), l.line, l.target, filepath.Base(target), anchor)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no relative links found: the link parser is broken")
	}
}

// TestSlugifyFollowsGitHub pins the anchor rule the link check relies on.
func TestSlugifyFollowsGitHub(t *testing.T) {
	for title, want := range map[string]string{
		"Rules every test follows":             "rules-every-test-follows",
		"`mpimctl tail` and `export`":          "mpimctl-tail-and-export",
		"Tap groups: dead letters (DLQ)":       "tap-groups-dead-letters-dlq",
		"What happens on a crash?":             "what-happens-on-a-crash",
		"Redis 7.0 / MySQL 8":                  "redis-70--mysql-8",
		"snake_case and hyphen-ated":           "snake_case-and-hyphen-ated",
		"Ünïcode letters stay":                 "ünïcode-letters-stay",
		"Trailing punctuation, commas; colons": "trailing-punctuation-commas-colons",
	} {
		if got := slugify(title); got != want {
			t.Errorf("slugify(%q) = %q, want %q", title, got, want)
		}
	}
	d := parseMarkdown("# A\n## A\n```\n# not a heading\n[x](nowhere.md)\n```\n    [y](indented.md)\n`[z](span.md)` [w](real.md#a-1)\n")
	if !d.anchors["a"] || !d.anchors["a-1"] || d.anchors["not-a-heading"] {
		t.Errorf("anchors %v", d.anchors)
	}
	if len(d.links) != 1 || d.links[0].target != "real.md#a-1" || d.links[0].line != 8 {
		t.Errorf("links %v", d.links)
	}
}
