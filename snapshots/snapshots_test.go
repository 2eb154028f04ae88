package snapshots

import (
	"strings"
	"testing"
	"time"
)

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse("2006-01-02 15:04:05", s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestParseScheduleNext(t *testing.T) {
	after := "2024-02-28 10:17:30" // a Wednesday, leap year
	for _, c := range []struct {
		spec, want string
	}{
		{"* * * * *", "2024-02-28 10:18:00"},
		{"0 */6 * * *", "2024-02-28 12:00:00"},
		{"0,30 * * * *", "2024-02-28 10:30:00"},
		{"@hourly", "2024-02-28 11:00:00"},
		{"@daily", "2024-02-29 00:00:00"},
		{"@midnight", "2024-02-29 00:00:00"},
		{"@weekly", "2024-03-03 00:00:00"},
		{"@monthly", "2024-03-01 00:00:00"},
		{"@yearly", "2025-01-01 00:00:00"},
		{"@annually", "2025-01-01 00:00:00"},
		{"0 0 29 2 *", "2024-02-29 00:00:00"},
		{"@daily, 0,45 10 * * *", "2024-02-28 10:45:00"}, // the earliest entry wins
		{"@startup, @hourly", "2024-02-28 11:00:00"},
		{"@startup", ""},
		{"", ""},
	} {
		s, err := ParseSchedule(c.spec)
		if err != nil {
			t.Errorf("ParseSchedule(%q): %v", c.spec, err)
			continue
		}
		got := s.Next(mustTime(t, after))
		if c.want == "" {
			if !got.IsZero() {
				t.Errorf("%q: Next = %v, want none", c.spec, got)
			}
			continue
		}
		if want := mustTime(t, c.want); !got.Equal(want) {
			t.Errorf("%q: Next(%s) = %v, want %v", c.spec, after, got, want)
		}
	}
}

func TestScheduleStartupAndEmpty(t *testing.T) {
	s, _ := ParseSchedule("@startup")
	if !s.Startup || s.Empty() {
		t.Errorf("@startup: %+v", s)
	}
	s, _ = ParseSchedule("")
	if s.Startup || !s.Empty() {
		t.Errorf("empty schedule: %+v", s)
	}
}

func TestScheduleDue(t *testing.T) {
	s, _ := ParseSchedule("0 * * * *")
	for _, c := range []struct {
		last, now string
		want      bool
	}{
		{"2024-01-01 09:59:00", "2024-01-01 10:00:00", true},
		{"2024-01-01 10:00:00", "2024-01-01 10:01:00", false}, // fired already
		{"2024-01-01 09:30:00", "2024-01-01 11:30:00", true},  // runs missed: once
		{"2024-01-01 10:01:00", "2024-01-01 10:59:59", false},
	} {
		if got := s.Due(mustTime(t, c.last), mustTime(t, c.now)); got != c.want {
			t.Errorf("Due(%s, %s) = %v, want %v", c.last, c.now, got, c.want)
		}
	}
	empty, _ := ParseSchedule("@startup")
	if empty.Due(time.Time{}, time.Now()) {
		t.Error("@startup alone is due by the clock")
	}
}

func TestParseScheduleErrors(t *testing.T) {
	for _, c := range []struct{ spec, want string }{
		{"* * * *", "has 4 fields, want 5"},
		{"0 * * * * *", "has 6 fields"},
		{"61 * * * *", "61"},
		{"* 25 * * *", "25"},
		{"a b c d e", "\"a b c d e\""},
		{"@every 1h", "unknown schedule alias \"@every"},
		{"@often", "unknown schedule alias \"@often\""},
		{"@hourly,@daily", "unknown schedule alias"},
		{"@hourly, ", "empty entry"},
		{"TZ=UTC * * * * *", "has 6 fields"},
	} {
		_, err := ParseSchedule(c.spec)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseSchedule(%q) = %v, want an error containing %q", c.spec, err, c.want)
		}
	}
}

