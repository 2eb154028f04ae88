package idmap

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// ShiftTree rewrites the owner of every file under dir from map "from" to
// map "to": a file owned by container uid 33 under "from" is owned by
// container uid 33 under "to". Ids that "from" does not map are left alone,
// and so are ids that "to" cannot map (beyond its size): shifted, they
// would land outside the container's range. Both rules make an interrupted
// shift safe to run again: what it already did is left as it is, even from
// a privileged "from", which maps every id.
// chown clears setuid/setgid bits and file capabilities, so both are put
// back afterwards.
func ShiftTree(ctx context.Context, dir string, from, to Map) error {
	return filepath.WalkDir(dir, func(path string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return fmt.Errorf("stat %s: %w", path, err)
		}
		uid, gid := from.UnshiftUID(int64(st.Uid)), from.UnshiftGID(int64(st.Gid))
		if uid < 0 || gid < 0 {
			return nil
		}
		if !to.IsPrivileged() && (uid >= to.UID.Size || gid >= to.GID.Size) {
			return nil
		}
		newUID, newGID := to.ShiftUID(uid), to.ShiftGID(gid)
		if newUID == int64(st.Uid) && newGID == int64(st.Gid) {
			return nil
		}
		isLink := st.Mode&syscall.S_IFMT == syscall.S_IFLNK
		var caps []byte
		if !isLink {
			caps = getCaps(path)
		}
		if err := os.Lchown(path, int(newUID), int(newGID)); err != nil {
			return fmt.Errorf("chown %s: %w", path, err)
		}
		if isLink {
			return nil
		}
		if st.Mode&(syscall.S_ISUID|syscall.S_ISGID) != 0 {
			if err := unix.Chmod(path, st.Mode&07777); err != nil {
				return fmt.Errorf("chmod %s: %w", path, err)
			}
		}
		if caps != nil {
			if err := unix.Setxattr(path, "security.capability", caps, 0); err != nil {
				return fmt.Errorf("restore capabilities of %s: %w", path, err)
			}
		}
		return nil
	})
}

func getCaps(path string) []byte {
	buf := make([]byte, 64)
	n, err := unix.Getxattr(path, "security.capability", buf)
	if err != nil || errors.Is(err, unix.ENODATA) {
		return nil
	}
	return buf[:n]
}
