#!/bin/bash
# Build a Debian bookworm LXD "unified" image (metadata.yaml + rootfs/ +
# templates/) with systemd as init, for the "boots a real init" tests.
#
#   tests/images/build-debian.sh OUT.tar.xz
#
# The rootfs comes from `debootstrap --variant=minbase` against the Debian mirror
# this machine already uses (read from /etc/apt/sources.list{,.d}; override with
# CELL_DEBIAN_MIRROR). The finished tarball is cached under
# ${CELL_CACHE:-$HOME/.cache/cell}/images/, keyed by a hash of this script, the
# mirror, the suite and the architecture, so a second run only copies it.
#
# The image is quiet and offline-friendly: no NTP client, apt timers masked,
# empty /etc/machine-id, root password locked. eth0, when the container has
# one, is configured by DHCP (systemd-networkd); /etc/resolv.conf is written
# from the lease by a small path unit (systemd-resolved is not in minbase,
# and debootstrap cannot configure it). systemd halts (powers off) on SIGRTMIN+3: lxc.signal.halt = SIGRTMIN+3.
set -euo pipefail

SUITE=bookworm
INCLUDE=systemd,systemd-sysv,iproute2

die() { echo "build-debian: error: $*" >&2; exit 1; }
log() { echo "build-debian: $*" >&2; }

[ $# -eq 1 ] || die "usage: $0 OUT.tar.xz"
OUT=$1
[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap)"
command -v debootstrap >/dev/null || die "debootstrap not found: run scripts/install-deps.sh"
command -v xz >/dev/null || die "xz not found: run scripts/install-deps.sh"

SELF=$(readlink -f -- "${BASH_SOURCE[0]}")
ARCH=$(uname -m)
DEB_ARCH=$(dpkg --print-architecture)

# --- mirror ------------------------------------------------------------------
# First "deb" source for $SUITE, in apt's own order: sources.list, then
# sources.list.d/*.list and *.sources sorted by name.
mirror_from_list() { # one-line format
	awk -v suite="$SUITE" '
		/^[[:space:]]*#/ { next }
		$1 == "deb" {
			i = 2
			if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
			if ($(i + 1) == suite) { print $i; exit }
		}' "$1"
}
mirror_from_sources() { # deb822 format
	awk -v suite="$SUITE" '
		BEGIN { RS = ""; FS = "\n" }
		{
			types = ""; uris = ""; suites = ""; enabled = "yes"
			for (n = 1; n <= NF; n++) {
				line = $n
				if (line ~ /^[[:space:]]*#/) continue
				if (line ~ /^Types:/)   { sub(/^Types:[[:space:]]*/, "", line); types = line }
				if (line ~ /^URIs:/)    { sub(/^URIs:[[:space:]]*/, "", line); uris = line }
				if (line ~ /^Suites:/)  { sub(/^Suites:[[:space:]]*/, "", line); suites = line }
				if (line ~ /^Enabled:/) { sub(/^Enabled:[[:space:]]*/, "", line); enabled = line }
			}
			if (enabled == "no") next
			if ((" " types " ") !~ / deb /) next
			if ((" " suites " ") !~ (" " suite " ")) next
			split(uris, u, /[[:space:]]+/); print u[1]; exit
		}' "$1"
}
find_mirror() {
	local f m
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*; do
		[ -f "$f" ] || continue
		case "$f" in
		*.list) m=$(mirror_from_list "$f") ;;
		*.sources) m=$(mirror_from_sources "$f") ;;
		*) continue ;;
		esac
		if [ -n "$m" ]; then
			echo "${m%/}"
			return 0
		fi
	done
	return 1
}
MIRROR=${CELL_DEBIAN_MIRROR:-$(find_mirror || true)}
[ -n "$MIRROR" ] || die "no 'deb' source for $SUITE in /etc/apt/sources.list{,.d}; set CELL_DEBIAN_MIRROR"

# --- cache -------------------------------------------------------------------
CACHE=${CELL_CACHE:-$HOME/.cache/cell}/images
KEY=$({ sha256sum <"$SELF"; echo "$MIRROR $SUITE $DEB_ARCH"; } | sha256sum | cut -c1-16)
NAME=debian-$SUITE-$DEB_ARCH
ENTRY=$CACHE/$NAME-$KEY.tar.xz
mkdir -p -- "$CACHE"

