# The fine-tuning regime of the gemma3 preset, chosen on training-side held-out rows only (#26):
# each variant fine-tunes the same pre-trained Gemma stage; every model is scored on the same held-out rows
# (an equal share of all 11 categories of both stages, no query that pre-training or fine-tuning trains on).
# usage: python reports/gemma3/regime/regime_report.py runs/regime reports/gemma3/regime/README.md "<sweep command>"
import json, sys
from pathlib import Path
import numpy as np
from kalm.core import atomic_write
from kalm.paired_ci import TaskItems, family_level, paired_difference
from kalm.provenance import code_version

runs, out, command = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
variants = sorted(d for d in runs.iterdir() if (d/'soup_scores.json').is_file())
rep = {d.name: json.loads((d/'soup_scores.json').read_text()) for d in variants}
held = {d.name: [json.loads(l)['query'] for l in __import__('gzip').open(d/'data'/'holdout.jsonl.gz', 'rt')] for d in variants}
assert len({tuple(h) for h in held.values()}) == 1, "the variants were not scored on the same held-out rows"
items = lambda r: {'heldout': TaskItems('heldout', 'Retrieval', 'recall@1', len(r['hits']), values=np.asarray(r['hits'], float))}
pre = next(iter(rep.values()))['pretrain']
assert all(r['pretrain']['hits'] == pre['hits'] for r in rep.values()), "the pre-trained stage differs between variants"
models = {f"{v}: fine-tuned": r['ingredients']['finetune-1'] for v, r in rep.items()} | {f"{v}: soup (fine-tuned + pre-trained)": r['soups']['soup-uniform'] for v, r in rep.items()}
level = family_level(0.95, len(models))
rows = []
for name, r in models.items():
    d = paired_difference(items(r), items(pre), level=level, margin=1.0, n_boot=2000, seed=0)
    rows.append(f"| {name} | {100 * r['recall@1']:.1f} | {r['loss']:.3f} | {d['diff']:+.1f} [{d['lo']:+.1f}, {d['hi']:+.1f}] | {d['verdict']} |")
secs = {v: json.loads((runs/v/'finetune-1'/'summary.json').read_text()).get('seconds_this_run') for v in rep}
cats = sorted(pre['per_category'])
ptab = ["| category | pre-trained | " + " | ".join(f"{v}: ft / soup" for v in rep) + " |", "|---|---|" + "---|" * len(rep)]
ptab += [f"| {c} | {100 * pre['per_category'][c]:.0f} | " + " | ".join(f"{100 * r['ingredients']['finetune-1']['per_category'][c]:.0f} / {100 * r['soups']['soup-uniform']['per_category'][c]:.0f}" for r in rep.values()) + " |" for c in cats]
cv = code_version()
made = sorted({json.loads((runs/v/'mine'/'mine_stats.json').read_text())['code']['git_commit'][:7] for v in rep})  # the code the variants ran
md = ["# The gemma3 fine-tuning regime, chosen on held-out training rows", "",
      f"Every variant fine-tunes the **same pre-trained stage** (`runs/gemma3/recipe/pretrain`, 60 steps × 32 pairs) once (seed 1) and is scored on the **same {len(pre['hits'])} held-out rows**: "
      f"an equal share of each of the {len(cats)} categories of both stages of the mini cards, none of whose queries pre-training or fine-tuning trains on "
      "(`holdout_stages: [pretrain, finetune]`, `kalm.recipe.recipe_data`). Score: recall@1 of the positive among the 32 candidates of its pool, "
      "the pools one category's rows (`kalm.soup.heldout_recall`). No evaluation suite is used to choose. "
      f"Δ: recall@1 points against the pre-trained stage ({100 * pre['recall@1']:.1f}, loss {pre['loss']:.3f}), paired percentile bootstrap over the held-out rows "
      f"(2,000 replicates), each interval at level {level:.4f} (Bonferroni over the {len(models)} rows); negligible: inside ±1 point.", "",
      "| model | recall@1 | held-out loss | Δ vs pre-trained [CI] | verdict |", "|---|---|---|---|---|", *rows, "",
      "Fine-tuning seconds (one run, 2 cores, the sweep's variants one after another): " + ", ".join(f"{v} {s:.0f} s" for v, s in secs.items()) + ".", "",
      "## Per category (recall@1 %, 35 rows each: one row is 2.9 points)", "", *ptab, "",
      "## Variants", "", *[f"- `{v}`: `reports/gemma3/regime/{v}.yaml`" for v in rep], "",
      "## Commands", "", "```bash", command, "```", "", "then", "", "```bash",
      f"python reports/gemma3/regime/regime_report.py {runs} {out} \"<the command above>\"", "```", "",
      f"Variants run at {', '.join(made)} (their mining stats' code version); this page made at {cv['git_commit'][:7]}{' (with uncommitted changes)' if cv['git_dirty'] else ''}; environment: `{cv['lock']}` ({cv['lock_sha256'][:12]}), torch {cv['torch']}, transformers {cv['transformers']}.", ""]
atomic_write(out, "\n".join(md))
print("\n".join(md))
