package snapshots

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/flosch/pongo2/v6"
)

// noLoader refuses every file: a pattern is user input and must never read
// files on the host.
type noLoader struct{}

func (noLoader) Abs(_, name string) string { return name }

func (noLoader) Get(name string) (io.Reader, error) {
	return nil, fmt.Errorf("snapshot patterns cannot load files (%q)", name)
}

// renderTemplate renders a pongo2 pattern in a sandbox: the tags that
// read files are banned (ssi reads them directly, the others go through
// the loader, which refuses anyway). A set per render: pongo2 sets are not
// safe for concurrent first use.
func renderTemplate(pattern string, created time.Time) (string, error) {
	set := pongo2.NewSet("cell-snapshot-pattern", noLoader{})
	for _, tag := range []string{"include", "import", "extends", "ssi"} {
		if err := set.BanTag(tag); err != nil {
			return "", fmt.Errorf("sandbox pattern: %w", err)
		}
	}
	tpl, err := set.FromString("{% autoescape off %}" + pattern + "{% endautoescape %}")
	if err != nil {
		return "", fmt.Errorf("pattern %q: %w", pattern, err)
	}
	out, err := tpl.Execute(pongo2.Context{"creation_date": created})
	if err != nil {
		return "", fmt.Errorf("pattern %q: %w", pattern, err)
	}
	return out, nil
}

// CheckPattern checks a snapshots.pattern without naming anything: it
// must render, and hold "%d" at most once.
func CheckPattern(pattern string) error {
	out, err := renderTemplate(pattern, time.Now())
	if err != nil {
		return err
	}
	if strings.Count(out, "%d") > 1 {
		return fmt.Errorf("pattern %q renders to %q, which holds \"%%d\" more than once (at most once)", pattern, out)
	}
	if strings.TrimSpace(out) == "" {
		return fmt.Errorf("pattern %q renders to an empty name", pattern)
	}
	return nil
}

// Name renders a snapshots.pattern (DefaultPattern when empty) into the
// name of a snapshot taken at created, given the names the instance's
// snapshots already have. As in LXD, creation_date is the only variable
// of the pongo2 template, and:
//   - a "%d" in the result is replaced with an integer, so that the name
//     is free: here the smallest free one (snap0, snap1, ... refilling
//     gaps, as celld named snapshots before patterns);
//   - a result without "%d" that is already taken gets "-%d" appended and
//     is numbered the same way ("auto" then "auto-0", "auto-1").
func Name(pattern string, created time.Time, taken []string) (string, error) {
	if pattern == "" {
		pattern = DefaultPattern
	}
	name, err := renderTemplate(pattern, created)
	if err != nil {
		return "", err
	}
	used := make(map[string]bool, len(taken))
	for _, n := range taken {
		used[n] = true
	}
	switch strings.Count(name, "%d") {
	case 0:
		if !used[name] {
			return name, nil
		}
		name += "-%d"
	case 1:
	default:
		return "", fmt.Errorf("pattern %q renders to %q, which holds \"%%d\" more than once (at most once)", pattern, name)
	}
	for i := 0; ; i++ {
		if n := strings.Replace(name, "%d", strconv.Itoa(i), 1); !used[n] {
			return n, nil
		}
	}
}
