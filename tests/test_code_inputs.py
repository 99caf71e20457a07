"""Code inputs by construction: each rule's code inputs are the package files its entry
point imports (workflow/code_inputs.py, read with ast), and they cover every module that
Python actually loads when that entry point starts."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))
from code_inputs import package_files  # noqa: E402


def rule_blocks():
    """rule name -> its text, from every rules/*.smk file."""
    blocks = {}
    for smk in sorted((ROOT / "rules").glob("*.smk")):
        parts = re.split(r"^rule (\w+):\n", smk.read_text(), flags=re.M)
        blocks.update(dict(zip(parts[1::2], parts[2::2])))
    return blocks


def entry_point(text):
    """What a rule runs: its script file or the sidrec.cli module of its shell line."""
    script = re.search(r'script:\s*\n\s*"\.\./(workflow/scripts/\w+\.py)"', text)
    if script:
        return script.group(1)
    return re.search(r"(sidrec\.cli\.\w+)", text).group(1)


RULES = rule_blocks()


def test_there_are_rules_to_check():
    assert {"dataset", "embed", "quantize", "sid", "sft", "predict", "sasrec", "metrics"} <= set(RULES)


@pytest.mark.parametrize("rule", sorted(RULES))
def test_every_rule_takes_its_code_inputs_from_its_own_entry_point(rule):
    text = RULES[rule]
    declared = re.search(r'code=code\("([^"]+)"\)', text)
    assert declared, f"rule {rule} has no code=code(...) input"
    assert declared.group(1) == entry_point(text), f"rule {rule} lists the code of another entry point"


def loaded_modules(entry: str) -> set[str]:
    """Package files Python has loaded after importing the entry point (for a script:
    running its `from sidrec...` imports)."""
    if entry.endswith(".py"):
        tree = ast.parse((ROOT / entry).read_text())
        imports = [ast.unparse(n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))
                   and "sidrec" in ast.unparse(n)]
        code = "\n".join(imports)
    else:
        code = f"import {entry}"
    probe = code + "\nimport sys\nfor m in sys.modules.values():\n" \
                   "    f = getattr(m, '__file__', None) or ''\n    print(f)\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    package = (ROOT / "sidrec").resolve()
    return {str(Path(f).resolve().relative_to(ROOT)) for f in out.stdout.split()
            if f and Path(f).resolve().is_relative_to(package)}


@pytest.mark.parametrize("entry", sorted({entry_point(t) for t in RULES.values()}))
def test_static_code_inputs_cover_every_module_python_loads(entry):
    static = set(package_files(entry, ROOT))
    loaded = loaded_modules(entry)
    assert loaded, entry
    assert loaded <= static, f"{entry}: loaded but not code inputs: {sorted(loaded - static)}"


def test_lazy_relative_and_submodule_imports_are_followed(tmp_path):
    pkg = tmp_path / "sidrec"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .leaf import x\n")
    (pkg / "sub" / "leaf.py").write_text("x = 1\n")
    (pkg / "lazy.py").write_text("def f():\n    from .sub import leaf\n")
    (pkg / "other.py").write_text("")  # imported by nobody
    (pkg / "cli.py").write_text("from . import lazy\nimport os\n")
    assert package_files("sidrec.cli", tmp_path) == [
        "sidrec/__init__.py", "sidrec/cli.py", "sidrec/lazy.py",
        "sidrec/sub/__init__.py", "sidrec/sub/leaf.py"]
    script = tmp_path / "script.py"
    script.write_text("from sidrec.sub.leaf import x\n")
    assert package_files(script, tmp_path) == ["sidrec/__init__.py", "sidrec/sub/__init__.py", "sidrec/sub/leaf.py"]
    with pytest.raises(FileNotFoundError):
        package_files("sidrec.missing", tmp_path)
