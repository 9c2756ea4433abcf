"""Distributed training is exact: 2 CPU processes (gloo; launched by torchrun and by accelerate launch) give the same
loss and parameter gradients as 1 process on the concatenated global batch (<= 1e-6 relative), with hard negatives,
cross-device (and expanded q-q) negatives, focal weighting, listwise mixing and Matryoshka on — and with GradCache
chunks under DDP. This is where the official KaLM code (gather without grad, no compensation) is off by 1/world_size."""
import json, os, socket, subprocess, sys, textwrap
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = dict(os.environ, HF_HUB_OFFLINE='1', HF_DATASETS_OFFLINE='1', TRANSFORMERS_OFFLINE='1', TOKENIZERS_PARALLELISM='false',
           OMP_NUM_THREADS='1', PYTHONHASHSEED='0', MPLBACKEND='Agg')

SCRIPT = textwrap.dedent('''
    import sys, torch
    from kalm.stage import StageConfig
    from kalm.trainer import Trainer
    cfg = StageConfig.from_yaml(sys.argv[1], sys.argv[4:])
    tr = Trainer(cfg, sys.argv[2], progress=False)
    st = tr.forward_backward(0)                     # step 0: loss + (DDP-averaged) gradients
    grads = {n: p.grad.detach().clone() for n, p in tr.emb.named_parameters()}
    if tr.acc.is_main_process:
        torch.save(dict(loss=st['loss'], grads=grads, world=tr.world, mode=st['mode'], n_candidates=st['n_candidates']), sys.argv[3])
    tr.opt.zero_grad(set_to_none=True)
    tr.train()                                      # then the whole (short) stage: loop, checkpoints, final model
''')

