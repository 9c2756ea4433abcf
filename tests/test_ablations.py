"`make ablations`' notebook with a subset of its rows, as `make ablations PRESET=gemma3` runs it: papermill, smoke runs of mini."
import json

from conftest import run_notebook


def test_row_subset_trains_and_reports_only_its_rows(tmp_path):
    out, work = tmp_path/'report', tmp_path/'work'
    rows = "[w/o focal reweighting, w/o bidirectional attention, causal + text mean, bidirectional + text mean]"  # the last two cost nothing on mini
    r = run_notebook('run_ablations.ipynb', out/'run_ablations.ipynb', '-y',
                     f"{{smoke: true, seeds: [0, 1], rows: {rows}, out_dir: {out}, work_dir: {work}, "
                     "overrides: {recipe.ingredients: [{seed: 1}], recipe.soups: [], recipe.distill: null, final: finetune-1}}", timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    a = json.loads((out/'ablations.json').read_text())
    # mini pools over the text tokens already: that pooling variant is finetune-1 itself (not applicable), and the mask row at
    # that pooling compares the same two models as w/o bidirectional attention, so it is left out of the table and said so
    assert [t['row'] for t in a['table']] == ['w/o focal reweighting', 'w/o bidirectional attention', 'mean over text tokens only (bidirectional)']
    assert a['left_out'] == {'w/o bidirectional attention (mean over text tokens)': 'w/o bidirectional attention'}
    assert a['table'][2]['verdict'].startswith('not applicable')
    assert {s['model'] for s in a['scores']} == {'finetune-1', 'w/o focal', 'w/o bidirectional', 'causal + text mean', 'bidirectional + text mean'}
    assert {s['seed'] for s in a['scores']} == {0, 1} and all(t['seeds'] == 2 for t in a['table'])
    # the verdicts come from the transfer suite, fixed before the run; the mini suite is the secondary table with the same rows
    assert a['primary'] == 'transfer' and a['tasks'] == a['suites']['transfer'] and set(a['suites']) == {'transfer', 'mini'}
    assert [t['row'] for t in a['secondary']['mini']['table']] == [t['row'] for t in a['table']]
    assert {t['task'] for t in a['task_scores']}.isdisjoint({t['task'] for t in a['secondary']['mini']['task_scores']})
    # every compared row also has the paired interval over items and seeds that the pipeline's reports use (kalm.paired_ci)
    compared = [t for t in a['table'] if not t['verdict'].startswith('not applicable')]
    assert all(t['CI (items × seeds)'].startswith('[') and t['p (items × seeds) Holm'] != '–' and t['verdict'] for t in compared)
    assert all(t['p Holm'] != '–' and t['margin'].startswith('±') for t in compared)   # raw and Holm-adjusted p, the margin of 'negligible'
    # only what the rows compare was trained: no second fine-tuning run, soup, distillation or other variant; the text-mean
    # variants are the folders mini already has (its own pooling), not new runs (the notebook's smoke run trains the others)
    assert sorted(p.name for p in (work/'seed0').iterdir()) == ['causal-finetune', 'causal-mine', 'causal-pretrain', 'full', 'nofocal']
    assert not any((work/'seed0'/'full'/d).exists() for d in ('finetune-2', 'soup-greedy', 'distill'))
    md = (out/'ablations.md').read_text()
    assert 'w/o bidirectional attention' in md and 'w/o online hard-negative mixing' not in md and 'Greedy soup members' not in md
    assert 'primary suite (the verdicts, fixed before the run): transfer' in md and '## Secondary: the mini suite' in md and 'Left out of the table' in md


def test_unknown_row_is_one_clear_error(tmp_path):
    r = run_notebook('run_ablations.ipynb', tmp_path/'out.ipynb', '-y', f"{{rows: [w/o soups], out_dir: {tmp_path/'r'}, work_dir: {tmp_path/'w'}}}", timeout=300)
    assert r.returncode != 0 and "unknown row 'w/o soups'" in r.stdout + r.stderr


def test_row_the_recipe_cannot_make_is_one_clear_error(tmp_path):
    r = run_notebook('run_ablations.ipynb', tmp_path/'out.ipynb', '-y',
                     f"{{rows: [greedy soup vs best single ingredient], out_dir: {tmp_path/'r'}, work_dir: {tmp_path/'w'}, overrides: {{recipe.soups: [], final: finetune-1}}}}",
                     timeout=300)
    assert r.returncode != 0 and "'greedy soup vs best single ingredient' compares a model that this recipe does not make" in r.stdout + r.stderr
    assert not (tmp_path/'w'/'seed0').exists()                              # refused before any training
