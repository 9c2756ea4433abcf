"""Runs survive their machines: SIGTERM or SIGUSR1 in the middle of a stage saves a checkpoint, prints one line naming it
and exits 75, and the same command resumes to the weights of an uninterrupted run; under accelerate a signal to one rank
stops every rank at the same step; checkpoints come by time as well as by steps; a full disk is one line (exit 2) that
leaves the newest good checkpoint in place and nothing half-written; the papermill pipeline preempted in a fine-tuning
stage resumes there, the stages before it not trained again; `kalm-mine` stopped by SIGTERM while it encodes ends with exit 75 and
the same command writes the rows of an uninterrupted mining."""
import json, signal, socket, subprocess, sys, time
from pathlib import Path

import pytest
import yaml
from conftest import TRAIN_ENV, stage_yaml, train_cmd

STEPS = 24  # 64 rows, batch 4: 1.5 epochs of the tiny model, a few seconds; a signal at step 3 lands in the middle
CONFIG = stage_yaml(name='preempt', steps=STEPS, seed=7, loss=dict(mix_pairwise=1))


@pytest.fixture(scope='module')
def work(rows_dir):
    (rows_dir/'stage.yaml').write_text(CONFIG)
    r = subprocess.run(train_cmd('stage.yaml', 'clean'), cwd=rows_dir, env=TRAIN_ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]  # the uninterrupted reference
    return rows_dir


def _logged(run: Path) -> list[int]:
    f = run/'metrics.jsonl'
    return [json.loads(l)['step'] for l in f.read_text().splitlines()] if f.is_file() else []


def _start(cmd, cwd, log: Path, env=TRAIN_ENV):
    "The command in the background, its stdout and stderr into `log` (a pipe nobody reads would fill and stop it)."
    f = open(log, 'w')
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT, text=True)


def _wait(p, cond, what, timeout=180):
    t0 = time.time()
    while not cond():
        assert p.poll() is None, f"the run ended before {what}:\n{Path(p.stdout.name).read_text()[-3000:]}"
        assert time.time() - t0 < timeout, f"no {what} after {timeout} s"
        time.sleep(0.02)


def _sha(run: Path) -> str:
    return json.loads((run/'summary.json').read_text())['weights_sha']


