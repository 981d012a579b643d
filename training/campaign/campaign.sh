#!/usr/bin/env bash
# A resumable training campaign of the default model (issue 14). Each campaign's settings are
# in training/campaign/NAME.conf; its committed checkpoint and HISTORY.md in training/campaign/NAME/.
#
#   training/campaign/campaign.sh NAME run     start or resume in the background (nohup; RUN/train.log)
#   training/campaign/campaign.sh NAME save    copy the newest checkpoint into training/campaign/NAME/
#   training/campaign/campaign.sh NAME status  steps done, last progress line
#
# RUN (default runs/NAME) is where training writes; a fresh machine seeds it from the committed
# checkpoint, so a campaign survives sessions that end mid-run. Stop it with `kill -TERM` (it
# checkpoints first). Data: train/ and sites/ of $WILDLINK_DATA, never eval/.
set -euo pipefail
cd "$(dirname "$0")/../.."
NAME=${1:?usage: $0 NAME run|save|status}
CONF=training/campaign/$NAME.conf
[ -f "$CONF" ] || { echo "no campaign $NAME ($CONF does not exist)" >&2; exit 2; }
# shellcheck source=/dev/null
. "$CONF"  # FLAGS, STAGE1_STEPS, STAGE1_PATCH, TOTAL_STEPS, PATCH, optional INIT
RUN=${RUN:-runs/$NAME}
SEED=training/campaign/$NAME
DATA=${WILDLINK_DATA:-../shared/data}

latest_step() {
  sed -n 's/^model_checkpoint_path: "ckpt-\([0-9]*\)"/\1/p' "$1/checkpoints/checkpoint" 2>/dev/null || echo 0
}

case "${2:-status}" in
  run)
    if [ ! -f "$RUN/checkpoints/checkpoint" ] && [ -f "$SEED/checkpoints/checkpoint" ]; then
      mkdir -p "$RUN" && cp -r "$SEED/." "$RUN/"
      echo "seeded $RUN from $SEED at step $(latest_step "$SEED")"
    fi
    step=$(latest_step "$RUN")
    patch=$PATCH steps=$TOTAL_STEPS
    if [ "${step:-0}" -lt "${STAGE1_STEPS:-0}" ]; then patch=$STAGE1_PATCH steps=$STAGE1_STEPS; fi
    init=()
    [ -n "${INIT:-}" ] && init=(--init "$INIT")
    mkdir -p "$RUN"
    # shellcheck disable=SC2086
    nohup .venv/bin/wildlink train --run "$RUN" --data "$DATA/train" "$DATA/sites" $FLAGS \
      "${init[@]}" --patch "$patch" --batch 8 --steps "$steps" --checkpoint-minutes 5 \
      --quiet >> "$RUN/train.log" 2>&1 &
    echo "training $NAME in the background (pid $!), patch $patch, to step $steps; log $RUN/train.log"
    [ "$steps" != "$TOTAL_STEPS" ] && echo "(stage 1 stops at step $steps: run this again for stage 2)"
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
    grep -a '^step ' "$RUN/train.log" 2>/dev/null | tail -1 || true
    ;;
  *) echo "usage: $0 NAME run|save|status" >&2; exit 2 ;;
esac
