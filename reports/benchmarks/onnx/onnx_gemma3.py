"""Probe for the speed issue (#27): is kalm's encode at least as fast as the best CPU backend that loads Gemma 3 270M?

sentence-transformers' own CPU backends (backend="onnx" / "openvino") cannot be installed beside the locked
transformers (reports/benchmarks/gemma3.md: optimum-onnx and optimum-intel pin older transformers). A user can still
export the model to ONNX with torch itself (`torch.onnx.export`, the dynamo exporter) and run it with onnxruntime's CPU
provider. This script does that with the benchmark's start model (the untrained base, bidirectional, mean pooling,
L2-normalised: `kalm.bench_gemma.start_folder`), checks that onnxruntime gives kalm's float32 embeddings, and times
both on the benchmark's encode texts (`kalm.bench.bench_texts(600, seed=0)`, at most 128 tokens, 64 texts per batch,
and also at most 1,024 padded tokens per batch), interleaved, 2 timed rounds after a warm-up, medians.
onnxruntime gets kalm's own batches (texts sorted by tokens, `kalm.embedder.token_batches`), its best case; kalm runs
in float32 and, as the gemma3 preset evaluates, under bf16 autocast.

Command, from the repository root after `make setup` and `make base-model`, on 2 idle cores (onnx and onnxruntime are
not in requirements.lock, so they go to a folder of their own, not into the locked environment):

    .venv/bin/pip install --no-deps --target /tmp/ort onnxruntime==1.32.0 onnx==1.23.2 onnxscript==0.7.2 onnx-ir==1.1.0 ml_dtypes==0.7.0 flatbuffers==25.12.19
    PYTHONPATH=/tmp/ort HF_HUB_OFFLINE=1 .venv/bin/python reports/benchmarks/onnx/onnx_gemma3.py

It writes onnx_gemma3.json and onnx_gemma3.md beside itself.
"""
import json, sys, tempfile, time, warnings
from pathlib import Path

import numpy as np
import torch

from kalm.bench import bench_texts, interleaved, machine_info, md_table, summarize, token_order
from kalm.bench_gemma import start_folder
from kalm.bidirectional import cpu_precision
from kalm.embedder import KaLMEmbedder, token_batches
from kalm.provenance import code_version

HERE, N, BATCH, LENGTH, TOKENS, REPEATS = Path(__file__).parent, 600, 64, 128, 1024, 2
warnings.simplefilter("ignore")
import onnxruntime as ort


class Pooled(torch.nn.Module):
    "The embedder's forward as one graph: the bidirectional stack, masked mean, L2 norm."
    def __init__(self, model): super().__init__(); self.m = model
    def forward(self, input_ids, attention_mask):
        h = self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        w = attention_mask.unsqueeze(-1).to(h.dtype)
        return torch.nn.functional.normalize((h * w).sum(1) / w.sum(1).clamp(min=1), dim=-1)


tmp = Path(tempfile.mkdtemp(prefix="kalm-onnx-"))
folder = start_folder("gemma3-270m", tmp / "start")
km = KaLMEmbedder.load(str(folder), device="cpu")
texts = bench_texts(N, seed=0)
tok = km.tokenizer
ids = tok(texts, truncation=True, max_length=LENGTH)["input_ids"]
lens = [len(x) for x in ids]
order = token_order(lens)
ex = tok(texts[:2], padding=True, return_tensors="pt")
t0 = time.time()
B, S = torch.export.Dim("batch"), torch.export.Dim("seq")
torch.onnx.export(Pooled(km.model).eval(), (ex["input_ids"], ex["attention_mask"]), str(tmp / "gemma.onnx"), dynamo=True,
                  input_names=["input_ids", "attention_mask"], output_names=["sentence_embedding"], external_data=True,
                  dynamic_shapes={"input_ids": {0: B, 1: S}, "attention_mask": {0: B, 1: S}})
export_s = time.time() - t0
so = ort.SessionOptions()
so.intra_op_num_threads, so.graph_optimization_level = torch.get_num_threads(), ort.GraphOptimizationLevel.ORT_ENABLE_ALL
sess = ort.InferenceSession(str(tmp / "gemma.onnx"), so, providers=["CPUExecutionProvider"])


