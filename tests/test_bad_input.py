"""Bad input and faults, the way a researcher meets them: the console scripts (kalm-train, kalm-mine, kalm-eval, kalm-soup,
kalm-recipe) and the papermill notebook driven as subprocesses. Every bad input is exit status 2 and one line
`error: <file>[, line N][: field 'x']: <what> [— <what to do>]` on stderr, no traceback, nothing written and nothing lost;
a damaged newest checkpoint is set aside and the run resumes from the one before (and ends bit-identical); a dead model
stops the run with exit status 3; two runs cannot train into one folder; kalm-eval re-scores a task whose data changed."""
import gzip, hashlib, json, os, shutil, signal, subprocess, sys, time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = dict(os.environ, HF_HUB_OFFLINE='1', HF_DATASETS_OFFLINE='1', TRANSFORMERS_OFFLINE='1', TOKENIZERS_PARALLELISM='false',
           PYTHONHASHSEED='0', MPLBACKEND='Agg', OMP_NUM_THREADS='1')
ENV.pop('IN_TEST', None)

BASE = '''\
name: t
kind: finetune
model: tiny
data: rows.jsonl
batch_size: 4
num_negatives: 2
query_max_length: 16
doc_max_length: 16
lr: 1.0e-4
steps: 2
seed: 5
'''


def run(*cmd, cwd, timeout=300):
    exe = str(BIN/cmd[0]) if (BIN/cmd[0]).exists() else cmd[0]
    return subprocess.run([exe, *map(str, cmd[1:])], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


def one_line(r, code=2) -> str:
    "The single line of stderr of a failed command, checked: its exit status, `error: `, no traceback, nothing else."
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == code, (r.returncode, r.stderr[-3000:])
    assert len(lines) == 1 and lines[0].startswith('error: ') and 'Traceback' not in r.stderr, r.stderr[-3000:]
    return lines[0]


def snapshot(d: Path) -> dict:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob('*')) if p.is_file()}


@pytest.fixture(scope='module')
def work(tmp_path_factory):
    from kalm.data_cards import cards_dir, load_canonical
    from kalm.rows import save_rows
    d = tmp_path_factory.mktemp('bad-input')
    rows, _ = load_canonical(cards_dir('mini')/'wn-gloss-retrieval.yaml', max_rows=64)
    save_rows(rows, d/'rows.jsonl'); save_rows(rows, d/'rows.jsonl.gz')
    (d/'base.yaml').write_text(BASE)
    (d/'notamodel').mkdir(); (d/'notamodel'/'x.txt').write_text('hi')
    (d/'afile').write_text('not a folder')
    return d


def rows_file(work, name, edit=None, raw=None):
    "A rows file: the good rows with row 11 (line 11) edited, or raw bytes."
    lines = (work/'rows.jsonl').read_text().splitlines()
    if edit is not None:
        r = json.loads(lines[10]); edit(r); lines[10] = json.dumps(r)
    (work/name).write_bytes(raw if raw is not None else ('\n'.join(lines) + '\n').encode())
    (work/f'{name}.yaml').write_text(BASE.replace('data: rows.jsonl', f'data: {name}'))
    return f'{name}.yaml'


def card_set(work, name, fn):
    "A copy of the shipped card wn-gloss-retrieval with `fn(text)` applied, in a folder of its own, and a stage config using it."
    src = ROOT/'data_cards'/'mini'/'wn-gloss-retrieval.yaml'
    text = src.read_text().replace('path: corpus/', f"path: {ROOT/'data_cards'/'mini'/'corpus'}/")
    (work/name).mkdir(exist_ok=True)
    (work/name/'wn-gloss-retrieval.yaml').write_text(fn(text))
    (work/f'{name}.yaml').write_text(BASE.replace('data: rows.jsonl', f'cards: [{name}]\nmax_rows_per_card: 64'))
    return f'{name}.yaml', work/name/'wn-gloss-retrieval.yaml'


def line_of(path: Path, start: str) -> int:
    return next(i for i, l in enumerate(Path(path).read_text().splitlines(), 1) if l.startswith(start))


