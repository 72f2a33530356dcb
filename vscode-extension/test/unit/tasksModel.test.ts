import assert from "node:assert/strict";
import { test } from "node:test";
import { agentState, blockedBy, priorityLabel, tasksTree } from "../../src/model/tasksModel";
import { handoff, plan, session, task, tree } from "../fixtures";

test("plans come first with their tasks, then the tasks of no plan", () => {
  const nodes = tasksTree(
    tree(
      [{ ...plan({ id: "p1", title: "Sprint 14", status: "active" }), tasks: [task({ id: "t1", planId: "p1", status: "merged" }), task({ id: "t2", planId: "p1" })] }],
      [task({ id: "t3", title: "Loose end" })],
    ),
  );
  assert.deepEqual(nodes.map((n) => n.label), ["Sprint 14", "Loose end"]);
  const [p1, t3] = nodes as [NonNullable<(typeof nodes)[0]>, NonNullable<(typeof nodes)[0]>];
  assert.equal(p1.description, "p1 · active · 1/2 tasks merged");
  assert.equal(p1.collapsible, "expanded");
  assert.match(p1.contextValue, /\bplan-active\b/);
  assert.deepEqual(p1.children.map((c) => c.id), ["task:t1", "task:t2"]);
  assert.equal(t3.ref.kind, "task");
});

test("a draft plan can be activated from its row", () => {
  const [p] = tasksTree(tree([{ ...plan({ id: "p2" }), tasks: [] }], []));
  assert.match(p!.contextValue, /\bplan-draft\b/);
  assert.match(p!.tooltip!, /Draft/);
});

test("a task row shows id, priority, status and an icon for its status", () => {
  const [n] = tasksTree(tree([], [task({ id: "t1", title: "Add a parser", priority: 2, status: "review" })]));
  assert.equal(n!.label, "Add a parser");
  assert.equal(n!.description, "t1 · P2 · review");
  assert.deepEqual(n!.icon, { id: "git-pull-request", color: "charts.purple" });
  assert.equal(n!.collapsible, "none");
});

test("blocked-by names only the dependencies not yet merged or cancelled", () => {
  const t1 = task({ id: "t1", status: "merged" });
  const t2 = task({ id: "t2", status: "in_progress" });
  const t3 = task({ id: "t3", status: "cancelled" });
  const t4 = task({ id: "t4", dependsOn: ["t1", "t2", "t3", "t9"], blocked: true });
  const byId = new Map([t1, t2, t3, t4].map((t) => [t.id, t]));
  assert.deepEqual(blockedBy(t4, byId), ["t2", "t9"]);
  const nodes = tasksTree(tree([], [t1, t2, t3, t4]));
  const row = nodes.find((n) => n.id === "task:t4")!;
  assert.equal(row.description, "t4 · P3 · blocked by t2, t9");
  assert.deepEqual(row.icon, { id: "lock", color: "charts.yellow" });
});

test("an inherited priority shows both the own and the effective one", () => {
  assert.equal(priorityLabel(task({ id: "t1", priority: 4, effectivePriority: 1 })), "P4→P1");
  assert.equal(priorityLabel(task({ id: "t1", priority: 2 })), "P2");
});

test("agent state: a running session with its context use, or waiting", () => {
  const running = task({ id: "t1", status: "in_progress", sessions: [session({ id: "s2", status: "running", contextTokens: 70_000 })] });
  assert.equal(agentState(running, 140_000), "agent s2 working, 70k tokens (50%)");
  assert.equal(agentState(task({ id: "t1", status: "in_progress" }), 140_000), "waiting for an agent");
  assert.equal(agentState(task({ id: "t1" }), 140_000), undefined);
  const [row] = tasksTree(tree([], [running]));
  assert.match(row!.description!, /in progress · agent s2 working/);
});

test("sessions and handoffs are children in the order they happened", () => {
  const t = task({
    id: "t1",
    status: "in_progress",
    worktree: "/repo/.sf/t1",
    sessions: [
      session({ id: "s1", status: "handed_off", contextTokens: 141_000, costUsd: 0.42, startedAt: "2026-11-27T20:00:00Z" }),
      session({ id: "s2", status: "running", contextTokens: 5210, costUsd: 0.01, startedAt: "2026-11-27T20:06:00Z" }),
    ],
    handoffs: [handoff({ id: "h1", createdAt: "2026-11-27T20:05:00Z" })],
  });
  const [row] = tasksTree(tree([], [t]));
  assert.equal(row!.collapsible, "collapsed");
  assert.deepEqual(row!.children.map((c) => c.id), ["session:s1", "handoff:t1:h1", "session:s2"]);
  const [s1, h1] = row!.children;
  assert.equal(s1!.label, "worker s1");
  assert.equal(s1!.description, "handed off · 141k tokens (101%) · $0.42");
  assert.equal(h1!.description, "next: Write the error path");
  assert.deepEqual(h1!.command, { command: "stoneforge.ui.openHandoff", title: "Open Handoff", arguments: ["t1", "h1"] });
});

test("a handoff at the same millisecond as the next session sits between its session and that one", () => {
  const at = "2026-11-27T20:05:00.000Z";
  const t = task({
    id: "t1",
    sessions: [session({ id: "s1", startedAt: at }), session({ id: "s2", startedAt: at })],
    handoffs: [handoff({ id: "h1", sessionId: "s1", createdAt: at })],
  });
  assert.deepEqual(tasksTree(tree([], [t]))[0]!.children.map((c) => c.id), ["session:s1", "handoff:t1:h1", "session:s2"]);
});

