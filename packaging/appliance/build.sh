#!/usr/bin/env bash
# Builds an appliance VM whose init is supervisord and whose product is the
# units of a directory: a kernel, an initramfs and a script that boots them
# under qemu. Offline: the kernel comes from Debian's package (apt-get
# download + dpkg-deb -x, nothing installed on this machine), the programs
# from this repository's release build and this machine's libraries, and
# the images the units name are seeded into the initramfs's image store.
#
# Usage (as root):
#   packaging/appliance/build.sh --units DIR --out DIR [--image REF]...
#       [--ip ADDR/PREFIX --gateway ADDR] [--insecure-registry HOST:PORT]...
#       [--busybox] [--data-disk SIZE]
#
#   OUT/vmlinuz     the kernel, uncompressed (qemu boots it directly, PVH)
#   OUT/initrd.img  the initramfs (cpio, uncompressed: it boots faster)
#   OUT/boot.sh     boots them under qemu; OUT/control.sock is the control
#                   path (supervisorctl --socket OUT/control.sock status)
#   OUT/data.img    with --data-disk SIZE (e.g. 512M): an ext4 file system
#                   labelled supervisor-data holding the units, the image
#                   store with its layers unpacked, and an empty log
#                   directory; boot.sh attaches it, PID 1 mounts it and
#                   keeps all three there (docs/appliance.md). A rebuild
#                   writes a new one: copy it away to keep its data.
#
# --image adds an image to the store beyond those the units name (each
# unit's image is always seeded). --ip/--gateway configure the first
# ethernet interface (default 10.0.2.15/24 via 10.0.2.2, qemu's user
# network). --busybox adds a static busybox at /bin/busybox for debugging.
# Environment: SUPERVISOR_BIN=DIR takes supervisord and supervisorctl from
# DIR instead of `cargo build --release`; APPLIANCE_CACHE=DIR keeps the
# downloaded kernel package there (default OUT/.cache); DNS=ADDR is the
# resolver the VM's resolv.conf names (default 10.0.2.3, qemu's).
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
units= out= ip=10.0.2.15/24 gateway=10.0.2.2 busybox= data_disk=
images=() insecure=()
die() { printf 'appliance: %s\n' "$*" >&2; exit 1; }
log() { printf '== %s\n' "$*" >&2; }
while (($#)); do
  case $1 in
    --units) units=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --image) images+=("$2"); shift 2 ;;
    --ip) ip=$2; shift 2 ;;
    --gateway) gateway=$2; shift 2 ;;
    --insecure-registry) insecure+=("$2"); shift 2 ;;
    --busybox) busybox=1; shift ;;
    --data-disk) data_disk=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
