#!/usr/bin/env bash
# Builds and packs what scripts/device/h200.sh carries to the H200 machine (no Rust there):
#   .gpu/bins.tar.xz    the CLI (ava-dino) and the parity test binary (tests/gpu_parity.rs), release,
#                       --features $H200_FEATURES (default cuda), stripped, in ONE xz stream with a
#                       256 MiB dictionary: both statically hold the same LLVM and burn code, which
#                       the long dictionary stores once (two separate .xz files would not fit)
#   .gl/*.deb           the Vulkan loader (device README), only when H200_FEATURES has vulkan
# and checks that the travelling tree (tracked + untracked-not-ignored files + .gpu [+ .gl]) fits
# the device tool's 64 MiB. Both folders are git-ignored through .git/info/exclude.
#
#   scripts/device/prepare-h200.sh            # build (incremental after the README cuda build), pack, check
#   scripts/device/prepare-h200.sh --pack     # pack and check the last build only
# Environment: CARGO_TARGET_DIR (default target/gpu-cuda, the README build's); H200_FEATURES
# (default cuda; cuda,vulkan also checks Vulkan there, at the cost of a full second build);
# CUDARC_CUDA_VERSION (unset: cudarc binds CUDA 13.4, whose symbols it loads one by one on first
# use, so the H200's 13.0 driver serves them; 13000 binds 13.0 exactly, a full rebuild).
set -euo pipefail
cd "$(dirname "$0")/../.."

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/gpu-cuda}
FEATURES=${H200_FEATURES:-cuda}
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

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
for pair in "ava-dino:$CARGO_TARGET_DIR/release/ava-dino" "gpu_parity:$parity"; do
    name=${pair%%:*} src=${pair#*:}
    strip -o "$stage/$name" "$src"
    say "$name: $(stat -c %s "$src") bytes, stripped $(stat -c %s "$stage/$name") bytes"
done
rm -f .gpu/*.xz
start=$(date +%s)
tar -C "$stage" -cf - ava-dino gpu_parity | xz -T1 --lzma2=preset=9e,dict=256MiB >.gpu/bins.tar.xz
say "bins.tar.xz: $(stat -c %s .gpu/bins.tar.xz) bytes ($(($(date +%s) - start)) s to compress; 257 MiB to unpack)"

# The Vulkan loader as amd64 .debs (the device README's recipe), when Vulkan is compiled in.
rm -rf .gl/partial
if [[ ",$FEATURES," != *,vulkan,* ]]; then
    rm -f .gl/*.deb
elif ! compgen -G ".gl/libvulkan1_*.deb" >/dev/null; then
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
    say "too big for the device tool: build without vulkan (no .gl), or pack ava-dino alone (no parity run)"
    exit 1
fi
carry='[".gpu"]'
compgen -G ".gl/*.deb" >/dev/null && carry='[".gpu", ".gl"]'
say "ready: run(command=\"bash scripts/device/h200.sh\", carry=$carry, timeout_s=600)"
say "then, device time allowing: run(command=\"H200_STAGES=rehearsal bash scripts/device/h200.sh\", carry=$carry, timeout_s=600)"
