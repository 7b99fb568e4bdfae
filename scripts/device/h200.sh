#!/usr/bin/env bash
# One call on an NVIDIA H200 device machine (CUDA driver, PyTorch and transformers there; no
# Rust, no network; one command at most 600 s): GPU parity of the committed fixtures, ViT-L/16
# features on the GPU against the CPU's (f32 and bf16), backbone throughput against PyTorch on
# the same random weights; the full-size Table 4 rehearsal in a second call. Writes one table,
# $OUT/h200.md, plus what it was made from. docs/gpu.md, "The H200 script", has the budgets.
#
# Prepared here first (builds and packs the binaries into .gpu/, the Vulkan loader into .gl/):
#   scripts/device/prepare-h200.sh
# then the device tool runs, from the repository root:
#   run(command="bash scripts/device/h200.sh", carry=[".gpu"], timeout_s=600)
#   run(command="H200_STAGES=rehearsal bash scripts/device/h200.sh", carry=[".gpu"], timeout_s=600)
# (carry=[".gpu", ".gl"] when prepared with H200_FEATURES=cuda,vulkan).
#
# Time: every stage runs under `timeout` with its own budget (BUDGET below); the budgets of the
# stages a call selects, the start-up and each stage's kill grace sum below H200_LIMIT_S (540 s),
# which the plan printed at the start checks. A stage is also cut to the time left, or skipped
# when too little is left. The table is rewritten after every stage and printed on any exit
# (end, error, INT/TERM), so a cut call still brings back the table of what ran.
#
# Environment:
#   OUT            output directory (the device tool sets it)
#   H200_STAGES    stages to run, comma-separated: parity, features, bench, torch, rehearsal, or
#                  `default` (= parity,features,bench,torch) or `all` (over budget: later stages
#                  are cut); default `default`
#   H200_LIMIT_S   the whole call's limit in seconds (default 540)
#   H200_BIN       a directory holding ava-dino (and gpu_parity) to use instead of unpacking
#                  .gpu/bins.tar.xz (a dry run with a local build)
#   DRY_RUN=1      no GPU: the CPU device, a tiny backbone at 64 px, the smoke profile; the
#                  "GPU" side of the feature comparison is the CPU with AVA_DINO_CPU_KERNELS=burn
#                  (burn's ops against our kernels), so every stage's plumbing and the table run:
#     DRY_RUN=1 H200_BIN=$CARGO_TARGET_DIR/debug OUT=/tmp/h200-dry bash scripts/device/h200.sh
#
# $OUT receives (the device tool brings back at most 8 files): h200.md, h200-logs.txt (every
# stage's full output), stages.tsv, bench.jsonl (one line per throughput result), features.jsonl
# (one line per compared tensor).
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
T0=$(date +%s)
LIMIT=${H200_LIMIT_S:-540}
DRY_RUN=${DRY_RUN:-0}
OUT=${OUT:?set OUT to the output directory}
SELECT=${H200_STAGES:-default}
[[ $SELECT == default ]] && SELECT=parity,features,bench,torch
[[ $SELECT == all ]] && SELECT=parity,features,bench,torch,rehearsal
mkdir -p "$OUT"
LOG="$OUT/h200-logs.txt"
STAGES="$OUT/stages.tsv"
: >"$LOG"
: >"$STAGES"
BIN=${H200_BIN:-/tmp/ava-gpu/bin} # the binaries
WORK=/tmp/ava-gpu/work            # per-stage outputs, weights, run directories
rm -rf "$WORK"
mkdir -p "$BIN" "$WORK"
PLAN="$WORK/plan.tsv"
KILL_AFTER=3 # seconds between a stage's TERM and KILL
RESERVE=10   # seconds kept for the table at the end

