# Does fine-tuning help its own pre-trained stage, at each mask x pooling? (#26, #28)
# The pooling study (run_ablations.ipynb beside this file) scores the fine-tuned model of each of its six models; this page scores the
# pre-trained stage each was fine-tuned from, with the same evaluation settings and cache, on both suites and on the recipe's
# training-side held-out rows, and pairs the two stages by seed and item.
# usage: python reports/ablations/gemma3-pooling/stages_report.py runs/ablations-gemma3-pooling "0 1" reports/ablations/gemma3-pooling/stages.md "<command>" [suites]
# (suites: space-separated, default every suite of the study)
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

work, seeds, out, command = Path(sys.argv[1]), [int(s) for s in sys.argv[2].split()], Path(sys.argv[3]), sys.argv[4]
OVR = {'recipe.ingredients': [{'seed': 1}], 'recipe.soups': [], 'recipe.distill': None, 'final': 'finetune-1'}  # the study's overrides
MODELS = {  # the study's model name -> its folder tag (None: the recipe itself, bidirectional + mean over every token)
    'finetune-1': None, 'w/o bidirectional': 'causal', 'causal + last': 'causal-last', 'causal + text mean': 'causal-mean-text',
    'bidirectional + last': 'bidir-last', 'bidirectional + text mean': 'bidir-mean-text'}
SHOW = {'finetune-1': 'bidirectional + mean (the recipe)', 'w/o bidirectional': 'causal + mean'}
folders = lambda s, t: ((RecipeRun(work/f'seed{s}'/'full').model('pretrain'), work/f'seed{s}'/'full'/'finetune-1'/'model') if t is None else
                        (work/f'seed{s}'/f'{t}-pretrain'/'model', work/f'seed{s}'/f'{t}-finetune'/'model'))
suites = sys.argv[5].split() if len(sys.argv) > 5 else sorted(d.name for d in (work/'tasks-limit100').iterdir() if d.is_dir())
ev, items = {}, {}  # (suite, seed, model, stage) -> MTK; items alike
hfile = work/'stages_heldout.json'  # (seed, model, stage) -> held-out record and the weights' hash: a second run scores only new weights
held = {tuple(json.loads(k)): v for k, v in json.loads(hfile.read_text()).items()} if hfile.is_file() else {}
for s in seeds:
    p = seed_preset('gemma3', s, OVR)
    rows = load_rows(RecipeRun(work/f'seed{s}'/'full').holdout_rows)
    for k, t in MODELS.items():
        for stage, path in zip(('pretrain', 'finetune'), folders(s, t)):
            name = f"kalm/ablation-{k.replace(' ', '-').replace('/', '').replace('+', '')}-s{s}" + ('-pretrain' if stage == 'pretrain' else '')
            for n in suites:
                with cpu_precision(p.eval.precision):  # the study's evaluation; the fine-tuned models come from its cache
                    r = evaluate(str(path), work/'tasks-limit100'/n, work/'eval', label=f"{k} {stage} (seed {s})", name=name,
                                 batch_size=p.eval.batch_size, max_length=p.eval.max_length, batch_tokens=p.eval.batch_tokens)
                ev[(n, s, k, stage)], items[(n, s, k, stage)] = 100 * r.mtk, r.items
            if held.get((s, k, stage), {}).get('revision') != r.revision:  # scored before, and of these weights (r.revision: their hash)
                held[(s, k, stage)] = heldout_recall(KaLMEmbedder.load(str(path), device='cpu'), rows, **score_settings(p.recipe)) | {'revision': r.revision}
                atomic_write(hfile, json.dumps({json.dumps(list(key)): v for key, v in held.items()}))
            print(s, k, stage, {n: round(ev[(n, s, k, stage)], 2) for n in suites}, round(100 * held[(s, k, stage)]['recall@1'], 1), flush=True)

# the seeds draw their own held-out rows (not always as many): each seed's rows are one task of a single evaluation, resampled within the seed
hitems = lambda k, st: {f'heldout-s{s}': TaskItems(f'heldout-s{s}', 'Retrieval', 'recall@1', len(held[(s, k, st)]['hits']), values=np.asarray(held[(s, k, st)]['hits'], float))
                        for s in seeds}
