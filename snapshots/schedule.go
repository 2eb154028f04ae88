package snapshots

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// aliases are the @names snapshots.schedule accepts besides @startup, as
// the cron expressions they stand for.
var aliases = map[string]string{
	"@hourly":   "0 * * * *",
	"@daily":    "0 0 * * *",
	"@midnight": "0 0 * * *",
	"@weekly":   "0 0 * * 0",
	"@monthly":  "0 0 1 * *",
	"@yearly":   "0 0 1 1 *",
	"@annually": "0 0 1 1 *",
}

// cronParser reads exactly the five standard fields: no seconds, no
// descriptors (aliases are ours), no time zone prefix.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)

// Schedule is a parsed snapshots.schedule: any number of cron expressions
// and aliases, and whether @startup is among them.
type Schedule struct {
	crons   []cron.Schedule
	Startup bool // @startup: a snapshot when the daemon starts
}

// ParseSchedule reads snapshots.schedule: a cron expression
// ("<minute> <hour> <dom> <month> <dow>") or a comma-and-space-separated
// list of cron expressions and aliases (@startup, @hourly, @daily,
// @midnight, @weekly, @monthly, @yearly, @annually). ", " separates the
// entries because a cron field may itself hold commas ("0,30 * * * *").
// An empty value is an empty schedule: never due.
func ParseSchedule(spec string) (Schedule, error) {
	var s Schedule
	if strings.TrimSpace(spec) == "" {
		return s, nil
	}
	for _, entry := range strings.Split(spec, ", ") {
		entry = strings.TrimSpace(entry)
		switch {
		case entry == "":
			return Schedule{}, fmt.Errorf("empty entry in schedule %q (separate entries with \", \")", spec)
		case entry == "@startup":
			s.Startup = true
			continue
		case strings.HasPrefix(entry, "@"):
			expr, ok := aliases[entry]
			if !ok {
				return Schedule{}, fmt.Errorf("unknown schedule alias %q (allowed: @startup, @hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually)", entry)
			}
			entry = expr
		}
		if n := len(strings.Fields(entry)); n != 5 {
			return Schedule{}, fmt.Errorf("cron expression %q has %d fields, want 5: <minute> <hour> <day-of-month> <month> <day-of-week>", entry, n)
		}
		c, err := cronParser.Parse(entry)
		if err != nil {
			return Schedule{}, fmt.Errorf("cron expression %q: %w", entry, err)
		}
		s.crons = append(s.crons, c)
	}
	return s, nil
}

// Empty reports whether the schedule never fires (not even at startup).
func (s Schedule) Empty() bool { return len(s.crons) == 0 && !s.Startup }

// Next returns the first time strictly after after at which a cron entry
// fires, in after's location, or the zero time when there is none (an
// empty schedule, or only @startup).
func (s Schedule) Next(after time.Time) time.Time {
	var next time.Time
	for _, c := range s.crons {
		n := c.Next(after)
		if !n.IsZero() && (next.IsZero() || n.Before(next)) {
			next = n
		}
	}
	return next
}

// Due reports whether the schedule fires in the window (last, now]: the
// task that runs it passes the time of its previous run as last, so that
// a late or skipped run still fires once, never twice.
func (s Schedule) Due(last, now time.Time) bool {
	n := s.Next(last)
	return !n.IsZero() && !n.After(now)
}
