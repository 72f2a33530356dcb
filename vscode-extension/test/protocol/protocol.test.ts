// Layer 2: every request the extension sends, against the real `sf lsp --stdio`, checking the
// shapes the extension relies on, and feeding the real payloads through the view models.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, test, type TestContext } from "node:test";
import { pathToFileURL } from "node:url";
import { ResponseError } from "vscode-jsonrpc/node";
import { Methods } from "../../src/protocol";
import type { ChangedParams, MergeRequest, Task } from "../../src/protocol";
import { agentsTree } from "../../src/model/agentsModel";
import { checksMarkdown } from "../../src/model/checksDoc";
import { forecastMarkdown } from "../../src/model/forecastDoc";
import { parseCommandUri } from "../../src/model/docLinks";
import { handoffMarkdown } from "../../src/model/handoffDoc";
import { mergeQueueTree } from "../../src/model/mergeQueueModel";
import { reviewThreads } from "../../src/model/reviewThreads";
import { statusBarView } from "../../src/model/statusBarModel";
import { Board } from "../../src/model/board";
import { tasksTree } from "../../src/model/tasksModel";
import { LspSession } from "../support/lspConnection";
import { stopTree } from "../support/processes";
import { type Seeded, git, isolatedEnv, removeTempDirs, seedWorkspace, sfPath, tempDir, venvPython } from "../support/workspace";

const INVALID_PARAMS = -32602;
const METHOD_NOT_FOUND = -32601;

async function rejection(p: Promise<unknown>): Promise<ResponseError<unknown>> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof ResponseError, `expected a JSON-RPC error, got ${String(e)}`);
    return e;
  }
  assert.fail("expected the request to be refused");
}

/** Runs `call`; when the server does not implement the method yet, the test is skipped saying so. */
async function implemented<T>(t: TestContext, method: string, call: () => Promise<T>): Promise<T | undefined> {
  try {
    return await call();
  } catch (e) {
    if (e instanceof ResponseError && e.code === METHOD_NOT_FOUND) {
      t.skip(`the server does not implement ${method} yet (MethodNotFound)`);
      return undefined;
    }
    throw e;
  }
}

function assertTaskShape(t: Task): void {
  for (const key of ["id", "title", "status", "priority", "effectivePriority", "blocked", "createdAt"] as const) {
    assert.ok(key in t, `task lacks ${key}`);
  }
  assert.ok(Array.isArray(t.dependsOn) && Array.isArray(t.sessions) && Array.isArray(t.handoffs));
  assert.ok(t.mergeRequest === null || typeof t.mergeRequest.status === "string");
}

function assertMrShape(mr: MergeRequest): void {
  for (const key of ["id", "taskId", "status", "branch", "candidateCommit", "mergedCommit", "summary", "reason", "createdAt"] as const) {
    assert.ok(key in mr, `merge request lacks ${key}`);
  }
  assert.ok(Array.isArray(mr.checks));
}

// Every suite stops its server in a finally/after; the repositories go once all have run.
after(() => removeTempDirs());

