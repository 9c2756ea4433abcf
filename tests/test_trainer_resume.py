"""Exact resume, nothing lost: a training subprocess killed with SIGKILL in the middle of a stage, rerun with the same
command, resumes from its newest checkpoint and ends with bit-identical weights to an uninterrupted run (CPU, fixed
seed); steps are logged exactly once, at most K checkpoints are kept, no temporary folder survives."""
import json, signal, subprocess, time

import pytest
from conftest import TRAIN_ENV, stage_yaml, train_cmd

CONFIG = stage_yaml(name='resume', steps=14, save_every=3, keep_checkpoints=2, seed=5,
                    loss=dict(mix_pairwise=1,  # random pairwise mixing: its draws must be replayed exactly too
                              matryoshka_dims=[256, 64], matryoshka_weights=[1.0, 0.3]))
_cmd = lambda run: train_cmd('stage.yaml', run)


@pytest.fixture(scope='module')
def work(rows_dir):
    (rows_dir/'stage.yaml').write_text(CONFIG)
    return rows_dir


def _weights(run):
    from safetensors.torch import load_file
    return load_file(run/'model'/'model.safetensors')


def test_sigkill_then_rerun_is_bit_identical(work):
    # the interrupted run: killed as soon as its second checkpoint (step 6) is in place, mid-stage
    p = subprocess.Popen(_cmd('killed'), cwd=work, env=TRAIN_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ck = work/'killed'/'checkpoints'/'step-0000006'
    t0 = time.time()
    while not ck.is_dir():
        assert p.poll() is None, f"the run ended before it could be killed:\n{p.stderr.read().decode()[-3000:]}"
        assert time.time() - t0 < 120, "no checkpoint after 120 s"
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL
    assert not (work/'killed'/'summary.json').exists() and not (work/'killed'/'model').exists()
    logged = [json.loads(l)['step'] for l in (work/'killed'/'metrics.jsonl').read_text().splitlines()]
    assert 6 <= max(logged) < 14
    # the uninterrupted reference (same command, fresh folder) while nothing else runs
    r = subprocess.run(_cmd('clean'), cwd=work, env=TRAIN_ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    # rerun the killed command: it resumes and completes
    r = subprocess.run(_cmd('killed'), cwd=work, env=TRAIN_ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = _weights(work/'clean'), _weights(work/'killed')
    assert a.keys() == b.keys()
    different = [k for k in a if not (a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].view(-1).view(torch_uint8()).equal(b[k].view(-1).view(torch_uint8())))]
    assert not different, f"weights differ after resume: {different[:5]}"
    # nothing lost, nothing twice: every step logged once; newest K=2 checkpoints; no temp folder
    steps = [json.loads(l)['step'] for l in (work/'killed'/'metrics.jsonl').read_text().splitlines()]
    assert steps == list(range(1, 15))
    clean_loss = [json.loads(l)['loss'] for l in (work/'clean'/'metrics.jsonl').read_text().splitlines()]
    assert [json.loads(l)['loss'] for l in (work/'killed'/'metrics.jsonl').read_text().splitlines()] == clean_loss
    assert sorted(p.name for p in (work/'killed'/'checkpoints').iterdir()) == ['step-0000009', 'step-0000012']
    assert not [p for p in (work/'killed').rglob('.*tmp*')]
    assert json.loads((work/'killed'/'summary.json').read_text())['weights_sha'] == json.loads((work/'clean'/'summary.json').read_text())['weights_sha']
    # a third run of the same command finds the stage complete and changes nothing
    mtime = (work/'killed'/'model'/'model.safetensors').stat().st_mtime_ns
    r = subprocess.run(_cmd('killed'), cwd=work, env=TRAIN_ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and (work/'killed'/'model'/'model.safetensors').stat().st_mtime_ns == mtime


def test_bad_config_is_one_clear_line(work):
    (work/'bad.yaml').write_text(stage_yaml(name='resume', steps=14, batch_size='four'))
    r = subprocess.run(train_cmd('bad.yaml', 'bad', quiet=False), cwd=work, env=TRAIN_ENV,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "bad.yaml, line 5: field 'batch_size': must be an integer, got 'four'" in r.stderr
    assert 'Traceback' not in r.stderr


def torch_uint8():
    import torch
    return torch.uint8
