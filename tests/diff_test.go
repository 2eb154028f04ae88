package tests

import (
	"slices"
	"strings"
	"testing"
)

// diffLines runs c diff and returns its lines.
func diffLines(t *testing.T, d interface{ MustC(...string) string }, args ...string) []string {
	t.Helper()
	out := strings.TrimSpace(d.MustC(append([]string{"diff"}, args...)...))
	if out == "" {
		return nil
	}
	return strings.Split(out, "\n")
}

// TestDiff: `c diff` lists exactly the files a container added, changed
// and deleted since its image, and since a snapshot.
func TestDiff(t *testing.T) {
	d := busyboxDaemon(t)
	d.Launch("bb", "C01", nil)
	// What starting it changed (files rendered from the image's templates).
	baseline := diffLines(t, d, "C01")
	if len(baseline) > 5 {
		t.Errorf("a fresh container differs from its image in %d files:\n%s", len(baseline), strings.Join(baseline, "\n"))
	}
	for _, l := range baseline {
		if !strings.HasPrefix(l, "C ") && !strings.HasPrefix(l, "A ") {
			t.Errorf("a fresh container deleted something: %q", l)
		}
	}
	d.MustC("exec", "C01", "--", "sh", "-c", strings.Join([]string{
		"echo more >> /etc/passwd",
		"mkdir -p /data/sub && echo 1 > /data/sub/f && echo 2 > /data/g",
		"rm /etc/inittab",
		"ln -s /etc/passwd /data/link",
		"chmod 0600 /etc/profile 2>/dev/null || touch /etc/profile",
	}, " && "))
	want := append(slices.Clone(baseline), "C /etc/passwd", "A /data", "A /data/sub", "A /data/sub/f", "A /data/g",
		"D /etc/inittab", "A /data/link")
	if !slices.Contains(baseline, "C /etc/profile") {
		want = append(want, "C /etc/profile")
	}
	got := diffLines(t, d, "C01")
	if !sameSet(got, want) {
		t.Errorf("c diff C01:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Since a snapshot: only what came after it.
	d.MustC("snapshot", "C01", "s0")
	d.MustC("exec", "C01", "--", "sh", "-c", "rm -r /data/sub && echo 3 > /data/g && echo new > /data/h")
	got = diffLines(t, d, "C01", "s0")
	if want := []string{"D /data/sub", "C /data/g", "A /data/h"}; !sameSet(got, want) {
		t.Errorf("c diff C01 s0:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, errOut, code := d.C("diff", "C01", "nosuch"); code == 0 || !strings.Contains(errOut, "not found") {
		t.Errorf("diff against a missing snapshot: exit %d %q", code, errOut)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b)) && len(a) == len(b)
}
