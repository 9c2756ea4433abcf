#!/bin/bash
# The regime sweep (#26): fine-tuning variants of the gemma3 preset from one pre-trained Gemma stage, scored on the same
# held-out rows (35 of each of the 11 categories); usage: PRE=<a gemma3 run>/recipe/pretrain bash reports/gemma3/regime/sweep.sh
set -e
cd "$(git rev-parse --show-toplevel)"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=2
PRE=${PRE:-runs/gemma3/recipe/pretrain}  # the pre-trained stage of a gemma3 run (the sweep used the one made at 9accfca)
for v in A-finetune-cards B-replay C-replay-lr1e-5 D-replay-60-steps; do
  R=runs/regime/$v
  mkdir -p $R
  [ -d $R/pretrain ] || cp -r $PRE $R/pretrain
  case $v in C-*|D-*) for d in data mine; do [ -d $R/$d ] || cp -r runs/regime/B-replay/$d $R/$d; done;; esac
  echo "== $v $(date)"
  /usr/bin/time -v .venv/bin/kalm-recipe --config reports/gemma3/regime/$v.yaml --run_dir $R --eval_suite data_cards/mini/eval --quiet 2> $R.time
  echo "== $v done $(date)"; grep -E "Elapsed|Maximum resident" $R.time
done
