package network

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// watchHosts sends dnsmasq a SIGHUP whenever a file of the network's
// hosts directory is written, renamed or removed, until ctx ends. dnsmasq
// reads new files by itself but keeps the entries of removed or rewritten
// ones until a SIGHUP: without this, an instance that is deleted or gets a
// new address would keep its old DHCP reservation and DNS name.
func (m *Manager) watchHosts(ctx context.Context, name string) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		slog.Error("watch dhcp hosts", "network", name, "err", err)
		return
	}
	defer unix.Close(fd)
	const mask = unix.IN_CLOSE_WRITE | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO
	if _, err := unix.InotifyAddWatch(fd, m.HostsDir(name), mask); err != nil {
		slog.Error("watch dhcp hosts", "network", name, "err", err)
		return
	}
	buf := make([]byte, 64*1024)
	for ctx.Err() == nil {
		// Poll in short slices so that ctx is noticed.
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if n, err := unix.Poll(fds, 500); n <= 0 || err != nil {
			continue
		}
		n, err := unix.Read(fd, buf)
		if err != nil {
			if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
				slog.Error("watch dhcp hosts", "network", name, "err", err)
				return
			}
			continue
		}
		if hostsChanged(buf[:n]) {
			if err := m.ReloadHosts(name); err != nil {
				slog.Warn("reload dhcp hosts", "network", name, "err", err)
			}
		}
	}
}

// hostsChanged tells whether a batch of inotify events touches a file
// dnsmasq reads: it skips dot files (temporaries written before a rename)
// and editor backups, as dnsmasq does.
func hostsChanged(events []byte) bool {
	for off := 0; off+unix.SizeofInotifyEvent <= len(events); {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&events[off]))
		nameBytes := events[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
		off += unix.SizeofInotifyEvent + int(ev.Len)
		name := strings.TrimRight(string(nameBytes), "\x00")
		if name != "" && !strings.HasPrefix(name, ".") && !strings.HasSuffix(name, "~") {
			return true
		}
	}
	return false
}
