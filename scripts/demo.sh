#!/usr/bin/env bash
# make demo: start celld (CELL_DIR, default /var/lib/cell), build the Debian
# test image (cached), import it as debian/12 and launch C01 from it.
# Run after `make deps build`. Safe to run again: it reuses what exists.
set -euo pipefail
cd "$(dirname "$0")/.."

export CELL_DIR=${CELL_DIR:-/var/lib/cell}
BIN=$PWD/bin
LOG=${CELL_LOG:-/var/log/cell/celld.log}
IMAGE=${CELL_CACHE:-$HOME/.cache/cell}/demo/debian12.tar.xz
c() { "$BIN/c" "$@"; }

mkdir -p "$(dirname "$LOG")" "$(dirname "$IMAGE")"
if ! "$BIN/celld" waitready --timeout 1s 2>/dev/null; then
	echo "demo: starting celld (CELL_DIR=$CELL_DIR, log $LOG)"
	setsid "$BIN/celld" >>"$LOG" 2>&1 </dev/null &
	"$BIN/celld" waitready --timeout 30s
fi

if ! c image show debian/12 >/dev/null 2>&1; then
	echo "demo: building the Debian bookworm image (debootstrap; cached after the first run)"
	bash tests/images/build-debian.sh "$IMAGE"
	c image import "$IMAGE" --alias debian/12
fi

if ! c info C01 >/dev/null 2>&1; then
	c launch debian/12 C01
fi
echo "demo: waiting for systemd in C01"
for _ in $(seq 1 60); do
	state=$(c exec C01 -- systemctl is-system-running 2>/dev/null || true)
	case "$state" in running | degraded) break ;; esac
	sleep 0.5
done
# eth0 is on cellbr0, the network celld made on its first start: wait for
# its DHCP lease so that the listing shows the address.
for _ in $(seq 1 30); do
	[ -n "$(c list C01 -c 4 --format csv)" ] && break
	sleep 0.5
done
c list
echo "demo: C01 systemd state: ${state:-unknown}"
echo "demo: try: export CELL_DIR=$CELL_DIR PATH=\$PATH:$BIN; c exec C01 bash"
