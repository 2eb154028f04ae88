#!/bin/bash
# make bench: celld against LXD 5.0.2 on this machine, side by side.
#
#   scripts/bench.sh [bench flags...]     e.g. scripts/bench.sh -rounds 3
#
# Runs the Go program in bench/ (see bench/main.go): an isolated celld and an
# isolated LXD in a temporary directory, the same workloads against both,
# interleaved, and the liblxc floor. Prints a table and writes
# bench/results/latest.json. Never touches /var/lib/lxd or /var/lib/cell.
#
# The program cleans up after itself, also on Ctrl-C. This script's trap is
# the second line of defence (the program killed with SIGKILL, a crash):
# it stops whatever is left under the work directory, unmounts what LXD
# mounted there and removes it.
set -euo pipefail

export PATH=$PATH:/usr/local/go/bin
export DEBIAN_FRONTEND=noninteractive

log() { echo "bench.sh: $*" >&2; }
die() { echo "bench.sh: error: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (it runs celld, LXD and containers)"
cd "$(dirname -- "$0")/.."

# --- packages -----------------------------------------------------------------
# LXD 5.0.2 is the peer; lxc gives lxc-start/lxc-attach for the floor; the
# busybox image is built from busybox-static.
missing=()
for p in lxd lxd-client lxc busybox-static xz-utils btrfs-progs zfs-fuse; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$status" = "installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	log "installing: ${missing[*]}"
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
command -v go >/dev/null || die "go not found (expected at /usr/local/go/bin)"

# --- work directory and the safety net -----------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cell-bench.XXXXXX")
chmod 0711 "$WORK"
RUN=$WORK/run

# Unmount everything at or below $1, deepest first.
unmount_under() {
	local dir=$1 mp i
	for i in 1 2 3 4 5; do
		mapfile -t mps < <(awk -v d="$dir" '{ mp = $5; gsub(/\\040/, " ", mp); if (mp == d || index(mp, d "/") == 1) print mp }' /proc/self/mountinfo | awk '{ print length, $0 }' | sort -rn | cut -d' ' -f2-)
		[ ${#mps[@]} -gt 0 ] || return 0
		for mp in "${mps[@]}"; do
			umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true
		done
	done
}

# True when a zpool the benchmark made (listed in $RUN/zpools) still exists:
# its vdev is a file under $RUN.
zpools_left() {
	local zp
	[ -s "$RUN/zpools" ] || return 1
	while read -r zp; do
		if [ -n "$zp" ] && zpool list -H -o name "$zp" >/dev/null 2>&1; then
			return 0
		fi
	done <"$RUN/zpools"
	return 1
}

safety_net() {
	local rc=$?
	trap - EXIT INT TERM HUP
	if [ -d "$RUN" ]; then
		log "cleaning up what the benchmark left in $RUN"
		local pid
		if [ -s "$RUN/celld.pid" ]; then
			pid=$(cat "$RUN/celld.pid")
			kill -9 "$pid" 2>/dev/null || true
		fi
		if [ -s "$RUN/lxd.pid" ]; then
			pid=$(cat "$RUN/lxd.pid")
			if kill -0 "$pid" 2>/dev/null; then
				LXD_DIR=$RUN/lxd timeout 90 lxd shutdown --timeout 60 >/dev/null 2>&1 || kill -9 "$pid" 2>/dev/null || true
			fi
		fi
		# Any container still running under $RUN: its monitor is titled
		# "[lxc monitor] LXCPATH NAME".
		local line lxcpath name
		while read -r line; do
			line=${line#\[lxc monitor\] }
			lxcpath=${line% *}
			name=${line##* }
			lxc-stop -k -n "$name" -P "$lxcpath" >/dev/null 2>&1 || true
		done < <(
			for f in /proc/[0-9]*/cmdline; do
				{ tr '\0' ' ' <"$f"; } 2>/dev/null | sed 's/ *$//'
				echo
			done | grep "^\[lxc monitor\] $RUN/" || true
		)
		# zpools celld made (names recorded before creation): destroy
		# unmounts their datasets.
		if [ -s "$RUN/zpools" ]; then
			local zp
			while read -r zp; do
				[ -n "$zp" ] || continue
				# Busy for a moment after its containers were killed:
				# retry, unmounting what is left in between.
				for i in 1 2 3 4 5 6 7 8 9 10; do
					zpool list -H -o name "$zp" >/dev/null 2>&1 || break
					log "destroying zpool $zp"
					timeout 120 zpool destroy -f "$zp" && break
					unmount_under "$RUN"
					sleep 1
				done
			done <"$RUN/zpools"
		fi
		unmount_under "$RUN"
		# Loop devices of the btrfs/zfs pool files (celld's under
		# celld/disks, LXD's under lxd/disks).
		local f back
		for f in /sys/block/loop*/loop/backing_file; do
			[ -r "$f" ] || continue
			back=$(cat "$f" 2>/dev/null) || continue
			back=${back% (deleted)}
			case $back in "$RUN"/*)
				log "detaching ${f%/loop/backing_file}"
				losetup -d "/dev/$(basename "${f%/loop/backing_file}")" || true ;;
			esac
		done
	fi
	if awk -v d="$WORK" '{ if ($5 == d || index($5, d "/") == 1) found = 1 } END { exit !found }' /proc/self/mountinfo; then
		log "NOT removing $WORK: something is still mounted there"
		rc=1
	elif grep -qs "^$WORK/" /sys/block/loop*/loop/backing_file; then
		log "NOT removing $WORK: a loop device still uses a file there"
		rc=1
	elif zpools_left; then
		log "NOT removing $WORK: a zpool made there still exists (zpool destroy -f it)"
		rc=1
	else
		rm -rf -- "$WORK"
	fi
	exit "$rc"
}
trap safety_net EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# --- build and run --------------------------------------------------------------
go build -o "$WORK/bench" ./bench
"$WORK/bench" -workdir "$RUN" "$@"
