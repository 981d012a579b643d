#!/usr/bin/env bash
# The default model's training campaign (issue 14): variable rate (9 levels), mean-scale
# hyperprior, mixed quantisation, g_a 46 wide (encoder MACs within the trap's 5.6 G per
# 1024x768), g_s 128 wide (the base decodes with time to spare), 160 latent channels.
#
#   training/campaign/v3.sh run     start or resume in the background (nohup; log in RUN/train.log)
#   training/campaign/v3.sh save    copy the newest checkpoint into training/campaign/v3/ (commit it)
#   training/campaign/v3.sh status  steps done, last epoch line
#
# RUN (default runs/v3) is where training writes; a fresh machine seeds it from the committed
# checkpoint in training/campaign/v3/, so the campaign survives sessions that end mid-run.
# Stage 1: 128-px patches to step 40000; stage 2: 256-px patches to step 300000 (the last
# 10 % at lr/10). Data: train/ and sites/ of $WILDLINK_DATA, never eval/.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUN=${RUN:-runs/v3}
SEED=training/campaign/v3
DATA=${WILDLINK_DATA:-../shared/data}
STAGE1_STEPS=40000
TOTAL_STEPS=300000

latest_step() {
  sed -n 's/^model_checkpoint_path: "ckpt-\([0-9]*\)"/\1/p' "$1/checkpoints/checkpoint" 2>/dev/null || echo 0
}

case "${1:-status}" in
  run)
    if [ ! -f "$RUN/checkpoints/checkpoint" ] && [ -f "$SEED/checkpoints/checkpoint" ]; then
      mkdir -p "$RUN" && cp -r "$SEED/." "$RUN/"
      echo "seeded $RUN from $SEED at step $(latest_step "$SEED")"
    fi
    step=$(latest_step "$RUN")
    patch=128
    [ "${step:-0}" -ge "$STAGE1_STEPS" ] && patch=256
    steps=$TOTAL_STEPS
    [ "$patch" = 128 ] && steps=$STAGE1_STEPS
    mkdir -p "$RUN"
    # shellcheck disable=SC2086
    nohup .venv/bin/wildlink train --run "$RUN" --data "$DATA/train" "$DATA/sites" \
      --analysis 46 --synthesis 128 --latent 160 --hyper 64 \
      --lambdas 0.00015 0.0003 0.0006 0.0012 0.0024 0.0048 0.0096 0.0192 0.0384 \
      --mean --mixed --patch "$patch" --batch 8 --steps "$steps" --lr 1e-4 \
      --checkpoint-minutes 5 --quiet >> "$RUN/train.log" 2>&1 &
    echo "training in the background (pid $!), patch $patch, to step $steps; log $RUN/train.log"
    echo "(stage 1 stops at step $STAGE1_STEPS: run this again for stage 2)"
    ;;
  save)
    step=$(latest_step "$RUN")
    [ "$step" -gt 0 ] || { echo "no checkpoint in $RUN" >&2; exit 2; }
    rm -rf "$SEED/checkpoints" && mkdir -p "$SEED/checkpoints"
    cp "$RUN/model_config.json" "$RUN/train_config.json" "$SEED/"
    cp "$RUN/checkpoints/ckpt-$step."* "$SEED/checkpoints/"
    printf 'model_checkpoint_path: "ckpt-%s"\nall_model_checkpoint_paths: "ckpt-%s"\n' "$step" "$step" \
      > "$SEED/checkpoints/checkpoint"
    echo "saved step $step to $SEED ($(du -sh "$SEED" | cut -f1))"
    ;;
  status)
    echo "run $RUN: step $(latest_step "$RUN"); committed seed: step $(latest_step "$SEED")"
    grep -a ' - loss' "$RUN/train.log" 2>/dev/null | tail -1 || true
    ;;
  *) echo "usage: $0 run|save|status" >&2; exit 2 ;;
esac
