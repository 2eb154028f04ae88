#!/bin/bash
# Install the host packages Cell needs to build and test, on Debian 12, as root.
# Idempotent: a second run only checks (dpkg-query) and takes a few seconds.
# Go itself is NOT installed here: it is expected at /usr/local/go (or on PATH).
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

PACKAGES=(
	lxc lxc-dev golang-gopkg-lxc-go-lxc.v2-dev
	busybox-static debootstrap squashfs-tools xz-utils zstd rsync
	uidmap acl btrfs-progs zfs-fuse dnsmasq-base nftables iproute2
	lxd-client python3-pylxd
	sqlite3 libsqlite3-dev
	gcc make pkg-config ca-certificates
)

log() { echo "install-deps: $*"; }
die() { echo "install-deps: error: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root"
command -v dpkg-query >/dev/null || die "dpkg-query not found: this script is for Debian 12"

# --- Go ---------------------------------------------------------------------
GO=""
if command -v go >/dev/null 2>&1; then
	GO=$(command -v go)
elif [ -x /usr/local/go/bin/go ]; then
	GO=/usr/local/go/bin/go
fi
if [ -z "$GO" ] || ! "$GO" version >/dev/null 2>&1; then
	die "Go toolchain not found (looked on PATH and at /usr/local/go/bin/go). Install Go from https://go.dev/dl/ into /usr/local/go and add /usr/local/go/bin to PATH."
fi
log "go: $("$GO" version)"
case ":$PATH:" in
*:"$(dirname "$GO")":*) ;;
*) log "note: $(dirname "$GO") is not on PATH; add it (export PATH=\$PATH:$(dirname "$GO"))" ;;
esac

# --- apt packages ------------------------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$status" = "installed" ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
	log "all ${#PACKAGES[@]} packages already installed"
else
	log "installing: ${missing[*]}"
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# --- subordinate uid/gid ranges for root --------------------------------------
# Unprivileged containers map container root to a host range owned by root.
for f in /etc/subuid /etc/subgid; do
	[ -e "$f" ] || install -m 0644 /dev/null "$f"
	if grep -qE '^(root|0):[0-9]+:[0-9]+$' "$f"; then
		log "$f: root already has a range ($(grep -E '^(root|0):' "$f" | head -n1))"
	else
		# keep the file newline-terminated before appending
		if [ -s "$f" ] && [ -n "$(tail -c1 "$f")" ]; then echo >>"$f"; fi
		echo "root:1000000:1000000000" >>"$f"
		log "$f: added root:1000000:1000000000"
	fi
done

# --- CRIU (live migration, stateful stop) --------------------------------------
# Built from source and cached: Debian 12's criu does not work on this kernel.
"$(dirname "$0")/build-criu.sh"

log "done"
