package snapshots

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

var expiryTerm = regexp.MustCompile(`^(\d+)([SMHdwmy])$`)

// Expiry is a parsed snapshots.expiry.
type Expiry struct {
	seconds, minutes, hours, days, weeks, months, years int
	set                                                 bool
}

// ParseExpiry reads snapshots.expiry as LXD does: space-separated terms
// such as "1M 2H 3d 4w 5m 6y", each a number and a unit: S seconds,
// M minutes, H hours, d days, w weeks, m months, y years; each unit at
// most once. An empty value is no expiry; so is one whose terms are all
// zero ("0d"), rather than snapshots that expire as soon as they are made.
func ParseExpiry(v string) (Expiry, error) {
	var e Expiry
	seen := map[string]bool{}
	for _, term := range strings.Fields(v) {
		m := expiryTerm.FindStringSubmatch(term)
		if m == nil {
			return Expiry{}, fmt.Errorf("%q in expiry %q is not a number followed by a unit (S seconds, M minutes, H hours, d days, w weeks, m months, y years), as in \"1M 2H 3d 4w 5m 6y\"", term, v)
		}
		if seen[m[2]] {
			return Expiry{}, fmt.Errorf("unit %q appears twice in expiry %q", m[2], v)
		}
		seen[m[2]] = true
		n, err := strconv.Atoi(m[1])
		if err != nil || n > 1_000_000 {
			return Expiry{}, fmt.Errorf("%q in expiry %q is too large", term, v)
		}
		switch m[2] {
		case "S":
			e.seconds = n
		case "M":
			e.minutes = n
		case "H":
			e.hours = n
		case "d":
			e.days = n
		case "w":
			e.weeks = n
		case "m":
			e.months = n
		case "y":
			e.years = n
		}
		if n > 0 {
			e.set = true
		}
	}
	return e, nil
}

// IsZero reports whether the expiry is empty: snapshots never expire.
func (e Expiry) IsZero() bool { return !e.set }

// From returns the expiry date of a snapshot taken at t, or the zero time
// (never) for an empty expiry. Calendar units follow time.AddDate.
func (e Expiry) From(t time.Time) time.Time {
	if !e.set {
		return time.Time{}
	}
	return t.AddDate(e.years, e.months, e.days+7*e.weeks).
		Add(time.Duration(e.hours)*time.Hour + time.Duration(e.minutes)*time.Minute + time.Duration(e.seconds)*time.Second)
}
