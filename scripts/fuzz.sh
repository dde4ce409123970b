#!/usr/bin/env bash
# Fuzzes the filter's configuration parser (fuzz/fuzz_targets/config.rs) for
# a bounded time: scripts/fuzz.sh [SECONDS] (default 60). Needs a nightly
# toolchain and cargo-fuzz; not run in CI.
set -euo pipefail

seconds="${1:-60}"
cd "$(dirname "$0")/.."

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz.sh: no nightly toolchain (rustup toolchain install nightly); cargo fuzz needs one" >&2
    exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz is missing (cargo install cargo-fuzz)" >&2
    exit 2
fi
exec cargo +nightly fuzz run config -- -max_total_time="$seconds"
