#!/bin/bash
# Build a tiny LXD "unified" image (metadata.yaml + rootfs/ + templates/) of a
# busybox system, from the host's busybox-static /bin/busybox.
#
#   tests/images/build-busybox.sh OUT.tar.xz
#
# Init is busybox init (/sbin/init -> /bin/busybox). Signals to PID 1:
#   SIGUSR2  power off  (the documented choice: lxc.signal.halt = SIGUSR2)
#   SIGUSR1  halt       \ busybox 1.35 treats SIGPWR as halt too; inside a PID
#   SIGPWR   halt       / namespace halt also ends the container (verified)
#   SIGTERM  reboot     (init exits "rebooted": liblxc restarts the container)
# A clean shutdown takes about 2.7 s: busybox init waits 1 s after sending
# SIGTERM to all processes and 1 s before the final reboot(2) call.
#
# The output is deterministic for a given busybox binary: every timestamp and
# creation_date come from the busybox binary's mtime (override with
# SOURCE_DATE_EPOCH), files are owned by 0:0 and sorted by name.
set -euo pipefail

die() { echo "build-busybox: error: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 OUT.tar.xz"
OUT=$1
BUSYBOX=${BUSYBOX:-/bin/busybox}
[ -x "$BUSYBOX" ] || die "$BUSYBOX not found: apt-get install busybox-static (or run scripts/install-deps.sh)"
if ldd "$BUSYBOX" >/dev/null 2>&1; then
	die "$BUSYBOX is dynamically linked; the image needs busybox-static"
fi

umask 022
ARCH=$(uname -m)
# sed reads all of the output: with "head -n1" busybox could die of SIGPIPE,
# which pipefail turns into a failed build (exit 141) now and then.
BB_VERSION=$("$BUSYBOX" 2>/dev/null | sed -n '1s/^BusyBox v\([0-9][0-9.]*\).*/\1/p')
[ -n "$BB_VERSION" ] || die "cannot read the busybox version from $BUSYBOX"
EPOCH=${SOURCE_DATE_EPOCH:-$(stat -c %Y "$BUSYBOX")}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cell-busybox-image.XXXXXX")
OUTDIR=$(dirname -- "$OUT")
TMPOUT=""
cleanup() {
	rm -rf -- "$WORK"
	[ -z "$TMPOUT" ] || rm -f -- "$TMPOUT"
}
trap cleanup EXIT

R=$WORK/rootfs
mkdir -p "$R" "$WORK/templates"

# --- directories ---------------------------------------------------------------
for d in bin sbin usr/bin usr/sbin etc etc/init.d dev proc sys run var var/log \
	var/tmp root tmp home mnt lib; do
	mkdir -p "$R/$d"
done
chmod 0700 "$R/root"
chmod 1777 "$R/tmp" "$R/var/tmp"
ln -s ../run "$R/var/run"

# --- busybox and its applets -------------------------------------------------
install -m 0755 "$BUSYBOX" "$R/bin/busybox"
"$BUSYBOX" --list-full | while read -r applet; do
	case "$applet" in
	bin/busybox | linuxrc | "") continue ;;
	esac
	[ -e "$R/$applet" ] || [ -L "$R/$applet" ] || ln -s /bin/busybox "$R/$applet"
done
[ -L "$R/sbin/init" ] || ln -s /bin/busybox "$R/sbin/init"

# --- /etc ------------------------------------------------------------------------
cat >"$R/etc/inittab" <<'INITTAB'
# busybox init. SIGUSR2 = power off, SIGUSR1/SIGPWR = halt, SIGTERM = reboot.
::sysinit:/etc/init.d/rcS
# keep one child under init; no getty; the network only through DHCP on eth0
::respawn:/bin/sleep 2147483647
::ctrlaltdel:/sbin/reboot
::shutdown:/bin/sync
INITTAB

