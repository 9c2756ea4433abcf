#!/bin/bash
# The help-card sweep (#26): the gemma3 fine-tuning stage with the help-text categories (data_cards/help) beside the mini
# cards, from one pre-trained Gemma stage, each variant scored on the same 630 held-out rows (35 of each of the 18 categories).
# usage: PRE=<a gemma3 run>/recipe/pretrain bash reports/gemma3/regime-help/sweep.sh
set -e
cd "$(git rev-parse --show-toplevel)"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=2
PRE=${PRE:-runs/gemma3/recipe/pretrain}
X3=runs/regime-help/cards-help-x3   # F: the help cards with three times their weight (the same rows)
mkdir -p $X3; ln -sfn ../../../data_cards/help/corpus $X3/corpus
for f in data_cards/help/*.yaml; do
  .venv/bin/python -c "import yaml, sys; d = yaml.safe_load(open(sys.argv[1])); d['weight'] = round(3 * d['weight'], 3); print(yaml.safe_dump(d, sort_keys=False, allow_unicode=True, width=100000), end='')" $f > $X3/$(basename $f)
done
for v in ${VARIANTS:-E-help F-help-x3}; do
  R=runs/regime-help/$v
  mkdir -p $R
  if [ ! -d $R/pretrain ]; then  # the start: a copy of the pre-trained stage, its config naming this variant's cards
    cp -r $PRE $R/pretrain         # (the stage reads only cards of stage pretrain, and the help cards have none: the same rows)
    .venv/bin/python -c "import yaml, sys; c = yaml.safe_load(open(sys.argv[1])); c['cards'] = yaml.safe_load(open(sys.argv[2]))['cards']; open(sys.argv[1], 'w').write(yaml.safe_dump(c, sort_keys=False))" $R/pretrain/config.yaml reports/gemma3/regime-help/$v.yaml
  fi
  echo "== $v $(date)"
  /usr/bin/time -v .venv/bin/kalm-recipe --config reports/gemma3/regime-help/$v.yaml --run_dir $R --eval_suite data_cards/mini/eval --quiet 2> $R.time
  echo "== $v done $(date)"; grep -E "Elapsed|Maximum resident" $R.time
done
