# Run on the GPU machine from the repository root (offline; datasets/transformers/fastcore wheels on PYTHONPATH): python3 reports/benchmarks/gpu_run.py
# writes $OUT/gpu_run.json, copied to reports/mini/gpu-h100.json and reports/benchmarks/gpu-h100-qwen2-0.5b-train.json
# GPU checks for issues 7 and 8: bf16 matmul peak, qwen2-0.5b (random init) training throughput + MFU at seq 512,
# the mini recipe's stages (without the MiniLM-dependent distillation: no MiniLM weights on the device) with wall times.
import json, os, sys, time, gzip, random, torch
out = os.environ.get('OUT', '/tmp/out'); res = {'device': torch.cuda.get_device_name(0), 'torch': torch.__version__}
def save(): json.dump(res, open(f'{out}/gpu_run.json', 'w'), indent=1)
# 1. bf16 matmul peak
a = torch.randn(8192, 8192, device='cuda', dtype=torch.bfloat16); b = torch.randn_like(a)
for _ in range(3): a @ b
torch.cuda.synchronize(); t = time.time()
for _ in range(20): a @ b
torch.cuda.synchronize(); dt = (time.time() - t)/20
res['bf16_matmul_tflops'] = round(2*8192**3/dt/1e12, 1); print(res, flush=True); save(); del a, b
# 2. qwen2-0.5b training throughput at seq 512 through kalm's trainer
from kalm.data_cards import save_rows
from kalm.stage import StageConfig
from kalm.trainer import train_stage, read_metrics
from kalm.embedder import KaLMEmbedder
words = [l.split('"pos": "')[1].split('"')[0] for l in gzip.open('data_cards/mini/corpus/wn-term-gloss.jsonl.gz', 'rt')][:20000]
rng = random.Random(0)
def long_text(): return ' '.join(rng.choice(words) for _ in range(160))
rows = [dict(query=long_text(), pos=long_text(), neg=[], instruction='', task_type='retrieval', category='synthetic') for _ in range(64*40)]
save_rows(rows, '/tmp/long.jsonl.gz')
emb = KaLMEmbedder.from_preset('qwen2-0.5b', device='cpu')
n_all = sum(p.numel() for p in emb.parameters()); n_emb = emb.model.get_input_embeddings().weight.numel(); del emb
tok_len = None
for attn in ['sdpa', 'flash_attention_2']:
    for bs, ckpt in [(64, False), (64, True)]:
        name = f'q05-{attn}-bs{bs}-ckpt{int(ckpt)}'
        try:
            t = time.time()
            cfg = StageConfig(name=name, kind='pretrain', model='qwen2-0.5b', data='/tmp/long.jsonl.gz', batch_size=bs, query_max_length=512, doc_max_length=512,
                              lr=1e-5, steps=25, precision='bf16', attn_implementation=attn, gradient_checkpointing=ckpt, device='cuda')
            torch.cuda.reset_peak_memory_stats()
            train_stage(cfg, f'/tmp/runs/{name}', progress=False)
            m = read_metrics(f'/tmp/runs/{name}')[5:]
            pps = sorted(r['pairs_per_s'] for r in m)[len(m)//2]
            tps = pps*2*512
            flops_tok = 6*(n_all - n_emb) + 6*2*24*512*896  # dense + attention (QK^T and AV, fwd+bwd)
            res[name] = dict(pairs_per_s=round(pps, 1), tokens_per_s=round(tps), mfu=round(tps*flops_tok/(res['bf16_matmul_tflops']*1e12), 3),
                             peak_mem_gib=round(torch.cuda.max_memory_allocated()/2**30, 1), wall_s=round(time.time()-t, 1))
        except Exception as e:
            res[name] = dict(error=f'{type(e).__name__}: {str(e)[:300]}')
        print(name, res[name], flush=True); save()
res['params'] = dict(all=n_all, embedding=n_emb)
# 3. the mini recipe on the GPU (distillation left out), per stage
from kalm.pipeline import load_preset
from kalm.reports import stage_summaries
from kalm.soup import run_recipe
P = load_preset('mini', {'recipe.distill': None, **json.loads(os.environ.get('MINI_OV', '{}'))})
t = time.time(); run_recipe(P.recipe_config(), '/tmp/mini/recipe', progress=False)
res['mini_recipe_no_distill'] = dict(wall_s=round(time.time()-t, 1), stages=stage_summaries('/tmp/mini/recipe'),
                                     mine_s=json.load(open('/tmp/mini/recipe/mine/mine_stats.json'))['seconds'])
print(res['mini_recipe_no_distill'], flush=True); save()