level = family_level(0.95, len(MODELS))
measures = {n: (lambda k, st, n=n: [items[(n, s, k, st)] for s in seeds]) for n in suites} | {'held-out rows': hitems}
stats = {}
for m, get in measures.items():  # fine-tuned − pre-trained, paired by seed and item; Bonferroni level over the six models, Holm's p beside
    ds = {k: paired_difference(get(k, 'finetune'), get(k, 'pretrain'), level=level, n_boot=2000, seed=0) for k in MODELS}
    for d, ph in zip(ds.values(), holm([d['p'] for d in ds.values()])):
        d['p_holm'], d['margin'] = ph, 1.0 if m == 'held-out rows' else equivalence_margin(d['se'])  # held-out: one point of recall@1
        d['verdict'] = verdict(d['lo'], d['hi'], d['margin'])
    stats[m] = ds

mean = lambda f, k, st: np.mean([f(s, k, st) for s in seeds])
val = {n: (lambda s, k, st, n=n: ev[(n, s, k, st)]) for n in suites} | {'held-out rows': lambda s, k, st: 100 * held[(s, k, st)]['recall@1']}
cell = lambda d: f"{d['diff']:+.2f} [{d['lo']:+.2f}, {d['hi']:+.2f}]"
md = [f"# Fine-tuning against its own pre-trained stage, at each mask × pooling (Gemma 3 270M, seeds {', '.join(map(str, seeds))})", "",
      "The pooling study beside this page (`ablations.md`) trains six models — the causal mask or none, pooled by the mean over every token "
      "(the recipe), the last token, or the mean over the text tokens only — each with its own pre-training, mining and one fine-tuning run, "
      "and scores the fine-tuned model. Here each **pre-trained stage** is scored too (the same evaluation settings, items and cache), on "
      f"the {' and '.join(suites)} suite{'s' if len(suites) > 1 else ''} and on the recipe's training-side held-out rows "
      "(385 rows, an equal share of the 11 mini categories, recall@1 of the positive in pools of 32; `kalm.soup.heldout_recall`), "
      "and the two stages of each model are paired by seed and item (on the held-out rows within each seed: the seeds draw their own rows). "
      "Δ = fine-tuned − pre-trained, in MTK points on the suites (the transfer suite is primary, as in the study) and recall@1 points on the "
      f"held-out rows; [lo, hi]: paired bootstrap over items and seeds (`kalm.paired_ci.paired_difference`, 2,000 replicates), each at level "
      f"{level:.4f} (Bonferroni over the {len(MODELS)} models of a measure); p: bootstrap, Holm-adjusted beside it; negligible: the interval "
      "inside ±margin (the larger of 0.3 MTK and the paired SE; 1 point on the held-out rows).", ""]
for m, ds in stats.items():
    md += [f"## {m}", "", "| model | pre-trained | fine-tuned | Δ [CI] | p | p (Holm) | margin | verdict |", "|---|---|---|---|---|---|---|---|"]
    md += [f"| {SHOW.get(k, k)} | {mean(val[m], k, 'pretrain'):.2f} | {mean(val[m], k, 'finetune'):.2f} | {cell(d)} | {d['p']:.3f} | {d['p_holm']:.3f} | "
           f"±{d['margin']:.2f} | {d['verdict']} |" for k, d in ds.items()]
    md += [""]
md += ["## Per seed (MTK on each suite; recall@1 on the held-out rows)", "", "| model | stage | " + " | ".join(f"{m} s{s}" for m in val for s in seeds) + " |",
       "|---|---|" + "---|" * (len(val) * len(seeds))]
md += [f"| {SHOW.get(k, k)} | {st} | " + " | ".join(f"{val[m](s, k, st):.2f}" for m in val for s in seeds) + " |" for k in MODELS for st in ('pretrain', 'finetune')]
cv = code_version()
md += ["", "## Command", "", "The study (its models and the fine-tuned scores):", "", "```bash", command, "```", "", "then this page:", "", "```bash",
       f"python reports/ablations/gemma3-pooling/stages_report.py {work} \"{' '.join(map(str, seeds))}\" {out} \"<the command above>\" \"{' '.join(suites)}\"", "```", "",
       f"Made at {cv['git_commit'][:7]}{' (with uncommitted changes)' if cv['git_dirty'] else ''}; environment `{cv['lock']}` ({cv['lock_sha256'][:12]}), "
       f"torch {cv['torch']}, transformers {cv['transformers']}.", ""]
atomic_write(out, "\n".join(md))
scores = [dict(measure=m, seed=s, model=k, stage=st, value=val[m](s, k, st)) for m in val for s in seeds for k in MODELS for st in ('pretrain', 'finetune')]
atomic_write(out.with_suffix('.json'), json.dumps({'seeds': seeds, 'level': level, 'command': command, 'code': cv, 'stats': stats, 'scores': scores}, indent=1, default=float))
print("\n".join(md))
