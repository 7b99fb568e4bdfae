#!/usr/bin/env python3
"""Writes the one table of scripts/device/h200.sh (markdown, stdout) from what its stages left:
--work/plan.tsv (the stages the call selected and their budgets), $OUT/stages.tsv, $OUT/bench.jsonl,
$OUT/features.jsonl and the stage outputs under --work. Called after every stage and on exit, so
it must cope with any of them missing or cut short."""
import argparse
import glob
import json
import os
import re

PARITY = re.compile(r"^parity (\S+) (\S+) (\S+) (.*) (ok|FAIL)$")
NUM = re.compile(r"(max_abs|rel)=([0-9.eE+-]+|NaN|inf)")
# A progress line at the end of a phase: "<label> N/N <msg> (12.3s)".
PHASE_END = re.compile(r"^(.*?) (\d+)/(\d+)\b.*\((\d+(?:\.\d+)?)s\)$")
JOB_DONE = re.compile(r"^job \d+ (.*): done in (\d+(?:\.\d+)?)s$")


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def parity_rows(work):
    rows = []
    for path in sorted(glob.glob(os.path.join(work, "parity-*.out"))):
        backend = os.path.basename(path)[len("parity-"):-len(".out")]
        text = read(path)
        device = next((l[len("test device: "):] for l in text.splitlines() if l.startswith("test device: ")), "-")
        kinds = {}
        seen = set()
        for line in text.splitlines():
            m = PARITY.match(line)
            if not m or line in seen:
                continue
            seen.add(line)
            kind = m.group(1).split(":")[-1].split("/")[0]
            k = kinds.setdefault(kind, {"ok": 0, "fail": 0, "cases": set(), "max_abs": 0.0, "rel": 0.0})
            k["cases"].add(m.group(1))
            k["ok" if m.group(5) == "ok" else "fail"] += 1
            for name, value in NUM.findall(m.group(4)):
                try:
                    k[name] = max(k[name], float(value))
                except ValueError:
                    pass
        if not kinds:
            last = [l for l in text.splitlines() if l.strip()][-3:]
            rows.append(f"| {backend} | {device} | - | - | - | - | - | {' / '.join(last)[:200]} |")
        for kind, k in sorted(kinds.items()):
            rows.append(
                f"| {backend} | {device} | {kind} | {len(k['cases'])} | {k['ok']} | {k['fail']} "
                f"| {k['max_abs']:.2e} | {k['rel']:.2e} |"
            )
    return rows


def bench_rows(out):
    recs = []
    for line in read(os.path.join(out, "bench.jsonl")).splitlines():
        try:
            recs.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    batches = sorted({r["batch"] for r in recs})
    groups = {}
    for r in recs:
        impl = r.get("impl", "ours")
        key = (impl, r["device"], r.get("adapter", "-"), r["dtype"])
        cell = f"{r['images_per_s']:.1f}" if "images_per_s" in r else r.get("skipped") or r.get("error", "-")
        groups.setdefault(key, {})[r["batch"]] = (cell, r.get("first_forward_s"))
    head = "| implementation | device | dtype | " + " | ".join(f"batch {b} (first forward s)" for b in batches) + " |"
    rows = [head, "|" + "---|" * (3 + len(batches))]
    for (impl, device, adapter, dtype), cells in sorted(groups.items()):
        parts = []
        for b in batches:
            cell, first = cells.get(b, ("-", None))
            parts.append(f"{cell} ({first:.1f})" if first is not None else str(cell))
        rows.append(f"| {impl} | {device} ({adapter}) | {dtype} | " + " | ".join(parts) + " |")
    return rows, recs


def ratios(recs):
    """ours / torch eager, per dtype and batch, where both exist."""
    def rate(impl, dtype, b):
        for r in recs:
            if r.get("impl", "ours") == impl and r["dtype"] == dtype and r["batch"] == b and "images_per_s" in r \
                    and (impl != "ours" or r["device"] in ("cuda", "cpu")):
                return r["images_per_s"]
        return None
    lines = []
    for dtype in sorted({r["dtype"] for r in recs}):
        for b in sorted({r["batch"] for r in recs}):
            ours, torch_eager, torch_compile = rate("ours", dtype, b), rate("torch-eager", dtype, b), rate("torch-compile", dtype, b)
            if ours and torch_eager:
                extra = f", vs torch.compile {ours / torch_compile:.2f}" if torch_compile else ""
                lines.append(f"- {dtype} batch {b}: ours / PyTorch eager = {ours / torch_eager:.2f}{extra}")
    return lines


