#!/usr/bin/env bash
# Builds the Debian package of supervisord and supervisorctl with
# dpkg-deb: the binaries, the systemd service, /etc/units.d, manual pages
# and shell completions (generated from the clap definitions), the README.
#
# Usage: packaging/deb/build.sh [OUT_DIR]   (default target/deb)
# Prints the path of the .deb. Environment: SUPERVISOR_BIN=DIR takes the
# programs from DIR instead of `cargo build --release`.
#
# The package is `supervisor-rs`: Debian's unrelated `supervisor` (Python)
# ships commands and paths of the same names (/usr/bin/supervisorctl,
# /usr/bin/supervisord, /etc/supervisor), so the two conflict and ours
# replaces it.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$here/target/deb}
die() { printf 'deb: %s\n' "$*" >&2; exit 1; }
for tool in dpkg-deb gzip; do command -v "$tool" >/dev/null || die "$tool is missing"; done
if [[ -n ${SUPERVISOR_BIN:-} ]]; then
  bin=$SUPERVISOR_BIN
else
  (cd "$here" && cargo build -q --release --bins)
  bin=$here/target/release
fi
version=$(awk -F'"' '/^version *=/ { print $2; exit }' "$here/Cargo.toml")
arch=$(dpkg --print-architecture)
pkg=supervisor-rs
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{DEBIAN,usr/sbin,usr/bin,lib/systemd/system,etc/units.d,etc/supervisor} \
  "$root"/usr/share/{man/man8,doc/$pkg,bash-completion/completions,zsh/vendor-completions,fish/vendor_completions.d}

install -m 0755 "$bin/supervisord" "$root/usr/sbin/supervisord"
install -m 0755 "$bin/supervisorctl" "$root/usr/bin/supervisorctl"
install -m 0755 "$bin/supervisor-runtime" "$root/usr/bin/supervisor-runtime"
command -v strip >/dev/null &&
  strip "$root/usr/sbin/supervisord" "$root/usr/bin/supervisorctl" "$root/usr/bin/supervisor-runtime"
install -m 0644 "$here/packaging/supervisord.service" "$root/lib/systemd/system/supervisord.service"
install -m 0644 "$here/README.md" "$root/usr/share/doc/$pkg/README.md"
cp -r "$here/docs" "$root/usr/share/doc/$pkg/docs"
cp -r "$here/units.example" "$root/usr/share/doc/$pkg/examples"
rm -rf "$root/usr/share/doc/$pkg/examples/images"
cat >"$root/etc/units.d/README" <<'TXT'
Unit files for supervisord: one NAME.toml per container. Edits apply as they
are saved; `supervisorctl validate` checks them. Format: man supervisord,
/usr/share/doc/supervisor-rs/docs/units.md; examples in
/usr/share/doc/supervisor-rs/examples.
TXT

"$bin/supervisorctl" generate-docs "$work/gen"
for page in "$work"/gen/man8/*.8; do gzip -9n <"$page" >"$root/usr/share/man/man8/$(basename "$page").gz"; done
for prog in supervisorctl supervisord supervisor-runtime; do
  install -m 0644 "$work/gen/completions/bash/$prog.bash" "$root/usr/share/bash-completion/completions/$prog"
  install -m 0644 "$work/gen/completions/zsh/_$prog" "$root/usr/share/zsh/vendor-completions/_$prog"
  install -m 0644 "$work/gen/completions/fish/$prog.fish" "$root/usr/share/fish/vendor_completions.d/$prog.fish"
done

# Shared libraries the programs link: dpkg-shlibdeps wants a source
# package, so the glibc version is read from the symbols they use.
glibc=$(objdump -T "$root/usr/sbin/supervisord" "$root/usr/bin/supervisorctl" "$root/usr/bin/supervisor-runtime" 2>/dev/null |
  grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)
size=$(du -sk "$root" --exclude=DEBIAN | cut -f1)
cat >"$root/DEBIAN/control" <<CTRL
Package: $pkg
Version: $version
Architecture: $arch
Maintainer: supervisor developers <supervisor@localhost>
Installed-Size: $size
Depends: libc6 (>= ${glibc:-2.36})
Recommends: nftables
Conflicts: supervisor
Replaces: supervisor
Provides: container-supervisor
Section: admin
Priority: optional
Homepage: https://example.invalid/supervisor
Description: declarative container supervisor (supervisord, supervisorctl, supervisor-runtime)
 Reads TOML unit files from /etc/units.d, pulls OCI images and keeps their
 containers running on its own runtime (namespaces, overlayfs, cgroups v1
 and v2, capabilities, seccomp, a bridge network with published ports),
 applying edits as they are saved. Can be the init of an appliance VM.
 supervisor-runtime is the same runtime behind runc's command line, for
 podman and containerd.
 .
 Not Debian's "supervisor" (a Python process control system), whose
 command names and /etc/supervisor it shares; the two conflict.
CTRL
# Shipped files are root's (--root-owner-group) and, whatever the umask of
# the build, writable by root alone: supervisord refuses a unit file or
# units directory that others can write.
chmod -R go-w "$root"
# Nothing under /etc is changed by an upgrade without asking.
(cd "$root" && find etc -type f -printf '/%p\n') >"$root/DEBIAN/conffiles"
mkdir -p "$out"
deb=$out/${pkg}_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