test("context flags drive the row's menu: worktree, cancel, retry", () => {
  const flags = (over: Parameters<typeof task>[0]) => tasksTree(tree([], [task(over)]))[0]!.contextValue.split(" ");
  assert.ok(flags({ id: "t1", worktree: "/w" }).includes("has-worktree"));
  assert.ok(flags({ id: "t1", status: "open" }).includes("can-cancel"));
  assert.ok(!flags({ id: "t1", status: "open" }).includes("can-retry"));
  assert.ok(flags({ id: "t1", status: "failed" }).includes("can-retry"));
  assert.ok(!flags({ id: "t1", status: "merged" }).includes("can-cancel"));
});

test("a merge request and a note show up on the task", () => {
  const t = task({ id: "t1", status: "review", note: "checks failed once", mergeRequest: { id: "mr1", taskId: "t1", status: "awaiting_approval" } as never });
  const [row] = tasksTree(tree([], [t]));
  assert.equal(row!.description, "t1 · P3 · review · MR awaiting approval");
  assert.match(row!.tooltip!, /merge request: mr1 \(awaiting approval\)/);
  assert.match(row!.tooltip!, /_checks failed once_/);
  const done = task({ id: "t2", status: "merged", mergeRequest: { id: "mr2", taskId: "t2", status: "merged" } as never });
  assert.equal(tasksTree(tree([], [done]))[0]!.description, "t2 · P3 · merged");
});

test("Open Task Worktree is offered only while the task's checkout exists (landing removes it)", () => {
  const t = task({ id: "t1", status: "merged", worktree: "/wt/t1" });
  const [gone] = tasksTree(tree([], [t]), { worktreeExists: () => false });
  assert.doesNotMatch(gone!.contextValue, /\bhas-worktree\b/);
  const [there] = tasksTree(tree([], [{ ...t, status: "review" }]), { worktreeExists: (p) => p === "/wt/t1" });
  assert.match(there!.contextValue, /\bhas-worktree\b/);
});

test("a session whose process is gone reads interrupted, not running", () => {
  const t = task({ id: "t1", status: "in_progress", sessions: [session({ id: "s4", status: "running" })] });
  const [row] = tasksTree(tree([], [t]), { interrupted: new Set(["s4"]) });
  assert.match(row!.description!, /agent s4 interrupted/);
  assert.doesNotMatch(row!.description!, /working/);
  const [s4] = row!.children;
  assert.match(s4!.description!, /^interrupted · /);
  assert.notEqual(s4!.icon!.id, "loading~spin");
  const [live] = tasksTree(tree([], [t]));
  assert.match(live!.description!, /agent s4 working/);
});

test("merged and cancelled tasks are hidden on request; a last row counts them and shows them", () => {
  const t = tree(
    [{ ...plan({ id: "p1", status: "active" }), tasks: [task({ id: "t1", planId: "p1", status: "merged" }), task({ id: "t2", planId: "p1" })] }],
    [task({ id: "t3", status: "cancelled" }), task({ id: "t4" })],
  );
  const rows = tasksTree(t, { hideFinished: true });
  assert.deepEqual(rows.map((r) => r.id), ["plan:p1", "task:t4", "message:hidden"]);
  assert.deepEqual(rows[0]!.children.map((c) => c.id), ["task:t2"]);
  assert.equal(rows[0]!.description, "p1 · active · 1/2 tasks merged"); // the plan still counts them
  assert.equal(rows[2]!.label, "2 merged or cancelled tasks hidden");
  assert.equal(rows[2]!.command!.command, "stoneforge.ui.showFinished");
  assert.deepEqual(tasksTree(t).map((r) => r.id), ["plan:p1", "task:t3", "task:t4"]);
});

test("a task's description shows what its sessions spent; one stopped at its budget can be retried", () => {
  const spent = { sessions: 2, inputTokens: 40_000, outputTokens: 300, tokens: 40_300, costUsd: 0.1245 };
  const [n] = tasksTree(tree([], [task({ id: "t5", status: "budget_exceeded", cost: spent, budgetUsd: 1 })]));
  assert.equal(n!.description, "t5 · P3 · budget exceeded · $0.12");
  assert.deepEqual(n!.icon, { id: "credit-card", color: "charts.orange" });
  assert.match(n!.contextValue, /\bcan-retry\b/);
  assert.match(n!.contextValue, /\bcan-cancel\b/);
  assert.match(n!.tooltip!, /- cost: \$0\.12, 40\.3k tokens in 2 sessions/);
  assert.match(n!.tooltip!, /- its own budget: \$1\.00/);
  const [free] = tasksTree(tree([], [task({ id: "t6", status: "open" })]));
  assert.equal(free!.description, "t6 · P3 · open"); // nothing spent: no cost shown
});

test("refused tool calls of a task's agent are in its tooltip, the latest five", () => {
  const refusals = Array.from({ length: 6 }, (_, i) => ({
    tool: "Bash",
    tried: `git -C /repo commit -m x${i}`,
    reason: "fatal: Unable to create '/repo/.git/index.lock': Read-only file system",
    paths: ["/repo/.git/index.lock"],
    sessionId: "s1",
    at: "2026-12-02T07:00:00Z",
  }));
  const [row] = tasksTree(tree([], [task({ id: "t1", status: "in_progress", refusals })]));
  assert.match(row!.tooltip!, /\*\*Refused tool calls \(6\)\*\*/);
  assert.match(row!.tooltip!, /- Bash: `git -C \/repo commit -m x5` \(fatal: .*Read-only file system\)/);
  assert.doesNotMatch(row!.tooltip!, /x0`/);
  const [quiet] = tasksTree(tree([], [task({ id: "t2" })]));
  assert.doesNotMatch(quiet!.tooltip!, /Refused/);
});
