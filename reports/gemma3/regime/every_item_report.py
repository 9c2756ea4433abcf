# The gemma3 final model of the replay regime against its pre-trained stage (and against the final model of the regime
# before it) on every item of a suite (kalm.paired_ci), with a per-task table.
# usage: python reports/gemma3/regime/every_item_report.py SUITE NEW_FINAL.jsonl.gz PRETRAIN.jsonl.gz OLD_FINAL.jsonl.gz OUT.md "<commands>" "<made where and when>"
import sys
from kalm.core import atomic_write
from kalm.paired_ci import family_level, load_items, mtk, mtk_se, paired_difference
from kalm.provenance import code_version

suite, new_f, pre_f, old_f, out, commands, made = sys.argv[1:8]
new, pre, old = load_items(new_f), load_items(pre_f), load_items(old_f)
level = family_level(0.95, 2)
rows = [("final (replay regime) − its pre-trained stage", paired_difference(new, pre, level=level, n_boot=1000, seed=0)),
        ("final (replay regime) − final before it (no replay, 64 held-out rows)", paired_difference(new, old, level=level, n_boot=1000, seed=0))]
md = [f"# gemma3, replay regime: the final model on every item of the {suite} suite", "",
      f"MTK on all {sum(x.n for x in new.values()):,} items: final (replay regime) **{mtk(new):.2f}** ± {mtk_se(new):.2f}, "
      f"pre-trained stage {mtk(pre):.2f} ± {mtk_se(pre):.2f}, final before the regime {mtk(old):.2f} ± {mtk_se(old):.2f} "
      "(±: item standard error). Δ in MTK points, paired percentile bootstrap over items (1,000 replicates), both rows together at 95 % "
      f"(each at {level:.3f}); negligible: inside ±0.5 (`kalm.paired_ci`).", "",
      "| comparison | Δ MTK | interval | paired SE | verdict |", "|---|---|---|---|---|",
      *[f"| {n} | {d['diff']:+.2f} | [{d['lo']:+.2f}, {d['hi']:+.2f}] | {d['se']:.2f} | {d['verdict']} |" for n, d in rows], "",
      "| task | final (replay) | pre-trained | Δ | final before | Δ |", "|---|---|---|---|---|---|",
      *[f"| {t} | {100 * new[t].score():.2f} | {100 * pre[t].score():.2f} | {100 * (new[t].score() - pre[t].score()):+.2f} | "
        f"{100 * old[t].score():.2f} | {100 * (new[t].score() - old[t].score()):+.2f} |" for t in sorted(new)], "",
      "## How it was made", "", made, "", "```bash", commands, "```", "",
      f"This page: `python reports/gemma3/regime/every_item_report.py {' '.join(sys.argv[1:6])} \"<commands>\" \"<made>\"` at "
      f"{code_version()['git_commit'][:7]}.", ""]
atomic_write(out, "\n".join(md))
print("\n".join(md))
