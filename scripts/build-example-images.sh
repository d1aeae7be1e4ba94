#!/usr/bin/env bash
# Builds the images that units.example/ names, offline (no container
# registry), as OCI image layouts in units.example/images/:
#
#   busybox:latest  Debian's static busybox and its applet links, one layer.
#   redis:latest    redis-server from Debian's packages and its shared-library
#                   closure, unpacked with dpkg -x (no shell, no maintainer
#                   scripts), plus a passwd file and an ld.so cache.
#
# The layouts are written by umoci, a tool independent of our own code. The
# .deb files come from the Debian mirror apt is configured with, and are
# cached in units.example/images/.debs so a re-run downloads nothing.
#
# Usage (as root): scripts/build-example-images.sh [OUT_DIR]
# Environment: FORCE=1 rebuilds images that exist; IMAGES="busybox redis"
# (the default) names the images to build (iperf3: bench/ports.sh's server). Needs: umoci,
# busybox-static, apt-get, dpkg-deb (installed by scripts/install-deps.sh).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here/units.example/images}
debs=$out/.debs
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'build-example-images: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (image layers record file owners)"
for tool in umoci dpkg-deb apt-get apt-cache ldconfig; do
  command -v "$tool" >/dev/null || die "$tool is missing: run scripts/install-deps.sh"
done
busybox=/bin/busybox
file -L "$busybox" 2>/dev/null | grep -q 'statically linked' || die "$busybox is not a static busybox: apt-get install busybox-static"

# layout NAME ROOTFS [umoci config args...]: a one-layer image NAME:latest.
layout() {
  local name=$1 rootfs=$2 dir=$out/$1
  shift 2
  rm -rf "$dir"
  umoci init --layout "$dir"
  umoci new --image "$dir:latest"
  umoci insert --image "$dir:latest" "$rootfs" /
  umoci config --image "$dir:latest" --os linux --architecture amd64 --author supervisor-examples \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
  umoci gc --layout "$dir"
  log "$name: $(du -sh "$dir" | cut -f1) in $dir"
}

build_busybox() {
  local root=$work/busybox
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,var/www,proc,sys,dev}
  chmod 1777 "$root/tmp"
  chmod 0700 "$root/root"
  install -m 0755 "$busybox" "$root/bin/busybox"
  # One symlink per applet, at the path busybox itself lists.
  "$busybox" --list-full | while read -r applet; do
    [[ -e $root/$applet || -L $root/$applet ]] || ln -s /bin/busybox "$root/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nwww-data:x:33:\nnogroup:x:65534:\n' >"$root/etc/group"
  layout busybox "$root" --config.cmd /bin/sh --config.workingdir /
}

# The packages and the library packages they need, recursively: only
# Depends/Pre-Depends edges to lib* (and redis-*) packages are followed (not through
# adduser and the like, which a distroless image does without), and of
# alternatives "a | b" only the first.
closure() {
  local -A seen=()
  local queue=("$@") next p
  while ((${#queue[@]})); do
    next=()
    for p in "${queue[@]}"; do seen[$p]=1; done
    while read -r p; do
      [[ -n $p && -z ${seen[$p]:-} ]] && next+=("$p") && seen[$p]=1
    done < <(apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks \
               --no-replaces --no-enhances "${queue[@]}" |
             awk '/^ *\|?(Pre)?Depends:/ { alt = ($1 ~ /^\|/); name = $2
                    if (!skip && name ~ /^(lib|redis-)[a-z0-9.+-]*$/) print name
                    skip = alt; next }
                  { skip = 0 }' | sort -u)
    queue=("${next[@]}")
  done
  printf '%s\n' "${!seen[@]}" | sort
}

# debian_root ROOT PACKAGE: the package and its library closure unpacked
# into ROOT (downloaded once into $debs), with an ld.so cache.
debian_root() {
  local root=$1 pkgs=() p
  mkdir -p "$root" "$debs"
  mapfile -t pkgs < <(closure "$2")
  ((${#pkgs[@]} > 3)) || die "could not resolve $2's packages (run apt-get update)"
  local missing=()
  for p in "${pkgs[@]}"; do compgen -G "$debs/${p}_*.deb" >/dev/null || missing+=("$p"); done
  if ((${#missing[@]})); then
    log "$2: downloading ${#missing[@]} packages"
    chown _apt "$debs" 2>/dev/null || true
    (cd "$debs" && apt-get download -q "${missing[@]}" >/dev/null)
  fi
  for p in "${pkgs[@]}"; do
    dpkg-deb -x "$(ls -t "$debs/${p}"_*.deb | head -1)" "$root"
  done
  mkdir -p "$root"/{etc,tmp,root,proc,sys,dev,run}
  chmod 1777 "$root/tmp"
  chmod 0700 "$root/root"
  [[ -f $root/etc/ld.so.conf ]] || echo 'include /etc/ld.so.conf.d/*.conf' >"$root/etc/ld.so.conf"
  ldconfig -r "$root"
  rm -rf "$root"/usr/share/{doc,man,info,lintian,locale}
}

build_redis() {
  local root=$work/redis
  debian_root "$root" redis-server
  # What the maintainer scripts and base-files would have done.
  mkdir -p "$root"/{data,var/lib/redis}
  printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nredis:x:999:999::/var/lib/redis:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' >"$root/etc/passwd"
  printf 'root:x:0:\nredis:x:999:\nnogroup:x:65534:\n' >"$root/etc/group"
  chown 999:999 "$root/data" "$root/var/lib/redis"
  if chroot "$root" /usr/bin/redis-server --version >/dev/null 2>"$work/redis.err"; then :; else
    cat "$work/redis.err" >&2
    die "redis-server does not run in the image (missing library?)"
  fi
  # Debian's redis.conf daemonizes and binds to loopback: run without one,
  # so redis stays in the foreground and listens on every address.
  layout redis "$root" --config.entrypoint redis-server --config.cmd=--protected-mode --config.cmd=no \
    --config.exposedports 6379/tcp --config.user redis --config.workingdir /data --config.volume /data
}

# Not an example's: the server of bench/ports.sh (IMAGES=iperf3).
build_iperf3() {
  local root=$work/iperf3
  debian_root "$root" iperf3
  printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  chroot "$root" /usr/bin/iperf3 --version >/dev/null || die "iperf3 does not run in the image (missing library?)"
  layout iperf3 "$root" --config.entrypoint iperf3 --config.cmd=--server --config.exposedports 5201/tcp \
    --config.user nobody --config.workingdir /
}

mkdir -p "$out"
# One build at a time per output directory (tests may ask concurrently).
exec 9>"$out/.lock"
flock 9
for image in ${IMAGES:-busybox redis}; do
  if [[ -f $out/$image/index.json && -z ${FORCE:-} ]]; then
    log "$image: exists (FORCE=1 rebuilds)"
  else
    "build_$image"
  fi
done
