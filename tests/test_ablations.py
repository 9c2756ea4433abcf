"`make ablations`' notebook with a subset of its rows, as `make ablations PRESET=gemma3` runs it: papermill, smoke runs of mini."
import json, os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_row_subset_trains_and_reports_only_its_rows(tmp_path):
    out, work = tmp_path/'report', tmp_path/'work'
    out.mkdir()
    params = (f"{{smoke: true, seeds: [0, 1], rows: [w/o focal reweighting, w/o bidirectional attention], out_dir: {out}, work_dir: {work}, "
              "overrides: {recipe.ingredients: [{seed: 1}], recipe.soups: [], recipe.distill: null, final: finetune-1}}")
    env = dict(os.environ, HF_HUB_OFFLINE='1', HF_DATASETS_OFFLINE='1', OMP_NUM_THREADS='1')
    env.pop('IN_TEST', None)
    r = subprocess.run([sys.executable, '-m', 'papermill', 'run_ablations.ipynb', str(out/'run_ablations.ipynb'), '-y', params],
                       cwd=ROOT/'nbs', env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    a = json.loads((out/'ablations.json').read_text())
    assert [t['row'] for t in a['table']] == ['w/o focal reweighting', 'w/o bidirectional attention']
    assert {s['model'] for s in a['scores']} == {'finetune-1', 'w/o focal', 'w/o bidirectional'}
    assert {s['seed'] for s in a['scores']} == {0, 1} and all(t['seeds'] == 2 for t in a['table'])
    # only what the two rows compare was trained: no second fine-tuning run, soup, distillation or other variant
    assert sorted(p.name for p in (work/'seed0').iterdir()) == ['causal-finetune', 'causal-mine', 'causal-pretrain', 'full', 'nofocal']
    assert not any((work/'seed0'/'full'/d).exists() for d in ('finetune-2', 'soup-greedy', 'distill'))
    md = (out/'ablations.md').read_text()
    assert 'w/o bidirectional attention' in md and 'w/o online hard-negative mixing' not in md and 'Greedy soup members' not in md


def test_unknown_row_is_one_clear_error(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE='1', HF_DATASETS_OFFLINE='1')
    env.pop('IN_TEST', None)
    r = subprocess.run([sys.executable, '-m', 'papermill', 'run_ablations.ipynb', str(tmp_path/'out.ipynb'), '-y',
                        f"{{rows: [w/o soups], out_dir: {tmp_path/'r'}, work_dir: {tmp_path/'w'}}}"],
                       cwd=ROOT/'nbs', env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "unknown row 'w/o soups'" in r.stdout + r.stderr


def test_row_the_recipe_cannot_make_is_one_clear_error(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE='1', HF_DATASETS_OFFLINE='1')
    env.pop('IN_TEST', None)
    r = subprocess.run([sys.executable, '-m', 'papermill', 'run_ablations.ipynb', str(tmp_path/'out.ipynb'), '-y',
                        f"{{rows: [greedy soup vs best single ingredient], out_dir: {tmp_path/'r'}, work_dir: {tmp_path/'w'}, overrides: {{recipe.soups: [], final: finetune-1}}}}"],
                       cwd=ROOT/'nbs', env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "'greedy soup vs best single ingredient' compares a model that this recipe does not make" in r.stdout + r.stderr
    assert not (tmp_path/'w'/'seed0').exists()                              # refused before any training