WORK=""
TMPS=()
CHILD=""
cleanup() {
	local rc=$?
	if [ -n "$CHILD" ]; then # stop debootstrap and everything it started
		kill -TERM -- "-$CHILD" 2>/dev/null || true
		local i
		for i in $(seq 50); do
			kill -0 -- "-$CHILD" 2>/dev/null || break
			sleep 0.2
		done
		kill -KILL -- "-$CHILD" 2>/dev/null || true
		wait "$CHILD" 2>/dev/null || true
	fi
	if [ -n "$WORK" ] && [ -d "$WORK" ]; then
		# debootstrap mounts proc/sys/dev* in the target; never rm through a mount
		local mnt
		for mnt in $(awk -v w="$WORK/" 'index($2, w) == 1 { print $2 }' /proc/self/mounts | sort -r); do
			umount -l -- "$mnt" 2>/dev/null || true
		done
		rm -rf --one-file-system -- "$WORK"
	fi
	local t
	for t in "${TMPS[@]}"; do rm -f -- "$t"; done
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Several test runs may build at once: one builds, the others wait and reuse it.
exec 9>"$CACHE/.$NAME.lock"
flock 9

publish() { # copy the cache entry to $OUT atomically
	local outdir tmp
	outdir=$(dirname -- "$OUT")
	mkdir -p -- "$outdir"
	tmp=$(mktemp "$outdir/.$(basename -- "$OUT").XXXXXX")
	TMPS+=("$tmp")
	cp --reflink=auto -- "$ENTRY" "$tmp"
	chmod 0644 "$tmp"
	mv -f -- "$tmp" "$OUT"
	echo "$OUT"
}

if [ -s "$ENTRY" ]; then
	log "cached: $ENTRY"
	publish
	exit 0
fi

log "building $NAME from $MIRROR (cache key $KEY)"
SECONDS=0
WORK=$(mktemp -d "$CACHE/.build-$NAME.XXXXXX")
R=$WORK/rootfs
mkdir -p "$R" "$WORK/templates"

# In the background, in its own process group, so that a signal to this script
# is handled at once (bash defers traps while a foreground child runs) and the
# trap can stop debootstrap with everything it started (dpkg in the chroot).
setsid debootstrap --variant=minbase --include="$INCLUDE" --arch="$DEB_ARCH" \
	"$SUITE" "$R" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 &
CHILD=$!
wait "$CHILD" || {
	CHILD=""
	tail -n 30 "$WORK/debootstrap.log" >&2
	die "debootstrap failed"
}
CHILD=""
log "debootstrap done in ${SECONDS}s"
# debootstrap may leave its mounts behind
for mnt in $(awk -v w="$R/" 'index($2, w) == 1 { print $2 }' /proc/self/mounts | sort -r); do
	umount -l -- "$mnt" || true
done

# --- make it quiet, offline and container-friendly ---------------------------
mask() { local u; for u in "$@"; do ln -sfn /dev/null "$R/etc/systemd/system/$u"; done; }
# nothing that reaches out on its own
mask apt-daily.timer apt-daily-upgrade.timer apt-daily.service apt-daily-upgrade.service \
	systemd-timesyncd.service
# DHCP on eth0 only, nothing else on the link (no IPv6 autoconfiguration);
# no waiting at boot for a network that a container without nics never gets
mkdir -p "$R/etc/systemd/network" "$R/usr/local/sbin"
cat >"$R/etc/systemd/network/eth0.network" <<'NETWORK'
[Match]
Name=eth0

[Network]
DHCP=ipv4
LinkLocalAddressing=no
IPv6AcceptRA=no

[DHCPv4]
UseDomains=yes
NETWORK
cat >"$R/usr/local/sbin/cell-resolvconf" <<'SCRIPT'
#!/bin/sh
# Write /etc/resolv.conf from systemd-networkd's DHCP leases.
tmp=/etc/.resolv.conf.tmp
for f in /run/systemd/netif/leases/*; do
	[ -f "$f" ] || continue
	sed -n 's/^DOMAINNAME=/search /p' "$f"
	sed -n 's/^DNS=//p' "$f" | tr ' ' '\n' | sed -n 's/^./nameserver &/p'
done >"$tmp"
mv -f "$tmp" /etc/resolv.conf
SCRIPT
chmod 0755 "$R/usr/local/sbin/cell-resolvconf"
cat >"$R/etc/systemd/system/cell-resolvconf.service" <<'UNIT'
[Unit]
Description=Write /etc/resolv.conf from DHCP leases

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/cell-resolvconf
UNIT
cat >"$R/etc/systemd/system/cell-resolvconf.path" <<'UNIT'
[Unit]
Description=Watch DHCP leases for /etc/resolv.conf

[Path]
PathChanged=/run/systemd/netif/leases

[Install]
WantedBy=multi-user.target
UNIT
# liblxc mounts a writable /sys in unprivileged containers; systemd then
# takes udev to be running (it is not in minbase) and networkd waits for it
# forever. systemd's container interface wants /sys read-only: make it so.
cat >"$R/etc/systemd/system/cell-sysfs-ro.service" <<'UNIT'
[Unit]
Description=Make /sys read-only, as systemd expects in a container
DefaultDependencies=no
Before=sysinit.target systemd-networkd.service
ConditionVirtualization=container
ConditionPathIsReadWrite=/sys

[Service]
Type=oneshot
ExecStart=/bin/mount -o remount,bind,ro /sys

[Install]
WantedBy=sysinit.target
UNIT
chroot "$R" systemctl enable systemd-networkd.service cell-resolvconf.path cell-sysfs-ro.service
mask systemd-networkd-wait-online.service
# kernel filesystems a container must not mount: debugfs/tracefs fail unprivileged
# (the system ends up "degraded") and would expose the host's when privileged
mask sys-kernel-debug.mount sys-kernel-tracing.mount sys-kernel-config.mount
# each container generates its own machine id on first boot
: >"$R/etc/machine-id"
rm -f "$R/var/lib/dbus/machine-id"
# root password locked
sed -i 's/^root:[^:]*:/root:!*:/' "$R/etc/shadow"
# host files that debootstrap copied in; resolv.conf comes from DHCP
: >"$R/etc/resolv.conf"
echo debian >"$R/etc/hostname"
cat >"$R/etc/hosts" <<'HOSTS'
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
HOSTS
: >"$R/etc/fstab"
# keep the journal small and in memory
mkdir -p "$R/etc/systemd/journald.conf.d"
cat >"$R/etc/systemd/journald.conf.d/cell.conf" <<'JOURNAL'
[Journal]
Storage=volatile
RuntimeMaxUse=8M
JOURNAL
# no docs, man pages or translations (now or for later installs)
mkdir -p "$R/etc/dpkg/dpkg.cfg.d"
cat >"$R/etc/dpkg/dpkg.cfg.d/01-cell-nodoc" <<'NODOC'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
NODOC
find "$R/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete 2>/dev/null || true
rm -rf "$R/usr/share/man/"* "$R/usr/share/info/"*
find "$R/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} + 2>/dev/null || true
# caches and logs of the build
rm -rf "$R/var/cache/apt/archives/"*.deb "$R/var/cache/apt/"*.bin "$R/var/lib/apt/lists/"* \
	"$R/var/log/"*.log "$R/var/log/apt/"* "$R/debootstrap"
find "$R/var/log" -type f -exec truncate -s 0 {} +
find "$R/tmp" "$R/var/tmp" -mindepth 1 -delete

# --- metadata and templates --------------------------------------------------
cat >"$WORK/templates/hostname.tpl" <<'TPL'
{{ container.name }}
TPL
cat >"$WORK/templates/hosts.tpl" <<'TPL'
127.0.0.1	localhost
127.0.1.1	{{ container.name }}
::1	localhost ip6-localhost ip6-loopback
TPL
EPOCH=$(date +%s)
VERSION=$(cat "$R/etc/debian_version")
cat >"$WORK/metadata.yaml" <<META
architecture: $ARCH
creation_date: $EPOCH
properties:
  architecture: $ARCH
  description: Debian $SUITE ($VERSION) $ARCH default, systemd
  os: debian
  release: $SUITE
  serial: "$(date -u -d "@$EPOCH" +%Y%m%d_%H%M)"
  variant: default
templates:
  /etc/hostname:
    when:
      - create
      - copy
    template: hostname.tpl
  /etc/hosts:
    when:
      - create
      - copy
    template: hosts.tpl
META

# --- tarball into the cache, then out ----------------------------------------
TMPENTRY=$(mktemp "$CACHE/.$NAME-$KEY.tar.xz.XXXXXX")
TMPS+=("$TMPENTRY")
tar -C "$WORK" --sort=name --numeric-owner --one-file-system \
	-cf - metadata.yaml rootfs templates | xz -T0 -6 -c >"$TMPENTRY"
chmod 0644 "$TMPENTRY"
log "tarball done in ${SECONDS}s"
mv -f -- "$TMPENTRY" "$ENTRY"
# drop entries of older versions of this script or other mirrors
find "$CACHE" -maxdepth 1 -name "$NAME-*.tar.xz" ! -name "$NAME-$KEY.tar.xz" -delete
log "cached: $ENTRY ($(du -h "$ENTRY" | cut -f1))"
publish