describe("protocol: one seeded repository", () => {
  let ws: Seeded;
  let lsp: LspSession;

  before(async () => {
    ws = seedWorkspace(path.join(tempDir("sf-proto-"), "repo"), { forecastConflict: true });
    lsp = await LspSession.start(sfPath(), ws.root);
  });
  after(async () => {
    await lsp?.close();
  });

  test("initialize: the server offers the commands, diagnostics sync and code actions", () => {
    const caps = lsp.initializeResult!.capabilities as {
      executeCommandProvider?: { commands: string[] };
      codeActionProvider?: unknown;
      textDocumentSync?: unknown;
    };
    assert.ok(caps.codeActionProvider, "code actions");
    assert.ok(caps.textDocumentSync, "document sync");
    const commands = caps.executeCommandProvider?.commands ?? [];
    for (const m of ["createTask", "taskTree", "status", "mergeDiff"]) assert.ok(commands.includes(`stoneforge.${m}`), m);
  });

  test("taskTree: the lean board and its version; a task's details on demand; the Tasks view renders both", async () => {
    const tree = await lsp.api.taskTree();
    assert.equal(typeof tree.handoffAtTokens, "number");
    assert.equal(typeof tree.version, "number");
    assert.equal(tree.plans.length, 1);
    const plan = tree.plans[0]!;
    assert.equal(plan.status, "active");
    const lean = plan.tasks.find((t) => t.id === ws.taskId)!;
    assert.ok(!("sessions" in lean) && !("handoffs" in lean), "a lean row carries no details");
    assert.equal(lean.sessionCount, 3); // two of the worker, one of the steward's review
    assert.equal(lean.handoffCount, 1);
    assert.equal(lean.mergeRequest?.status, "awaiting_approval");

    // The rows render from the lean board; a task's children wait until it is expanded.
    const board = new Board();
    board.load(tree);
    const [row1, row2] = tasksTree(board.taskTree())[0]!.children;
    assert.equal(row1!.lazy, true);
    assert.deepEqual(row1!.children, []);
    const details = await lsp.api.task(ws.taskId);
    assertTaskShape(details);
    assert.equal(details.sessions.length, 3);
    assert.equal(details.handoffs[0]!.id, ws.handoffId);
    assert.deepEqual(details.row, lean);
    // The task's cost is the server's roll-up of its sessions (the seed's worker sessions and its review session).
    const spent = details.sessions.reduce((sum, s) => sum + s.costUsd, 0);
    assert.equal(details.cost!.sessions, 3);
    assert.ok(Math.abs(details.cost!.costUsd - spent) < 1e-9, `${details.cost!.costUsd} != ${spent}`);
    assert.ok(Math.abs((lean.costUsd ?? 0) - spent) < 1e-9, "the lean row's cost is the same roll-up");
    assert.equal(row1!.description, `${ws.taskId} · P2 · review · MR awaiting approval · $${spent.toFixed(2)}`);
    assert.equal(row2!.description, `${ws.blockedTaskId} · P3 · blocked by ${ws.taskId}`);
    board.setDetails(details);
    const expanded = tasksTree(board.taskTree())[0]!.children[0]!;
    assert.deepEqual(expanded.children.map((c) => c.id.split(":")[0]), ["task-mr", "session", "handoff", "session", "session"]);
    // Its merge request on top: state, check result and the review's verdict, with the MR's menus.
    const mrRow = expanded.children[0]!;
    assert.equal(mrRow.label, `merge request ${ws.mrId}`);
    assert.equal(mrRow.description, "awaiting approval · 1/1 check passed · review approved");
    assert.match(mrRow.contextValue, /\bmr\b.*\bcan-approve\b/);
    assert.match(expanded.children[1]!.description!, /^handed off · 141\.2k tokens \(101%\) · \$0\.42$/);
  });

  test("stoneforge/changed carries the changed lean rows from version to version; the board applies them", async () => {
    const board = new Board();
    board.load(await lsp.api.taskTree());
    const changed = lsp.waitFor("stoneforge/changed", (p: ChangedParams) => (p.tasks ?? []).some((t) => t.title === "Delta me"));
    const task = await lsp.api.createTask({ title: "Delta me", priority: 5 });
    const note = (await changed).params as ChangedParams;
    assert.equal(typeof note.version, "number");
    assert.ok(note.previousVersion !== undefined && note.previousVersion !== null && note.previousVersion <= board.version!);
    assert.equal(board.apply(note), "applied");
    assert.equal(board.lean(task.id)?.title, "Delta me");
    // The whole tree read now says the same.
    const fresh = new Board();
    fresh.load(await lsp.api.taskTree());
    assert.deepEqual(fresh.lean(task.id), board.lean(task.id));
    await lsp.api.cancelTask(task.id);
  });

  test("createTask: returns the task, and stoneforge/changed names it", async () => {
    const changed = lsp.waitFor("stoneforge/changed", (p: ChangedParams) => p.changes.some((c) => c.entity === "task"));
    const task = await lsp.api.createTask({ title: "Write docs", priority: 4, dependsOn: [ws.taskId] });
    assertTaskShape(task);
    assert.equal(task.title, "Write docs");
    assert.equal(task.priority, 4);
    assert.deepEqual(task.dependsOn, [ws.taskId]);
    assert.equal(task.blocked, true);
    const note = (await changed).params as ChangedParams;
    assert.equal(typeof note.lastEventId, "number");
    assert.ok(note.changes.some((c) => c.kind === "task.created" && c.id === task.id), JSON.stringify(note));
  });

  test("createTask: a bad priority is refused with a message naming the field", async () => {
    const err = await rejection(lsp.api.createTask({ title: "x", priority: 9 }));
    assert.equal(err.code, INVALID_PARAMS);
    assert.match(err.message, /priority/);
  });

  test("createPlan (draft and active) and activatePlan", async () => {
    const draft = await lsp.api.createPlan({ title: "Later" });
    assert.equal(draft.status, "draft");
    assert.deepEqual(Object.keys(draft).sort(), ["cost", "createdAt", "goal", "id", "status", "taskIds", "title"]);
    assert.deepEqual(draft.cost, { sessions: 0, inputTokens: 0, outputTokens: 0, tokens: 0, costUsd: 0 });
    const active = await lsp.api.activatePlan(draft.id);
    assert.equal(active.status, "active");
    const now = await lsp.api.createPlan({ title: "Now", activate: true });
    assert.equal(now.status, "active");
  });

  test("createPlan with a goal runs a director; with no model reachable it is refused, saying why", async () => {
    const before = (await lsp.api.taskTree()).plans.length;
    const err = await rejection(lsp.api.createPlan({ title: "Parse products", goal: "Teach calc to parse a * b" }));
    assert.match(err.message, /director/);
    assert.equal((await lsp.api.taskTree()).plans.length, before, "no plan was created");
  });

  test("listTasks: all, by plan and by status", async () => {
    const all = await lsp.api.listTasks();
    assert.ok(all.length >= 2);
    all.forEach(assertTaskShape);
    assert.deepEqual((await lsp.api.listTasks({ planId: ws.planId })).map((t) => t.id), [ws.taskId, ws.blockedTaskId, ws.rivalTaskId]);
    assert.deepEqual((await lsp.api.listTasks({ status: "review" })).map((t) => t.id), [ws.taskId, ws.rivalTaskId]);
  });

  test("cancelTask and retryTask", async () => {
    const task = await lsp.api.createTask({ title: "Throwaway" });
    assert.equal((await lsp.api.cancelTask(task.id)).status, "cancelled");
    const retried = await lsp.api.retryTask(task.id);
    assert.equal(retried.status, "open");
    await lsp.api.cancelTask(task.id);
  });

  test("unknown ids are refused by name and the server keeps running", async () => {
    const err = await rejection(lsp.api.cancelTask("t999"));
    assert.equal(err.code, INVALID_PARAMS);
    assert.match(err.message, /t999/);
    assert.ok((await lsp.api.listTasks()).length > 0);
  });

  test("handoffs: all and per task; the handoff document renders from it", async () => {
    const mine = await lsp.api.handoffs(ws.taskId);
    assert.equal(mine.length, 1);
    const h = mine[0]!;
    assert.deepEqual(h.filesTouched, ["calc.py", "test_calc.py"]);
    const md = handoffMarkdown(h, { id: ws.taskId, title: "Add a parser", branch: ws.branch });
    assert.match(md, /## Next step\n\nStrip whitespace/);
    assert.equal((await lsp.api.handoffs()).length, 1);
  });

  test("commitDiff: the handoff's commit link opens what that commit changed; a bad id is refused", async () => {
    const [h] = await lsp.api.handoffs(ws.taskId);
    const md = handoffMarkdown(h!, { id: ws.taskId, title: "Add a parser", branch: ws.branch });
    const link = /\]\((command:stoneforge\.ui\.showCommit\?[^ )]+)/.exec(md);
    const [sha] = parseCommandUri(link![1]!)!.args as [string];
    const diff = await lsp.api.commitDiff(sha);
    assert.equal(diff.commit, git(ws.root, "rev-parse", ws.branch));
    assert.equal(diff.subject, "calc: parse a + b");
    assert.equal(diff.base, git(ws.root, "rev-parse", "main"));
    assert.deepEqual(diff.files.map((f) => [f.path, f.status]), [["calc.py", "M"], ["test_calc.py", "A"]]);
    const bad = await rejection(lsp.api.commitDiff("0000000000000000000000000000000000000bad"));
    assert.equal(bad.code, INVALID_PARAMS);
    assert.match(bad.message, /no commit '0+bad'/);
  });

  test("mergeRequests: all and by status; the Merge Queue view and checks document render them", async () => {
    const mrs = await lsp.api.mergeRequests();
    assert.equal(mrs.length, 1);
    mrs.forEach(assertMrShape);
    assert.deepEqual((await lsp.api.mergeRequests("awaiting_approval")).map((m) => m.id), [ws.mrId]);
    assert.deepEqual(await lsp.api.mergeRequests("merged"), []);
    const [row] = mergeQueueTree(mrs, await lsp.api.listTasks());
    assert.equal(row!.label, "Add a parser");
    assert.match(row!.contextValue, /\bcan-approve\b/);
    assert.match(checksMarkdown(mrs[0]!), /## `git --version` — passed/);
    // The steward's review travels with the merge request: a child row, and a thread on its line.
    const [review] = mrs[0]!.reviews!;
    assert.equal(review!.verdict, "approve");
    assert.deepEqual(review!.comments, [{ path: "calc.py", line: 7, body: ws.reviewComment }]);
    assert.equal(row!.children[0]!.label, "Review 1: approved");
    assert.deepEqual(reviewThreads(mrs[0]!.reviews, "calc.py").map((t) => [t.line, t.body]), [[6, ws.reviewComment]]);
  });

  test("mergeDiff: each changed file at the merge base and at the branch tip", async () => {
    const diff = await lsp.api.mergeDiff(ws.mrId);
    assert.equal(diff.base, git(ws.root, "rev-parse", "main"));
    assert.equal(diff.head, git(ws.root, "rev-parse", ws.branch));
    const byPath = new Map(diff.files.map((f) => [f.path, f]));
    assert.deepEqual([...byPath.keys()].sort(), ["calc.py", "test_calc.py"]);
    assert.equal(byPath.get("calc.py")!.status, "M");
    assert.match(byPath.get("calc.py")!.original!, /raise NotImplementedError/);
    assert.match(byPath.get("calc.py")!.modified!, /text\.split\("\+"\)/);
    assert.equal(byPath.get("test_calc.py")!.original, null);
  });

  test("status: counts, serving, maxConcurrent, agents; the status bar and Agents view render it", async () => {
    const s = await lsp.api.status();
    assert.equal(typeof s.serving, "boolean");
    assert.equal(typeof s.maxConcurrent, "number");
    assert.ok(Array.isArray(s.agents));
    assert.equal(s.mergeRequestsByStatus.awaiting_approval, 1);
    assert.equal(fs.realpathSync(s.repository), fs.realpathSync(ws.root));
    const view = statusBarView(s);
    assert.match(view.text, /^\$\(hubot\) Stoneforge stopped {2}\$\(list-ordered\) \d+ {2}\$\(git-merge\) 1 {2}\$\(bell-dot\) 1$/);
    assert.equal(view.attention, true);
    assert.equal(view.needsYou.summary, "1 merge request to approve");
    // Sessions whose process is alive only; none here is marked running.
    assert.deepEqual(s.interruptedSessions, []);
    assert.equal(agentsTree(s, 140_000, new Date())[0]!.command?.command, "stoneforge.ui.start");
  });

  test("forecast: the two review branches conflict in calc.py; the forecast document renders it", async () => {
    const f = await lsp.api.forecast();
    assert.equal(f.target, "main");
    assert.deepEqual(f.branches.map((b) => b.label).sort(), [ws.taskId, ws.rivalTaskId]);
    const conflicts = f.pairs.filter((p) => p.conflict);
    assert.equal(conflicts.length, 1);
    const pair = conflicts[0]!;
    assert.deepEqual([pair.ours, pair.theirs].sort(), [ws.taskId, ws.rivalTaskId]);
    const file = pair.files[0]!;
    assert.equal(file.path, "calc.py");
    assert.ok(file.hunks.length > 0 && typeof file.hunks[0]!.ours.start === "number" && typeof file.hunks[0]!.theirs.count === "number");
    const md = forecastMarkdown(f, new Map([[ws.taskId, "Add a parser"]]));
    assert.match(md, /One pair would conflict when merged/);
    assert.match(md, /- \[`calc\.py`\]\(command:stoneforge\.ui\.openFile\?[^ )]+ "[^"]*"\) \(content\)/);
  });

  test("conflict markers: one stoneforge diagnostic per block and Keep ours/theirs/both actions", async () => {
    const file = path.join(ws.root, ws.conflictFile);
    const uri = pathToFileURL(file).toString();
    const published = lsp.waitFor("textDocument/publishDiagnostics", (p: { uri: string; diagnostics: unknown[] }) => p.uri === uri && p.diagnostics.length > 0);
    await lsp.conn.sendNotification("textDocument/didOpen", {
      textDocument: { uri, languageId: "python", version: 1, text: fs.readFileSync(file, "utf8") },
    });
    const { diagnostics } = (await published).params as { diagnostics: Array<{ source: string; message: string; range: unknown }> };
    assert.equal(diagnostics.length, 1);
    assert.equal(diagnostics[0]!.source, "stoneforge");
    assert.match(diagnostics[0]!.message, /merge conflict: ours \(HEAD\) vs theirs \(sf\/t2-use-the-parser\)/);
    const actions = await lsp.conn.sendRequest<Array<{ title: string }>>("textDocument/codeAction", {
      textDocument: { uri },
      range: diagnostics[0]!.range,
      context: { diagnostics },
    });
    assert.deepEqual(actions.map((a) => a.title).sort(), ["Stoneforge: Keep both", "Stoneforge: Keep ours", "Stoneforge: Keep theirs"]);
  });

  test("approveMerge lands the checked candidate", async (t) => {
    const mr = await implemented(t, Methods.approveMerge, () => lsp.api.approveMerge(ws.mrId));
    if (!mr) return;
    assertMrShape(mr);
    assert.equal(mr.status, "merged");
    assert.equal(git(ws.root, "rev-parse", "main"), mr.mergedCommit);
  });
});

// A second repository (starting Python costs seconds, so one for both): serve and stop first,
// while nothing is ready, so no agent is dispatched; then reject, which makes the task ready again.
describe("protocol: orchestration and rejection", () => {
  let ws: Seeded;
  let lsp: LspSession;

  before(async () => {
    ws = seedWorkspace(path.join(tempDir("sf-proto-2-"), "repo"));
    lsp = await LspSession.start(sfPath(), ws.root);
  });
  after(async () => {
    await lsp?.close();
  });

  test("serve, status says serving, stop", async (t) => {
    const started = await implemented(t, Methods.serve, () => lsp.api.serve(2));
    if (!started) return;
    assert.deepEqual(started, { serving: true });
    const s = await lsp.api.status();
    assert.equal(s.serving, true);
    assert.equal(s.maxConcurrent, 2);
    assert.equal(typeof s.orchestrator?.pid, "number");
    assert.deepEqual(await lsp.api.stop(), { serving: false });
    assert.equal((await lsp.api.status()).serving, false);
  });

  test("rejectMerge sends the task back with the reason", async (t) => {
    const mr = await implemented(t, Methods.rejectMerge, () => lsp.api.rejectMerge(ws.mrId, "needs a test for bad input"));
    if (!mr) return;
    assertMrShape(mr);
    assert.equal(mr.status, "rejected");
    assert.equal(mr.reason, "needs a test for bad input");
    const task = (await lsp.api.listTasks()).find((x) => x.id === ws.taskId)!;
    assert.equal(task.status, "open", "back in the queue for a worker");
    assert.match(task.note ?? "", /needs a test for bad input/);
  });

  test("status: a Ray orchestrator's agents carry their node and the Agents view groups them; open questions need you", async () => {
    // Another process holds the lease as a Ray orchestrator would: its session runs on a node it reported.
    const code = [
      "import os, time",
      "from pathlib import Path",
      "from stoneforge.models import SessionRole",
      "from stoneforge.orchestrator.daemon import LEASE_NAME",
      "from stoneforge.service import CLUSTER_NODES, Service",
      `s = Service.open(Path(${JSON.stringify(ws.root)}))`,
      "s.store.acquire_lease(LEASE_NAME, 'protocol-test', 20.0)",
      `session = s.store.start_session(${JSON.stringify(ws.blockedTaskId)}, SessionRole.WORKER)`,
      "node = {'nodeId': 'n-a', 'address': '10.0.0.2', 'agentSlots': 2, 'checkSlots': 1, 'busy': 1, 'sessions': [session.id]}",
      "idle = {'nodeId': 'n-b', 'address': '10.0.0.3', 'agentSlots': 2, 'checkSlots': 1, 'busy': 0, 'sessions': []}",
      "s.store.record_event(CLUSTER_NODES, 'cluster', None, {'pid': os.getpid(), 'nodes': [node, idle]})",
      `s.store.record_question(${JSON.stringify(ws.blockedTaskId)}, 'Which port?', 'assume 8080', error='the director crashed')`,
      "print(session.id, flush=True)",
      "time.sleep(600)",
    ].join("\n");
    const child = spawn(venvPython(), ["-c", code], { env: isolatedEnv(), stdio: ["ignore", "pipe", "inherit"] });
    try {
      const sessionId = await new Promise<string>((resolve) => child.stdout!.once("data", (d: Buffer) => resolve(d.toString().trim())));
      const s = await lsp.api.status();
      assert.deepEqual(s.agents.map((a) => [a.sessionId, a.node]), [[sessionId, { nodeId: "n-a", address: "10.0.0.2" }]]);
      assert.deepEqual(s.nodes!.map((n) => [n.nodeId, n.sessions]), [["n-a", [sessionId]], ["n-b", []]]);
      const rows = agentsTree(s, 140_000, new Date());
      assert.deepEqual(rows.map((r) => r.label), [`Orchestrator runs elsewhere (pid ${child.pid} on ${s.orchestrator!.host})`, "node 10.0.0.2", "node 10.0.0.3"]);
      assert.deepEqual(rows[1]!.children.map((r) => r.id), [`agent:${sessionId}`]);
      // The question the director could not answer is counted, and said, in the status bar.
      assert.deepEqual(s.openQuestions!.map((q) => [q.taskId, q.question, q.error]), [[ws.blockedTaskId, "Which port?", "the director crashed"]]);
      const view = statusBarView(s);
      assert.match(view.needsYou.summary, /1 question the director could not answer/);
      assert.match(view.tooltip, new RegExp(`${ws.blockedTaskId} asked “Which port\\?” \\(the director crashed\\)`));
    } finally {
      await stopTree(child);
    }
  });
});