def stage_table(a):
    """Every planned stage with its budget and what became of it (`not reached` when the call
    ended before it), then the stages that ran outside the plan."""
    done = {}
    order = []
    for line in read(os.path.join(a.out, "stages.tsv")).splitlines():
        parts = line.split("\t")
        if len(parts) >= 3:
            done[parts[0]] = parts[1:]
            order.append(parts[0])
    planned = []
    for line in read(os.path.join(a.work, "plan.tsv")).splitlines():
        parts = line.split("\t")
        if len(parts) == 2:
            planned.append(parts)
    rows = ["## Stages\n", "| stage | budget s | status | wall s |", "|---|---|---|---|"]
    names = {n for n, _ in planned}
    total = 0
    for name, budget in planned:
        total += int(budget) if budget.isdigit() else 0
        status, wall = (done[name][0], done[name][1]) if name in done else ("not reached", "-")
        cut = done.get(name, [None, None, None])
        used = cut[2] if len(cut) > 2 and cut[2] not in (None, "-", budget) else None
        rows.append(f"| {name} | {budget}{f' (cut to {used})' if used else ''} | {status} | {wall} |")
    for name in order:
        if name not in names:
            rows.append(f"| {name} | {done[name][2] if len(done[name]) > 2 else '-'} | {done[name][0]} | {done[name][1]} |")
    rows.append(f"\nBudgets of the planned stages: {total} s (plus {len(planned) - 1} x 3 s kill grace); "
                f"limit {a.limit} s; this table written at {a.elapsed} s.")
    return "\n".join(rows)


def feature_rows(out):
    """got vs want per tensor kind, worst over the taps (compare_features.py's JSON lines)."""
    groups = {}
    missing = []
    for line in read(os.path.join(out, "features.jsonl")).splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        pair = f"{r['got']} vs {r['want']}"
        if "missing" in r:
            missing.append(f"| {pair} | - | missing: {', '.join(r['missing'])} | | | |")
        elif "error" not in r:
            groups.setdefault((pair, r["kind"]), []).append(r)
    rows = ["| got vs want | kind | worst max abs | worst rel L2 | lowest cosine | lowest token cosine |",
            "|---|---|---|---|---|---|"]
    for (pair, kind), rs in groups.items():
        bad = sum(r.get("nonfinite", 0) for r in rs)
        rows.append(
            f"| {pair} | {kind} | {max(r['max_abs'] for r in rs):.3e}{f' ({bad} non-finite)' if bad else ''} "
            f"| {max(r['rel_l2'] for r in rs):.3e} | {min(r['cosine'] for r in rs):.7f} "
            f"| {min(r['min_row_cosine'] for r in rs):.7f} |")
    return rows + missing if len(rows) > 2 or missing else []


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--dry-run", default="0")
    ap.add_argument("--limit", default="540")
    ap.add_argument("--elapsed", default="-")
    a = ap.parse_args()
    dry = a.dry_run == "1"
    print(f"# scripts/device/h200.sh{' (DRY RUN on a machine without a GPU: not GPU figures)' if dry else ''}\n")
    print("```\n" + read(os.path.join(a.work, "env.out")).strip() + "\n```\n")

    print(stage_table(a))

    print("\n## GPU parity (committed fixtures)\n")
    rows = parity_rows(a.work)
    if rows:
        print("| backend | adapter | kind | cases | ok | FAIL | worst max_abs | worst rel |\n|---|---|---|---|---|---|---|---|")
        print("\n".join(rows))
    else:
        print("(no parity output: see the stages above)")

    print("\n## Backbone features: GPU against CPU (same synthetic pixels, same weights)\n")
    rows = feature_rows(a.out)
    if rows:
        px = read(os.path.join(a.work, "features-pixels.out")).strip()
        print("\n".join(rows))
        print(f"\nPixels: {px}. Worst over the taps; rel L2 = ||got - want|| / ||want||; token cosine: "
              "one token's row of D channels.")
    else:
        print("(no comparison: see the stages above)")

    rows, recs = bench_rows(a.out)
    size = recs[0]["size"] if recs else "-"
    print(f"\n## Backbone throughput, images/s at {size} px (same random weights)\n")
    print("\n".join(rows))
    for line in ratios(recs):
        print(line)

    print("\n## Table 4 rehearsal: wall time per stage\n")
    sweep = read(os.path.join(a.work, "rehearsal-sweep.out"))
    phases = []
    for line in sweep.splitlines():
        m = PHASE_END.match(line.strip())
        if m and m.group(2) == m.group(3):
            phases.append(f"| {m.group(1)} | {m.group(4)} |")
        m = JOB_DONE.match(line.strip())
        if m:
            phases.append(f"| job {m.group(1)} (total) | {m.group(2)} |")
    if phases:
        print("| phase | s |\n|---|---|")
        print("\n".join(phases))
    elif "rehearsal-" not in read(os.path.join(a.work, "plan.tsv")):
        print("(not in this call: `H200_STAGES=rehearsal bash scripts/device/h200.sh`, a call of its own)")
    else:
        print("(no rehearsal output: see the stages above)")
    for md in sorted(glob.glob(os.path.join(a.work, "table4", "*.md")))[:1]:
        print(f"\n{read(md).strip()}")


if __name__ == "__main__":
    main()
