#!/usr/bin/env bash
# One call on an NVIDIA H200 device machine (CUDA driver, PyTorch and transformers there; no
# Rust, no network; at most 10 minutes): GPU parity of the committed fixtures, backbone throughput
# against PyTorch on the same random weights, and the full-size Table 4 rehearsal. Writes one
# table, $OUT/h200.md, plus the logs it was made from ($OUT/h200-logs.txt).
#
# Prepared here first (builds and packs the binaries into .gpu/, the Vulkan loader into .gl/):
#   scripts/device/prepare-h200.sh
# then the device tool runs, from the repository root:
#   run(command="bash scripts/device/h200.sh", carry=[".gpu"], timeout_s=600)
# (carry=[".gpu", ".gl"] when prepared with H200_FEATURES=cuda,vulkan).
# Dry run on this machine (no GPU; CPU device, tiny backbone, smoke profile; checks every stage's
# plumbing and that the carried binaries start and refuse a missing GPU clearly):
#   DRY_RUN=1 OUT=/tmp/h200-dry bash scripts/device/h200.sh
#
# Every stage has its own time limit inside H200_LIMIT_S (default 540 s) and is recorded as ok,
# failed, timed out or skipped, so the table is written whatever happens. $OUT receives four
# files (the device tool brings back at most 8): h200.md, h200-logs.txt (every stage's full
# output), bench.jsonl (one line per throughput result), stages.tsv.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
T0=$(date +%s)
LIMIT=${H200_LIMIT_S:-540}
DRY_RUN=${DRY_RUN:-0}
OUT=${OUT:?set OUT to the output directory}
mkdir -p "$OUT"
LOG="$OUT/h200-logs.txt"
STAGES="$OUT/stages.tsv"
: >"$LOG"
: >"$STAGES"
BIN=/tmp/ava-gpu/bin     # unpacked binaries
WORK=/tmp/ava-gpu/work   # per-stage outputs, weights, run directories
rm -rf "$WORK"
mkdir -p "$BIN" "$WORK"

left() { echo $((LIMIT - ($(date +%s) - T0))); }
note() { echo "h200: $*" | tee -a "$LOG" >&2; }

# stage NAME SECONDS CMD...: runs CMD under `timeout`, its output into $WORK/<NAME>.out and the
# log, and records `NAME<TAB>status<TAB>seconds` in stages.tsv.
stage() {
    local name=$1 budget=$2
    shift 2
    local remaining
    remaining=$(left)
    if ((remaining < 20)); then
        printf '%s\tskipped (time limit)\t0\n' "$name" >>"$STAGES"
        note "$name: skipped, ${remaining}s left"
        return 1
    fi
    ((budget > remaining - 10)) && budget=$((remaining - 10))
    note "$name: start (limit ${budget}s): $*"
    local start rc status
    start=$(date +%s)
    timeout --kill-after=10 "$budget" "$@" >"$WORK/$name.out" 2>&1
    rc=$?
    case $rc in
    0) status=ok ;;
    124 | 137) status="timed out after ${budget}s" ;;
    *) status="failed (exit $rc)" ;;
    esac
    printf '%s\t%s\t%s\n' "$name" "$status" "$(($(date +%s) - start))" >>"$STAGES"
    { echo "----- $name ($status): $*"; cat "$WORK/$name.out"; } >>"$LOG"
    note "$name: $status in $(($(date +%s) - start))s"
    return $rc
}

# ---------------------------------------------------------------- environment
if [[ "$DRY_RUN" == 1 ]]; then
    DEVICE=cpu PRESET=tiny TAPS=0,1,2,3 SIZE=64 BATCHES="1 2" DTYPES="f32 bf16" PROFILE=smoke TORCH_DEVICE=cpu
    TORCH_MODES=eager
else
    DEVICE=cuda PRESET=vitl16 TAPS=5,11,17,23 SIZE=512 BATCHES="1 32" DTYPES="f32 bf16" PROFILE=rehearsal TORCH_DEVICE=cuda
    TORCH_MODES="eager compile"
fi
{
    echo "date: $(date -u +%FT%TZ)  dry_run=$DRY_RUN  device=$DEVICE"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 || echo "no nvidia-smi"
    python3 -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__)' 2>&1
    uptime
} >"$WORK/env.out"
cat "$WORK/env.out" >>"$LOG"

# The binaries: unpacked from .gpu/bins.tar.xz (carried; one xz stream, 256 MiB dictionary), or
# taken from .gpu/ as they are.
if [[ -f .gpu/bins.tar.xz ]]; then
    xz -dc .gpu/bins.tar.xz | tar -C "$BIN" -xf - || note "could not unpack .gpu/bins.tar.xz"
fi
for name in ava-dino gpu_parity; do
    [[ ! -x $BIN/$name && -f .gpu/$name ]] && cp ".gpu/$name" "$BIN/$name"
done
[[ -x $BIN/ava-dino ]] || {
    note "no .gpu/ava-dino(.xz): run scripts/device/prepare-h200.sh first"
    exit 1
}
"$BIN/ava-dino" --version >>"$LOG" 2>&1