def run_ort(batch_tokens=None):
    out = np.zeros((N, km.model.config.hidden_size), np.float32)
    for s, e in token_batches([lens[i] for i in order], BATCH, batch_tokens):
        idx = order[s:e]
        enc = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=LENGTH, return_tensors="np")
        out[idx] = sess.run(None, {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64)})[0]
    return out


def run_kalm(precision, batch_tokens=None):
    with cpu_precision(precision):
        return km.encode(texts, batch_size=BATCH, max_length=LENGTH, normalize=True, show_progress_bar=False, batch_tokens=batch_tokens)


ref32, o = run_kalm("fp32"), run_ort()
agree = dict(ort_vs_kalm_fp32_max_abs=float(np.abs(o - ref32).max()), ort_vs_kalm_fp32_min_cos=float((o * ref32).sum(1).min()))
b16 = run_kalm("bf16", TOKENS)
agree["kalm_bf16_vs_fp32_min_cos"] = float((b16 * ref32).sum(1).min())
if agree["ort_vs_kalm_fp32_min_cos"] < 0.9999: sys.exit(f"onnxruntime's embeddings are not kalm's: {agree}")
cases = {"onnxruntime fp32, 64 texts": lambda: run_ort(), "onnxruntime fp32, ≤ 1024 tokens": lambda: run_ort(TOKENS),
         "kalm fp32, 64 texts": lambda: run_kalm("fp32"), "kalm fp32, ≤ 1024 tokens": lambda: run_kalm("fp32", TOKENS),
         "kalm bf16, 64 texts": lambda: run_kalm("bf16"), "kalm bf16, ≤ 1024 tokens": lambda: run_kalm("bf16", TOKENS)}
times = interleaved(cases, repeats=REPEATS, warmup=1)
summ = {k: summarize(v, N) for k, v in times.items()}
best_ort = max(summ[k]["rate"] for k in summ if k.startswith("onnxruntime"))
rows = [dict(encoder=k, **{"sent/s": s["rate"], "median s": s["median_s"], "spread s": f"{s['min_s']}–{s['max_s']}",
                           "vs best onnxruntime": round(s["rate"] / best_ort, 2)}) for k, s in summ.items()]
info = machine_info()
res = dict(command="PYTHONPATH=/tmp/ort HF_HUB_OFFLINE=1 .venv/bin/python reports/benchmarks/onnx/onnx_gemma3.py", code=code_version(), machine=info,
           packages={p: __import__(p).__version__ for p in ("onnxruntime", "onnx", "onnxscript")}, export_s=round(export_s, 1),
           parameters=dict(texts=N, batch=BATCH, max_length=LENGTH, batch_tokens=TOKENS, repeats=REPEATS), agreement=agree, rows=rows, times=times)
(HERE / "onnx_gemma3.json").write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n")
md = ["# Gemma 3 270M encode on the CPU: kalm vs onnxruntime (probe)", "",
      f"Command: `{res['command']}` (the packages as the script's docstring installs them)  ",
      f"Code: kalm commit {res['code'].get('git_commit', '?')[:10]}{' (uncommitted changes)' if res['code'].get('git_dirty') else ''}; "
      f"onnxruntime {res['packages']['onnxruntime']}, onnx {res['packages']['onnx']}, onnxscript {res['packages']['onnxscript']} (beside the lock, not in it); "
      f"torch {torch.__version__}  ",
      f"Machine: {info.get('cpu')}, {info.get('cores')} cores, {info.get('torch_threads')} torch threads; "
      f"onnxruntime's CPU provider with {so.intra_op_num_threads} threads, all graph optimisations.",
      "", f"The untrained start model exported with `torch.onnx.export(dynamo=True)`, dynamic batch and length, in {res['export_s']} s. "
      f"Same work: onnxruntime vs kalm in float32, max |Δ| {agree['ort_vs_kalm_fp32_max_abs']:.1e}, min cosine {agree['ort_vs_kalm_fp32_min_cos']:.6f}; "
      f"kalm bf16 vs float32 min cosine {agree['kalm_bf16_vs_fp32_min_cos']:.5f}.",
      f"{N} texts (`bench_texts(600, seed=0)`), at most {LENGTH} tokens, kalm's batches on both sides (sorted by tokens; 64 texts, or also at most {TOKENS} padded tokens), "
      f"{REPEATS} interleaved timed rounds after a warm-up, medians.", "", md_table(rows), ""]
(HERE / "onnx_gemma3.md").write_text("\n".join(md))
print("\n".join(md))
