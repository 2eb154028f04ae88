package cli

import (
	"bytes"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// marshalYAML encodes v the way lxc prints YAML: two-space indentation and
// sequences under a mapping key not indented ("profiles:\n- default"), so
// that `c` output matches what LXD users see and diff against.
func marshalYAML(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode yaml: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode yaml: %w", err)
	}
	return []byte(compactSequences(buf.String())), nil
}

// compactSequences rewrites yaml.v3 output (indent 2), which indents a
// block sequence two spaces under its key, into the indentless style of
// yaml.v2 that lxc prints. Every line of such a sequence moves two columns
// left. Block scalars (|, >) are carried along unchanged relative to their
// key, so text inside them that looks like YAML is never rewritten.
func compactSequences(in string) string {
	lines := strings.Split(in, "\n")
	out := make([]string, len(lines))

	// regions holds the indentation at which each open indented sequence
	// starts; lines at or beyond it are shifted.
	var regions []int
	scalarKey := -1 // column of the key owning an open block scalar, or -1

	for i, line := range lines {
		trimmed := strings.TrimLeft(line, " ")
		indent := len(line) - len(trimmed)
		blank := trimmed == ""

		if scalarKey >= 0 && (blank || indent > scalarKey) {
			out[i] = shift(line, 2*len(regions))
			continue
		}
		scalarKey = -1

		if !blank {
			for len(regions) > 0 && indent < regions[len(regions)-1] {
				regions = regions[:len(regions)-1]
			}
		}
		out[i] = shift(line, 2*len(regions))
		if blank {
			continue
		}

		// Where does this line's key start ("- - key:" puts it after the
		// dashes), and does it open a block scalar or a nested block?
		keyCol := indent
		rest := trimmed
		for strings.HasPrefix(rest, "- ") {
			keyCol += 2
			rest = rest[2:]
		}
		if isBlockScalarHeader(rest) {
			scalarKey = keyCol
			if rest[0] == '|' || rest[0] == '>' {
				// A sequence item's own scalar: its text starts at keyCol.
				scalarKey = keyCol - 1
			}
			continue
		}
		if strings.HasSuffix(rest, ":") && i+1 < len(lines) {
			next := lines[i+1]
			nextTrimmed := strings.TrimLeft(next, " ")
			if len(next)-len(nextTrimmed) == keyCol+2 && strings.HasPrefix(nextTrimmed, "- ") {
				regions = append(regions, keyCol+2)
			}
		}
	}
	return strings.Join(out, "\n")
}

// isBlockScalarHeader reports whether a "key: |" line (or a sequence item
// "|") starts a literal or folded block scalar.
func isBlockScalarHeader(s string) bool {
	value := s
	if _, after, ok := strings.Cut(s, ": "); ok {
		value = after
	}
	value = strings.TrimSpace(value)
	if value == "" || (value[0] != '|' && value[0] != '>') {
		return false
	}
	// The header is only the indicator with its chomping and indentation
	// modifiers, like "|-", ">+" or "|2".
	return strings.Trim(value[1:], "+-0123456789") == ""
}

func shift(line string, n int) string {
	if n == 0 {
		return line
	}
	return line[min(n, len(line)-len(strings.TrimLeft(line, " "))):]
}
