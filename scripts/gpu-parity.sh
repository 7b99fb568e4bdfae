#!/usr/bin/env bash
# GPU numerics without a GPU: the parity fixtures of every kind that touches tensors (dinov3,
# clip_text, train_step) computed through burn's GPU backends, on Mesa's software Vulkan driver
# (lavapipe) when no GPU is present. Prints the same `parity ... ok|FAIL` lines as `cargo test`
# and a summary per backend; exits 1 if any comparison fails or any backend could not run.
#
#   scripts/gpu-parity.sh                 # build (tests, dev profile) + run wgpu and vulkan
#   GPU_PARITY_BACKENDS=wgpu scripts/gpu-parity.sh
#   scripts/gpu-parity.sh --no-build      # reuse the last build
#
# Needs the Vulkan loader and a Vulkan driver: Debian/Ubuntu `libvulkan1 mesa-vulkan-drivers`
# (installed here when run as root or with password-less sudo; otherwise the script says what to
# install). Builds in its own target dir (CARGO_TARGET_DIR, default target/gpu-parity): the
# first build takes 15-20 minutes on 2 cores. On a machine with a real GPU the same command checks
# that GPU; AVA_DINO_ALLOW_SOFTWARE_ADAPTER=1 only permits the software adapter, it does not force it.
# Logs: $CARGO_TARGET_DIR/gpu-parity-<backend>.log.
set -euo pipefail
cd "$(dirname "$0")/.."

BACKENDS=${GPU_PARITY_BACKENDS:-wgpu vulkan}
# One test binary holding the dinov3, clip_text and train_step parity tests (tests/gpu_parity.rs).
# Only their `*_matches_pytorch` tests and the untrained model's CPU-vs-device agreement
# (tests/backend_agreement.rs) run: the fixture-contract tests check the fixtures, not the
# device, and re-run their own test by its unprefixed name, which the combined binary does not have.
TESTS=(gpu_parity)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/gpu-parity}
build=true
[[ "${1:-}" == "--no-build" ]] && build=false

say() { echo "gpu-parity: $*" >&2; }

# 1. The Vulkan loader and a driver (lavapipe for the CPU).
need=()
ldconfig -p | grep -q 'libvulkan\.so\.1 ' || need+=(libvulkan1)
compgen -G "/usr/share/vulkan/icd.d/*.json" >/dev/null || need+=(mesa-vulkan-drivers)
if ((${#need[@]} > 0)); then
    if [[ $(id -u) -eq 0 ]]; then
        sudo=()
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo=(sudo -n)
    else
        say "missing ${need[*]}: install them as root (apt-get install ${need[*]}) and rerun"
        exit 1
    fi
    say "installing ${need[*]}"
    "${sudo[@]}" apt-get install -y --no-install-recommends "${need[@]}" >&2
fi

features=$(tr ' ' ',' <<<"$BACKENDS")
test_args=()
for t in "${TESTS[@]}"; do test_args+=(--test "$t"); done

# 2. One build of the parity test binary, every requested backend compiled in.
if $build; then
    say "building tests/${TESTS[*]}.rs with --features $features in $CARGO_TARGET_DIR"
    start=$(date +%s)
    cargo test --features "$features" "${test_args[@]}" --no-run
    say "build took $(($(date +%s) - start)) s"
fi

# 3. Run each backend; the software adapter is allowed explicitly.
status=0
summary=()
for backend in $BACKENDS; do
    log="$CARGO_TARGET_DIR/gpu-parity-$backend.log"
    say "running on $backend (log: $log)"
    start=$(date +%s)
    set +e
    AVA_DINO_TEST_DEVICE=$backend AVA_DINO_ALLOW_SOFTWARE_ADAPTER=1 \
        cargo test --features "$features" "${test_args[@]}" -- matches_pytorch agrees_across_backends \
        --nocapture --test-threads=1 2>&1 |
        tee "$log" | grep -E '^(parity [A-Za-z0-9_:]+/|test device:|warning: --device|test result:|[A-Za-z]+ [a-z_ ]+: max \|diff\|)'
    rc=${PIPESTATUS[0]}
    set -e
    ok=$(grep -c '^parity .* ok$' "$log" || true)
    # `|| true`: no FAIL line is the good case, and grep's exit 1 must not end the script.
    fail=$({ grep '^parity [A-Za-z0-9_:]*/.* FAIL' "$log" || true; } | sort -u | wc -l)
    adapter=$(grep -m1 '^test device:' "$log" | sed 's/^test device: //' || true)
    summary+=("$backend: ${ok} ok, ${fail} FAIL, exit ${rc}, $(($(date +%s) - start)) s, ${adapter:-no device}")
    if ((rc != 0 || fail > 0 || ok == 0)); then status=1; fi
done

say "summary"
for line in "${summary[@]}"; do echo "gpu-parity: $line"; done
exit $status
