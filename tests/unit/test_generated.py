"""The committed completions/ and docs/cli.md match what tests/gen_artifacts.py generates.

The generator is loaded by path (tests/ is not a package) and builds from the installed
``weave_cli``; the repo root is found from this file, since ``./run test`` runs from a temp dir.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
GEN_PATH = REPO / "tests" / "gen_artifacts.py"
BASH = REPO / "completions" / "weave.bash"


def _load_gen() -> ModuleType:
    name = "weave_gen_artifacts"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, GEN_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


@pytest.fixture(scope="module")
def generated() -> dict[str, str]:
    return _load_gen().generate()  # type: ignore[no-any-return]


FILES = ["completions/weave.bash", "completions/weave.zsh", "completions/weave.fish", "docs/cli.md"]


def test_generator_covers_exactly_these_files(generated: dict[str, str]) -> None:
    assert sorted(generated) == sorted(FILES)


@pytest.mark.parametrize("rel", FILES)
def test_committed_file_is_current(generated: dict[str, str], rel: str) -> None:
    path = REPO / rel
    assert path.exists(), f"{rel} is missing: run ./run gen"
    assert path.read_text(encoding="utf-8") == generated[rel], (
        f"{rel} is stale (the CLI changed since it was generated): run ./run gen"
    )


def test_generate_is_deterministic(generated: dict[str, str]) -> None:
    assert _load_gen().generate() == generated


def test_docs_list_every_command(generated: dict[str, str]) -> None:
    doc = generated["docs/cli.md"]
    assert doc.startswith("# weave command reference\n")
    for cmd in ("weave launch", "weave status", "weave lab", "weave lab partition"):
        assert f"## `{cmd}`" in doc
    assert "--heartbeat-interval" not in doc  # hidden options stay out


def _syntax_check(shell: str, path: Path) -> None:
    exe = shutil.which(shell)
    if exe is None:
        pytest.skip(f"{shell} is not installed")
    proc = subprocess.run([exe, "-n", str(path)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr


def test_bash_syntax() -> None:
    _syntax_check("bash", BASH)


def test_zsh_syntax() -> None:
    _syntax_check("zsh", REPO / "completions" / "weave.zsh")


def test_fish_syntax() -> None:
    _syntax_check("fish", REPO / "completions" / "weave.fish")


def _bash_complete(*words: str) -> list[str]:
    """COMPREPLY after sourcing the committed script with COMP_WORDS=words (last is current)."""
    script = (
        'src=$1; shift; source "$src"; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); '
        '_weave; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    proc = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", script, "_", str(BASH), *words],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    return sorted(line for line in proc.stdout.splitlines() if line)


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (("weave", "la"), ["lab", "launch"]),
        (("weave", "lab", "pa"), ["partition"]),
        (("weave", "launch", "--no-"), ["--no-discovery", "--no-fastdp", "--no-restart"]),
        (("weave", "status", ""), ["connections", "ipam", "peers", "targets"]),
        (("weave", "lab", "status", "--j"), ["--json"]),
        (("weave", "report", "-"), ["--format", "--help", "-f"]),
        (("weave", "launch", "--name", "x", "--no-r"), ["--no-restart"]),
        (("weave", "launch", "--name", ""), []),
        (("weave", "lab", "exec", "h1", "--", "st"), []),
    ],
)
def test_bash_completion(words: tuple[str, ...], expected: list[str]) -> None:
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    assert _bash_complete(*words) == sorted(expected)
