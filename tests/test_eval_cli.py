"The installed `kalm-eval` console script: a bad task folder gets the validator's clear error; a tiny model scores the mini suite."
import json, os, shutil, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXE = Path(sys.executable).parent/'kalm-eval'
ENV = {**os.environ, 'HF_HUB_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1', 'OMP_NUM_THREADS': '1'}


def run(*args, cwd=ROOT):
    return subprocess.run([str(EXE), *map(str, args)], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=600)


def test_bad_task_folder_gets_one_clear_error(tmp_path):
    task = tmp_path/'suite'/'BrokenRetrieval'
    shutil.copytree(ROOT/'data_cards/mini/eval/MiniWordNetGlossRetrieval', task)
    (task/'task.yaml').write_text((task/'task.yaml').read_text().replace('MiniWordNetGlossRetrieval', 'BrokenRetrieval'))
    (task/'corpus.jsonl.gz').unlink()
    r = run('--model', 'tiny', '--tasks', tmp_path/'suite', '--out', tmp_path/'out')
    assert r.returncode == 2, r.stderr  # bad input: exit 2, like every kalm console script (kalm.core.cli_errors)
    err = [l for l in r.stderr.splitlines() if l.startswith('error: ')]
    assert len(err) == 1 and 'BrokenRetrieval' in err[0] and 'corpus.jsonl' in err[0], r.stderr
    assert 'Traceback' not in r.stderr


def test_missing_argument_is_named(tmp_path):
    r = run('--model', 'tiny', '--out', tmp_path/'out')
    assert r.returncode == 2 and 'error: ' in r.stderr and 'required: --tasks' in r.stderr and 'Traceback' not in r.stderr


def test_tiny_model_scores_the_mini_suite(tmp_path):
    r = run('--model', 'tiny', '--tasks', ROOT/'data_cards/mini/eval', '--out', tmp_path/'out', '--limit', 8)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path/'out'/'results.json').read_text())
    text = json.dumps(res)
    for name in sorted(p.name for p in (ROOT/'data_cards/mini/eval').iterdir() if (p/'task.yaml').exists()):
        assert name in text, f"{name} missing from results.json"
    agg = res['results'][0]['aggregate']
    names = [p for p in (ROOT/'data_cards/mini/eval').iterdir() if (p/'task.yaml').exists()]
    assert agg['n_tasks'] == len(names) and 0 <= agg['MTK'] <= 1 and 0 <= agg['MTY'] <= 1
    assert (tmp_path/'out'/'results.md').exists()
