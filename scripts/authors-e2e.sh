#!/usr/bin/env bash
# The authors' code and the harness side by side, on random weights at the real shapes and the
# synthetic twins (issue 22; docs/fidelity.md holds the result tables and what each wrapper does).
#
#   scripts/authors-e2e.sh AUTHORS_CHECKOUT DINOV3_CHECKOUT [WORK_DIR]
#
# AUTHORS_CHECKOUT: aqeeelmirza/AVA-DINO, DINOV3_CHECKOUT: facebookresearch/dinov3, each a work
# tree or a bare git directory (then its HEAD is used). Neither is modified or committed here: both
# are copied into WORK_DIR (default /tmp/authors-e2e) and run there as they are.
#
# Steps: (1) random DINOv3 ViT-L/16 (Meta .pth layout) and CLIP ViT-L/14-336 (OpenAI state dict)
# weights, written where train.py and test.py look for them; (2) the synthetic twins; (3) train.py
# on VisA through scripts/authors_e2e/train_wrapper.py (seeded, initial adapters saved, losses
# recorded); (4) the harness from those initial adapters with train.shuffle: torch; (5) test.py
# on train.py's checkpoints and `ava-dino evaluate` on the same files; (6) the two tables
# (scripts/authors_e2e/compare.py) and the versions and wall times into WORK_DIR/report.md.
#
# Environment: PYTHON (with torch, torchvision and the authors' requirements; default python3),
# AVA_DINO (the harness binary; default `cargo run --release --bin ava-dino --`), SEED (0),
# EPOCHS (1), BATCH (16), DEVICE (cpu, or cuda:0 for both sides), PER_CATEGORY (twin images per
# category, half normal; default the smoke twins' handful: fewer for a CPU run).
set -euo pipefail

