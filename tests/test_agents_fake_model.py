"""The scripted endpoint on its own, over HTTP (no CLI): wire format and scripting."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
from typing import Any

import pytest

from stoneforge.demo import FakeModel, Step, ToolCall, Usage

pytest_plugins = ["fake_model_fixtures"]
pytestmark = pytest.mark.timeout(30)

KEY = "sk-ant-test-key-for-endpoint-0000"


def main_body(
    cwd: str = "/work/x",
    *,
    stream: bool = True,
    tools: list[str] | None = None,
    first: str = "hello",
) -> dict[str, Any]:
    return {
        "model": "claude-test",
        "stream": stream,
        "max_tokens": 1000,
        "system": [{"type": "text", "text": "You are an agent."}],
        "tools": [{"name": n, "input_schema": {}} for n in (tools or ["Bash", "ToolSearch"])],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": first}]},
            {"role": "system", "content": f" - Primary working directory: {cwd}\n - Platform: x"},
        ],
    }


def post(
    model: FakeModel,
    body: dict[str, Any],
    path: str = "/v1/messages?beta=true",
    timeout: float = 10,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", model.port, timeout=timeout)
    conn.request("POST", path, json.dumps(body), {"x-api-key": KEY, "content-type": "json"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, dict(resp.getheaders()), data


def sse_events(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for chunk in data.decode().split("\n\n"):
        if not chunk.strip():
            continue
        lines = dict(line.split(": ", 1) for line in chunk.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_streams_text_and_tool_use_like_the_messages_api(fake_model: FakeModel) -> None:
    step = Step(
        text="Writing it.",
        tool_calls=(ToolCall("Bash", {"command": "echo hi"}),),
        usage=Usage(
            input_tokens=11,
            output_tokens=22,
            cache_read_input_tokens=33,
            cache_creation_input_tokens=44,
        ),
    )
    fake_model.add_script([step], cwd="/work/x")
    status, headers, data = post(fake_model, main_body())
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    events = sse_events(data)
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    start = events[0][1]["message"]
    assert start["usage"]["input_tokens"] == 11 and start["usage"]["cache_read_input_tokens"] == 33
    blocks = [e for n, e in events if n == "content_block_start"]
    assert [b["content_block"]["type"] for b in blocks] == ["text", "tool_use"]
    partial = "".join(
        e["delta"]["partial_json"]
        for n, e in events
        if n == "content_block_delta" and e["delta"]["type"] == "input_json_delta"
    )
    assert json.loads(partial) == {"command": "echo hi"}
    text = "".join(
        e["delta"]["text"]
        for n, e in events
        if n == "content_block_delta" and e["delta"]["type"] == "text_delta"
    )
    assert text == "Writing it."
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "tool_use" and delta["usage"]["output_tokens"] == 22
    record = fake_model.main_requests()[0]
    assert record.script == "/work/x" and record.step_index == 0
    assert record.api_key_fingerprint is not None and KEY not in json.dumps(record.headers)


def test_non_streaming_json_and_finished_script_default(fake_model: FakeModel) -> None:
    fake_model.add_script([Step.say("first")], cwd="/work/x", then=Step.say("after"))
    bodies = [json.loads(post(fake_model, main_body(stream=False))[2]) for _ in range(2)]
    assert [b["content"][0]["text"] for b in bodies] == ["first", "after"]
    assert bodies[0]["stop_reason"] == "end_turn" and bodies[0]["type"] == "message"


def test_side_requests_and_unmatched_sessions_get_the_default(fake_model: FakeModel) -> None:
    script = fake_model.add_script([Step.say("scripted")], cwd="/work/x")
    side = {"model": "haiku", "max_tokens": 1, "messages": [{"role": "user", "content": "quota"}]}
    status, _, data = post(fake_model, {**side, "stream": False})
    assert status == 200 and json.loads(data)["content"][0]["text"] == "OK."
    post(fake_model, main_body(cwd="/elsewhere", stream=False))
    assert script.cursor == 0  # neither moved the script
    kinds = [(r.kind, r.script) for r in fake_model.requests]
    assert kinds == [("side", None), ("main", None)]


def test_marker_routes_before_cwd(fake_model: FakeModel) -> None:
    fake_model.add_script([Step.say("by cwd")], cwd="/work/x")
    fake_model.add_script([Step.say("by marker")], marker="TASK-42")
    body = main_body(stream=False, first="Please do TASK-42 now")
    assert json.loads(post(fake_model, body)[2])["content"][0]["text"] == "by marker"


def test_error_status_has_an_api_error_body(fake_model: FakeModel) -> None:
    fake_model.add_script([Step.error(529), Step.error(500, "boom")], cwd="/work/x")
    status, headers, data = post(fake_model, main_body())
    assert status == 529
    assert json.loads(data)["error"]["type"] == "overloaded_error"
    status, _, data = post(fake_model, main_body())
    assert status == 500 and json.loads(data)["error"] == {"type": "api_error", "message": "boom"}


def test_mcp_tool_is_loaded_with_tool_search_first(fake_model: FakeModel) -> None:
    fake_model.add_script([Step.mcp("handoff", done="d")], cwd="/work/x")
    first = json.loads(post(fake_model, main_body(stream=False))[2])
    assert first["content"][0]["name"] == "ToolSearch"
    assert first["content"][0]["input"] == {"query": "select:mcp__stoneforge__handoff"}
    loaded = main_body(stream=False, tools=["Bash", "ToolSearch", "mcp__stoneforge__handoff"])
    second = json.loads(post(fake_model, loaded)[2])
    assert second["content"][0]["name"] == "mcp__stoneforge__handoff"
    assert [r.auto for r in fake_model.main_requests()] == ["tool_search", None]


def test_mcp_tool_offered_directly_needs_no_search(fake_model: FakeModel) -> None:
    fake_model.add_script([Step.mcp("complete_task", summary="s")], cwd="/work/x")
    body = main_body(stream=False, tools=["Bash", "mcp__stoneforge__complete_task"])
    assert json.loads(post(fake_model, body)[2])["content"][0]["input"] == {"summary": "s"}


def test_step_factory_sees_the_request(fake_model: FakeModel) -> None:
    fake_model.add_script([lambda req: Step.say(f"cwd={req.cwd}")], cwd="/work/x")
    assert json.loads(post(fake_model, main_body(stream=False))[2])["content"][0]["text"] == (
        "cwd=/work/x"
    )


def test_hang_never_answers_and_stop_releases_it(fake_model: FakeModel) -> None:
    fake_model.add_script([Step.hang_forever()], cwd="/work/x")
    with pytest.raises(socket.timeout):
        post(fake_model, main_body(), timeout=0.5)


def test_stall_mid_stream_sends_the_start_only(fake_model: FakeModel) -> None:
    fake_model.add_script([Step(text="partial", stall_mid_stream=True)], cwd="/work/x")
    # A loaded machine may take a while to answer at all; only the stall itself is timed.
    conn = http.client.HTTPConnection("127.0.0.1", fake_model.port, timeout=30)
    conn.request("POST", "/v1/messages", json.dumps(main_body()))
    resp = conn.getresponse()
    assert resp.status == 200
    assert b"message_start" in resp.read1(65536)
    assert conn.sock is not None
    conn.sock.settimeout(0.5)
    with pytest.raises((socket.timeout, http.client.IncompleteRead)):
        resp.read()
    conn.close()


def test_count_tokens_and_unknown_paths(fake_model: FakeModel, caplog: Any) -> None:
    status, _, data = post(fake_model, main_body(), path="/v1/messages/count_tokens?beta=true")
    assert status == 200 and json.loads(data)["input_tokens"] > 0
    with caplog.at_level(logging.WARNING, logger="stoneforge.demo.fake_model"):
        status, _, data = post(fake_model, {}, path="/v1/nope")
    assert status == 404 and json.loads(data)["type"] == "error"
    assert "/v1/nope" in caplog.text
    assert [r.path for r in fake_model.unknown_requests()] == ["/v1/nope"]


def test_records_concurrency(fake_model: FakeModel) -> None:
    fake_model.add_script([Step(text="a", delay_s=0.5)], cwd="/a")
    fake_model.add_script([Step(text="b", delay_s=0.5)], cwd="/b")
    threads = [
        threading.Thread(target=post, args=(fake_model, main_body(cwd=c))) for c in ("/a", "/b")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fake_model.max_concurrency == 2
    assert {r.script for r in fake_model.main_requests()} == {"/a", "/b"}
