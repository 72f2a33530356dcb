"""Offline demo support: a scripted local model endpoint that speaks the Messages API.

`sf demo` and the test suite both run the real Claude Code CLI against
:class:`~stoneforge.demo.fake_model.FakeModel`, so the agent loop, the tools and the
git work are real while the "model" follows a script.
"""

from stoneforge.demo.fake_model import FakeModel
from stoneforge.demo.recording import RecordedRequest
from stoneforge.demo.script import Script, Step, ToolCall, Usage

__all__ = ["FakeModel", "RecordedRequest", "Script", "Step", "ToolCall", "Usage"]
