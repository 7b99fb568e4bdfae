#!/usr/bin/env bash
# kill -9 at random points, then resume: the resumed run must end with the numbers of an
# uninterrupted one. Usage: scripts/kill-resume.sh [iterations=20] [binary=target/release/ava-dino]
# Runs Table 4's job on a tiny smoke configuration (32 px, 4 blocks, 6 epochs, shards on disk)
# in a temporary directory; prints one line per iteration and exits non-zero on any difference.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20}
BIN=${2:-target/release/ava-dino}
[ -x "$BIN" ] || { echo "build it first: cargo build --release (or pass the binary)"; exit 2; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
run() { # run <runs dir> [extra args...]
  local runs=$1; shift
  "$BIN" sweep experiments/table4.yaml --profile smoke --all --quiet --runs "$runs" \
    --set data.image_size=32 --set backbone.embedded.patch=8 --set backbone.embedded.depth=4 \
    --set 'backbone.taps=[1,3]' --set train.epochs=6 --set train.batch_size=4 \
    --set "data.synthetic.dir=$TMP/synthetic" --set cache.train=disk \
    --set "cache.dir=$TMP/cache/features" "$@"
}
numbers() { # the numbers of a run, without timings and host facts
  python3 - "$1/paper-smoke/full__visa__mvtec__s0/metrics.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
for e in m["epochs"]:
    e.pop("seconds", None)
print(json.dumps([m[k] for k in ("untrained", "best_epoch", "final_epoch", "epochs", "routing")], sort_keys=True))
PY
}
run "$TMP/warm" 2>/dev/null   # twins and text features written once, as later runs find them
start=$(date +%s.%N)
run "$TMP/ref" 2>/dev/null
took=$(echo "$(date +%s.%N) - $start" | bc)
ref=$(numbers "$TMP/ref")
echo "uninterrupted run: ${took}s"
fail=0
for i in $(seq 1 "$N"); do
  runs="$TMP/k$i"
  kills=0
  want=$((RANDOM % 3 + 1))
  # Each kill lands at a random point of what is left of the run: a fresh start until the
  # first kill lands, then resumes.
  for attempt in $(seq 1 20); do
    [ "$kills" -ge "$want" ] && break
    run "$runs" 2>/dev/null &
    pid=$!
    sleep "$(python3 -c "import random; print(round(random.uniform(0.02, 0.9) * $took, 2))")"
    if kill -9 "$pid" 2>/dev/null; then
      kills=$((kills + 1))
    elif [ "$kills" -eq 0 ]; then
      rm -rf "$runs"   # finished before the kill: start this iteration again
    fi
    wait "$pid" 2>/dev/null || true
  done
  run "$runs" 2>"$TMP/err$i" || { echo "iteration $i: resume failed:"; cat "$TMP/err$i"; fail=1; continue; }
  got=$(numbers "$runs")
  left=$(find "$runs" -name '.*.tmp-*' | wc -l)
  if [ "$got" == "$ref" ] && [ "$kills" -gt 0 ]; then
    echo "iteration $i: $kills kill(s) -9, resumed to the same numbers ($left stale temporaries)"
  else
    echo "iteration $i: $kills kill(s) -9, DIFFERENT numbers or no kill landed"; fail=1
  fi
done
exit $fail
