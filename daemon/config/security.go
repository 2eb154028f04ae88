package config

import (
	"fmt"
	"strconv"
	"strings"
)

func isIdmapSize(v string) error {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 || n > 1<<31 {
		return fmt.Errorf("%q is not a number of ids between 1 and 2147483648", v)
	}
	return nil
}

// isSyscallList checks a list of syscall names, separated by spaces,
// commas or newlines, as they go into a liblxc seccomp profile.
func isSyscallList(v string) error {
	for _, name := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' }) {
		for _, r := range name {
			if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '_' {
				return fmt.Errorf("%q is not a syscall name (lower case letters, digits and _, such as mount or kexec_load)", name)
			}
		}
	}
	return nil
}
