"The papermill entry point end to end: a smoke run of the mini preset, the paper presets' dry runs, fail-fast without the hub."
import json, subprocess
from pathlib import Path
import pytest
from conftest import run_notebook

ROOT = Path(__file__).resolve().parents[1]


def papermill(out_nb: Path, *params: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return run_notebook('run_pipeline.ipynb', out_nb, *params, timeout=timeout)


def test_smoke_run_writes_a_real_report(tmp_path):
    out, work = tmp_path/'report', tmp_path/'work'
    r = papermill(out/'run_pipeline.ipynb', '-p', 'smoke', 'True', '-p', 'out_dir', str(out), '-p', 'work_dir', str(work),
                  '-y', 'overrides: {eval.tasks: [mini, transfer]}')   # both shipped suites: one report each
    assert r.returncode == 0, r.stderr[-3000:]
    for f in ('run_pipeline.ipynb', 'run_pipeline.html', 'data_report.json', 'data_mixture.png', 'training_curves.png', 'soup_scores.png',
              'results.md', 'results.json', 'task_types.png', 'baselines.png', 'metrics.json', 'MODEL_CARD.md', 'preset.yaml',
              'transfer/results.md', 'transfer/results.json'):
        assert (out/f).is_file() and (out/f).stat().st_size > 0, f
    for rep in (out, out/'transfer'):  # paired intervals of the final model against every other row, and the items they came from
        assert '## Paired comparisons' in (rep/'results.md').read_text()
        assert len(list((rep/'items').glob('*.jsonl.gz'))) == len(json.loads((rep/'results.json').read_text())['results'])
    assert 'Debian' in (out/'transfer'/'results.md').read_text() or 'Fortune' in (out/'transfer'/'results.md').read_text()
    m = json.loads((out/'metrics.json').read_text())
    transfer = {p.name for p in (ROOT/'data_cards'/'transfer').iterdir() if (p/'task.yaml').is_file()}
    assert {len(e['scores']) for e in m['eval']} == {8, len(transfer)} and any(set(e['scores']) == transfer for e in m['eval'])
    m['eval'] = [e for e in m['eval'] if len(e['scores']) == 8]   # the mini suite's rows: checked below
    assert m['smoke'] is True and m['final'] == 'soup-greedy'
    assert set(m['stages']) >= {'pretrain', 'finetune-1', 'finetune-2', 'distill'}
    assert all(s['steps'] == 2 for s in m['stages'].values())
    labels = [e['label'] for e in m['eval']]
    assert any('all-MiniLM-L6-v2' in l for l in labels) and any('random-init' in l for l in labels) and any(l.startswith('string rule') for l in labels)
    for e in m['eval']:  # real mteb scores on all 8 tasks, in range (STS is a correlation: -1 to 1), not all equal
        assert len(e['scores']) == 8 and all((-1 if 'STS' in t else 0) <= v <= 1 for t, v in e['scores'].items()), e
    mtk = {e['label']: e['aggregate']['MTK'] for e in m['eval']}
    assert len(set(round(v, 6) for v in mtk.values())) > 2
    minilm = next(v for k, v in mtk.items() if 'MiniLM' in k)
    assert minilm > max(v for k, v in mtk.items() if 'MiniLM' not in k)  # the teacher beats every 2-step model
    card = (out/'MODEL_CARD.md').read_text()
    assert 'papermill' in card and 'soup-greedy' in card
    log = (out/'run_pipeline.ipynb').read_text()  # the stages' progress lines, as `make pipeline` shows them
    for line in ('pretrain: start, 2 steps', 'pretrain: done in', 'mining: done, kept', 'finetune-2: step 2/2', 'distill: done in'):
        assert line in log, line
    assert str(ROOT) not in (out/'metrics.json').read_text() and m['paths_relative_to'].startswith('the repository root')
    assert list((work/'recipe'/'pretrain'/'tracking'/'pretrain').glob('events.out.tfevents.*'))  # TensorBoard by default


@pytest.mark.parametrize('preset', ['kalm-v2', 'kalm-v2.5'])
def test_paper_preset_dry_run_prints_the_plan(tmp_path, preset):
    out = tmp_path/'plan'
    r = papermill(out/'plan.ipynb', '-p', 'preset', preset, '-p', 'dry_run', 'True', '-p', 'out_dir', str(out), '-p', 'work_dir', str(tmp_path/'w'),
                  timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    text = (out/'plan.txt').read_text()
    for s in ('pretrain', 'mine', 'finetune-1', 'finetune-3', 'soup', 'GPU hours', 'Qwen/Qwen2-0.5B', 'pretrain mixture: 25 cards'):
        assert s in text, s
    assert ('teacher Qwen/Qwen3-Embedding-8B' in text) == (preset == 'kalm-v2.5')
    pl = json.loads((out/'plan.json').read_text())
    assert pl['gpu_hours'] > 100 and pl['tokens'] > 1e11
    assert not (tmp_path/'w').exists()  # nothing trained, nothing written to the work folder


def test_paper_preset_without_hub_fails_fast(tmp_path):
    r = papermill(tmp_path/'run.ipynb', '-p', 'preset', 'kalm-v2', '-p', 'out_dir', str(tmp_path/'o'), '-p', 'work_dir', str(tmp_path/'w'), timeout=300)
    assert r.returncode != 0
    err = r.stdout + r.stderr
    # a HubUnavailableError, shown as `error: …` (kalm.core.notebook_errors)
    assert 'error: ' in err and 'needs the Hugging Face hub' in err and 'Qwen/Qwen2-0.5B' in err and 'MTEB(cmn, v1)' in err
    assert not (tmp_path/'w').exists()


def test_bad_parameter_is_one_clear_error(tmp_path):
    r = papermill(tmp_path/'bad.ipynb', '-p', 'preset', 'kalm-v3', '-p', 'out_dir', str(tmp_path/'o'), timeout=300)
    assert r.returncode != 0 and "unknown preset 'kalm-v3'" in (r.stdout + r.stderr)


def test_a_dry_run_never_writes_into_another_presets_report(tmp_path):
    mini = tmp_path/'reports'/'mini'
    mini.mkdir(parents=True); (mini/'preset.yaml').write_text('name: mini\nmodel: tiny\n'); (mini/'plan.txt').write_text('the mini plan\n')
    r = papermill(tmp_path/'plan.ipynb', '-p', 'preset', 'kalm-v2', '-p', 'dry_run', 'True', '-p', 'out_dir', str(mini), timeout=300)
    assert r.returncode != 0 and "field 'out_dir'" in (r.stdout + r.stderr) and "holds the report of preset 'mini', not of 'kalm-v2'" in (r.stdout + r.stderr)
    assert (mini/'plan.txt').read_text() == 'the mini plan\n' and not (mini/'plan.json').exists()  # untouched
