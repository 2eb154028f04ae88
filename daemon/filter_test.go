package daemon

import (
	"testing"

	"cell/shared/api"
)

func TestInstanceFilter(t *testing.T) {
	inst := api.Instance{Name: "web1", Status: "Running",
		InstancePut:    api.InstancePut{Config: map[string]string{"image.os": "debian", "user.role": "web"}},
		ExpandedConfig: map[string]string{"image.os": "debian"}}
	cases := map[string]bool{
		"":                 true,
		"name eq web1":     true,
		"name eq web2":     false,
		"name ne web2":     true,
		"not name eq web1": false,
		"status eq Running and config.image.os eq debian": true,
		"status eq Stopped or config.user.role eq web":    true,
		"status eq Stopped or config.user.role eq db":     false,
		`config.user.role eq "web"`:                       true,
	}
	for expr, want := range cases {
		f, err := parseFilter(expr)
		if err != nil {
			t.Fatalf("%q: %v", expr, err)
		}
		if got := f.match(inst); got != want {
			t.Errorf("%q matched %v, want %v", expr, got, want)
		}
	}
	for _, bad := range []string{"name", "name is web1", "name eq web1 and", "name eq 'open"} {
		if _, err := parseFilter(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
