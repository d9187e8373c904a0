import nbformat as nbf

REPO = "animatelcm-runnable/animatelcm-runnable"

def header(name, title, learn, prereq, runtime):
    badge = f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/{REPO}/blob/main/notebooks/{name})"
    return nbf.v4.new_markdown_cell(
        f"# {title}\n\n{badge}\n\n**What you will learn**\n\n" + "\n".join(f"- {l}" for l in learn)
        + f"\n\n**Prerequisites:** {prereq}\n\n**Run time:** {runtime}"
    )

INSTALL = '''# Colab: install the course's helpers only where they are missing.
import importlib.util, subprocess, sys
if importlib.util.find_spec("animatelcm_helpers") is None:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q",
                           "git+https://github.com/animatelcm-runnable/animatelcm-runnable"])'''

PARAMS = '''WORLD = None  # "toy" or "full"; None picks automatically (full only with a GPU and the Hub)
TEST_MODE = None  # True shortens training loops (CI sets ANIMATELCM_TEST_MODE=1)'''

def start():
    p = nbf.v4.new_code_cell(PARAMS)
    p.metadata["tags"] = ["parameters"]
    return [nbf.v4.new_code_cell(INSTALL), p]

def md(s): return nbf.v4.new_markdown_cell(s)
def code(s): return nbf.v4.new_code_cell(s)

def write(cells, path):
    nb = nbf.v4.new_notebook()
    nb.cells = cells
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    nbf.write(nb, path)
