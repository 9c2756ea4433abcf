"""A local stand-in for the Hugging Face hub, for the paper presets' tests.

`build_hub_standin(home)` fills an `HF_HOME` with, **under the real hub ids**, what the paper presets fetch: tiny
models of the real architectures — a 2-layer Qwen2 base LLM as `Qwen/Qwen2-0.5B` (transformers layout, with a real
fast tokenizer), a 2-layer causal last-token Qwen3 embedder as `Qwen/Qwen3-Embedding-8B` (sentence-transformers layout
with Qwen3-Embedding's prompts) — and, for a few data cards of each stage and source layout, a few hundred rows in the
card's declared schema; for a few folders of the official fine-tuning release, rows in the release's own layout. Everything is written
by the libraries' own writers into the caches their offline loaders read
(`save_pretrained` into the hub cache's snapshot layout; the datasets `parquet` builder into the datasets cache under
the config id `load_dataset` computes), so the **real** calls — `from_pretrained`, `SentenceTransformer`,
`load_dataset` — resolve the real ids with `HF_HUB_OFFLINE=1`, through kalm's own code, no side door.
"""
import hashlib
import json
import os
import random
import shutil
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BASE_LLM, TEACHER = 'Qwen/Qwen2-0.5B', 'Qwen/Qwen3-Embedding-8B'
# the cards that get data: each stage, and each source layout (a folder of a multi-folder repo, a plain dataset,
# a config of a multi-config dataset, a BEIR dataset of three configs, a converter's source schema, a filtered source;
# retrieval, classification, STS, pair classification, reranking)
STANDIN_CARDS = ('pretrain/pt-amazon-reviews-2023.yaml', 'pretrain/pt-dbpedia-entity.yaml',
                 'finetune/cmteb-t2ranking.yaml', 'finetune/amazon-reviews.yaml', 'finetune/cmteb-afqmc.yaml',
                 'finetune/cmteb-cmnli.yaml', 'finetune/msmarco.yaml', 'finetune/fiqa.yaml', 'finetune/webgpt-comparisons.yaml',
                 'finetune/esci.yaml')
# folders of the official fine-tuning release (the paper presets' default fine-tuning data), in its layout: `query` carries its
# instruction (`Instruct: … \n Query: …`, the official example's spacing; one folder without the spaces), `pos` and 7 `neg` lists
RELEASE_CARDS = ('release/ft-multi-cpr.yaml', 'release/ft-wikipedia-nq.yaml', 'release/ft-expertqa.yaml')
RELEASE_INSTRUCTIONS = {'Multi-CPR': 'Given a Chinese search query, retrieve the passage that answers it.',
                        'wikipedia-nq': 'Given a question, retrieve Wikipedia passages that answer the question.',
                        'Expertqa': 'Given an expert-level question, retrieve passages that answer the question.'}


def _snapshot(home: Path, kind: str, repo_id: str) -> Path:
    "The snapshot folder of a repo in the hub cache (refs/main -> a fixed commit), created empty."
    base = home/'hub'/f"{kind}--{repo_id.replace('/', '--')}"
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    (base/'refs').mkdir(parents=True, exist_ok=True)
    (base/'refs'/'main').write_text(commit)
    snap = base/'snapshots'/commit
    snap.mkdir(parents=True, exist_ok=True)
    return snap


def cache_base_llm(home: Path) -> Path:
    "A 2-layer Qwen2 *base* LLM (Qwen2ForCausalLM, no word on causality in its config) under `Qwen/Qwen2-0.5B`."
    import torch
    from transformers import Qwen2ForCausalLM
    from kalm.model_presets import load_tiny_tokenizer, preset_config
    cfg = preset_config('tiny'); cfg.num_hidden_layers = 2; cfg.layer_types = cfg.layer_types[:2]
    del cfg.is_causal
    cfg.architectures = ['Qwen2ForCausalLM']
    snap = _snapshot(home, 'models', BASE_LLM)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        Qwen2ForCausalLM(cfg).save_pretrained(snap)
    load_tiny_tokenizer().save_pretrained(snap)
    return snap


def cache_teacher(home: Path) -> Path:
    "A tiny causal last-token Qwen3 embedder (sentence-transformers layout, Qwen3-Embedding's prompts) under `Qwen/Qwen3-Embedding-8B`."
    from kalm.teachers import tiny_causal_teacher
    snap = _snapshot(home, 'models', TEACHER)
    return tiny_causal_teacher(snap, seed=1)


