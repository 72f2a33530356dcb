"""A second, non-VS Code client: Neovim's built-in LSP client, headless, drives `sf lsp --stdio`.

Neovim encodes an empty Lua table as `[]`, so every parameterless request arrives with `params:
[]`; the standard parts (diagnostics, code actions, executeCommand) must work there too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import GIT_ENV
from stoneforge.service import Service

CLIENT = Path(__file__).parent / "editors" / "nvim_lsp_client.lua"
CONFLICTED = (
    "def greet():\n<<<<<<< HEAD\n    return 'hello'\n=======\n    return 'hi'\n>>>>>>> other\n"
)

pytestmark = pytest.mark.skipif(
    shutil.which("nvim") is None, reason="needs Neovim (scripts/setup --test installs it)"
)


@pytest.mark.timeout(240)
def test_neovim_drives_the_server(repo: Path, tmp_path: Path) -> None:
    Service.init(repo)[0].close()
    (repo / "greet.py").write_text(CONFLICTED)
    out = tmp_path / "report.json"
    env = {
        **os.environ,
        **GIT_ENV,
        "SF_CMD": json.dumps([sys.executable, "-m", "stoneforge", "lsp", "--stdio"]),
        "SF_ROOT": str(repo),
        "SF_CONFLICT": "greet.py",
        "SF_OUT": str(out),
        # Neovim keeps its state and logs here, not in the home directory.
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }
    subprocess.run(
        ["nvim", "--headless", "-u", "NONE", "-i", "NONE", "-c", f"luafile {CLIENT}"],
        cwd=repo,
        env=env,
        check=True,
        timeout=200,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )
    report = json.loads(out.read_text())
    print(json.dumps(report, indent=2))  # the test output shows what Neovim got
    assert report["errors"] == []
    requests = report["requests"]
    errors = {name: r["error"] for name, r in requests.items() if "error" in r}
    assert errors == {}
    assert requests["workspace"]["result"]["initialized"] is True
    assert requests["createTask"]["result"]["title"] == "From Neovim"
    assert requests["status"]["result"]["tasksByStatus"]["open"] == 1
    assert [t["title"] for t in requests["taskTree"]["result"]["unplanned"]] == ["From Neovim"]
    assert [t["title"] for t in requests["listTasks"]["result"]["tasks"]] == ["From Neovim"]
    assert requests["handoffs"]["result"] == {"handoffs": []}
    assert [t["title"] for t in requests["command"]["result"]["tasks"]] == ["From Neovim"]
    assert [(d["source"], d["lnum"]) for d in report["diagnostics"]] == [("stoneforge", 1)]
    assert "merge conflict: ours (HEAD) vs theirs (other)" in report["diagnostics"][0]["message"]
    assert {"Stoneforge: Keep ours", "Stoneforge: Keep theirs", "Stoneforge: Keep both"} <= set(
        report["codeActions"]
    )
    assert report["changed"] >= 1
