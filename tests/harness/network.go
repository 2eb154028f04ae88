package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// StartDaemonWithDefaultNetwork starts a celld that makes the cellbr0
// network on first start, as a real install does. Such tests must not run
// in parallel with each other, and are skipped on a host that already has
// a cellbr0.
func StartDaemonWithDefaultNetwork(t testing.TB) *Daemon {
	t.Helper()
	if _, err := os.Stat("/sys/class/net/cellbr0"); err == nil {
		t.Skip("the host already has a cellbr0 interface")
	}
	return startDaemon(t, true)
}

// sweepNetworks removes what the managed networks of the daemon in dir
// left on the host after a failed test: dnsmasq processes (they outlive
// celld by design), nft tables and bridges. Each network has a directory
// named after it under dir/networks.
func sweepNetworks(t testing.TB, dir string) {
	entries, _ := os.ReadDir(filepath.Join(dir, "networks"))
	for _, e := range entries {
		name := e.Name()
		netDir := filepath.Join(dir, "networks", name)
		if b, err := os.ReadFile(filepath.Join(netDir, "dnsmasq.pid")); err == nil {
			pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			// Only a dnsmasq started with this network's configuration.
			if pid > 0 && strings.Contains(string(cmdline), netDir+"/") {
				t.Logf("killing dnsmasq %d left by network %s", pid, name)
				_ = syscall.Kill(pid, syscall.SIGKILL)
				for i := 0; i < 100 && syscall.Kill(pid, 0) == nil; i++ {
					time.Sleep(20 * time.Millisecond)
				}
			}
		}
		if out, err := exec.Command("nft", "list", "table", "inet", "cell-"+name).CombinedOutput(); err == nil && len(out) > 0 {
			t.Logf("removing nft table cell-%s", name)
			_ = exec.Command("nft", "delete", "table", "inet", "cell-"+name).Run()
		}
		if _, err := os.Stat(filepath.Join("/sys/class/net", name, "bridge")); err == nil {
			t.Logf("removing bridge %s", name)
			_ = exec.Command("ip", "link", "del", "dev", name).Run()
		}
	}
}
