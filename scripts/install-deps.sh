#!/usr/bin/env bash
# Installs what building the example images and running the tests need on a
# fresh Debian 12 machine (as root). Idempotent: installs only what is
# missing, and runs apt-get update only then.
set -euo pipefail

packages=(
  busybox-static   # the example and fixture images' userland
  umoci            # writes OCI image layouts independently of our code
  skopeo           # copies images between layouts, archives and registries
  file             # checks that busybox is static
  jq               # reads JSON in scripts
  util-linux       # setpriv, unshare, nsenter: tests that drop privileges or make namespaces
  nftables         # nft: the bridge network's masquerading (one table of our own)
  iproute2         # ip: tests that make network namespaces and read links
  gcc              # cc -static: the small notify client a health test puts in a container
  libc6-dev        # the static C library for it
  docker-registry  # the registry the image tests pull from
  apache2-utils    # htpasswd, for the registry's Basic auth
  attr             # getfattr, to check overlay xattrs in unpacked layers
  python3          # writes the crafted fixture layer (tarfile)
  qemu-system-x86  # boots the appliance VM in its end-to-end tests (TCG)
  cpio             # packs the appliance's initramfs
  kmod             # modprobe/depmod: the appliance's module closure
  xz-utils         # unpacks the Debian kernel's payload (uncompressed vmlinux)
  e2fsprogs        # mke2fs, e2fsck: the appliance's data disk and its test
  binutils         # strip, objdump: smaller programs in the appliance and the .deb
  man-db           # man: the package test reads the generated manual pages
  systemd          # systemd-analyze verify of packaging/supervisord.service
  podman           # drives supervisor-runtime (conmon), and plays generate kube's Pods
  crun             # the runtime tests/fixtures/kube/clamp-runtime runs for podman kube play
  catatonit        # the init of podman's local pause image (kube play's infra container)
  containernetworking-plugins  # podman 4.3's CNI network (-p in the podman tests)
  golang-github-containernetworking-plugin-dnsname  # podman's DNS between those Pods (CNI)
  dnsmasq-base     # what the dnsname plugin runs
  containerd       # ctr and the runc shim v2 drive supervisor-runtime in a test
  python3-venv     # the tests' virtual environment (kubernetes-validate)
  docker-compose   # `docker-compose config` (1.29): import compose's reading of interpolation compared with it
  prometheus       # scrapes the metrics endpoint in tests/metrics.rs (its own instance, started by the test)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) != 0 ]]; then
    echo "install-deps: missing ${missing[*]}; run as root to install them" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}" >&2
  # The tests start every service they use themselves, on ports of their
  # own: no package's service (prometheus on 9090, docker-registry on
  # 5000, ...) is started by the install. invoke-rc.d and
  # deb-systemd-invoke ask policy-rc.d; one that exits 101 says no.
  policy=/usr/sbin/policy-rc.d
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  # Under systemd, not at the next boot either.
  if [[ -d /run/systemd/system && " ${missing[*]} " == *" prometheus "* ]]; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi
# PyPI tools of the tests, in a virtual environment of their own
# (SUPERVISOR_TEST_VENV, default /opt/supervisor-test-venv).
venv=${SUPERVISOR_TEST_VENV:-/opt/supervisor-test-venv}
if [[ ! -x $venv/bin/kubernetes-validate ]]; then
  echo "install-deps: installing kubernetes-validate into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q kubernetes-validate
fi
command -v cargo >/dev/null || { echo "install-deps: cargo is missing (install Rust with rustup)" >&2; exit 1; }