# --- kalm-train: bad cards, bad rows, bad configs ----------------------------------------------------------------------
CARDS = {  # case -> (edit of the card text, expected text of the error line (with {card} and {line:KEY}))
    'missing field': (lambda t: '\n'.join(l for l in t.splitlines() if not l.startswith('license:')) + '\n',
                      "{card}: field 'license': missing required field"),
    'unknown task type': (lambda t: t.replace('task_type: retrieval', 'task_type: retreival'),
                          "{card}, line {line:task_type}: field 'task_type': unknown value 'retreival'"),
    "typo'd field": (lambda t: t.replace('license:', 'licence:'),
                     "{card}, line {line:licence}: field 'licence': unknown field (did you mean 'license'?)"),
    'bad path': (lambda t: t.replace('wn-gloss-retrieval.jsonl.gz', 'nope.jsonl.gz'),
                 "{card}, line {line:  path}: field 'source.path': file not found"),
    'negative weight': (lambda t: t.replace('weight: 1.732', 'weight: -1'),
                        "{card}, line {line:weight}: field 'weight': must be a number > 0, got -1"),
    'YAML syntax error': (lambda t: t.replace('weight: 1.732', 'weight: [1'), "{card}, line {line:weight}: invalid YAML"),
}


@pytest.mark.parametrize('case', list(CARDS))
def test_bad_card(work, case):
    edit, want = CARDS[case]
    cfg, card = card_set(work, 'c-' + case.replace(' ', '-').replace("'", ''), edit)
    before = snapshot(work)
    r = run('kalm-train', '--config', cfg, '--run_dir', 'r-card', '--quiet', cwd=work)
    line = one_line(r)
    want = want.replace('{card}', str(card))
    for key in ('task_type', 'licence', '  path', 'weight'):
        if '{line:' + key + '}' in want: want = want.replace('{line:' + key + '}', str(line_of(card, key + ':')))
    if case == 'YAML syntax error': want = want.replace(f"line {line_of(card, 'weight:')}", f"line {line_of(card, 'weight:') + 1}")
    assert line.startswith('error: ' + want), line
    assert not (work/'r-card').exists() and snapshot(work) == before


def test_card_with_an_empty_source(work):
    (work/'empty.jsonl').write_text('')
    cfg, card = card_set(work, 'c-empty', lambda t: t.replace(f"path: {ROOT/'data_cards'/'mini'/'corpus'}/wn-gloss-retrieval.jsonl.gz",
                                                              f"path: {work/'empty.jsonl'}"))
    line = one_line(run('kalm-train', '--config', cfg, '--run_dir', 'r-card', '--quiet', cwd=work))
    assert line.startswith(f"error: {card}: field 'source.path': no readable JSON rows in {work/'empty.jsonl'}"), line


def test_card_source_lines_are_skipped_counted_and_named(work):
    "Bad lines of a card's source (non-UTF-8, broken JSON, a field of another type) are skipped with a count and their lines."
    lines = gzip.open(ROOT/'data_cards'/'mini'/'corpus'/'wn-gloss-retrieval.jsonl.gz', 'rb').read().split(b'\n')[:100]
    lines[5] = lines[5][:20] + b'\xe9\xff' + lines[5][22:]
    lines[7] = b'{"query": "x", '
    lines[9] = b'{"query": 5, "pos": ["a"], "neg": 3}'
    (work/'src.jsonl').write_bytes(b'\n'.join(lines) + b'\n')
    cfg, card = card_set(work, 'c-src', lambda t: t.replace(f"path: {ROOT/'data_cards'/'mini'/'corpus'}/wn-gloss-retrieval.jsonl.gz",
                                                            f"path: {work/'src.jsonl'}"))
    r = run('kalm-train', '--config', cfg, '--run_dir', 'r-src', '--quiet', cwd=work)
    assert r.returncode == 0 and 'Traceback' not in r.stderr, r.stderr[-3000:]
    assert ('card wn-gloss-retrieval: skipped 3 of 66 rows: 1 invalid JSON line (line 8), 1 missing or empty text (line 10), '
            '1 non-UTF-8 line (line 6)') in r.stderr, r.stderr


