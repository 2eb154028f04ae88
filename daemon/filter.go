package daemon

import (
	"encoding/json"
	"fmt"
	"strings"

	"cell/shared/api"
)

// instanceFilter is the ?filter= of instance lists (LXD's api_filtering):
// clauses "FIELD eq VALUE" or "FIELD ne VALUE", each optionally preceded
// by "not", joined by "and" and "or" ("and" binds tighter). FIELD is a
// JSON field of the instance, with dots into maps: name, status,
// architecture, config.user.foo, expanded_config.image.os, ...
type instanceFilter [][]filterClause // OR of ANDs

type filterClause struct {
	field, value string
	negate       bool
}

func parseFilter(s string) (instanceFilter, error) {
	words, err := splitFilterWords(s)
	if err != nil {
		return nil, err
	}
	if len(words) == 0 {
		return nil, nil
	}
	var out instanceFilter
	var group []filterClause
	for len(words) > 0 {
		negate := false
		for len(words) > 0 && words[0] == "not" {
			negate = !negate
			words = words[1:]
		}
		if len(words) < 3 || (words[1] != "eq" && words[1] != "ne") {
			return nil, badRequest("invalid filter %q: use FIELD eq VALUE or FIELD ne VALUE, joined by and/or", s)
		}
		c := filterClause{field: words[0], value: words[2], negate: negate != (words[1] == "ne")}
		group = append(group, c)
		words = words[3:]
		if len(words) == 0 {
			break
		}
		switch words[0] {
		case "and":
		case "or":
			out = append(out, group)
			group = nil
		default:
			return nil, badRequest("invalid filter %q: expected and/or before %q", s, words[0])
		}
		words = words[1:]
		if len(words) == 0 {
			return nil, badRequest("invalid filter %q: ends with a connective", s)
		}
	}
	return append(out, group), nil
}

// splitFilterWords splits on spaces, keeping quoted values together.
func splitFilterWords(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	var quote rune
	inWord := false
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, badRequest("invalid filter %q: unterminated quote", s)
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out, nil
}

// lookup finds a dotted field in the instance's JSON form. Map keys may
// themselves contain dots (config.image.os), so the longest key wins.
func lookup(obj map[string]any, field string) string {
	if v, ok := obj[field]; ok {
		switch t := v.(type) {
		case string:
			return t
		case nil:
			return ""
		default:
			b, _ := json.Marshal(t)
			return strings.Trim(string(b), `"`)
		}
	}
	for i := len(field) - 1; i > 0; i-- {
		if field[i] != '.' {
			continue
		}
		if sub, ok := obj[field[:i]].(map[string]any); ok {
			return lookup(sub, field[i+1:])
		}
	}
	return ""
}

func (f instanceFilter) match(inst api.Instance) bool {
	if len(f) == 0 {
		return true
	}
	raw, _ := json.Marshal(inst)
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		panic(fmt.Sprintf("instance JSON: %v", err)) // marshalled just above
	}
	for _, group := range f {
		ok := true
		for _, c := range group {
			if (lookup(obj, c.field) == c.value) == c.negate {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}