[[ -n $units && -n $out ]] || die "--units DIR and --out DIR are required (see --help)"
[[ -d $units ]] || die "$units: not a directory"
[[ $(id -u) == 0 ]] || die "run as root (device nodes, file owners, chroot)"
[[ $ip == */* ]] || die "--ip $ip: ADDR/PREFIX, like 10.0.2.15/24"
for tool in apt-get apt-cache dpkg-deb cpio depmod modprobe ldd chroot; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install cpio kmod)"
done
if [[ -n $data_disk ]]; then
  for tool in mke2fs e2fsck; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install e2fsprogs)"
  done
fi
units=$(cd "$units" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
cache=${APPLIANCE_CACHE:-$out/.cache}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
stage=$work/root

if [[ -n ${SUPERVISOR_BIN:-} ]]; then
  bin=$SUPERVISOR_BIN
else
  log "building supervisord (release)"
  (cd "$here" && cargo build -q --release --bins)
  bin=$here/target/release
fi

# The kernel: the package linux-image-amd64 depends on, unpacked.
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
[[ -n $kpkg ]] || die "cannot resolve linux-image-amd64 (run apt-get update)"
mkdir -p "$cache"
if ! compgen -G "$cache/${kpkg}_*.deb" >/dev/null; then
  log "downloading $kpkg"
  chown _apt "$cache" 2>/dev/null || true
  (cd "$cache" && apt-get download -q "$kpkg" >/dev/null)
fi
deb=$(ls -t "$cache/${kpkg}"_*.deb | head -1)
dpkg-deb -x "$deb" "$work/kernel"
version=$(ls "$work/kernel/lib/modules")
log "kernel $version"

# An uncompressed vmlinux boots in half the time under TCG: find the
# payload in the bzImage by its compression's magic, and keep the first
# one that decompresses to an ELF image (what scripts/extract-vmlinux does).
extract_vmlinux() {
  local image=$1 dest=$2 pair magic tool off
  for pair in '\xfd7zXZ\x00:xz -dc' '\x28\xb5\x2f\xfd:zstd -dc' '\x1f\x8b\x08:gzip -dc'; do
    magic=${pair%%:*} tool=${pair#*:}
    command -v "${tool%% *}" >/dev/null || continue
    for off in $(LC_ALL=C grep -obUaP "$magic" "$image" | cut -d: -f1 | head -5); do
      tail -c "+$((off + 1))" "$image" | $tool 2>/dev/null >"$dest" || true
      if [[ $(head -c 4 "$dest" | od -A n -t x1 | tr -d ' ') == 7f454c46 ]]; then
        return 0
      fi
    done
  done
  return 1
}
if extract_vmlinux "$work/kernel/boot/vmlinuz-$version" "$out/vmlinuz"; then
  log "vmlinuz: uncompressed ($(du -h "$out/vmlinuz" | cut -f1))"
else
  log "vmlinuz: kept compressed (no payload found)"
  cp "$work/kernel/boot/vmlinuz-$version" "$out/vmlinuz"
fi

# The root: directories, the console node, the programs and their libraries.
mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,etc/supervisor,dev,proc,sys,run,tmp,var/lib/supervisor,var/log,lib/modules}
chmod 1777 "$stage/tmp"
mknod -m 600 "$stage/dev/console" c 5 1
mknod -m 666 "$stage/dev/null" c 1 3
install -m 0755 "$bin/supervisord" "$stage/init"
ln -s /init "$stage/usr/sbin/supervisord"
install -m 0755 "$bin/supervisorctl" "$stage/usr/bin/supervisorctl"
# Symbols are half the size of a release build.
command -v strip >/dev/null && strip "$stage/init" "$stage/usr/bin/supervisorctl"
nft=$(command -v nft) || die "nft is missing (apt-get install nftables): published ports need it"
install -m 0755 "$nft" "$stage/usr/sbin/nft"
progs=("$stage/init" "$stage/usr/bin/supervisorctl" "$stage/usr/sbin/nft")
# The data disk is checked at boot (e2fsck -p) before it is mounted, and a
# blank disk attached later is formatted (mke2fs): both from e2fsprogs.
if command -v e2fsck >/dev/null && command -v mke2fs >/dev/null; then
  for tool in e2fsck mke2fs; do
    install -m 0755 "$(command -v "$tool")" "$stage/usr/sbin/$tool"
    progs+=("$stage/usr/sbin/$tool")
  done
  if [[ -f /etc/mke2fs.conf ]]; then cp /etc/mke2fs.conf "$stage/etc/mke2fs.conf"; fi
else
  log "e2fsprogs is missing: the appliance will neither check nor format a data disk"
fi
if [[ -n $busybox ]]; then
  install -m 0755 /bin/busybox "$stage/bin/busybox"
  ln -s busybox "$stage/bin/sh"
fi
# Each shared library the programs load, at the path the loader finds it.
libs() { ldd "$1" | awk '/=> \// { print $3 } /^\t\// { print $1 }'; }
for prog in "${progs[@]}"; do
  for lib in $(libs "$prog"); do
    [[ -e $stage$lib ]] && continue
    mkdir -p "$stage$(dirname "$lib")"
    cp -L "$lib" "$stage$lib"
  done
done
# What `nft` reads beyond its libraries.
[[ -d /etc/iproute2 ]] && mkdir -p "$stage/etc/iproute2" && cp /etc/iproute2/* "$stage/etc/iproute2/" 2>/dev/null || true

# Kernel modules: what containers, the bridge network and qemu's devices
# need, with their dependency closure from the kernel's modules.dep.
modules=(
  crc32c_generic overlay veth bridge br_netfilter
  nf_tables nf_conntrack nf_nat nft_chain_nat nft_nat nft_masq nft_ct nft_fib nft_fib_ipv4 nft_redir nf_conntrack_netlink
  virtio_pci virtio_net virtio_console virtio_blk ext4
  button evdev
)
kmods=$work/kernel/lib/modules/$version
mkdir -p "$stage/lib/modules/$version"
cp "$kmods"/modules.{order,builtin,builtin.modinfo} "$stage/lib/modules/$version/" 2>/dev/null || true
depmod -b "$work/kernel" "$version"
present=()
for m in "${modules[@]}"; do
  if deps=$(modprobe -d "$work/kernel" -S "$version" --show-depends "$m" 2>/dev/null); then
    present+=("$m")
    while read -r kind path _; do
      [[ $kind == insmod ]] || continue
      rel=${path#"$work/kernel"}
      mkdir -p "$stage$(dirname "$rel")"
      cp "$path" "$stage$rel"
    done <<<"$deps"
  else
    log "module $m: not in kernel $version (built in, or absent)"
  fi
done
depmod -b "$stage" "$version"
log "modules: $(find "$stage/lib/modules" -name '*.ko*' | wc -l) files for ${#present[@]} listed"

# The units and the global config.
mkdir -p "$stage/etc/units.d"
# Image layouts the units name are seeded into the store below: copied
# only for the seeding, not into the appliance.
cp -a "$units/." "$stage/etc/units.d/"
find "$stage/etc/units.d" -mindepth 1 -name '.*' -prune -exec rm -rf {} +
# cp -a kept the builder's owners and modes: supervisord refuses unit files
# and directories that anyone but root can write.
chown -R 0:0 "$stage/etc/units.d"
chmod -R go-w "$stage/etc"
toml_list() { local first=1; printf '['; for x in "$@"; do ((first)) || printf ', '; first=0; printf '"%s"' "$x"; done; printf ']'; }
{
  echo "# Written by packaging/appliance/build.sh."
  echo "modules = $(toml_list "${present[@]}")"
  echo 'control_port = "ctl"'
  ((${#insecure[@]})) && echo "insecure_registries = $(toml_list "${insecure[@]}")"
  echo
  echo "[uplink]"
  echo "address = \"$ip\""
  [[ -n $gateway ]] && echo "gateway = \"$gateway\""
} >"$stage/etc/supervisor/supervisord.toml"
echo appliance >"$stage/etc/hostname"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$stage/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$stage/etc/group"
printf '127.0.0.1 localhost appliance\n' >"$stage/etc/hosts"
# qemu's user network answers DNS at 10.0.2.3.
echo "nameserver ${DNS:-10.0.2.3}" >"$stage/etc/resolv.conf"

# The image store, seeded by our own pull run inside the staged root (so
# that references resolve as they will in the VM), from the layouts or
# registries the units name. cpio cannot carry the unpacked layers' xattrs
# (overlay whiteouts, file capabilities): only the verified blobs and the
# records go in; supervisord unpacks each layer from its blob at first use.
mapfile -t refs < <(chroot "$stage" /init --units /etc/units.d --check --images)
flags=()
for r in "${insecure[@]}"; do flags+=(--insecure-registry "$r"); done
# seed WHERE REF: the units' images from inside the staged root, each
# --image from this machine (a local path is this machine's; the VM needs
# only the record under that name).
seed() {
  local where=$1 ref=$2 store=/var/lib/supervisor prog=/usr/bin/supervisorctl
  log "seeding $ref"
  if [[ $where == vm ]]; then
    chroot "$stage" "$prog" --store "$store" pull "${flags[@]}" "$ref"
  else
    "$stage$prog" --store "$stage$store" pull "${flags[@]}" "$ref"
  fi >/dev/null 2>"$work/pull.err" || { cat "$work/pull.err" >&2; die "cannot seed $ref"; }
}
for ref in "${refs[@]}"; do seed vm "$ref"; done
for ref in "${images[@]}"; do seed host "$ref"; done
# The data disk keeps the store as the pulls left it: layers unpacked,
# with their xattrs (mke2fs -d copies them; cpio cannot).
if [[ -n $data_disk ]]; then
  mkdir -p "$work/data/state" "$work/data/log"
  cp -a "$stage/var/lib/supervisor/." "$work/data/state/"
  rm -rf "$work/data/state/images/tmp"
fi
rm -rf "$stage/var/lib/supervisor/images/layers" "$stage/var/lib/supervisor/images/tmp"
mkdir -p "$stage/var/lib/supervisor/images/layers" "$stage/var/lib/supervisor/images/tmp"
# The layouts themselves are not needed in the VM.
find "$stage/etc/units.d" -name oci-layout -printf '%h\n' | while read -r layout; do rm -rf "$layout"; done
find "$stage/etc/units.d" -depth -type d -empty -delete
mkdir -p "$stage/etc/units.d"

(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet) >"$out/initrd.img"
log "initrd.img: $(du -h "$out/initrd.img" | cut -f1)"

if [[ -n $data_disk ]]; then
  cp -a "$stage/etc/units.d" "$work/data/units.d"
  chmod 0700 "$work/data/state" "$work/data/log"
  rm -f "$out/data.img"
  mke2fs -q -F -t ext4 -L supervisor-data -E root_owner=0:0 -d "$work/data" "$out/data.img" "$data_disk" >/dev/null ||
    die "cannot make the data disk (mke2fs)"
  log "data.img: $data_disk, $(du -sh "$work/data" | cut -f1) of units and images"
fi

cat >"$out/boot.sh" <<'EOF'
#!/usr/bin/env bash
# Boots the appliance under qemu (TCG unless KVM works). The control path
# is this directory's control.sock (supervisorctl --socket .../control.sock),
# the console is stdio unless CONSOLE=FILE. Environment: MEMORY (MiB,
# default 1024), CPUS (default 2), FORWARD (host forwards, default
# "tcp:127.0.0.1:8080-:8080"; space-separated), MONITOR (a unix socket
# path for qemu's monitor), ACCEL (kvm or tcg, default tcg), DATA (the
# data disk, default data.img beside this script when it exists; empty:
# none). Extra arguments go to qemu.
set -euo pipefail
dir=$(cd "$(dirname "$0")" && pwd)
net=user,id=n0
for f in ${FORWARD-tcp:127.0.0.1:8080-:8080}; do net+=",hostfwd=$f"; done
rm -f "$dir/control.sock"
args=(
  -accel "${ACCEL:-tcg}" -m "${MEMORY:-1024}" -smp "${CPUS:-2}" -cpu max
  -kernel "$dir/vmlinuz" -initrd "$dir/initrd.img"
  -append "console=ttyS0 panic=-1 quiet ${APPEND:-}"
  -nographic -no-reboot -nodefaults
  -serial "${CONSOLE:+file:}${CONSOLE:-mon:stdio}"
  -netdev "$net" -device virtio-net-pci,netdev=n0
  -device virtio-serial-pci
  -chardev "socket,id=ctl,path=$dir/control.sock,server=on,wait=off"
  -device virtserialport,chardev=ctl,name=ctl
  -device isa-debug-exit,iobase=0xf4,iosize=0x04
)
[[ -n ${MONITOR:-} ]] && args+=(-monitor "unix:$MONITOR,server=on,wait=off")
data=${DATA-$dir/data.img}
[[ -n $data && -f $data ]] && args+=(-drive "file=$data,format=raw,if=virtio,discard=unmap")
umask 077
exec qemu-system-x86_64 "${args[@]}" "$@"
EOF
chmod +x "$out/boot.sh"
log "done: $out/boot.sh boots it"