ROWS = {  # case -> (edit of row 11 or raw bytes, expected error text after the file name)
    'pos: []': (lambda r: r.update(pos=[]), ", line 11: field 'pos': must be a non-empty string (or a list of them), got list []"),
    'query of the wrong type': (lambda r: r.update(query=5), ", line 11: field 'query': must be a non-empty string, got int 5"),
    'neg not a list': (lambda r: r.update(neg='one'), ", line 11: field 'neg': must be a list of strings, got str 'one'"),
    'pos a list here, a string above': (lambda r: r.update(pos=['a', 'b']), ", line 11: field 'pos': is a list here but a string on line 1"),
    'missing pos': (lambda r: r.pop('pos'), ", line 11: field 'pos': missing"),
    'unknown task type': (lambda r: r.update(task_type='retreival'), ", line 11: field 'task_type': unknown task type 'retreival'"),
    'empty query': (lambda r: r.update(query=''), ", line 11: field 'query': must be a non-empty string, got str ''"),
}


@pytest.mark.parametrize('case', list(ROWS))
def test_bad_rows(work, case):
    edit, want = ROWS[case]
    name = 'd-' + case.replace(' ', '-').replace(':', '').replace('[]', 'empty').replace(',', '') + '.jsonl'
    cfg = rows_file(work, name, edit)
    before = snapshot(work)
    line = one_line(run('kalm-train', '--config', cfg, '--run_dir', 'r-rows', '--quiet', cwd=work))
    assert line.startswith(f"error: {work/name}{want}"), line
    assert not (work/'r-rows').exists() and snapshot(work) == before


