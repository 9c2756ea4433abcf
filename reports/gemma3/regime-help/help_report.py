# Does fine-tuning on running text help? (#26) The help-card sweep's models against the pre-trained stage they start from
# and against the recipe's fine-tuning without the help cards (the same pre-trained stage, the same seed), on the training-side
# held-out rows (which choose) and on the transfer and mini suites (which confirm).
# usage: python reports/gemma3/regime-help/help_report.py runs/regime-help <pooling study work dir> <out.md> "<sweep command>"
import json, sys
from pathlib import Path
import numpy as np
from kalm.ablations import seed_preset
from kalm.bidirectional import cpu_precision
from kalm.core import atomic_write
from kalm.embedder import KaLMEmbedder
from kalm.eval import evaluate
from kalm.paired_ci import TaskItems, equivalence_margin, family_level, holm, paired_difference, verdict
from kalm.provenance import code_version
from kalm.recipe import RecipeRun, score_settings
from kalm.rows import load_rows
from kalm.soup import heldout_recall

runs, work, out, command = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
variants = [v for v in ('E-help', 'F-help-x3') if (runs/v/'soup_scores.json').is_file()]
p = seed_preset('gemma3', 0, {'recipe.ingredients': [{'seed': 1}], 'recipe.soups': [], 'recipe.distill': None, 'final': 'finetune-1'})
control = work/'seed0'/'full'  # the pooling study's seed-0 recipe run: its pre-trained stage is the sweep's start
MODELS = {'pre-trained': (RecipeRun(control).model('pretrain'), 'kalm/ablation-finetune-1-s0-pretrain'),
          'recipe fine-tuned (mini cards)': (control/'finetune-1'/'model', 'kalm/ablation-finetune-1-s0')}
for v in variants:
    MODELS[f'{v}: fine-tuned'] = (runs/v/'finetune-1'/'model', f'kalm/regime-{v}-finetune-1')
    MODELS[f'{v}: soup (fine-tuned + pre-trained)'] = (runs/v/'soup-uniform', f'kalm/regime-{v}-soup-uniform')
rep = {v: json.loads((runs/v/'soup_scores.json').read_text()) for v in variants}
hq = {v: [r['query'] for r in load_rows(RecipeRun(runs/v).holdout_rows)] for v in variants}
assert len({tuple(h) for h in hq.values()}) == 1, "the variants were not scored on the same held-out rows"
rows = load_rows(RecipeRun(runs/variants[0]).holdout_rows)
hfile = runs/'heldout_extra.json'  # held-out scores of the models the sweep did not score, with their weights' hash
held = json.loads(hfile.read_text()) if hfile.is_file() else {}
ev, items = {}, {}
for k, (path, name) in MODELS.items():
    for n in ('transfer', 'mini'):
        with cpu_precision(p.eval.precision):
            r = evaluate(str(path), work/'tasks-limit100'/n, work/'eval', label=k, name=name,
                         batch_size=p.eval.batch_size, max_length=p.eval.max_length, batch_tokens=p.eval.batch_tokens)
        ev[(n, k)], items[(n, k)] = 100 * r.mtk, r.items
    v = next((v for v in variants if k.startswith(v)), None)
    if v: held[k] = rep[v]['ingredients']['finetune-1'] if k.endswith('fine-tuned') else rep[v]['soups']['soup-uniform']
    elif k == 'pre-trained' and variants: held[k] = rep[variants[0]]['pretrain']
    elif held.get(k, {}).get('revision') != r.revision:
        held[k] = heldout_recall(KaLMEmbedder.load(str(path), device='cpu'), rows, **score_settings(p.recipe)) | {'revision': r.revision}
        atomic_write(hfile, json.dumps({a: b for a, b in held.items() if 'revision' in b}))
    print(k, {n: round(ev[(n, k)], 2) for n in ('transfer', 'mini')}, round(100 * held[k]['recall@1'], 1), flush=True)

PAIRS = [(k, 'pre-trained') for k in MODELS if k != 'pre-trained'] + [(f'{v}: fine-tuned', 'recipe fine-tuned (mini cards)') for v in variants]
level = family_level(0.95, len(PAIRS))
hit = lambda k: [{'heldout': TaskItems('heldout', 'Retrieval', 'recall@1', len(held[k]['hits']), values=np.asarray(held[k]['hits'], float))}]
get = {'held-out rows': hit} | {n: (lambda k, n=n: [items[(n, k)]]) for n in ('transfer', 'mini')}
stats = {}
for m, g in get.items():
    ds = [paired_difference(g(a), g(b), level=level, n_boot=2000, seed=0) for a, b in PAIRS]
    for d, ph in zip(ds, holm([d['p'] for d in ds])):
        d['p_holm'], d['margin'] = ph, 1.0 if m == 'held-out rows' else equivalence_margin(d['se'])
        d['verdict'] = verdict(d['lo'], d['hi'], d['margin'])
    stats[m] = ds