# Each stage's budget in seconds (per batch size for bench-*). The default call's sum (start-up,
# parity, weights, features, two bench configurations, PyTorch), with KILL_AFTER per stage and
# RESERVE: 30 + 100 + 25 + 185 + 80 + 60 + 11 x 3 + 10 = 523 s < 540.
declare -A BUDGET=(
    [startup]=30
    [parity-cuda]=100 [parity-vulkan]=60
    [random-backbone]=25
    [features-pixels]=10 [features-cpu-f32]=40 [features-gpu-f32]=40 [features-gpu-bf16]=35
    [features-cpu-bf16]=45 [features-compare]=15
    [bench-f32]=45 [bench-bf16]=35
    [torch]=60
    [rehearsal-assets]=40 [rehearsal-sweep]=420 [rehearsal-collect]=30
)

selected() { [[ ",$SELECT," == *",$1,"* ]]; }
elapsed() { echo $(($(date +%s) - T0)); }
left() { echo $((LIMIT - $(elapsed))); }
note() { echo "h200: $*" | tee -a "$LOG" >&2; }

# The table from whatever the stages left; rewritten after each stage, so even a KILL leaves
# the last one. Falls back to the bare stage list when the Python side fails.
write_table() {
    if python3 scripts/device/h200_table.py --out "$OUT" --work "$WORK" --dry-run "$DRY_RUN" \
        --limit "$LIMIT" --elapsed "$(elapsed)" >"$OUT/h200.md.tmp" 2>>"$LOG"; then
        mv "$OUT/h200.md.tmp" "$OUT/h200.md"
    else
        { echo "# scripts/device/h200.sh (h200_table.py failed; see h200-logs.txt)"; echo
          echo '| stage | status | wall s | budget s |'; echo '|---|---|---|---|'
          sed 's/\t/ | /g; s/^/| /; s/$/ |/' "$STAGES"; } >"$OUT/h200.md"
    fi
}

CHILD=""      # the running stage's `timeout` process
CHILD_NAME="" # its name,
CHILD_START=0 # when it started
CHILD_BUDGET=0 # and its budget
FINISHED=0
finish() {
    ((FINISHED)) && return
    FINISHED=1
    write_table
    note "done in $(elapsed)s of ${LIMIT}s: $OUT/h200.md"
    cat "$OUT/h200.md"
}
on_signal() {
    note "$1 received after $(elapsed)s: stopping ${CHILD_NAME:-between stages}"
    if [[ -n $CHILD ]]; then
        kill -TERM "$CHILD" 2>/dev/null
        wait "$CHILD" 2>/dev/null
        printf '%s\tcut (%s)\t%s\t%s\n' "$CHILD_NAME" "$1" "$(($(date +%s) - CHILD_START))" "$CHILD_BUDGET" >>"$STAGES"
        { echo "----- $CHILD_NAME (cut by $1)"; cat "$WORK/$CHILD_NAME.out"; } >>"$LOG"
    fi
    exit 143
}
trap finish EXIT
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM

# stage NAME BUDGET CMD...: runs CMD under `timeout` (in the background, so that a signal to
# this script is handled at once), its output into $WORK/<NAME>.out and the log, and records
# `NAME<TAB>status<TAB>seconds<TAB>budget` in stages.tsv. Cut to the time left; skipped when
# less than 5 s would be left to it.
stage() {
    local name=$1 budget=$2
    shift 2
    local avail=$(($(left) - KILL_AFTER - RESERVE))
    if ((avail < 5)); then
        printf '%s\tskipped (time limit: %ss left)\t0\t%s\n' "$name" "$(left)" "$budget" >>"$STAGES"
        note "$name: skipped, $(left)s left"
        write_table
        return 1
    fi
    ((budget > avail)) && budget=$avail
    note "$name: start (budget ${budget}s, $(left)s left): $*"
    local start rc status
    start=$(date +%s)
    timeout --kill-after=$KILL_AFTER "$budget" "$@" >"$WORK/$name.out" 2>&1 </dev/null &
    CHILD=$! CHILD_NAME=$name CHILD_START=$start CHILD_BUDGET=$budget
    wait "$CHILD"
    rc=$?
    CHILD="" CHILD_NAME=""
    case $rc in
    0) status=ok ;;
    124 | 137) status="timed out after ${budget}s" ;;
    *) status="failed (exit $rc)" ;;
    esac
    printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$(($(date +%s) - start))" "$budget" >>"$STAGES"
    { echo "----- $name ($status): $*"; cat "$WORK/$name.out"; } >>"$LOG"
    note "$name: $status in $(($(date +%s) - start))s"
    write_table
    return $rc
}