@pytest.mark.parametrize('case', ['non-UTF-8', 'truncated gzip', 'not gzip'])
def test_unreadable_rows_file(work, case):
    good, gz = (work/'rows.jsonl').read_bytes(), (work/'rows.jsonl.gz').read_bytes()
    i = good.index(b'\n') + 40
    name, raw, want = {'non-UTF-8': ('d-latin1.jsonl', good[:i] + b'\xe9' + good[i + 1:], ', line 2: invalid UTF-8 (byte'),
                       'truncated gzip': ('d-cut.jsonl.gz', gz[:len(gz) // 2], ': cannot read file (EOFError'),
                       'not gzip': ('d-plain.jsonl.gz', good, ': cannot read file (BadGzipFile')}[case]
    cfg = rows_file(work, name, raw=raw)
    line = one_line(run('kalm-train', '--config', cfg, '--run_dir', 'r-rows', '--quiet', cwd=work))
    assert line.startswith(f"error: {work/name}{want}"), line
    assert not (work/'r-rows').exists()


CONFIGS = {  # case -> (config text or None for base.yaml, extra arguments, expected error line (after 'error: '))
    "lr: 1e-4 (a string to YAML)": (BASE.replace('lr: 1.0e-4', 'lr: 1e-4'), [],
                                    "{cfg}, line 9: field 'lr': must be a number, got '1e-4' — YAML reads 1e-4 as text: write 1.0e-4"),
    'bad --override value': (None, ['--override', 'batch_size=four'],
                             "base.yaml (--override batch_size=four): field 'batch_size': must be an integer, got 'four'"),
    'unknown --override key': (None, ['--override', 'batchsize=4'],
                               "base.yaml (--override batchsize=4): field 'batchsize': unknown field (did you mean 'batch_size'?)"),
    'model folder that is not a model': (BASE.replace('model: tiny', 'model: notamodel'), [], "{work}/notamodel: "),
    'missing data file': (BASE.replace('data: rows.jsonl', 'data: nope.jsonl'), [], "{work}/nope.jsonl: data file not found"),
    'missing config file': ('', ['--config', 'nope.yaml'], "nope.yaml: file not found"),
}


@pytest.mark.parametrize('case', list(CONFIGS))
def test_bad_config(work, case):
    text, extra, want = CONFIGS[case]
    cfg = 'base.yaml'
    if text:
        cfg = f"cfg-{abs(hash(case))}.yaml"; (work/cfg).write_text(text)
    args = ['--config', cfg, *extra] if '--config' not in extra else extra
    before = snapshot(work)
    line = one_line(run('kalm-train', *args, '--run_dir', 'r-cfg', '--quiet', cwd=work))
    assert line.startswith('error: ' + want.format(cfg=cfg, work=work)), line
    assert not (work/'r-cfg').exists() and snapshot(work) == before


def test_run_dir_that_is_a_file_and_missing_arguments(work):
    before = snapshot(work)
    line = one_line(run('kalm-train', '--config', 'base.yaml', '--run_dir', 'afile', '--quiet', cwd=work))
    assert line == "error: afile: is a file, not a folder — give --run_dir a folder (it is created if missing)", line
    line = one_line(run('kalm-train', '--config', 'base.yaml', cwd=work))
    assert line == "error: kalm-train: the following arguments are required: --run_dir — see kalm-train --help", line
    assert snapshot(work) == before


# --- kalm-mine, kalm-soup, kalm-recipe ------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def model_dir(work):
    from kalm.checkpoint import save_model
    from kalm.core import weights_hash
    from kalm.embedder import KaLMEmbedder
    emb = KaLMEmbedder.from_preset('tiny', device='cpu')
    save_model(emb, work/'tiny-model', dict(lineage=[weights_hash(emb)], stage='init'))
    return work/'tiny-model'


def test_mine_bad_input(work, model_dir):
    mine = f"model: {model_dir}\ndata: {{data}}\nnum_negatives: 2\nsample_range: [2, 10]\nfilter_topk: 20\nmax_length: 16\n"
    (work/'mine-bad.yaml').write_text(mine.format(data=work/'d-pos-empty.jsonl'))
    rows_file(work, 'd-pos-empty.jsonl', lambda r: r.update(pos=[]))
    (work/'mine-ok.yaml').write_text(mine.format(data=work/'rows.jsonl'))
    (work/'mine-nm.yaml').write_text(mine.format(data=work/'rows.jsonl').replace(str(model_dir), str(work/'notamodel')))
    before = snapshot(work)
    line = one_line(run('kalm-mine', '--config', 'mine-bad.yaml', '--run_dir', 'm1', '--quiet', cwd=work))
    assert line.startswith(f"error: {work/'d-pos-empty.jsonl'}, line 11: field 'pos'"), line
    line = one_line(run('kalm-mine', '--config', 'mine-ok.yaml', '--run_dir', 'afile', '--quiet', cwd=work))
    assert line.startswith("error: afile: is a file, not a folder"), line
    line = one_line(run('kalm-mine', '--config', 'mine-nm.yaml', '--run_dir', 'm1', '--quiet', cwd=work))
    assert line.startswith(f"error: {work/'notamodel'}: "), line
    line = one_line(run('kalm-mine', '--config', 'mine-ok.yaml', cwd=work))
    assert line == "error: kalm-mine: the following arguments are required: --run_dir — see kalm-mine --help", line
    assert not (work/'m1').exists() and snapshot(work) == before


def test_soup_and_recipe_bad_input(work, model_dir):
    line = one_line(run('kalm-soup', str(model_dir), str(work/'notamodel'), '--out', 'soup', cwd=work))
    assert str(work/'notamodel') in line, line
    before = snapshot(work)
    line = one_line(run('kalm-soup', str(model_dir), str(model_dir), '--out', 'afile', cwd=work))  # before: the file was replaced
    assert line == "error: kalm-soup: field 'out': afile exists and is not a model folder: refusing to replace it — give --out a new folder", line
    (work/'recipe.yaml').write_text('model: tiny\nfinetune:\n  stesp: 3\n')
    line = one_line(run('kalm-recipe', '--config', 'recipe.yaml', '--run_dir', 'rc', '--quiet', cwd=work))
    assert line.startswith("error: recipe.yaml, line 3: field 'finetune.stesp'"), line
    (work/'recipe-ok.yaml').write_text('model: tiny\n')
    line = one_line(run('kalm-recipe', '--config', 'recipe-ok.yaml', '--run_dir', 'afile', '--quiet', cwd=work))
    assert line.startswith("error: afile: is a file, not a folder"), line
    assert not (work/'soup').exists() and not (work/'rc').exists() and snapshot(work) == {**before, **snapshot(work)}
    assert (work/'afile').read_text() == 'not a folder'


# --- kalm-eval: options checked before any work; the cache follows the data --------------------------------------------
@pytest.mark.parametrize('opts,want', [
    (['--dims', 'abc'], "error: kalm-eval: field '--dims': must be comma-separated integers >= 1 such as 256,128,64, got 'abc'"),
    (['--limit', '-5'], "error: kalm-eval: field '--limit': must be an integer >= 0, got -5"),
    (['--batch_size', '0'], "error: kalm-eval: field '--batch_size': must be an integer >= 1, got 0"),
    (['--dims', '999,64'], "error: kalm-eval: field '--dims': 999 is larger than the model's embedding dimension"),
    (['--out', 'afile'], "error: kalm-eval: field '--out': afile is a file, not a folder"),
])
def test_eval_options_before_any_work(work, opts, want):
    out = [] if '--out' in opts else ['--out', 'ev']
    line = one_line(run('kalm-eval', '--model', 'tiny', '--tasks', ROOT/'data_cards'/'mini'/'eval', *out, *opts, cwd=work))
    assert line.startswith(want), line
    assert not (work/'ev').exists()


def test_eval_cache_follows_the_task_data(work):
    suite = work/'suite'
    shutil.copytree(ROOT/'data_cards'/'mini'/'eval'/'MiniWordNetGlossSTS', suite/'MiniWordNetGlossSTS')
    score = lambda: json.loads((work/'ev-cache'/'results.json').read_text())['results'][0]['scores']['MiniWordNetGlossSTS']
    r = run('kalm-eval', '--model', 'tiny', '--tasks', suite, '--out', 'ev-cache', '--limit', 60, cwd=work)
    assert r.returncode == 0, r.stderr[-3000:]
    first = score()
    f = suite/'MiniWordNetGlossSTS'/'test.jsonl.gz'
    rows = [json.loads(l) for l in gzip.open(f, 'rt')]
    with gzip.open(f, 'wt') as g: g.writelines(json.dumps(dict(r, score=5 - r['score'])) + '\n' for r in rows)
    r = run('kalm-eval', '--model', 'tiny', '--tasks', suite, '--out', 'ev-cache', '--limit', 60, cwd=work)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'MiniWordNetGlossSTS: the cached score was for other data' in r.stderr
    assert abs(score() + first) < 1e-6  # scores reversed: Spearman flips sign (before the fix: the old score, from the cache)


# --- the papermill notebook's first-cell boundary -------------------------------------------------------------------
def test_papermill_bad_parameter_is_one_line_in_the_notebook(tmp_path):
    out = tmp_path/'bad.ipynb'
    r = subprocess.run([sys.executable, '-m', 'papermill', 'run_pipeline.ipynb', str(out), '-p', 'preset', 'nope', '-p', 'dry_run', 'True'],
                       cwd=ROOT/'nbs', env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    errors = [o for c in json.loads(out.read_text())['cells'] for o in c.get('outputs', []) if o['output_type'] == 'error']
    want = "error: run_pipeline parameters: field 'preset': unknown preset 'nope'"
    assert len(errors) == 1 and len(errors[0]['traceback']) == 1 and errors[0]['traceback'][0].startswith(want), errors
    assert r.stderr.strip().splitlines()[-1].startswith(want)  # papermill's own message ends with the same line
    # `stages` (the old name of `parts`) can be given with -p, as a comma-separated string
    r = subprocess.run([sys.executable, '-m', 'papermill', 'run_pipeline.ipynb', str(tmp_path/'ok.ipynb'), '-p', 'stages', 'data,train',
                        '-p', 'dry_run', 'True', '-p', 'out_dir', str(tmp_path/'plan'), '-p', 'work_dir', str(tmp_path/'w')],
                       cwd=ROOT/'nbs', env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]


# --- faults: damaged checkpoints, dead models, two runs in one folder ------------------------------------------------
RESUME = BASE.replace('steps: 2', 'steps: 8\nsave_every: 3\nkeep_checkpoints: 2') + 'loss:\n  mix_pairwise: 1\n'


@pytest.fixture(scope='module')
def reference(work):
    "An uninterrupted run of 8 steps (checkpoints at steps 3 and 6)."
    (work/'resume.yaml').write_text(RESUME)
    r = run('kalm-train', '--config', 'resume.yaml', '--run_dir', 'ref', '--quiet', cwd=work)
    assert r.returncode == 0, r.stderr[-3000:]
    return work/'ref'


@pytest.mark.parametrize('damage', ['model.safetensors', 'optimizer.bin', 'trainer_state.json', 'random_states_0.pkl'])
def test_damaged_newest_checkpoint_is_set_aside_and_the_run_resumes(work, reference, damage):
    run_dir = work/f"dmg-{damage.split('.')[0]}"
    shutil.copytree(reference, run_dir)
    for f in ('summary.json', 'model'):  # as if killed after step 8: the newest checkpoint is step 6
        shutil.rmtree(run_dir/f) if (run_dir/f).is_dir() else (run_dir/f).unlink()
    f = run_dir/'checkpoints'/'step-0000006'/damage
    half = f.stat().st_size // 2
    with open(f, 'r+b') as fh: fh.truncate(half)
    r = run('kalm-train', '--config', 'resume.yaml', '--run_dir', run_dir.name, '--quiet', cwd=work)
    assert r.returncode == 0 and 'Traceback' not in r.stderr, r.stderr[-3000:]
    assert f"warning: t: checkpoint {run_dir.name}/checkpoints/step-0000006 is damaged ({damage} has" in r.stderr, r.stderr
    assert 't: resumed from checkpoint step-0000003 (step 3 of 8)' in r.stderr, r.stderr  # said even with --quiet
    assert sorted(p.name for p in (run_dir/'checkpoints').iterdir()) == ['damaged-step-0000006', 'step-0000003', 'step-0000006']
    assert (run_dir/'checkpoints'/'damaged-step-0000006'/damage).stat().st_size == half  # set aside, not deleted
    summary = lambda d: json.loads((d/'summary.json').read_text())
    assert summary(run_dir)['weights_sha'] == summary(reference)['weights_sha']  # bit-identical to the uninterrupted run
    assert [json.loads(l)['step'] for l in (run_dir/'metrics.jsonl').read_text().splitlines()] == list(range(1, 9))


def test_dead_model_stops_the_run(work):
    (work/'dead.yaml').write_text(BASE.replace('lr: 1.0e-4', 'lr: 1.0e+6').replace('steps: 2', 'steps: 8'))
    line = one_line(run('kalm-train', '--config', 'dead.yaml', '--run_dir', 'dead', '--quiet', cwd=work), code=3)
    assert line.startswith('error: t: the model died: the gradient norm has been exactly 0 for 3 steps (steps 2–4)'), line
    assert not (work/'dead'/'model').exists() and not (work/'dead'/'summary.json').exists()


def test_absurd_temperature_warns(work):
    (work/'t8.yaml').write_text(BASE + 'loss:\n  temperature: 1.0e-8\n')
    r = run('kalm-train', '--config', 't8.yaml', '--run_dir', 't8', '--quiet', cwd=work)
    assert r.returncode == 0, r.stderr[-3000:]
    warn = [l for l in r.stderr.splitlines() if l.startswith('warning: t: the loss')]
    assert len(warn) == 1 and 'times the chance level' in warn[0] and 'loss.temperature' in warn[0], r.stderr
    assert json.loads((work/'t8'/'summary.json').read_text())['health_warnings'] == [warn[0][len('warning: t: '):]]


def test_two_runs_cannot_train_into_one_folder(work):
    (work/'long.yaml').write_text(BASE.replace('steps: 2', 'steps: 400\nsave_every: 50'))
    p = subprocess.Popen([str(BIN/'kalm-train'), '--config', 'long.yaml', '--run_dir', 'busy', '--quiet'], cwd=work, env=ENV,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        t0 = time.time()
        while not ((work/'busy'/'metrics.jsonl').is_file() and (work/'busy'/'metrics.jsonl').stat().st_size):
            assert p.poll() is None, p.stderr.read().decode()[-3000:]
            assert time.time() - t0 < 180, 'the first run did not start'
            time.sleep(0.1)
        line = one_line(run('kalm-train', '--config', 'long.yaml', '--run_dir', 'busy', '--quiet', cwd=work))
        assert line.startswith(f"error: busy: pid {p.pid} on ") and 'is writing into this run folder' in line, line
    finally:
        p.send_signal(signal.SIGKILL); p.wait(timeout=30)
    from kalm.run_folders import run_lock
    with run_lock(work/'busy'): pass  # the lock died with the process (SIGKILL): the folder is free again