cat >"$R/etc/init.d/rcS" <<'RCS'
#!/bin/sh
# Minimal: liblxc already mounts /proc, /sys and /dev (this busybox has no
# mountpoint applet). Never mount over them: that would hide lxcfs.
mounted() { grep -q "^[^ ]* $1 " /proc/mounts 2>/dev/null; }
mounted /proc || mount -t proc proc /proc 2>/dev/null
mounted /sys || mount -t sysfs sysfs /sys 2>/dev/null
mounted /run || mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /run 2>/dev/null
[ -s /etc/hostname ] && hostname -F /etc/hostname 2>/dev/null
ip link set lo up 2>/dev/null
# A nic (celld brings it up): ask for a lease in the background, so that
# the boot does not wait for a DHCP server that may not exist.
if [ -e /sys/class/net/eth0 ]; then
	udhcpc -i eth0 -f -t 5 -T 1 -A 5 -s /etc/udhcpc.script -x hostname:"$(hostname)" \
		</dev/null >/dev/null 2>&1 &
fi
exit 0
RCS
chmod 0755 "$R/etc/init.d/rcS"

# busybox ships no udhcpc script. This one sets the leased address, the
# default route and /etc/resolv.conf; it removes only the address it set
# itself, so addresses configured by hand stay.
cat >"$R/etc/udhcpc.script" <<'UDHCPC'
#!/bin/sh
state=/run/udhcpc.$interface
case "$1" in
deconfig)
	ip link set "$interface" up
	[ -s "$state" ] && ip addr del "$(cat "$state")" dev "$interface" 2>/dev/null
	rm -f "$state"
	;;
bound | renew)
	new="$ip/${mask:-24}"
	if [ "$(cat "$state" 2>/dev/null)" != "$new" ]; then
		[ -s "$state" ] && ip addr del "$(cat "$state")" dev "$interface" 2>/dev/null
		ip addr add "$new" ${broadcast:+broadcast "$broadcast"} dev "$interface"
		echo "$new" >"$state"
	fi
	for r in $router; do
		ip route replace default via "$r" dev "$interface"
		break
	done
	{
		[ -n "$domain" ] && echo "search $domain"
		for s in $dns; do echo "nameserver $s"; done
	} >/etc/resolv.conf
	;;
esac
exit 0
UDHCPC
chmod 0755 "$R/etc/udhcpc.script"

cat >"$R/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$R/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
nobody:x:65534:
GROUP
cat >"$R/etc/shadow" <<'SHADOW'
root:*:0:0:99999:7:::
nobody:*:0:0:99999:7:::
SHADOW
chmod 0640 "$R/etc/shadow"

echo busybox >"$R/etc/hostname"
cat >"$R/etc/hosts" <<'HOSTS'
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
HOSTS
cat >"$R/etc/os-release" <<OSREL
NAME="BusyBox"
ID=busybox
VERSION_ID="$BB_VERSION"
PRETTY_NAME="BusyBox $BB_VERSION"
OSREL
cat >"$R/etc/profile" <<'PROFILE'
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export HOME=${HOME:-/root}
PROFILE
ln -s /proc/mounts "$R/etc/mtab"
: >"$R/etc/fstab"

# --- metadata and templates --------------------------------------------------
cat >"$WORK/templates/hostname.tpl" <<'TPL'
{{ container.name }}
TPL
cat >"$WORK/templates/hosts.tpl" <<'TPL'
127.0.0.1	localhost
127.0.1.1	{{ container.name }}
::1	localhost ip6-localhost ip6-loopback
TPL

cat >"$WORK/metadata.yaml" <<META
architecture: $ARCH
creation_date: $EPOCH
properties:
  architecture: $ARCH
  description: BusyBox $BB_VERSION ($ARCH) test image
  os: busybox
  release: "$BB_VERSION"
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

# --- tarball -----------------------------------------------------------------
mkdir -p -- "$OUTDIR"
TMPOUT=$(mktemp "$OUTDIR/.$(basename -- "$OUT").XXXXXX")
tar -C "$WORK" --sort=name --format=gnu --mtime="@$EPOCH" \
	--owner=0 --group=0 --numeric-owner \
	-cf - metadata.yaml rootfs templates | xz -T0 -6 -c >"$TMPOUT"
chmod 0644 "$TMPOUT"
mv -f -- "$TMPOUT" "$OUT"
TMPOUT=""
echo "$OUT"