# skip NAME WHY: a planned stage that cannot run here.
skip() {
    printf '%s\tskipped (%s)\t0\t-\n' "$1" "$2" >>"$STAGES"
    note "$1: skipped ($2)"
}

# ---------------------------------------------------------------- environment
if [[ "$DRY_RUN" == 1 ]]; then
    DEVICE=cpu GPU_ENV=AVA_DINO_CPU_KERNELS=burn PRESET=tiny TAPS=0,1,2,3 SIZE=64 PROFILE=smoke
    TORCH_DEVICE=cpu
else
    DEVICE=cuda GPU_ENV=AVA_DINO_CPU_KERNELS=auto PRESET=vitl16 TAPS=5,11,17,23 SIZE=512 PROFILE=rehearsal
    TORCH_DEVICE=cuda
fi
BATCHES=${H200_BATCHES:-32}          # throughput batch sizes (each one a bench stage per dtype)
DTYPES="f32 bf16"
TORCH_MODES=${H200_TORCH_MODES:-eager} # `eager compile`: torch.compile does not fit the default budget
FEATURE_BATCH=${H200_FEATURE_BATCH:-2} # synthetic images compared GPU against CPU

for s in ${SELECT//,/ }; do
    case $s in
    parity | features | bench | torch | rehearsal) ;;
    *)
        note "H200_STAGES: unknown stage \`$s\`; use parity, features, bench, torch, rehearsal, default or all"
        exit 2
        ;;
    esac
done

# The plan: the selected stages and their budgets, checked against the limit.
plan() { printf '%s\t%s\n' "$1" "$2" >>"$PLAN"; }
: >"$PLAN"
plan startup "${BUDGET[startup]}"
if selected parity; then
    plan parity-cuda "${BUDGET[parity-cuda]}"
    compgen -G ".gl/*.deb" >/dev/null && plan parity-vulkan "${BUDGET[parity-vulkan]}"
fi
if selected features || selected bench || selected torch; then
    plan random-backbone "${BUDGET[random-backbone]}"
fi
if selected features; then
    for s in pixels cpu-f32 gpu-f32 gpu-bf16 cpu-bf16 compare; do plan "features-$s" "${BUDGET[features-$s]}"; done
fi
if selected bench; then
    for dt in $DTYPES; do for b in $BATCHES; do plan "ours-$DEVICE-$dt-b$b" "${BUDGET[bench-$dt]}"; done; done
fi
selected torch && plan torch "${BUDGET[torch]}"
if selected rehearsal; then
    for s in assets sweep collect; do plan "rehearsal-$s" "${BUDGET[rehearsal-$s]}"; done
fi
planned=$(awk -F'\t' -v k=$KILL_AFTER -v r=$RESERVE '{s += $2 + ($1 == "startup" ? 0 : k)} END {print s + r}' "$PLAN")
note "stages: $SELECT; budgets + kill grace + reserve = ${planned}s of ${LIMIT}s"
((planned > LIMIT)) && note "over the limit by $((planned - LIMIT))s: the last stages will be cut or skipped"

{
    echo "date: $(date -u +%FT%TZ)  dry_run=$DRY_RUN  device=$DEVICE  stages=$SELECT"
    timeout 10 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 || echo "no nvidia-smi"
    timeout 15 python3 -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__)' 2>&1 &&
        touch "$WORK/have-torch"
    echo "host: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
    uptime
} >"$WORK/env.out"
cat "$WORK/env.out" >>"$LOG"

