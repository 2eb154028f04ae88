package cli

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"unicode/utf8"
)

// Output formats of the list commands.
const (
	formatTable   = "table"
	formatCompact = "compact"
	formatCSV     = "csv"
	formatJSON    = "json"
	formatYAML    = "yaml"
)

// renderTable prints rows in one of the list formats. table, compact and
// csv print header and rows; json and yaml print data, the full objects the
// rows were made from, as lxc does.
func renderTable(w io.Writer, format string, header []string, rows [][]string, data any) error {
	switch format {
	case formatTable:
		drawTable(w, header, rows)
	case formatCompact:
		drawCompact(w, header, rows)
	case formatCSV:
		cw := csv.NewWriter(w)
		if err := cw.WriteAll(rows); err != nil {
			return fmt.Errorf("write csv: %w", err)
		}
	case formatJSON:
		out, err := json.Marshal(data)
		if err != nil {
			return fmt.Errorf("encode json: %w", err)
		}
		fmt.Fprintf(w, "%s\n", out)
	case formatYAML:
		out, err := marshalYAML(data)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s", out)
	default:
		return fmt.Errorf("Invalid format %q", format)
	}
	return nil
}

// cellLines splits a cell into its lines; a multi-line cell (several IP
// addresses) takes several lines of the table.
func cellLines(cell string) []string {
	return strings.Split(cell, "\n")
}

// headerTitle is how lxc's tables print a header: upper case, with "."
// and "_" as spaces (a custom column "user.comment" shows "USER COMMENT").
func headerTitle(h string) string {
	return strings.ToUpper(strings.NewReplacer("_", " ", ".", " ").Replace(h))
}

// columnWidths is the widest line of each column, header included.
func columnWidths(header []string, rows [][]string) []int {
	widths := make([]int, len(header))
	for i, h := range header {
		widths[i] = utf8.RuneCountInString(headerTitle(h))
	}
	for _, row := range rows {
		for i := range widths {
			if i >= len(row) {
				continue
			}
			for _, line := range cellLines(row[i]) {
				widths[i] = max(widths[i], utf8.RuneCountInString(line))
			}
		}
	}
	return widths
}

func padRight(s string, width int) string {
	return s + strings.Repeat(" ", max(0, width-utf8.RuneCountInString(s)))
}

// center places s in the middle of width, the extra space going right.
func center(s string, width int) string {
	gap := max(0, width-utf8.RuneCountInString(s))
	return strings.Repeat(" ", gap/2) + s + strings.Repeat(" ", gap-gap/2)
}

// rowLines expands a row into the text lines of its cells, padded.
func rowLines(row []string, widths []int) [][]string {
	height := 1
	cells := make([][]string, len(widths))
	for i := range widths {
		if i < len(row) {
			cells[i] = cellLines(row[i])
		}
		height = max(height, len(cells[i]))
	}
	lines := make([][]string, height)
	for l := range lines {
		lines[l] = make([]string, len(widths))
		for i, w := range widths {
			text := ""
			if l < len(cells[i]) {
				text = cells[i][l]
			}
			lines[l][i] = padRight(text, w)
		}
	}
	return lines
}

// drawTable draws the bordered table of lxc: centered headers, left-aligned
// cells and a rule between rows.
func drawTable(w io.Writer, header []string, rows [][]string) {
	widths := columnWidths(header, rows)
	var rule strings.Builder
	rule.WriteString("+")
	for _, width := range widths {
		rule.WriteString(strings.Repeat("-", width+2))
		rule.WriteString("+")
	}
	line := func(cells []string) {
		var b strings.Builder
		b.WriteString("|")
		for _, c := range cells {
			b.WriteString(" ")
			b.WriteString(c)
			b.WriteString(" |")
		}
		fmt.Fprintln(w, b.String())
	}

	fmt.Fprintln(w, rule.String())
	centered := make([]string, len(header))
	for i, h := range header {
		centered[i] = center(headerTitle(h), widths[i])
	}
	line(centered)
	fmt.Fprintln(w, rule.String())
	for _, row := range rows {
		for _, l := range rowLines(row, widths) {
			line(l)
		}
		fmt.Fprintln(w, rule.String())
	}
}

// drawCompact draws the table without borders, columns two spaces apart, as
// lxc's compact format does.
func drawCompact(w io.Writer, header []string, rows [][]string) {
	widths := columnWidths(header, rows)
	line := func(cells []string) {
		fmt.Fprintf(w, "  %s  \n", strings.Join(cells, "  "))
	}
	centered := make([]string, len(header))
	for i, h := range header {
		centered[i] = center(headerTitle(h), widths[i])
	}
	line(centered)
	for _, row := range rows {
		for _, l := range rowLines(row, widths) {
			line(l)
		}
	}
}

// sortRows sorts table rows column by column in natural order ("c2" before
// "c10"), as lxc sorts its lists.
func sortRows(rows [][]string) {
	sort.SliceStable(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		for k := 0; k < len(a) && k < len(b); k++ {
			if a[k] == b[k] {
				continue
			}
			return naturalLess(a[k], b[k])
		}
		return len(a) < len(b)
	})
}

// naturalLess compares strings with runs of digits compared as numbers.
func naturalLess(a, b string) bool {
	for a != "" && b != "" {
		da, db := isDigit(a[0]), isDigit(b[0])
		switch {
		case da && db:
			na, ra := splitDigits(a)
			nb, rb := splitDigits(b)
			// Compare numerically: strip leading zeros, then by length, then
			// by digits.
			ta, tb := strings.TrimLeft(na, "0"), strings.TrimLeft(nb, "0")
			if len(ta) != len(tb) {
				return len(ta) < len(tb)
			}
			if ta != tb {
				return ta < tb
			}
			if na != nb {
				return len(na) < len(nb)
			}
			a, b = ra, rb
		case a[0] != b[0]:
			return a[0] < b[0]
		default:
			a, b = a[1:], b[1:]
		}
	}
	return len(a) < len(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func splitDigits(s string) (digits, rest string) {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

// sizeSI renders a byte count with decimal units and two decimals
// ("1.01kB"), as lxc does for network traffic and transfer rates.
func sizeSI(n int64) string {
	return byteSize(n, 1000, []string{"B", "kB", "MB", "GB", "TB", "PB", "EB"})
}

// sizeIEC renders a byte count with binary units and two decimals
// ("632.00KiB"), as lxc does for memory and disk usage.
func sizeIEC(n int64) string {
	return byteSize(n, 1024, []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"})
}

func byteSize(n int64, base float64, units []string) string {
	if float64(n) < base {
		return fmt.Sprintf("%dB", n)
	}
	v := float64(n)
	i := 0
	for v >= base && i < len(units)-1 {
		v /= base
		i++
	}
	return fmt.Sprintf("%.2f%s", v, units[i])
}
