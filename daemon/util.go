package daemon

import (
	"encoding/json"
	"fmt"

	"golang.org/x/sys/unix"
)

// remarshal converts a decoded JSON object into a typed struct.
func remarshal(in any, out any) error {
	data, err := json.Marshal(in)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("invalid request: %w", err)
	}
	return nil
}

func unameMachine() string {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return ""
	}
	return utsField(uts.Machine)
}
