"""The JSON-RPC stream on stdout belongs to the protocol alone: a stray write to stdout in the
server process (a print, Ray's forwarding of worker logs to the driver, a child process that
inherits fd 1) goes to stderr and never cuts into a message."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from conftest import SfRunner
from jsonrpc_stdio import StdioClient

pytestmark = pytest.mark.timeout(120)

#: `sf lsp --stdio` beside a thread that keeps writing to stdout the ways a library or a child
#: process would, while the client reads replies.
NOISY_SERVER = """
import os, subprocess, sys, threading, time
from pathlib import Path
from stoneforge.lsp.server import main

def noise():
    while not Path(sys.argv[1]).exists():  # from the moment the client is talking to it
        time.sleep(0.01)
    while True:
        print("stray print " * 500, flush=True)
        os.write(1, b"stray write to fd 1 " * 500)
        subprocess.run(["echo", "stray child"])
        time.sleep(0.005)

threading.Thread(target=noise, daemon=True).start()
main()
"""


def test_stray_stdout_writes_never_reach_the_protocol_stream(
    initialised: Path, sf: SfRunner
) -> None:
    titles = [" ".join([f"A task of a long title, number {n}"] * 20) for n in range(3)]
    for title in titles:
        sf("task", "create", "--title", title)
    talking = initialised / ".stoneforge" / "client-talking"
    client = StdioClient(
        [sys.executable, "-c", NOISY_SERVER, str(talking)], initialised, dict(os.environ)
    )
    try:
        client.initialize(initialised)
        talking.touch()
        for _ in range(30):  # each reply is read whole and parsed: a stray byte breaks it
            tree = client.request("stoneforge/taskTree", {})["result"]
            assert sorted(row["title"] for row in tree["unplanned"]) == sorted(titles)
            assert client.request("stoneforge/status", {})["result"]["tasksByStatus"]["open"] == 3
    finally:
        client.proc.kill()
        client.proc.wait()