@pytest.mark.parametrize('sig', ['SIGTERM', 'SIGUSR1'])
def test_a_signal_saves_a_checkpoint_and_the_same_command_resumes_exactly(work, sig):
    run = work/sig
    p = _start(train_cmd('stage.yaml', run.name), work, work/f'{sig}.log')
    _wait(p, lambda: len(_logged(run)) >= 3, 'step 3')
    p.send_signal(getattr(signal, sig))
    p.wait(timeout=120); err = (work/f'{sig}.log').read_text()
    assert p.returncode == 75, err[-3000:]                           # PREEMPTED_EXIT: requeue me
    assert 'Traceback' not in err
    last = err.strip().splitlines()[-1]
    ck = sorted((run/'checkpoints').glob('step-*'))
    assert len(ck) == 1 and last == (f"preempted: stage preempt: {sig} after step {int(ck[0].name[5:])} of {STEPS}; checkpoint {ck[0].relative_to(work)} saved"
                                     " — run the same command again to resume from it"), last
    k = _logged(run)[-1]
    assert 3 <= k < STEPS and ck[0].name == f"step-{k:07d}"          # the step under way finished, then the checkpoint
    assert not (run/'model').exists() and not list(run.rglob('.*tmp*'))
    r = subprocess.run(train_cmd('stage.yaml', run.name), cwd=work, env=TRAIN_ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and f"resumed from checkpoint step-{k:07d}" in r.stderr, r.stderr[-3000:]
    assert _logged(run) == list(range(1, STEPS + 1))                 # every step once
    assert _sha(run) == _sha(work/'clean')                           # the weights of the uninterrupted run


def test_checkpoints_by_time(work):
    (work/'timed.yaml').write_text(stage_yaml(name='timed', steps=12, seed=7, save_every_minutes=1e-9, keep_checkpoints=2))
    r = subprocess.run(train_cmd('timed.yaml', 'timed'), cwd=work, env=TRAIN_ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(p.name for p in (work/'timed'/'checkpoints').iterdir()) == ['step-0000010', 'step-0000011']  # due after every step


def _mount_small(folder: Path, size_bytes: int) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size_bytes}', 'tmpfs', str(folder)], capture_output=True)
    return r.returncode == 0


def test_a_full_disk_is_one_line_and_keeps_the_last_good_checkpoint(work):
    from kalm.run_folders import verify_manifest
    (work/'full.yaml').write_text(stage_yaml(name='full', steps=STEPS, seed=7, save_every=3, keep_checkpoints=1, report_to='none'))
    (work/'sizing.yaml').write_text(stage_yaml(name='full', steps=4, seed=7, save_every=3, report_to='none'))
    r = subprocess.run(train_cmd('sizing.yaml', 'sizing'), cwd=work, env=TRAIN_ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    ck_bytes = sum(f.stat().st_size for f in (work/'sizing'/'checkpoints').rglob('*') if f.is_file())  # one checkpoint of this stage
    disk = work/'small'
    if not _mount_small(disk, int(1.5 * ck_bytes) + 2 * 2**20):
        pytest.skip("cannot mount a small tmpfs here (needs root); the full-disk case is not tested on this machine")
    try:
        r = subprocess.run(train_cmd('full.yaml', disk/'run'), cwd=work, env=TRAIN_ENV, capture_output=True, text=True, timeout=300)
        assert r.returncode == 2, r.stderr[-3000:]
        assert 'Traceback' not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr[-3000:]
        line = r.stderr.strip()
        assert line.startswith(f"error: {disk/'run'/'checkpoints'}: cannot write: No space left on device (") and 'the write needed ~' in line, line
        left = sorted(p.name for p in (disk/'run'/'checkpoints').iterdir())
        assert left == ['step-0000003'] and verify_manifest(disk/'run'/'checkpoints'/'step-0000003') is None  # the last good one, intact
        assert not (disk/'run'/'model').exists() and not (disk/'run'/'summary.json').exists()
    finally:
        subprocess.run(['umount', str(disk)], capture_output=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def test_a_signal_to_one_rank_stops_every_rank_at_the_same_step(work):
    psutil = pytest.importorskip('psutil')
    (work/'ddp.yaml').write_text(stage_yaml(name='ddp', steps=STEPS, seed=7, batch_size=8))
    launch = [sys.executable, '-m', 'accelerate.commands.launch', '--multi_gpu', '--num_processes', '2', '--num_machines', '1',
              '--mixed_precision', 'no', '--dynamo_backend', 'no', '--main_process_port', str(_free_port()),
              '-m', 'kalm.trainer', '--config', 'ddp.yaml', '--run_dir', 'ddp', '--quiet']
    p = _start(launch, work, work/'ddp.log')
    _wait(p, lambda: len(_logged(work/'ddp')) >= 3, 'step 3 under accelerate')
    ranks = [c for c in psutil.Process(p.pid).children(recursive=True) if 'kalm.trainer' in ' '.join(c.cmdline())]
    ranks = [c for c in ranks if c.environ().get('RANK') == '1']
    assert len(ranks) == 1, "rank 1 not found"
    ranks[0].send_signal(signal.SIGTERM)                              # rank 1 only: rank 0 learns it through the all-reduce
    p.wait(timeout=180); err = (work/'ddp.log').read_text()
    assert p.returncode != 0
    ck = sorted((work/'ddp'/'checkpoints').glob('step-*'))
    assert len(ck) == 1, err[-3000:]
    k = int(ck[0].name[5:])
    assert _logged(work/'ddp')[-1] == k and 3 <= k < STEPS
    assert f"preempted: stage ddp: a signal to another process after step {k} of {STEPS}" in err  # rank 0
    assert f"preempted: stage ddp: SIGTERM after step {k} of {STEPS}" in err                       # rank 1, the same step
    launch[launch.index('--main_process_port') + 1] = str(_free_port())
    r = subprocess.run(launch, cwd=work, env=TRAIN_ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and f"resumed from checkpoint step-{k:07d}" in r.stderr, r.stderr[-3000:]
    assert _logged(work/'ddp') == list(range(1, STEPS + 1))


def test_the_pipeline_preempted_in_a_stage_resumes_there(tmp_path):
    psutil = pytest.importorskip('psutil')
    out, work = tmp_path/'report', tmp_path/'work'
    args = ['-p', 'smoke', 'True', '-p', 'finetune_steps', '16', '-p', 'parts', 'data,train', '-p', 'out_dir', str(out), '-p', 'work_dir', str(work)]
    nbs = Path(__file__).resolve().parents[1]/'nbs'
    env = {k: v for k, v in TRAIN_ENV.items() if k != 'IN_TEST'}
    cmd = [sys.executable, '-m', 'papermill', 'run_pipeline.ipynb', str(out/'run_pipeline.ipynb'), *args]
    out.mkdir(parents=True)
    p = _start(cmd, nbs, tmp_path/'papermill.log', env)
    ft = work/'recipe'/'finetune-1'
    _wait(p, lambda: len(_logged(ft)) >= 3, 'fine-tuning run 1 at step 3', timeout=400)
    kernel = [c for c in psutil.Process(p.pid).children(recursive=True) if 'ipykernel' in ' '.join(c.cmdline())]
    assert len(kernel) == 1
    kernel[0].send_signal(signal.SIGTERM)                             # what a scheduler sends to every process of the job
    p.wait(timeout=300); err = (tmp_path/'papermill.log').read_text()
    assert p.returncode != 0
    nb = (out/'run_pipeline.ipynb').read_text()
    k = _logged(ft)[-1]
    assert f"preempted: stage finetune-1: SIGTERM after step {k} of 16; checkpoint" in nb, err[-3000:]
    assert not (work/'recipe'/'finetune-2').exists() and (ft/'checkpoints'/f'step-{k:07d}').is_dir()
    pre = (work/'recipe'/'pretrain'/'summary.json').stat().st_mtime_ns
    r = subprocess.run(cmd, cwd=nbs, env=env, capture_output=True, text=True, timeout=600)  # the same command again
    assert r.returncode == 0, r.stderr[-3000:]
    nb = (out/'run_pipeline.ipynb').read_text()
    assert 'pretrain: already complete' in nb and f"finetune-1: resumed from checkpoint step-{k:07d}" in nb
    assert (work/'recipe'/'pretrain'/'summary.json').stat().st_mtime_ns == pre  # not trained again
    assert _logged(ft) == list(range(1, 17)) and (work/'recipe'/'soup_scores.json').is_file()
    # the resumed stage has the weights of the same stage run without a stop (its config as the pipeline wrote it)
    ref = subprocess.run(train_cmd(ft/'config.yaml', tmp_path/'ref'), cwd=tmp_path, env=TRAIN_ENV, capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr[-3000:]
    assert _sha(ft) == _sha(tmp_path/'ref')


def test_kalm_mine_preempted_then_the_same_command_resumes(work):
    """The console script as a user runs it: SIGTERM while it encodes (one text per saved call), exit 75 and one line; the same command
    finishes with the rows of an uninterrupted mining."""
    from kalm.checkpoint import save_model
    from kalm.core import weights_hash
    from kalm.embedder import KaLMEmbedder
    emb = KaLMEmbedder.from_preset('tiny', device='cpu')
    save_model(emb, work/'tiny-model', dict(lineage=[weights_hash(emb)], stage='init'))
    (work/'mine.yaml').write_text(yaml.safe_dump(dict(model='tiny-model', data='rows.jsonl.gz', max_length=32, batch_size=16, piece_size=1,
                                                      num_negatives=2, filter_topk=None)))
    cmd = lambda run: [sys.executable, '-m', 'kalm.hard_negatives', '--config', 'mine.yaml', '--run_dir', run, '--quiet']
    ref = subprocess.run(cmd('mine-clean'), cwd=work, env=TRAIN_ENV, capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr[-3000:]
    pieces = work/'mine-stop'/'mine_pieces'
    p = _start(cmd('mine-stop'), work, work/'mine-stop.log')
    _wait(p, lambda: pieces.is_dir() and len(list(pieces.rglob('*.npy'))) >= 3, '3 saved encoder calls')  # of ~190 (one text each)
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=120); err = (work/'mine-stop.log').read_text()
    assert p.returncode == 75 and 'Traceback' not in err, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("preempted: mining ") and "(0 read back); they are saved in" in err, err[-3000:]
    assert not (work/'mine-stop'/'mined.jsonl.gz').exists()
    r = subprocess.run(cmd('mine-stop'), cwd=work, env=TRAIN_ENV, capture_output=True, text=True, timeout=300)  # the same command again
    assert r.returncode == 0, r.stderr[-3000:]
    assert (work/'mine-stop'/'mined.jsonl.gz').read_bytes() == (work/'mine-clean'/'mined.jsonl.gz').read_bytes()
    calls = json.loads((work/'mine-stop'/'mine_stats.json').read_text())['encoder_calls']['model']
    assert calls['read_back'] >= 3 and not pieces.exists(), calls
