"""Shared by the tests that run what a user runs in a subprocess — `kalm-train` (tracking, resume) and the papermill
notebooks (pipeline, ablations): the environment of an offline CPU run, a tiny fine-tuning stage config, a folder with
64 rows of a shipped mini card, and `papermill nbs/<notebook>`."""
import os, subprocess, sys
from pathlib import Path

import pytest
import yaml

TRAIN_ENV = dict(os.environ, HF_HUB_OFFLINE='1', HF_DATASETS_OFFLINE='1', TRANSFORMERS_OFFLINE='1', TOKENIZERS_PARALLELISM='false',
                 PYTHONHASHSEED='0', MPLBACKEND='Agg', OMP_NUM_THREADS='1')  # 1 thread: 2 busy cores + OpenMP spin-waits are slow


def stage_yaml(**fields) -> str:
    "A tiny fine-tuning stage (the `tiny` model preset on rows.jsonl.gz) as YAML, with `fields` changed; `loss` entries merge."
    cfg = dict(name=fields.pop('name', 'stage'), kind='finetune', model='tiny', data='rows.jsonl.gz', batch_size=4, num_negatives=2, query_max_length=24,
               doc_max_length=32, lr=1.0e-4, loss={'temperature': 0.05})
    loss = fields.pop('loss', {})
    cfg |= fields
    cfg['loss'] = {**cfg['loss'], **loss}
    return yaml.safe_dump(cfg, sort_keys=False)


def train_cmd(config, run, quiet: bool = True) -> list[str]:
    "The command a user runs to train one stage: `python -m kalm.trainer --config … --run_dir …`."
    return [sys.executable, '-m', 'kalm.trainer', '--config', str(config), '--run_dir', str(run)] + (['--quiet'] if quiet else [])


@pytest.fixture(scope='module')
def rows_dir(tmp_path_factory, request):
    "A folder with 64 rows of the shipped wn-gloss-retrieval card in rows.jsonl.gz (one per test module)."
    from kalm.data_cards import cards_dir, load_canonical
    from kalm.rows import save_rows
    d = tmp_path_factory.mktemp(Path(request.module.__file__).stem)
    rows, _ = load_canonical(cards_dir('mini')/'wn-gloss-retrieval.yaml', max_rows=64)
    save_rows(rows, d/'rows.jsonl.gz')
    return d


def run_notebook(notebook: str, out_nb: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    "`papermill <notebook> <out_nb> <args>` from nbs/, as `make pipeline` / `make ablations` run it (offline, outside nbdev_test)."
    env = {k: v for k, v in TRAIN_ENV.items() if k != 'IN_TEST'}
    Path(out_nb).parent.mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, '-m', 'papermill', notebook, str(out_nb), *args], cwd=Path(__file__).resolve().parents[1]/'nbs',
                          env=env, capture_output=True, text=True, timeout=timeout)
