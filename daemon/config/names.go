package config

import (
	"fmt"
	"strings"
)

// ValidateInstanceName applies the hostname rules LXD applies to instance
// names: 1 to 63 letters, digits and hyphens, starting with a letter and not
// ending with a hyphen.
func ValidateInstanceName(name string) error {
	if name == "" {
		return fmt.Errorf("instance name must not be empty")
	}
	if len(name) > 63 {
		return fmt.Errorf("instance name %q is %d characters long; at most 63 are allowed", name, len(name))
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return fmt.Errorf("instance name %q contains %q: only letters, digits and hyphens are allowed", name, r)
		}
	}
	if c := name[0]; c == '-' || c >= '0' && c <= '9' {
		return fmt.Errorf("instance name %q must start with a letter", name)
	}
	if strings.HasSuffix(name, "-") {
		return fmt.Errorf("instance name %q must not end with a hyphen", name)
	}
	return nil
}

// ValidateEntityName checks names of profiles, pools and image aliases:
// anything printable, but no slash (they appear in URLs) and not "." or "..".
func ValidateEntityName(kind, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%s name must not be empty", kind)
	case name == "." || name == "..":
		return fmt.Errorf("%s name %q is not allowed", kind, name)
	case strings.ContainsAny(name, "/\n\r\t\x00 "):
		return fmt.Errorf("%s name %q must not contain slashes, spaces or control characters", kind, name)
	case len(name) > 255:
		return fmt.Errorf("%s name is longer than 255 characters", kind)
	}
	return nil
}