func TestParseExpiry(t *testing.T) {
	base := mustTime(t, "2024-01-31 12:00:00")
	for _, c := range []struct{ expr, want string }{
		{"30S", "2024-01-31 12:00:30"},
		{"1M", "2024-01-31 12:01:00"},
		{"2H", "2024-01-31 14:00:00"},
		{"3d", "2024-02-03 12:00:00"},
		{"2w", "2024-02-14 12:00:00"},
		{"1m", "2024-03-02 12:00:00"}, // Feb 31st normalises, as time.AddDate
		{"1y", "2025-01-31 12:00:00"},
		{"1M 2H 3d 4w 5m 6y", "2030-08-01 14:01:00"}, // 2030-06-31 is July 1st, +31d
		{"  2H   1M ", "2024-01-31 14:01:00"},
	} {
		e, err := ParseExpiry(c.expr)
		if err != nil {
			t.Errorf("ParseExpiry(%q): %v", c.expr, err)
			continue
		}
		if got, want := e.From(base), mustTime(t, c.want); !got.Equal(want) {
			t.Errorf("%q: From = %v, want %v", c.expr, got, want)
		}
	}
	for _, none := range []string{"", "   ", "0d", "0M 0H"} {
		e, err := ParseExpiry(none)
		if err != nil || !e.IsZero() || !e.From(base).IsZero() {
			t.Errorf("ParseExpiry(%q) = %+v, %v; want no expiry", none, e, err)
		}
	}
}

func TestParseExpiryErrors(t *testing.T) {
	for _, c := range []struct{ expr, want string }{
		{"1", "\"1\" in expiry \"1\" is not a number followed by a unit"},
		{"d", "\"d\" in expiry"},
		{"1D", "\"1D\""},
		{"-1d", "\"-1d\""},
		{"1.5d", "\"1.5d\""},
		{"1d2H", "\"1d2H\""},
		{"1d 2d", "unit \"d\" appears twice"},
		{"99999999999999999999d", "too large"},
	} {
		_, err := ParseExpiry(c.expr)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseExpiry(%q) = %v, want an error containing %q", c.expr, err, c.want)
		}
	}
}

func TestName(t *testing.T) {
	created := mustTime(t, "2024-05-06 07:08:09")
	for _, c := range []struct {
		pattern string
		taken   []string
		want    string
	}{
		{"", nil, "snap0"},
		{"", []string{"snap0", "snap1"}, "snap2"},
		{"", []string{"snap1", "other"}, "snap0"},
		{"snap%d", []string{"snap0", "snap2"}, "snap1"},
		{"auto-{{ creation_date|date:'2006-01-02' }}-%d", nil, "auto-2024-05-06-0"},
		{"auto-{{ creation_date|date:'2006-01-02' }}-%d", []string{"auto-2024-05-06-0"}, "auto-2024-05-06-1"},
		{"{{ creation_date|date:'20060102-1504' }}", nil, "20240506-0708"},
		{"{{ creation_date|date:'20060102-1504' }}", []string{"20240506-0708"}, "20240506-0708-0"},
		{"daily", []string{"daily", "daily-0"}, "daily-1"},
		{"%d-x", []string{"0-x"}, "1-x"},
		{"<&>", nil, "<&>"}, // not HTML: no escaping
	} {
		got, err := Name(c.pattern, created, c.taken)
		if err != nil || got != c.want {
			t.Errorf("Name(%q, %v) = %q, %v; want %q", c.pattern, c.taken, got, err, c.want)
		}
	}
}

func TestPatternErrors(t *testing.T) {
	for _, c := range []struct{ pattern, want string }{
		{"snap%d-%d", "more than once"},
		{"{{ creation_date", "pattern \"{{ creation_date\""},
		{"{% include '/etc/passwd' %}", "include"},
		{"{% ssi '/etc/passwd' %}", "ssi"},
		{"{{ '' }}", "empty name"},
	} {
		err := CheckPattern(c.pattern)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("CheckPattern(%q) = %v, want an error containing %q", c.pattern, err, c.want)
		}
	}
	if _, err := Name("a%db%d", time.Now(), nil); err == nil || !strings.Contains(err.Error(), "more than once") {
		t.Errorf("Name with two %%d: %v", err)
	}
	for _, ok := range []string{"snap%d", "auto-{{ creation_date|date:'2006-01-02' }}-%d", "fixed"} {
		if err := CheckPattern(ok); err != nil {
			t.Errorf("CheckPattern(%q): %v", ok, err)
		}
	}
}
