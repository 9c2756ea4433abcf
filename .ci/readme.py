"""README.md is generated from nbs/index.ipynb (quarto, which nbdev's own `nbdev_readme` needs, cannot be
installed on our machines). Markdown cells are copied; code cells are shown as code blocks with their stored
outputs; cells marked `#| hide` are left out. `python .ci/readme.py --write` (`make readme`) regenerates the README;
tests/test_repo.py checks that it is in sync."""
import sys
from pathlib import Path
from fastcore.nbio import read_nb

ROOT = Path(__file__).resolve().parents[1]
HEADER = "<!-- Generated from nbs/index.ipynb by `make readme` (.ci/readme.py); edit the notebook, not this file. -->\n\n"

def _src(c): return ''.join(c.source) if isinstance(c.source, list) else c.source

def render_readme(nb_path=ROOT/'nbs'/'index.ipynb') -> str:
    "Markdown for README.md from the index notebook."
    out = []
    for c in read_nb(nb_path).cells:
        src = _src(c).strip('\n')
        if c.cell_type == 'markdown': out.append(src)
        elif c.cell_type == 'code':
            lines = src.splitlines()
            if any(l.strip().replace(' ', '') in ('#|hide', '#|hide:true') for l in lines): continue
            code = '\n'.join(l for l in lines if not l.lstrip().startswith('#|')).strip('\n')
            if code: out.append(f"```python\n{code}\n```")
            for o in c.get('outputs', []):
                txt = ''.join(o.get('text', '')) or ''.join(o.get('data', {}).get('text/plain', ''))
                if txt.strip(): out.append(f"```\n{txt.rstrip()}\n```")
    return HEADER + '\n\n'.join(out).rstrip() + '\n'

if __name__ == '__main__':
    md = render_readme()
    if '--write' in sys.argv:
        (ROOT/'README.md').write_text(md, encoding='utf-8'); print('wrote README.md')
    else: sys.stdout.write(md)
