#!/bin/bash
# Build CRIU 4.x from Debian's own source tarball and install it as
# /usr/local/sbin/criu, for live migration and stateful stop/snapshots.
#
#   scripts/build-criu.sh            # as root, on Debian 12
#
# Why build it: Debian 12's criu 3.17 fails on newer kernels (vdso); 4.1.1, the
# version in Debian trixie, works. The tarball is fetched with `apt-get source`
# from the mirror this machine already uses, through a throw-away sources list
# (the system's apt configuration is not touched), and checked against a pinned
# sha256. The binary is cached under $CELL_CACHE/criu keyed by the tarball's
# hash and the Debian release it was linked on, so the build (1-2 minutes) runs
# once per machine image.
set -euo pipefail

CRIU_VERSION=4.1.1
CRIU_SHA256=f80a66cb3726bb2116266d4759ce3bcbfab7abdb6b6d430bf20dd41911717afe
CRIU_SUITE=trixie
BUILD_DEPS=(
	libprotobuf-c-dev protobuf-c-compiler libprotobuf-dev protobuf-compiler python3-protobuf
	libnl-3-dev libnet1-dev libcap-dev pkg-config libbsd-dev libgnutls28-dev libnftables-dev
	libaio-dev uuid-dev libdrm-dev gcc make xz-utils
)
DEST=/usr/local/sbin/criu

log() { echo "build-criu: $*"; }
die() { echo "build-criu: error: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root"
export DEBIAN_FRONTEND=noninteractive

CACHE=${CELL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cell}/criu
KEY="$CRIU_VERSION-${CRIU_SHA256:0:12}-debian$(cut -d. -f1 /etc/debian_version)"
CACHED=$CACHE/$KEY/criu

works() { "$1" --version 2>/dev/null | grep -q "Version: $CRIU_VERSION"; }

# The binary links against the -dev packages' libraries: install them even
# when the binary comes from the cache (a fresh machine with a restored cache).
missing=()
for p in "${BUILD_DEPS[@]}"; do
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" = installed ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	log "installing build dependencies: ${missing[*]}"
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ -x "$DEST" ] && works "$DEST"; then
	log "criu $CRIU_VERSION already installed at $DEST"
	exit 0
fi

if ! { [ -x "$CACHED" ] && works "$CACHED"; }; then
	WORK=$(mktemp -d "${TMPDIR:-/tmp}/cell-criu.XXXXXX")
	trap 'rm -rf -- "$WORK"' EXIT
	TARBALL=$CACHE/criu_$CRIU_VERSION.orig.tar.xz
	if ! echo "$CRIU_SHA256  $TARBALL" | sha256sum -c --status 2>/dev/null; then
		# The mirror the machine uses, from its deb822 or one-line sources.
		MIRROR=$(grep -hoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list.d/* /etc/apt/sources.list 2>/dev/null |
			grep -v security | head -n1 | tr -d ' ')
		MIRROR=${MIRROR:-http://deb.debian.org/debian}
		log "fetching criu $CRIU_VERSION source from $MIRROR ($CRIU_SUITE)"
		echo "deb-src ${MIRROR%/} $CRIU_SUITE main" >"$WORK/sources.list"
		mkdir -p "$WORK/lists/partial"
		APT=(apt-get -q -o "Dir::Etc::SourceList=$WORK/sources.list" -o Dir::Etc::SourceParts=/dev/null
			-o "Dir::State::Lists=$WORK/lists")
		"${APT[@]}" update >/dev/null
		# Only the orig tarball is needed; the .dsc may be gone from the
		# mirror when the suite moved on, which apt reports as an error.
		(cd "$WORK" && "${APT[@]}" source --download-only criu >/dev/null 2>&1 || true)
		[ -f "$WORK/criu_$CRIU_VERSION.orig.tar.xz" ] || die "could not download criu_$CRIU_VERSION.orig.tar.xz from $MIRROR $CRIU_SUITE"
		echo "$CRIU_SHA256  $WORK/criu_$CRIU_VERSION.orig.tar.xz" | sha256sum -c --status ||
			die "criu_$CRIU_VERSION.orig.tar.xz does not match the pinned sha256"
		mkdir -p "$CACHE"
		mv "$WORK/criu_$CRIU_VERSION.orig.tar.xz" "$TARBALL"
	fi
	log "building criu $CRIU_VERSION (1-2 minutes)"
	tar -C "$WORK" -xf "$TARBALL"
	make -C "$WORK/criu-$CRIU_VERSION" -j"$(nproc)" criu >"$WORK/build.log" 2>&1 || {
		tail -n 30 "$WORK/build.log" >&2
		die "criu build failed"
	}
	mkdir -p "$(dirname "$CACHED")"
	install -m 0755 "$WORK/criu-$CRIU_VERSION/criu/criu" "$CACHED.tmp"
	mv "$CACHED.tmp" "$CACHED"
fi

install -m 0755 "$CACHED" "$DEST"
works "$DEST" || die "$DEST does not run"
log "installed $("$DEST" --version | head -n1) at $DEST"