score = lambda m, k: 100 * held[k]['recall@1'] if m == 'held-out rows' else ev[(m, k)]
tab = ["| model | held-out recall@1 | transfer MTK | mini MTK |", "|---|---|---|---|"]
tab += [f"| {k} | {score('held-out rows', k):.1f} | {ev[('transfer', k)]:.2f} | {ev[('mini', k)]:.2f} |" for k in MODELS]
dtab = ["| comparison | measure | Δ [CI] | p (Holm) | verdict |", "|---|---|---|---|---|"]
for i, (a, b) in enumerate(PAIRS):
    for m in get:
        d = stats[m][i]
        dtab.append(f"| {a} − {b} | {m} | {d['diff']:+.2f} [{d['lo']:+.2f}, {d['hi']:+.2f}] | {d['p']:.3f} ({d['p_holm']:.3f}) | {d['verdict']} |")
cats = sorted(held['pre-trained']['per_category'])
ctab = ["| category | " + " | ".join(MODELS) + " |", "|---|" + "---|" * len(MODELS)]
ctab += [f"| {c} | " + " | ".join(f"{100 * held[k]['per_category'][c]:.0f}" for k in MODELS) + " |" for c in cats]
mix = {v: json.loads((runs/v/'mine'/'mine_stats.json').read_text()) for v in variants}
secs = {v: json.loads((runs/v/'finetune-1'/'summary.json').read_text()).get('seconds_this_run') for v in variants}
cv = code_version()
md = ["# Fine-tuning on running text: the help cards (#26)", "",
      "Every model starts from **one pre-trained Gemma 3 270M stage** (the pooling study's seed-0 recipe run, 60 steps × 32 pairs "
      "of the mini cards) and is fine-tuned once (seed 1, 30 steps × 16 rows, lr 2e-5, as the gemma3 preset). "
      "**recipe fine-tuned (mini cards)** is the preset's own fine-tuning (800 rows of the 11 mini categories, replay included); "
      "**E-help** adds the 7 help-text categories of `data_cards/help/` (LibreOffice help en/zh-CN, Python docs; `nbs/04d_help_corpus.ipynb`) "
      "at their card weights (√(rows/10 000): 18 % of the mixture), 1,200 rows; **F-help-x3** gives the same help cards three times their "
      "weight (40 %). Each soup is the uniform average of the fine-tuned run and the pre-trained stage.", "",
      f"**Held-out rows** ({len(rows)}: 35 of each of the {len(cats)} categories of the mini and help cards, no query any stage trains on; "
      "recall@1 among 32 candidates of one category, `kalm.soup.heldout_recall`) are the training side's measure and the only one that may choose. "
      "**Transfer** (the primary measure: 7 tasks on Debian manuals, quotations and poems that no card trains on; 100 items per task) and the "
      "**mini** suite (in-domain dictionary items) confirm. Δ: paired bootstrap over the items (2,000 replicates), each interval at level "
      f"{level:.4f} (Bonferroni over the {len(PAIRS)} comparisons of a measure), Holm's p beside the raw one; negligible inside the margin "
      "(1 recall@1 point on held-out rows; on the suites the larger of 0.3 MTK and the paired SE, `equivalence_margin`). One seed: these intervals "
      "cover the evaluation items, not training noise (the pooling study's two seeds moved one comparison by 7.5 MTK).", "",
      *tab, "", *dtab, "",
      "Mining kept " + ", ".join(f"{v} {mix[v]['kept']} of {mix[v]['rows']} rows" for v in variants) + "; fine-tuning took " +
      ", ".join(f"{v} {s:.0f} s" for v, s in secs.items()) + " (one run each, 2 cores, one after another).", "",
      "## Held-out rows per category (recall@1 %, 35 rows each: one row is 2.9 points)", "", *ctab, "",
      "## Commands", "", "```bash", command, f"python reports/gemma3/regime-help/help_report.py {runs} {work} {out} \"<the command above>\"", "```", "",
      f"Page made at {cv['git_commit'][:7]}{' (with uncommitted changes)' if cv['git_dirty'] else ''}; environment: `{cv['lock']}` "
      f"({cv['lock_sha256'][:12]}), torch {cv['torch']}, transformers {cv['transformers']}.", ""]
atomic_write(out, "\n".join(md))
atomic_write(out.with_suffix('.json'), json.dumps({'scores': {k: {'heldout': score('held-out rows', k), 'transfer': ev[('transfer', k)], 'mini': ev[('mini', k)]} for k in MODELS},
                                                   'comparisons': [{'a': a, 'b': b} | {m: {x: stats[m][i][x] for x in ('diff', 'lo', 'hi', 'p', 'p_holm', 'verdict')} for m in get}
                                                                   for i, (a, b) in enumerate(PAIRS)]}, indent=1))
print("\n".join(md))