# The binaries: $H200_BIN as it is, or unpacked from .gpu/bins.tar.xz (carried; one xz stream,
# 256 MiB dictionary), or taken from .gpu/ as they are.
if [[ -z ${H200_BIN:-} && -f .gpu/bins.tar.xz ]]; then
    timeout 25 bash -c "xz -dc .gpu/bins.tar.xz | tar -C '$BIN' -xf -" || note "could not unpack .gpu/bins.tar.xz"
fi
for name in ava-dino gpu_parity; do
    [[ ! -x $BIN/$name && -f .gpu/$name ]] && cp ".gpu/$name" "$BIN/$name"
done
if [[ ! -x $BIN/ava-dino ]]; then
    note "no $BIN/ava-dino: run scripts/device/prepare-h200.sh first (or set H200_BIN)"
    printf 'startup\tfailed (no ava-dino)\t%s\t%s\n' "$(elapsed)" "${BUDGET[startup]}" >>"$STAGES"
    exit 1
fi
timeout 10 "$BIN/ava-dino" --version >>"$LOG" 2>&1

# NVRTC (the CUDA C++ path compiles kernels at run time) from the toolkit or PyTorch's wheel.
if [[ "$DRY_RUN" != 1 ]]; then
    nvrtc=$(timeout 20 python3 - 2>/dev/null <<'EOF'
import glob, os, site
roots = ["/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib"] + site.getsitepackages()
hits = [p for r in roots for p in glob.glob(os.path.join(r, "**", "libnvrtc.so*"), recursive=True)]
print(os.path.dirname(sorted(hits)[0]) if hits else "")
EOF
    )
    [[ -n "$nvrtc" ]] && export LD_LIBRARY_PATH="$nvrtc${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    note "libnvrtc from: ${nvrtc:-not found}"
    # NVRTC compiles against the toolkit's headers (cuda_bf16.h, mma.h): cubecl looks in
    # CUDA_PATH, else /usr/local/cuda.
    if [[ -z "${CUDA_PATH:-}" && ! -d /usr/local/cuda/include ]] && command -v nvcc >/dev/null; then
        CUDA_PATH=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")
        export CUDA_PATH
    fi
    note "CUDA headers from: ${CUDA_PATH:-/usr/local/cuda}"
fi

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
printf 'startup\tok\t%s\t%s\n' "$(elapsed)" "${BUDGET[startup]}" >>"$STAGES"
note "start-up took $(elapsed)s (budget ${BUDGET[startup]}s)"
write_table

# ---------------------------------------------------------------- 1. GPU parity
# The committed fixtures through the parity test binary (tests/gpu_parity.rs); its compiled-in
# fixture path is the build machine's, so the tree's fixtures come in as AVA_DINO_PARITY_DIR.
# Only the `*_matches_pytorch` tests: the fixture-contract ones test the fixtures, not the device.
if selected parity; then
    if [[ -x $BIN/gpu_parity ]]; then
        backends=cuda
        $vulkan && backends="cuda vulkan"
        for b in $backends; do
            allow=0
            [[ "$DRY_RUN" == 1 && $b == vulkan ]] && allow=1
            stage "parity-$b" "${BUDGET[parity-$b]}" env AVA_DINO_TEST_DEVICE=$b AVA_DINO_ALLOW_SOFTWARE_ADAPTER=$allow \
                AVA_DINO_PARITY_DIR="$ROOT/tests/fixtures" "$BIN/gpu_parity" matches_pytorch --nocapture --test-threads=1
        done
    else
        skip parity-cuda "no gpu_parity binary in $BIN"
    fi
fi

W=$WORK/weights
if selected features || selected bench || selected torch; then
    stage random-backbone "${BUDGET[random-backbone]}" \
        "$BIN/ava-dino" random-backbone --preset "$PRESET" --seed 0 --out "$W"
fi