# NVRTC (the CUDA C++ path compiles kernels at run time) from the toolkit or PyTorch's wheel.
nvrtc=$(python3 - 2>/dev/null <<'EOF'
import glob, os, site
roots = ["/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib"] + site.getsitepackages()
hits = [p for r in roots for p in glob.glob(os.path.join(r, "**", "libnvrtc.so*"), recursive=True)]
print(os.path.dirname(sorted(hits)[0]) if hits else "")
EOF
)
[[ -n "$nvrtc" ]] && export LD_LIBRARY_PATH="$nvrtc${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
note "libnvrtc from: ${nvrtc:-not found}"
# NVRTC compiles against the toolkit's headers (cuda_bf16.h, mma.h): cubecl looks in CUDA_PATH,
# else /usr/local/cuda.
if [[ -z "${CUDA_PATH:-}" && ! -d /usr/local/cuda/include ]] && command -v nvcc >/dev/null; then
    CUDA_PATH=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")
    export CUDA_PATH
fi
note "CUDA headers from: ${CUDA_PATH:-/usr/local/cuda}"

# Vulkan: the loader carried as .deb files (device README), the driver's ICD from the host.
vulkan=false
if compgen -G ".gl/*.deb" >/dev/null && [[ "$DRY_RUN" != 1 ]]; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
    icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    [[ -f $icd ]] && export VK_DRIVER_FILES=$icd
    vulkan=true
elif [[ "$DRY_RUN" == 1 ]] && compgen -G ".gl/*.deb" >/dev/null && ldconfig -p | grep -q 'libvulkan\.so\.1 '; then
    vulkan=true
fi

# ---------------------------------------------------------------- 1. GPU parity
# The committed fixtures through the parity test binary (tests/gpu_parity.rs); its compiled-in
# fixture path is this build machine's, so the tree's fixtures come in as AVA_DINO_PARITY_DIR. Only
# the `*_matches_pytorch` tests: the fixture-contract ones test the fixtures, not the device.
if [[ -x $BIN/gpu_parity ]]; then
    backends=cuda
    $vulkan && backends="cuda vulkan"
    for b in $backends; do
        allow=0
        [[ "$DRY_RUN" == 1 && $b == vulkan ]] && allow=1
        stage "parity-$b" 150 env AVA_DINO_TEST_DEVICE=$b AVA_DINO_ALLOW_SOFTWARE_ADAPTER=$allow \
            AVA_DINO_PARITY_DIR="$ROOT/tests/fixtures" "$BIN/gpu_parity" matches_pytorch --nocapture --test-threads=1
    done
else
    printf 'parity\tskipped (no .gpu/gpu_parity)\t0\n' >>"$STAGES"
fi

# ---------------------------------------------------------------- 2. throughput
W=$WORK/weights
stage random-backbone 60 "$BIN/ava-dino" random-backbone --preset "$PRESET" --seed 0 --out "$W"
BENCH="$OUT/bench.jsonl"
: >"$BENCH"
for dt in $DTYPES; do
    for b in $BATCHES; do
        stage "ours-$DEVICE-$dt-b$b" 90 "$BIN/ava-dino" bench-backbone --backbone "$W" --device "$DEVICE" \
            --dtype "$dt" --batch "$b" --size "$SIZE" --taps "$TAPS" --warmup 2 --iters 5 --json "$BENCH"
    done
done
if $vulkan && [[ "$DRY_RUN" != 1 ]]; then
    for b in $BATCHES; do
        stage "ours-vulkan-f32-b$b" 90 "$BIN/ava-dino" bench-backbone --backbone "$W" --device vulkan \
            --dtype f32 --batch "$b" --size "$SIZE" --taps "$TAPS" --warmup 2 --iters 5 --json "$BENCH"
    done
fi
# In a dry run, prove the carried binary refuses a missing GPU with one clear line.
if [[ "$DRY_RUN" == 1 ]]; then
    stage ours-cuda-refusal 30 "$BIN/ava-dino" bench-backbone --backbone "$W" --device cuda --batch 1 --size "$SIZE"
fi
torch_budget=$(($(left) - 200))
((torch_budget > 240)) && torch_budget=240
stage torch 300 python3 scripts/device/bench_torch.py --model "$W" --device "$TORCH_DEVICE" \
    --batch $BATCHES --dtype $DTYPES --mode $TORCH_MODES --size "$SIZE" --json "$BENCH" --budget "$torch_budget"

# ---------------------------------------------------------------- 3. Table 4 rehearsal
RUNS=$WORK/runs
if [[ -f experiments/profiles/$PROFILE.yaml ]]; then
    sweep=("$BIN/ava-dino" sweep experiments/table4.yaml --profile "$PROFILE" --runs "$RUNS"
        --set "device=$DEVICE" --quiet)
    [[ "$PROFILE" == rehearsal ]] && sweep+=(--set data.synthetic.per_category=4)
    stage rehearsal-assets 60 "${sweep[@]}" --check-assets &&
        stage rehearsal-sweep 400 "${sweep[@]}" --all &&
        stage rehearsal-collect 60 "$BIN/ava-dino" collect "$RUNS/paper-$PROFILE" --out "$WORK/table4" \
            --tables table4 --published results/published.toml
else
    printf 'rehearsal\tskipped (no experiments/profiles/%s.yaml in this checkout)\t0\n' "$PROFILE" >>"$STAGES"
fi

# ---------------------------------------------------------------- table
python3 scripts/device/h200_table.py --out "$OUT" --work "$WORK" --dry-run "$DRY_RUN" >"$OUT/h200.md" 2>>"$LOG" ||
    note "the table could not be written; see $LOG"
note "done in $(($(date +%s) - T0))s: $OUT/h200.md"
cat "$OUT/h200.md"
