"""Experiment tracking through accelerate's trackers, as a user runs it (`kalm-train` as a subprocess): TensorBoard's own
reader sees the same numbers as metrics.jsonl, and a run killed with SIGKILL and resumed logs every step exactly once.
Also: a tracker whose package is missing is one clear line, and the committed reports hold no machine paths."""
import importlib.util, json, re, signal, subprocess, time
from pathlib import Path

import pytest
from conftest import TRAIN_ENV, stage_yaml, train_cmd

ROOT = Path(__file__).resolve().parents[1]
TRACKED = lambda steps: stage_yaml(name='tracked', steps=steps, save_every=2, keep_checkpoints=2, report_to='tensorboard')


@pytest.fixture(scope='module')
def work(rows_dir):
    return rows_dir


def _train(work, cfg, run, **kw):
    return subprocess.Popen(train_cmd(cfg, run), cwd=work, env=TRAIN_ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _tensorboard(run_dir: Path, name: str = 'tracked') -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ea = EventAccumulator(str(run_dir/'tracking'/name)); ea.Reload()
    return {tag: [(e.step, e.value) for e in ea.Scalars(tag)] for tag in ea.Tags()['scalars']}


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(l) for l in (run_dir/'metrics.jsonl').read_text().splitlines()]


@pytest.mark.skipif(importlib.util.find_spec('tensorboard') is None, reason='tensorboard is not installed')
def test_three_step_stage_logs_the_metrics_to_tensorboard(work):
    (work/'three.yaml').write_text(TRACKED(3))
    p = _train(work, 'three.yaml', 'three'); out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]
    tb, m = _tensorboard(work/'three'), _metrics(work/'three')
    for tag in ('loss', 'lr', 'grad_norm', 'acc', 'pairs_per_s'):
        assert [s for s, _ in tb[tag]] == [1, 2, 3], tag
        assert [v for _, v in tb[tag]] == pytest.approx([r[tag] for r in m], rel=1e-6), tag
    hp = list((work/'three'/'tracking'/'tracked').glob('*/hparams.yml'))
    assert hp and 'lr: 0.0001' in hp[0].read_text()  # the resolved stage config as hyper-parameters


@pytest.mark.skipif(importlib.util.find_spec('tensorboard') is None, reason='tensorboard is not installed')
def test_killed_and_resumed_run_logs_every_step_once(work):
    (work/'six.yaml').write_text(TRACKED(6))
    p = _train(work, 'six.yaml', 'killed')
    ck, t0 = work/'killed'/'checkpoints'/'step-0000004', time.time()
    while not ck.is_dir():
        assert p.poll() is None, p.stderr.read()[-3000:]
        assert time.time() - t0 < 180, "no checkpoint after 180 s"
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL); p.wait(timeout=30)
    before = _tensorboard(work/'killed')['loss']
    assert 4 <= max(s for s, _ in before) < 6
    p = _train(work, 'six.yaml', 'killed'); out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]
    tb, m = _tensorboard(work/'killed')['loss'], _metrics(work/'killed')
    assert [s for s, _ in tb] == [1, 2, 3, 4, 5, 6]                      # no step twice, none missing
    assert [v for _, v in tb] == pytest.approx([r['loss'] for r in m], rel=1e-6)
    assert len(list((work/'killed'/'tracking'/'tracked').glob('events.out.tfevents.*'))) == 2  # one event file per session


@pytest.mark.skipif(importlib.util.find_spec('wandb') is not None, reason='wandb is installed here')
def test_missing_tracker_package_is_one_clear_line(work):
    (work/'wandb.yaml').write_text(stage_yaml(name='tracked', steps=3, save_every=2, keep_checkpoints=2, report_to=['tensorboard', 'wandb']))
    p = _train(work, 'wandb.yaml', 'wandb'); out, err = p.communicate(timeout=300)
    assert p.returncode == 2 and 'Traceback' not in err
    assert err.strip() == "error: wandb.yaml: field 'report_to': wandb is not installed — pip install wandb, or set report_to: none"
    assert not (work/'wandb').exists()                                    # refused before anything was written


MACHINE_PATH = re.compile(r"(?<![\w.:/-])/(?:[\w.-]+/)+?(?:runs|reports|nbs|data_cards|kalm|\.venv)/")


def test_committed_reports_hold_no_machine_paths():
    "Reports name paths relative to the repository: no file under reports/ holds this checkout's path or any absolute path into a checkout."
    bad = []
    for f in sorted((ROOT/'reports').rglob('*')):
        if not f.is_file() or f.suffix in ('.png', '.pyc') or '__pycache__' in f.parts: continue
        text = f.read_text(encoding='utf-8', errors='replace')
        hits = ([str(ROOT)] if str(ROOT) in text else []) + MACHINE_PATH.findall(text)
        if hits: bad.append(f"{f.relative_to(ROOT)}: {sorted(set(hits))[:3]}")
    assert not bad, "machine paths in committed reports:\n" + '\n'.join(bad)
