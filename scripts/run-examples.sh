#!/usr/bin/env bash
# Sets up and runs the supervisor on units.example/ from a fresh checkout:
# installs the tools, builds the example images offline, builds the
# binaries, and checks the units the way supervisord loads them.
#
# Until the daemon lands (issue 5) the last step is `supervisord --check`,
# which loads units.example/ and prints the start order.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/build-example-images.sh
cargo build --release --locked --bins
./target/release/supervisorctl validate units.example
./target/release/supervisord --check --units units.example