# ---------------------------------------------------------------- 2. features, GPU vs CPU
# The same synthetic pixels through `ava-dino features` on the CPU (our kernels in f32, burn's
# flex ops in bf16) and on the GPU, then max |diff|, relative L2 and cosines per tensor
# (scripts/device/compare_features.py). The CPU f32 features are the reference of the f32 pairs
# and of the bf16 precision error; GPU bf16 against CPU bf16 isolates the device.
if selected features; then
    F=$WORK/features
    mkdir -p "$F"
    stage features-pixels "${BUDGET[features-pixels]}" python3 scripts/device/compare_features.py pixels \
        --out "$F/pixels.safetensors" --batch "$FEATURE_BATCH" --size "$SIZE"
    for run in cpu-f32 gpu-f32 gpu-bf16 cpu-bf16; do
        side=${run%-*} dt=${run#*-}
        if [[ $side == cpu ]]; then dev=cpu env=AVA_DINO_CPU_KERNELS=auto; else dev=$DEVICE env=$GPU_ENV; fi
        stage "features-$run" "${BUDGET[features-$run]}" env "$env" "$BIN/ava-dino" features --backbone "$W" \
            --input "$F/pixels.safetensors" --taps "$TAPS" --dtype "$dt" --device "$dev" --out "$F/$run.safetensors"
    done
    : >"$OUT/features.jsonl"
    stage features-compare "${BUDGET[features-compare]}" python3 scripts/device/compare_features.py compare \
        --dir "$F" --pair gpu-f32:cpu-f32 gpu-bf16:cpu-bf16 gpu-bf16:cpu-f32 cpu-bf16:cpu-f32 \
        --json "$OUT/features.jsonl"
fi

# ---------------------------------------------------------------- 3. throughput
BENCH="$OUT/bench.jsonl"
: >"$BENCH"
if selected bench; then
    for dt in $DTYPES; do
        for b in $BATCHES; do
            stage "ours-$DEVICE-$dt-b$b" "${BUDGET[bench-$dt]}" "$BIN/ava-dino" bench-backbone --backbone "$W" \
                --device "$DEVICE" --dtype "$dt" --batch "$b" --size "$SIZE" --taps "$TAPS" --warmup 2 --iters 5 --json "$BENCH"
        done
    done
    # In a dry run, prove the binary refuses a missing GPU with one clear line.
    if [[ "$DRY_RUN" == 1 ]]; then
        stage ours-cuda-refusal 15 "$BIN/ava-dino" bench-backbone --backbone "$W" --device cuda --batch 1 --size "$SIZE"
    fi
fi
if selected torch; then
    if [[ -f $WORK/have-torch ]]; then
        # bench_torch.py skips the configurations that would start after its own budget.
        stage torch "${BUDGET[torch]}" python3 scripts/device/bench_torch.py --model "$W" --device "$TORCH_DEVICE" \
            --batch $BATCHES --dtype $DTYPES --mode $TORCH_MODES --size "$SIZE" --json "$BENCH" \
            --budget $((BUDGET[torch] - 25))
    else
        skip torch "no torch/transformers in python3"
    fi
fi

# ---------------------------------------------------------------- 4. Table 4 rehearsal
if selected rehearsal; then
    RUNS=$WORK/runs
    if [[ -f experiments/profiles/$PROFILE.yaml ]]; then
        sweep=("$BIN/ava-dino" sweep experiments/table4.yaml --profile "$PROFILE" --runs "$RUNS"
            --set "device=$DEVICE" --quiet)
        [[ "$PROFILE" == rehearsal ]] && sweep+=(--set data.synthetic.per_category=4)
        stage rehearsal-assets "${BUDGET[rehearsal-assets]}" "${sweep[@]}" --check-assets &&
            stage rehearsal-sweep "${BUDGET[rehearsal-sweep]}" "${sweep[@]}" --all &&
            stage rehearsal-collect "${BUDGET[rehearsal-collect]}" "$BIN/ava-dino" collect "$RUNS/paper-$PROFILE" \
                --out "$WORK/table4" --tables table4 --published results/published.toml
    else
        skip rehearsal "no experiments/profiles/$PROFILE.yaml in this checkout"
    fi
fi
exit 0
