"""The paper presets really run: against a local stand-in for the hub (tests/hub_standin.py — tiny models and rows under
the real hub ids, in the caches the libraries read offline), the real resolution code runs with HF_HUB_OFFLINE=1:
`kalm-train` from a hub id, a causal last-token teacher run as what it is, `kalm-eval` of a hub id, and both paper
presets end to end through papermill (smoke steps, a local task list in place of MTEB)."""
import json, subprocess, sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from hub_standin import BASE_LLM, RELEASE_CARDS, RELEASE_INSTRUCTIONS, STANDIN_CARDS, TEACHER, standin_env

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(scope='module')
def hub(tmp_path_factory):
    home = tmp_path_factory.mktemp('hf-home')
    env = standin_env(home)
    r = subprocess.run([sys.executable, '-c', f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
                        f"import hub_standin as h; h.build_hub_standin({str(home)!r})"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    suite = tmp_path_factory.mktemp('suite')
    r = subprocess.run([sys.executable, '-c', "import sys; from kalm.mteb_tasks import subsample_suite; "
                        f"subsample_suite({str(ROOT/'data_cards'/'mini'/'eval')!r}, {str(suite)!r}, 20)"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return dict(home=home, env=env, suite=suite)


def run(hub, args, cwd=None, timeout=600):
    return subprocess.run(args, cwd=cwd or ROOT, env=hub['env'], capture_output=True, text=True, timeout=timeout)


def py(hub, code, timeout=300):
    return run(hub, [sys.executable, '-c', code], timeout=timeout)


def test_kalm_train_from_a_hub_id(hub, tmp_path):
    "A stage whose `model` is the hub id of a base LLM: resolved through from_pretrained and the HF cache, made bidirectional."
    cards = [str(ROOT/'data_cards'/c) for c in STANDIN_CARDS if c.startswith('pretrain/')]
    (tmp_path/'stage.yaml').write_text(f"name: pre\nkind: pretrain\nmodel: {BASE_LLM}\ncards: {json.dumps(cards)}\nrows: 64\n"
                                      "batch_size: 8\nsteps: 2\nquery_max_length: 32\ndoc_max_length: 32\nlr: 1.0e-4\n")
    r = run(hub, [BIN/'kalm-train', '--config', tmp_path/'stage.yaml', '--run_dir', tmp_path/'run', '--quiet'])
    assert r.returncode == 0, r.stderr[-3000:]
    cfg = (tmp_path/'run'/'config.yaml').read_text()
    assert f"model: {BASE_LLM}" in cfg  # the hub id stays a hub id
    r = py(hub, f"from kalm.embedder import KaLMEmbedder; from kalm.bidirectional import attention_kind; "
                f"e = KaLMEmbedder.load({str(tmp_path/'run'/'model')!r}); print(e.config.causal, attention_kind(e.model))")
    assert r.returncode == 0 and r.stdout.split()[-2:] == ['False', 'bidirectional'], r.stderr[-2000:]


def test_a_missing_hub_model_fails_before_any_data_is_read(hub, tmp_path):
    (tmp_path/'stage.yaml').write_text("kind: pretrain\nmodel: Qwen/Qwen2-7B\ndata: no-such-rows.jsonl\nsteps: 2\n")
    r = run(hub, [BIN/'kalm-train', '--config', tmp_path/'stage.yaml', '--run_dir', tmp_path/'run'])
    assert r.returncode == 2 and 'Traceback' not in r.stderr
    assert "cannot load 'Qwen/Qwen2-7B' from the Hugging Face hub" in r.stderr and 'no-such-rows' not in r.stderr


def test_source_layouts_load_through_load_dataset(hub):
    """The cards that need more than a field map, read by load_dataset from the stand-in's datasets cache: a BEIR card (qrels,
    queries and corpus configs joined), a converter card (WebGPT comparisons' schema) and a filtered card (ESCI)."""
    r = py(hub, f"""
import json
from kalm.data_cards import load_canonical
out = {{}}
for c in ('fiqa', 'webgpt-comparisons', 'esci'):
    ds, rep = load_canonical({str(ROOT/'data_cards'/'finetune')!r} + f'/{{c}}.yaml')
    out[c] = dict(n=len(ds), skipped=dict(rep.skipped), rows=ds.select(range(2)).to_list())
print(json.dumps(out))
""")
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    fiqa = out['fiqa']
    assert fiqa['n'] == 300 and fiqa['skipped'] == {}  # one row per judged query; score-0 judgements are not positives
    assert not fiqa['rows'][0]['pos'].startswith('title') and fiqa['rows'][1]['pos'].startswith('title 1 ')  # title + text
    wg = out['webgpt-comparisons']
    assert wg['n'] + wg['skipped']['nothing to train on (converter webgpt-comparisons)'] == 300 and wg['n'] > 100  # ties dropped
    assert all(len(r['neg']) == 1 for r in wg['rows'])
    assert out['esci']['n'] == 200 and out['esci']['skipped'] == {'not kept by source.filter': 100}


def test_causal_models_are_loaded_as_what_they_are(hub):
    """The causal last-token teacher gives exactly what SentenceTransformer(teacher) gives; a decoder that does not say whether it is
    causal is refused by KaLMEmbedder until the caller says it; a kalm-saved model reloads bidirectional."""
    r = py(hub, f"""
import numpy as np
from sentence_transformers import SentenceTransformer
from kalm.teachers import teacher_encoder, QWEN3_EMBEDDING_PROMPT
from kalm.bidirectional import KaLMLoadError, attention_kind
from kalm.embedder import KaLMEmbedder
qs = ['what is a wombat', 'the capital of France']
st = SentenceTransformer({TEACHER!r}, device='cpu', local_files_only=True)
enc = teacher_encoder({TEACHER!r}, prompt=QWEN3_EMBEDDING_PROMPT)
ins = 'Given a question, retrieve its answer'
assert np.allclose(enc(qs, instruction=ins), st.encode(qs, prompt=f'Instruct: {{ins}}\\nQuery:', normalize_embeddings=True), atol=1e-6)
assert np.allclose(enc(qs), st.encode(qs, normalize_embeddings=True), atol=1e-6)
assert attention_kind(st[0].auto_model) == 'causal' and st[1].pooling_mode == 'lasttoken'
for src in ({TEACHER!r}, {BASE_LLM!r}):
    try: KaLMEmbedder.load(src); raise SystemExit(f'{{src}} loaded without a stated causality')
    except KaLMLoadError as e: assert 'does not say whether its attention is causal' in str(e) and 'pass causal=True' in str(e), e
e = KaLMEmbedder.load({BASE_LLM!r}, causal=False)
assert attention_kind(e.model) == 'bidirectional'
import tempfile; d = tempfile.mkdtemp()
back = KaLMEmbedder.load(e.save(d + '/m'))
assert back.config.causal is False and attention_kind(back.model) == 'bidirectional'
print('ok')
""")
    assert r.returncode == 0 and r.stdout.strip().endswith('ok'), r.stderr[-3000:]


def test_kalm_eval_of_a_hub_id(hub, tmp_path):
    r = run(hub, [BIN/'kalm-eval', '--model', TEACHER, '--tasks', hub['suite'], '--out', tmp_path/'eval', '--limit', '8'])
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path/'eval'/'results.json').read_text())['results'][0]
    assert res['aggregate']['n_tasks'] == 8 and 0 <= res['aggregate']['MTK'] <= 1


ALTERNATIVE = {'recipe.finetune_rows': 600, 'recipe.proportions': 'natural', 'recipe.repeat_cap': 1.0, 'recipe.negatives': 'mine'}


@pytest.mark.parametrize('preset,data', [('kalm-v2', 'release'), ('kalm-v2.5', 'release'), ('kalm-v2', 'reconstructed')])
def test_paper_preset_end_to_end(hub, tmp_path, preset, data):
    """The paper preset through papermill on the stand-in: the hub model, its default fine-tuning data (folders of the official
    release: each row once, its instruction used once, its own negatives, no mining) or the reconstructed cards (one per source
    layout, natural proportions under the repeat cap, mined negatives), and the causal teacher."""
    pre = [str(ROOT/'data_cards'/c) for c in STANDIN_CARDS if c.startswith('pretrain/')]
    ft = [str(ROOT/'data_cards'/c) for c in (RELEASE_CARDS if data == 'release' else STANDIN_CARDS) if not c.startswith('pretrain/')]
    out, work = tmp_path/'report', tmp_path/'work'
    out.mkdir()
    ov = {'cards': pre + ft, 'eval.tasks': [str(hub['suite'])], 'recipe.max_rows_per_card': 300}
    if data == 'release': ov['recipe.finetune_rows'] = None  # the preset's own setting; smoke runs draw 240 rows otherwise
    else: ov.update(ALTERNATIVE)
    r = run(hub, [sys.executable, '-m', 'papermill', 'run_pipeline.ipynb', str(out/'run_pipeline.ipynb'), '-p', 'preset', preset,
                  '-p', 'smoke', 'True', '-p', 'out_dir', str(out), '-p', 'work_dir', str(work), '-y', f"overrides: {json.dumps(ov)}"],
            cwd=ROOT/'nbs', timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    m = json.loads((out/'metrics.json').read_text())
    assert m['preset'] == preset and m['final'] == {'kalm-v2': 'soup-cocktail', 'kalm-v2.5': 'distill'}[preset]
    assert set(m['stages']) >= {'pretrain', 'finetune-1'} | ({'distill'} if preset == 'kalm-v2.5' else set())
    assert all(s['steps'] == 2 for s in m['stages'].values())
    assert f"model: {BASE_LLM}" in (work/'recipe'/'pretrain'/'config.yaml').read_text()
    if preset == 'kalm-v2.5':
        spec = json.loads((work/'recipe'/'distill'/'teacher.json').read_text())
        assert spec == {'teacher': TEACHER, 'prompt': 'Instruct: {instruction}\nQuery:'}
    for e in m['eval']:
        assert len(e['scores']) == 8 and all(0 <= v <= 1 for v in e['scores'].values())
    assert (out/'MODEL_CARD.md').is_file() and (out/'results.md').is_file()
    r = py(hub, f"""
import json
from kalm.rows import load_rows
from kalm.instructions import format_query
rows = load_rows({str(work/'recipe'/'data'/'finetune.jsonl.gz')!r}).to_list()
print(json.dumps(dict(n=len(rows), cats=sorted({{r['category'] for r in rows}}), ins=sorted({{r['instruction'] for r in rows}}),
                      queries=[format_query(r['query'], r['instruction']) for r in rows], negs=sorted({{len(r['neg']) for r in rows}}))))
""")
    assert r.returncode == 0, r.stderr[-3000:]
    d = json.loads(r.stdout.strip().splitlines()[-1])
    if data == 'release':  # every row of each folder once (300 each, less the held-out rows), its instruction once, its 7 negatives
        assert d['n'] == 3*300 - 16 and d['cats'] == ['ft-expertqa', 'ft-multi-cpr', 'ft-wikipedia-nq'] and d['negs'] == [7]
        assert d['ins'] == sorted(RELEASE_INSTRUCTIONS.values())
        assert all(q.count('Instruct:') == 1 and q.count('Query:') == 1 for q in d['queries'])
        assert not (work/'recipe'/'mine').exists() and m['mining'] is None
    else:
        assert d['n'] == 600 - 16 and m['mining']['rows'] == d['n']
