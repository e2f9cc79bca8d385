#!/usr/bin/env bash
# Train the served networks the way the committed weights were trained (on a CUDA machine, or
# anywhere with smaller numbers):
#   1. a width sweep: every architecture at widths 16, 24 and 32, from scratch, on the same
#      fixed budget of SWEEP_PATCHES patches, side by side (val PSNR per width in sweep.csv);
#   2. the three served models side by side for MINUTES each, warm-started from models/weights
#      (widened first where LADDER_WIDTHS asks for more than their width).
#
#   scripts/training/train_all.sh CORPUS OUT        # CORPUS holds train/ and val/; results under OUT
#
# OUT/weights gets the trained weights (safetensors + JSON), OUT/logs.tar.gz the curves, the
# sweep table and every process's output. Settings come from the environment: MINUTES (6),
# SWEEP_PATCHES (100000, 0 skips the sweep), SWEEP_SECONDS (a sweep run past it is stopped,
# 150), WIDTHS ("16 24 32"), LADDER_WIDTHS (the final runs' widths for unet, runet and arunet,
# e.g. "24 24 32"; default: the registry's), BATCH (128 at crop 64), WORKERS (loader processes
# per run; default: the cores shared out), PYTHON (python3). Runs stop cleanly on SIGTERM
# (checkpoint).
set -euo pipefail

CORPUS="$(cd "$1" && pwd)"
OUT="$(mkdir -p "$2" && cd "$2" && pwd)"
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PYTHON="${PYTHON:-python3}"
MINUTES="${MINUTES:-6}"
SWEEP_PATCHES="${SWEEP_PATCHES:-100000}"
SWEEP_SECONDS="${SWEEP_SECONDS:-150}"
WIDTHS="${WIDTHS:-16 24 32}"
BATCH="${BATCH:-128}"
MODELS=(model_unet model_runet model_arunet)
read -r -a LADDER <<<"${LADDER_WIDTHS:-}"
if (( ${#LADDER[@]} && ${#LADDER[@]} != ${#MODELS[@]} )); then
    echo "LADDER_WIDTHS needs one width per model (${MODELS[*]}), got '${LADDER_WIDTHS}'" >&2
    exit 2
fi
SCRATCH="$(mktemp -d)"
mkdir -p "$SCRATCH/logs" "$OUT/weights"
COMMON=(--train-src "$CORPUS/train" --val-src "$CORPUS/val" --batch "$BATCH" --threads 1)

pack_logs() {
    for run in "$SCRATCH"/runs/*/; do
        [[ -f "$run/log.csv" ]] && cp "$run/log.csv" "$SCRATCH/logs/$(basename "$run").csv"
    done
    tar -czf "$OUT/logs.tar.gz" -C "$SCRATCH" logs
}
trap pack_logs EXIT

cores="$(nproc)"
if [[ "$SWEEP_PATCHES" -gt 0 ]]; then
    runs=$(( ${#MODELS[@]} * $(wc -w <<<"$WIDTHS") ))
    workers="${WORKERS:-$(( cores > runs ? (cores - runs) / runs + 1 : 1 ))}"
    echo "width sweep: $runs runs of $SWEEP_PATCHES patches, $workers loader workers each"
    for model in "${MODELS[@]}"; do
        for width in $WIDTHS; do
            name="sweep-$model-w$width"
            timeout "$SWEEP_SECONDS" "$PYTHON" -m scripts.training.train --model "$model" --width "$width" "${COMMON[@]}" --crops 64 \
                --lr 2e-3 --epochs 4 --epoch-patches $(( SWEEP_PATCHES / 4 )) --workers "$workers" \
                --run-dir "$SCRATCH/runs/$name" --weights-dir "$SCRATCH/sweep-weights/$name" \
                >"$SCRATCH/logs/$name.out" 2>&1 &
        done
    done
    wait
    "$PYTHON" - "$SCRATCH" >"$SCRATCH/logs/sweep.csv" <<'PY'
import json, sys
from pathlib import Path
print("model,width,patches,val_psnr,val_psnr_noisy")
for info in sorted(Path(sys.argv[1]).glob("sweep-weights/*/*.json")):
    t = json.loads(info.read_text())
    print(f"{t['model']},{t['config']['width']},{t['training']['patches_seen']},{t['training']['val_psnr']},{t['training']['val_psnr_noisy']}")
PY
    cat "$SCRATCH/logs/sweep.csv"
fi

workers="${WORKERS:-$(( cores > 6 ? (cores - ${#MODELS[@]}) / ${#MODELS[@]} : 1 ))}"
echo "final: ${#MODELS[@]} models for $MINUTES minutes each, $workers loader workers each"
for index in "${!MODELS[@]}"; do
    model="${MODELS[$index]}"
    width=()
    (( ${#LADDER[@]} )) && width=(--width "${LADDER[$index]}")
    timeout "$(( ${MINUTES%.*} * 60 + 120 ))" "$PYTHON" -m scripts.training.train --model "$model" "${COMMON[@]}" --crops 64 128 --minutes "$MINUTES" \
        --epoch-patches 60000 --workers "$workers" --init models/weights "${width[@]}" \
        --run-dir "$SCRATCH/runs/$model" --weights-dir "$OUT/weights" >"$SCRATCH/logs/$model.out" 2>&1 &
done
wait
tail -n 3 "$SCRATCH"/logs/model_*.out