def _texts():
    from kalm.core import read_jsonl
    corpus = ROOT/'data_cards'/'mini'/'corpus'
    ret = [r for _, r in read_jsonl(corpus/'wn-gloss-retrieval.jsonl.gz')][:600]
    lab = [r for _, r in read_jsonl(corpus/'wn-lexname-classification.jsonl.gz')][:600]
    pairs = [r for _, r in read_jsonl(corpus/'wn-antonym-synonym.jsonl.gz')][:600]
    return ret, lab, pairs


def _put(row: dict, path: str, value):
    "Set `value` at a dotted column path (a struct column for `a.b`)."
    *parents, leaf = path.split('.')
    cur = row
    for p in parents: cur = cur.setdefault(p, {})
    cur[leaf] = value


def card_rows(card: dict, n: int, seed: int = 0) -> list[dict]:
    "`n` source rows in the card's declared schema (its `fields` map canonical fields to source columns)."
    rng = random.Random(seed)
    ret, lab, pairs = _texts()
    f, tt, out = card['fields'], card['task_type'], []
    for i in range(n):
        row: dict = {}
        if tt in ('retrieval', 'reranking', 'bitext'):
            r = ret[i % len(ret)]
            _put(row, f['query'], r['query']); _put(row, f['pos'], [r['pos']] if 'pos' in f and card['source']['hub'].startswith('HIT-TMG') else r['pos'])
            if 'neg' in f: _put(row, f['neg'], r['neg'][:3])
        elif tt in ('classification', 'clustering'):
            r = lab[i % len(lab)]
            _put(row, f['text'], r['text']); _put(row, f['label'], r['label'])
        elif tt == 'sts':
            lo, hi = card['score_range']
            r = ret[i % len(ret)]
            close = rng.random() < 0.5
            _put(row, f['sentence1'], r['query']); _put(row, f['sentence2'], r['pos'] if close else r['neg'][0])
            _put(row, f['score'], hi if close else lo)
        elif tt == 'pair_classification':
            r = pairs[i % len(pairs)]
            labels = list(card.get('label_map') or {0: 0, 1: 1})
            _put(row, f['sentence1'], r['sentence1']); _put(row, f['sentence2'], r['sentence2'])
            _put(row, f['label'], labels[i % len(labels)])
        out.append(row)
    return out


def source_datasets(card: dict, n: int, seed: int = 0) -> list[tuple[list[dict], dict]]:
    """The source datasets of a card, each as (rows, where): `where` = split, config, data_dir, data_files as `load_dataset` is
    asked for them. A BEIR card gets its three configs (qrels of its split with a score-0 judgement every 5th query, queries,
    corpus); a converter card rows in its source's published schema; a filtered card a filter column (every 3rd row filtered out)."""
    s, rng = card['source'], random.Random(seed)
    where = dict(split=s.get('split', 'train'), config=s.get('config'), data_dir=s.get('data_dir'), data_files=s.get('data_files'))
    ret, _, _ = _texts()
    if s.get('layout') == 'beir':
        rs = [ret[i % len(ret)] for i in range(n)]
        qrels = [{'query-id': f'q{i}', 'corpus-id': f'd{i}', 'score': 1} for i in range(n)]
        qrels += [{'query-id': f'q{i}', 'corpus-id': f'd{(i + 1) % n}', 'score': 0} for i in range(0, n, 5)]
        queries = [{'_id': f'q{i}', 'text': r['query']} for i, r in enumerate(rs)]
        corpus = [{'_id': f'd{i}', 'title': f'title {i}' if i % 2 else '', 'text': r['pos']} for i, r in enumerate(rs)]
        return [(qrels, where), (queries, dict(split=s.get('queries', 'queries'), config=s.get('queries', 'queries'))),
                (corpus, dict(split=s.get('corpus', 'corpus'), config=s.get('corpus', 'corpus')))]
    if s.get('converter') == 'webgpt-comparisons':
        rows = []
        for i in range(n):
            r = ret[i % len(ret)]
            s0 = rng.choice([1.0, 0.0, -1.0])
            rows.append(dict(question=dict(dataset='eli5', full_text=r['query']), answer_0=r['pos'], answer_1=r['neg'][0], score_0=s0, score_1=-s0))
        return [(rows, where)]
    if s.get('converter') == 'kalm-release':
        ins, sep = RELEASE_INSTRUCTIONS[s['data_dir']], '\n' if s['data_dir'] == 'Expertqa' else ' \n '
        negs = [r['pos'] for r in ret]
        return [([dict(query=f"Instruct: {ins}{sep}Query: {r['query']} ({s['data_dir']} {i})", pos=[r['pos']],  # each folder its own queries
                       neg=[negs[(i + 7*k + 1) % len(negs)] for k in range(7)]) for i, r in enumerate(ret[:n])], where)]
    rows = card_rows(card, n, seed)
    for k, vals in (s.get('filter') or {}).items():
        for i, r in enumerate(rows): r[k] = vals[0] if i % 3 else 'Irrelevant'
    return [(rows, where)]