if [[ $# -lt 2 ]]; then
    sed -n '2,20p' "$0"
    exit 2
fi
AUTHORS=$(realpath "$1")
DINOV3=$(realpath "$2")
WORK=$(realpath -m "${3:-/tmp/authors-e2e}")
REPO=$(cd "$(dirname "$0")/.." && pwd)
HERE="$REPO/scripts/authors_e2e"
PYTHON=${PYTHON:-python3}
SEED=${SEED:-0}
EPOCHS=${EPOCHS:-1}
BATCH=${BATCH:-16}
DEVICE=${DEVICE:-cpu}
if [[ -n "${AVA_DINO:-}" ]]; then
    read -r -a HARNESS <<<"$AVA_DINO"
else
    HARNESS=(cargo run --manifest-path "$REPO/Cargo.toml" --release --quiet --bin ava-dino --)
fi
HARNESS_DEVICE=cpu
[[ "$DEVICE" == cuda* ]] && HARNESS_DEVICE=cuda

say() { printf '[authors-e2e %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
timed() {
    local name=$1
    shift
    local t0=$SECONDS
    "$@"
    echo "| $name | $((SECONDS - t0)) s |" >>"$WORK/times.md"
}

# A work tree copied without its .git, or a bare repository's HEAD.
unpack() {
    local src=$1 dst=$2
    mkdir -p "$dst"
    if [[ -f "$src/HEAD" && -d "$src/objects" ]]; then
        if ! git --git-dir="$src" archive HEAD 2>/dev/null | tar -x -C "$dst" 2>/dev/null; then
            # A partial mirror (large blobs absent): every file it holds, one by one.
            say "$src: git archive failed; copying the files it holds one by one"
            git --git-dir="$src" ls-tree -r HEAD --name-only | while read -r f; do
                mkdir -p "$dst/$(dirname "$f")"
                git --git-dir="$src" show "HEAD:$f" >"$dst/$f" 2>/dev/null || rm -f "$dst/$f"
            done
        fi
        git --git-dir="$src" rev-parse HEAD >"$dst/.revision"
    else
        (cd "$src" && tar -c --exclude=.git .) | tar -x -C "$dst"
        git -C "$src" rev-parse HEAD >"$dst/.revision" 2>/dev/null || echo unknown >"$dst/.revision"
    fi
}

rm -rf "$WORK"
mkdir -p "$WORK"
: >"$WORK/times.md"
say "copies of the checkouts in $WORK"
unpack "$AUTHORS" "$WORK/authors"
unpack "$DINOV3" "$WORK/dinov3"
# train.py and test.py load './dinov3' and './dinov3_vitl16_pretrain_lvd1689m-8aa4cbdd.pth' from
# their working directory, and CLIP from CLIP/ckpt/ViT-L-14-336px.pt.
ln -s "$WORK/dinov3" "$WORK/authors/dinov3"
DINO_PTH="$WORK/authors/dinov3_vitl16_pretrain_lvd1689m-8aa4cbdd.pth"
CLIP_PT="$WORK/authors/CLIP/ckpt/ViT-L-14-336px.pt"
# torch.hub caches the weights it "downloads" (a file:// URL here) under TORCH_HOME.
export TORCH_HOME="$WORK/torch-home"

say "random weights at the real shapes (seed $SEED)"
timed weights "$PYTHON" "$HERE/make_weights.py" --dinov3 "$WORK/dinov3" --authors "$WORK/authors" \
    --seed "$SEED" --dinov3-out "$DINO_PTH" --clip-out "$CLIP_PT"

say "synthetic twins"
timed twins "${HARNESS[@]}" synth --out "$WORK/data" ${PER_CATEGORY:+--per-category "$PER_CATEGORY"}
export AVA_DINO_INDUSTRIAL_ROOT="$WORK/data"

say "train.py on VisA ($EPOCHS epochs, batch $BATCH, $DEVICE)"
(cd "$WORK/authors" && timed train.py "$PYTHON" "$HERE/train_wrapper.py" --seed "$SEED" \
    --init-out "$WORK/init.pth" --losses-out "$WORK/train_py_losses.json" -- \
    --dataset visa --result_path "$WORK/train_py" --device "$DEVICE" \
    --batch_size "$BATCH" --epochs "$EPOCHS" --lr 1e-4) 2>&1 | tr '\r' '\n' >"$WORK/train_py.log"

cat >"$WORK/e2e.yaml" <<YAML
name: authors-e2e
description: "scripts/authors-e2e.sh: the harness beside train.py and test.py"
device: $HARNESS_DEVICE
backbone:
  weights: $DINO_PTH
text:
  weights: $CLIP_PT
data:
  root: $WORK/data
train:
  batch_size: $BATCH
  epochs: $EPOCHS
  shuffle: torch
  init: $WORK/init.pth
eval:
  bootstrap:
    replicates: 0
sweep:
  variants: [full]
  runs:
    - train: visa
      targets: [mvtec]
  seeds: [$SEED]
YAML

say "the harness from train.py's initial adapters, in PyTorch's order"
timed harness-train "${HARNESS[@]}" sweep "$WORK/e2e.yaml" --all --quiet --runs "$WORK/runs" \
    2>&1 | tee "$WORK/harness_sweep.log" >&2
TRAINING=$(ls -d "$WORK"/runs/authors-e2e-full/_train/*/)

say "test.py on train.py's checkpoints"
(cd "$WORK/authors" && timed test.py "$PYTHON" test.py --dataset mvtec \
    --checkpoint_dir "$WORK/train_py/ckpt" --result_path "$WORK/test_py" --device "$DEVICE" \
    --batch_size "$BATCH" --start_epoch 0 --num_epochs "$EPOCHS") 2>&1 | tr '\r' '\n' >"$WORK/test_py.log"

say "ava-dino evaluate on the same checkpoints"
CKPTS=()
for ((e = 0; e < EPOCHS; e++)); do CKPTS+=("$WORK/train_py/ckpt/epoch_$e.pth"); done
timed evaluate "${HARNESS[@]}" evaluate --experiment "$WORK/e2e.yaml" --target mvtec --quiet \
    --out "$WORK/evaluate" --checkpoint "${CKPTS[@]}" >"$WORK/evaluate.log"

STEPS=$(grep -c . <(tr ',' '\n' <"$WORK/train_py_losses.json")) || true
STEPS_PER_EPOCH=$((STEPS / EPOCHS))
status=0
{
    echo "# scripts/authors-e2e.sh, $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "## Losses per step, first epoch (train.py vs the harness from its initial adapters)"
    echo
    "$PYTHON" "$HERE/compare.py" losses "$WORK/train_py_losses.json" "$TRAINING" \
        "$STEPS_PER_EPOCH" || status=1
    echo
    echo "## Metrics per category (test.py vs ava-dino evaluate, same checkpoints)"
    echo
    "$PYTHON" "$HERE/compare.py" metrics "$WORK/test_py.log" "$WORK/evaluate.log" || status=1
    echo
    echo "## Wall time"
    echo
    echo "| step | time |"
    echo "|---|---|"
    cat "$WORK/times.md"
    echo
    echo "## Versions"
    echo
    echo "- authors' code: $(cat "$WORK/authors/.revision"); dinov3: $(cat "$WORK/dinov3/.revision")"
    echo "- harness: $("${HARNESS[@]}" --version)"
    echo "- $("$PYTHON" -c 'import sys, torch, torchvision, sklearn, numpy; print(f"python {sys.version.split()[0]}, torch {torch.__version__}, torchvision {torchvision.__version__}, scikit-learn {sklearn.__version__}, numpy {numpy.__version__}")')"
    echo "- device: $DEVICE; $(nproc) CPU threads; twins: ${PER_CATEGORY:-the smoke handful} per category"
} >"$WORK/report.md"
cat "$WORK/report.md"
exit $status
