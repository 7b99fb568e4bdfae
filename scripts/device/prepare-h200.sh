#!/usr/bin/env bash
# Builds and packs what scripts/device/h200.sh carries to the H200 machine (no Rust there):
#   .gpu/ava-dino.xz    the CLI, --features cuda,vulkan, release, stripped, xz
#   .gpu/gpu_parity.xz  the parity test binary (tests/gpu_parity.rs), same build, stripped, xz
#   .gl/*.deb           the Vulkan loader (device README: libvulkan1 ... as amd64 .debs)
# and checks that the travelling tree (tracked + untracked-not-ignored files + .gpu + .gl) fits
# the device tool's 64 MiB. Both folders are git-ignored through .git/info/exclude.
#
#   scripts/device/prepare-h200.sh            # full: build (~40 min on 2 cores), pack, check
#   scripts/device/prepare-h200.sh --pack     # pack and check the last build only
# Environment: CARGO_TARGET_DIR (default target/gpu-h200); CUDARC_CUDA_VERSION (default 13000:
# the H200 machine's driver is CUDA 13.0; cudarc otherwise binds the newest API it knows, 13.4).
set -euo pipefail
cd "$(dirname "$0")/../.."

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/gpu-h200}
export CUDARC_CUDA_VERSION=${CUDARC_CUDA_VERSION:-13000}
FEATURES=cuda,vulkan
LIMIT=$((64 * 1024 * 1024))
say() { echo "prepare-h200: $*" >&2; }

exclude="$(git rev-parse --git-common-dir)/info/exclude"
for p in /.gpu/ /.gl/; do grep -qxF "$p" "$exclude" 2>/dev/null || echo "$p" >>"$exclude"; done
mkdir -p .gpu .gl

if [[ "${1:-}" != "--pack" ]]; then
    scripts/setup-cuda-build.sh
    start=$(date +%s)
    cargo build --release --features "$FEATURES" --bin ava-dino
    say "ava-dino built in $(($(date +%s) - start)) s"
    cargo test --release --features "$FEATURES" --test gpu_parity --no-run
    say "both built in $(($(date +%s) - start)) s"
fi

# The test binary's name carries a hash: ask cargo for it (no rebuild at this point).
parity=$(cargo test --release --features "$FEATURES" --test gpu_parity --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "gpu_parity" and m.get("executable"):
        print(m["executable"])')
[[ -x "$parity" ]] || { say "no gpu_parity test executable found"; exit 1; }

for pair in "ava-dino:$CARGO_TARGET_DIR/release/ava-dino" "gpu_parity:$parity"; do
    name=${pair%%:*} src=${pair#*:}
    strip -o ".gpu/$name" "$src"
    xz -T0 -9e -f ".gpu/$name"
    say "$name: $(stat -c %s "$src") bytes, stripped+xz $(stat -c %s ".gpu/$name.xz") bytes"
done

# The Vulkan loader as amd64 .debs (the device README's recipe).
if ! compgen -G ".gl/libvulkan1_*.deb" >/dev/null; then
    mkdir -p /tmp/amd64/partial
    o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
    apt-get "${o[@]}" update >/dev/null
    (cd .gl && apt-get "${o[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null)
fi

tree=$( (git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null || true) | awk '{s += $1} END {print s + 0}')
carried=$(du -sb .gpu .gl | awk '{s += $1} END {print s}')
total=$((tree + carried))
say "travelling: tree $tree + .gpu/.gl $carried = $total bytes (limit $LIMIT)"
if ((total > LIMIT)); then
    say "too big for the device tool: drop .gl (no Vulkan run) or .gpu/gpu_parity.xz (no parity run)"
    exit 1
fi
say 'ready: run(command="bash scripts/device/h200.sh", carry=[".gpu", ".gl"], timeout_s=600)'
