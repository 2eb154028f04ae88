package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"cell/daemon/liblxc"
	"cell/shared/idmap"
)

// floor is a container run by liblxc's own tools, with the lxc config
// celld renders for an instance of the same image: what starting and
// attaching cost with no daemon at all.
type floor struct {
	lxcPath string
	name    string
	logFile string
}

// prepareFloor unpacks the image's rootfs, shifts it to celld's default
// unprivileged map and writes the lxc config celld would write for it.
func (b *bench) prepareFloor(ctx context.Context, image string) (*floor, error) {
	dir := filepath.Join(b.work, "floor")
	vol := filepath.Join(dir, "vol")
	f := &floor{lxcPath: filepath.Join(dir, "lxc"), name: "bf" + b.runID, logFile: filepath.Join(dir, "lxc.log")}
	for _, d := range []string{vol, filepath.Join(f.lxcPath, f.name)} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, err
		}
	}
	cmd := exec.CommandContext(ctx, "tar", "--numeric-owner", "-xJf", image, "-C", vol, "rootfs")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("unpack %s: %v: %s", image, err, out)
	}
	rootfs := filepath.Join(vol, "rootfs")
	m, err := idmap.Default()
	if err != nil {
		return nil, err
	}
	if err := idmap.ShiftTree(ctx, rootfs, idmap.Map{}, m); err != nil {
		return nil, err
	}
	cfg := liblxc.Config{
		Name: f.name, LogFile: f.logFile, Rootfs: rootfs, Idmap: m,
		HaltSignal: "SIGUSR2", Environment: map[string]string{},
	}
	text, err := cfg.Render()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(f.lxcPath, f.name, "config"), []byte(text), 0o600); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *floor) run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("floor: %s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// start is lxc-start, daemonized as celld runs it: it returns once the
// container is RUNNING.
func (f *floor) start(ctx context.Context) error {
	return f.run(ctx, "lxc-start", "-n", f.name, "-P", f.lxcPath, "-o", f.logFile, "-l", "INFO")
}

func (f *floor) attach(ctx context.Context) error {
	return f.run(ctx, "lxc-attach", "-n", f.name, "-P", f.lxcPath, "--", "true")
}

func (f *floor) state() string {
	out, _ := runQuiet(10*time.Second, nil, "lxc-info", "-s", "-H", "-n", f.name, "-P", f.lxcPath)
	return strings.TrimSpace(out)
}

func (f *floor) kill() error {
	if f.state() == "STOPPED" {
		return nil
	}
	out, err := runQuiet(60*time.Second, nil, "lxc-stop", "-k", "-n", f.name, "-P", f.lxcPath)
	if err != nil {
		return fmt.Errorf("floor: lxc-stop: %v: %s", err, strings.TrimSpace(out))
	}
	return nil
}