def cache_dataset(home: Path, repo_id: str, rows: list[dict], split: str = 'train', config: str | None = None,
                  data_dir: str | None = None, data_files=None) -> Path:
    """Prepare `rows` with the datasets `parquet` builder and place them where `load_dataset(repo_id, config,
    data_dir=…, data_files=…)` looks when offline: `<HF_DATASETS_CACHE>/<namespace>___<snake name>/<config id>/0.0.0/<hash>/`
    (datasets' `CachedDatasetModuleFactory` and the `cache` builder), the config id computed by datasets itself."""
    import datasets
    from datasets.naming import camelcase_to_snakecase
    from datasets.packaged_modules.parquet.parquet import Parquet
    cache = home/'datasets'
    src = home/'_src'/repo_id.replace('/', '--')/(data_dir or config or 'default')
    src.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(rows).to_parquet(str(src/f'{split}.parquet'))
    ns, name = repo_id.split('/')
    snake = camelcase_to_snakecase(name)
    kwargs = {k: v for k, v in dict(data_dir=data_dir, data_files=data_files).items() if v is not None}
    config_id = datasets.BuilderConfig(config or 'default').create_config_id(config_kwargs=kwargs) if (config or kwargs) else 'default'
    h = hashlib.sha1(f"{repo_id}|{config_id}".encode()).hexdigest()[:16]
    b = Parquet(cache_dir=str(home/'_build'), dataset_name=f"x___{snake}", config_name='default', data_files={split: [str(src/f'{split}.parquet')]}, hash=h)
    b.download_and_prepare()
    dest = cache/f"{ns}___{snake}"/config_id/'0.0.0'/h
    dest.mkdir(parents=True, exist_ok=True)
    built = Path(b.cache_dir)
    for p in built.iterdir():
        shutil.copy(p, dest/p.name.replace(f"x___{snake}", snake))
    info = json.loads((dest/'dataset_info.json').read_text())
    info.update(config_name=config_id if kwargs else (config or 'default'), dataset_name=snake)
    (dest/'dataset_info.json').write_text(json.dumps(info))
    return dest


def build_hub_standin(home: str | Path, rows_per_card: int = 300) -> dict:
    "Fill `home` (an HF_HOME) with the paper presets' models and the stand-in cards' data; returns what it holds."
    home = Path(home)
    out = dict(models=[str(cache_base_llm(home)), str(cache_teacher(home))], cards=[], datasets=[])
    for i, rel in enumerate(STANDIN_CARDS + RELEASE_CARDS):
        card = yaml.safe_load((ROOT/'data_cards'/rel).read_text())
        for rows, where in source_datasets(card, rows_per_card, seed=i):
            cache_dataset(home, card['source']['hub'], rows, **where)
        out['cards'].append(str(ROOT/'data_cards'/rel)); out['datasets'].append(card['source']['hub'])
    shutil.rmtree(home/'_build', ignore_errors=True); shutil.rmtree(home/'_src', ignore_errors=True)
    return out


def standin_env(home: str | Path) -> dict:
    "The environment of a process that sees the stand-in as its hub, offline."
    return dict(os.environ, HF_HOME=str(home), HF_HUB_OFFLINE='1', HF_DATASETS_OFFLINE='1', TRANSFORMERS_OFFLINE='1',
                TOKENIZERS_PARALLELISM='false', OMP_NUM_THREADS='1', PYTHONHASHSEED='0', MPLBACKEND='Agg')