CONFIG = '''\
name: ddp
kind: finetune
model: tiny
data: rows.jsonl.gz
batch_size: 8
num_negatives: 2
group_task_types: []
query_max_length: 24
doc_max_length: 32
lr: 1.0e-4
steps: 2
save_every: 1
keep_checkpoints: 1
seed: 3
loss:
  temperature: 0.05
  focal_gamma: 0.5
  expand_qq: true
  mix_pairwise: 0        # pairwise draws are per process (statistically, not bitwise, equal to 1 process)
  mix_listwise: true
  matryoshka_dims: [256, 128, 64]
  matryoshka_weights: [1.0, 0.3, 0.1]
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def _run(cmd, cwd, timeout=240):
    r = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}"
    return r


@pytest.fixture(scope='module')
def work(tmp_path_factory):
    from kalm.data_cards import cards_dir, load_canonical
    from kalm.rows import save_rows
    d = tmp_path_factory.mktemp('ddp')
    rows, _ = load_canonical(cards_dir('mini')/'wn-gloss-retrieval.yaml', max_rows=32)
    save_rows(rows, d/'rows.jsonl.gz')
    (d/'stage.yaml').write_text(CONFIG)
    (d/'step.py').write_text(SCRIPT)
    _run([sys.executable, 'step.py', 'stage.yaml', 'one', 'one.pt'], d)
    return d


def _compare(d, name):
    one, two = torch.load(d/'one.pt'), torch.load(d/f'{name}.pt')
    assert (one['world'], two['world']) == (1, 2)
    assert one['n_candidates'] == two['n_candidates'] == 8 + 8 * 2 + 8 + 1  # global positives + hard negatives + q-q + 1 listwise mix
    rel_loss = abs(one['loss'] - two['loss']) / abs(one['loss'])
    assert rel_loss <= 1e-6, f"loss {one['loss']} (1 process) vs {two['loss']} (2 processes)"
    g1 = torch.cat([one['grads'][k].flatten() for k in sorted(one['grads'])])
    g2 = torch.cat([two['grads'][k].flatten() for k in sorted(one['grads'])])
    rel = ((g1 - g2).norm() / g1.norm()).item()
    assert g1.norm() > 0 and rel <= 1e-6, f"gradients differ: relative error {rel:.2e}"
    worst = max(((one['grads'][k] - two['grads'][k]).norm() / one['grads'][k].norm().clamp(min=1e-30)).item()
                for k in one['grads'] if one['grads'][k].norm() > 1e-3 * g1.norm() / len(one['grads']) ** 0.5)
    assert worst <= 1e-5, f"a parameter's gradient differs by {worst:.2e} (relative)"
    # half the gradient (the official code's 1/world_size) would fail by far
    assert ((g1 - g2 / 2).norm() / g1.norm()).item() > 0.4
    return rel


def _check_run_folder(d, run):
    env = json.loads((d/run/'env.json').read_text())
    assert env['world_size'] == 2 and env['distributed'] == 'MULTI_CPU'
    assert [r['step'] for r in map(json.loads, (d/run/'metrics.jsonl').read_text().splitlines())] == [1, 2]
    assert [p.name for p in (d/run/'checkpoints').iterdir()] == ['step-0000001']
    assert (d/run/'model'/'modules.json').is_file() and (d/run/'loss_lr.png').is_file()
    # the 2-process training run ends near the 1-process one (AdamW on gradients equal to ~1e-7)
    from safetensors.torch import load_file
    a, b = load_file(d/'one'/'model'/'model.safetensors'), load_file(d/run/'model'/'model.safetensors')
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4 * 2  # 2 steps of lr 1e-4: a sign flip of a ~0 gradient at most


def test_torchrun_two_processes_equal_one_process(work):
    _run([BIN/'torchrun', '--nproc_per_node', '2', '--master_port', str(_free_port()), 'step.py', 'stage.yaml', 'two', 'two.pt'], work)
    print(f"relative gradient error, torchrun x2 vs 1 process: {_compare(work, 'two'):.1e}")
    _check_run_folder(work, 'two')


def test_accelerate_launch_two_processes_with_gradcache(work):
    # `--multi_gpu` selects accelerate's torchrun-style launcher; without CUDA the processes use gloo on CPU
    # (`--cpu` would start a single process: accelerate reserves multi-CPU runs for MPI).
    _run([BIN/'accelerate', 'launch', '--multi_gpu', '--num_processes', '2', '--num_machines', '1', '--mixed_precision', 'no',
          '--dynamo_backend', 'no', '--main_process_port', str(_free_port()), 'step.py', 'stage.yaml', 'two-gc', 'two-gc.pt', 'mini_batch_size=3'], work)
    print(f"relative gradient error, accelerate x2 + GradCache vs 1 process: {_compare(work, 'two-gc'):.1e}")
    _check_run_folder(work, 'two-gc')


RECIPE = '''\
name: launched
model: tiny
cards: [mini]
finetune_rows: 160
max_rows_per_card: 200
holdout_rows: 16
pretrain: {{rows: 64, steps: 2, batch_size: 8, query_max_length: 24, doc_max_length: 32}}
mine: {{sample_range: [2, 10], filter_topk: null, num_negatives: 2, max_length: 32}}
finetune: {{steps: 2, batch_size: 8, num_negatives: 2, query_max_length: 24, doc_max_length: 32}}
ingredients: [{{seed: 1}}]
soups: [uniform]
score_batch_size: 8
report_to: none
launcher: [{python}, -m, accelerate.commands.launch, --multi_gpu, --num_processes, '2', --num_machines, '1', --mixed_precision, 'no',
           --dynamo_backend, 'no', --main_process_port, '{port}']
'''


def test_recipe_runs_its_stages_under_a_launcher(tmp_path):
    "`launcher:` runs every training stage of a recipe as kalm-train under accelerate launch: here 2 CPU processes (gloo)."
    (tmp_path/'recipe.yaml').write_text(RECIPE.format(python=sys.executable, port=_free_port()))
    _run([BIN/'kalm-recipe', '--config', 'recipe.yaml', '--run_dir', 'run', '--quiet'], tmp_path, timeout=600)
    for stage in ('pretrain', 'finetune-1'):
        env = json.loads((tmp_path/'run'/stage/'env.json').read_text())
        assert env['world_size'] == 2 and env['distributed'] == 'MULTI_CPU', (stage, env)
        assert (tmp_path/'run'/stage/'launch.yaml').is_file() and (tmp_path/'run'/stage/'model'/'modules.json').is_file()
    assert json.loads((tmp_path/'run'/'soup_scores.json').read_text())['soups']['soup-uniform']['recall@1'] >= 0
