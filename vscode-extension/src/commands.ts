// Every `stoneforge.ui.*` command. Commands invoked on a tree row get that row's TreeNode; from the
// command palette they ask which task or merge request with a quick pick. (The `ui.` keeps them
// apart from the server's own `stoneforge.<method>` commands, which the language client registers.)
import * as fs from "node:fs";
import * as path from "node:path";
import * as vscode from "vscode";
import type { DiffProvider, DocPanels } from "./docs";
import { mergeRequestChoices, taskChoices } from "./model/choices";
import { type DiffEntry, diffEntries } from "./model/diffEntries";
import { type DiffSide, commitDiffKey } from "./model/docUris";
import { firstCommented } from "./model/reviewThreads";
import { humanize, shortSha } from "./model/format";
import type { NodeRef, TreeNode } from "./model/treeNode";
import type { MergeDiff, MergeRequest, MergeStatus, Task } from "./protocol";
import { askNewPlan, askNewTask, pickOne } from "./prompts";
import { errorText, type StoneforgeServer } from "./server";
import type { Views } from "./views/views";

function isNode(arg: unknown): arg is TreeNode {
  return typeof arg === "object" && arg !== null && "ref" in arg && "contextValue" in arg;
}

/** The id a command was invoked on: a tree row of the given kind, or a plain id string. */
function argId(arg: unknown, kind: NodeRef["kind"]): string | undefined {
  if (typeof arg === "string") return arg;
  if (isNode(arg) && arg.ref.kind === kind && "id" in arg.ref) return arg.ref.id;
  return undefined;
}

/** A modal question for a consequential action; true only when the person chose `action`. */
async function confirm(message: string, detail: string, action: string): Promise<boolean> {
  return (await vscode.window.showWarningMessage(message, { modal: true, detail }, action)) === action;
}

export function registerCommands(server: StoneforgeServer, views: Views, diffs: DiffProvider, panels: DocPanels): vscode.Disposable[] {
  const api = server.api;

  /** A diff (of a merge request, or of a commit: `key` from commitDiffKey) in the diff editor. */
  async function openDiff(key: string, diff: MergeDiff, title: string): Promise<void> {
    const side = (e: DiffEntry, which: DiffSide) => (e.sides.includes(which) ? diffs.uri(key, which, e.path) : undefined);
    const entries = diffEntries(diff.files);
    if (entries.length === 1) {
      // The plain diff editor needs both sides: a missing one is an empty document.
      const [only] = entries as [DiffEntry];
      await vscode.commands.executeCommand("vscode.diff", diffs.uri(key, "original", only.path), diffs.uri(key, "modified", only.path), `${only.path} — ${title}`);
    } else {
      // The multi-file diff editor, one entry per changed file: [file in the workspace, original, modified].
      const folder = server.folderUri;
      const resources = entries.map((e) => [vscode.Uri.joinPath(folder, e.path), side(e, "original"), side(e, "modified")]);
      await vscode.commands.executeCommand("vscode.changes", title, resources);
    }
  }

  /** Run a command body; a server error becomes an error message rather than an unhandled rejection. */
  const command = (id: string, body: (...args: unknown[]) => Promise<unknown>) =>
    vscode.commands.registerCommand(id, async (...args: unknown[]) => {
      try {
        return await body(...args);
      } catch (e) {
        void vscode.window.showErrorMessage(`Stoneforge: ${errorText(e)}`);
        return undefined;
      }
    });

  /** Every task from the views' lean board (no request when it is current). */
  const boardTasks = async (): Promise<Task[]> => (await views.currentBoard()).allTasks();

  async function chooseTask(arg: unknown, title: string, filter: (t: Task) => boolean): Promise<Task | undefined> {
    const id = argId(arg, "task");
    if (id) return api.task(id); // in full: a command may need more than the row
    const tasks = await boardTasks();
    return pickOne(title, taskChoices(tasks.filter(filter)), "No task to choose from.");
  }

  async function chooseMr(arg: unknown, title: string, statuses?: MergeStatus[]): Promise<MergeRequest | undefined> {
    const id = argId(arg, "mr");
    const mrs = await api.mergeRequests();
    if (id) return mrs.find((m) => m.id === id);
    const tasks = await boardTasks();
    const wanted = statuses ? mrs.filter((m) => statuses.includes(m.status)) : mrs;
    return pickOne(title, mergeRequestChoices(wanted, tasks), "No merge request to choose from.");
  }

  return [
    command("stoneforge.ui.createTask", async (arg) => {
      const planId = argId(arg, "plan");
      const board = await views.currentBoard();
      const params = await askNewTask(board.allTasks(), board.taskTree().plans, planId);
      if (!params) return;
      const task = await api.createTask(params);
      await views.noteTask(task.id); // its row now, not when the delta comes
      await views.tasks.refresh();
      await views.revealTask(task.id); // the new row, selected
      void vscode.window.setStatusBarMessage(`$(add) Created task ${task.id}: ${task.title}`, 4000);
      return task;
    }),

    command("stoneforge.ui.createPlan", async () => {
      const params = await askNewPlan();
      if (!params) return;
      // With a goal the server runs a director session before it answers: that takes a while.
      const plan = params.goal
        ? await vscode.window.withProgress(
            { location: vscode.ProgressLocation.Notification, title: `Plan “${params.title}”: a director agent is turning the goal into tasks…` },
            () => api.createPlan(params),
          )
        : await api.createPlan(params);
      void vscode.window.showInformationMessage(`Created plan ${plan.id} (${plan.status}): ${plan.title}`);
      return plan;
    }),

    command("stoneforge.ui.activatePlan", async (arg) => {
      const drafts = (await api.taskTree()).plans.filter((p) => p.status === "draft");
      const planId =
        argId(arg, "plan") ??
        (await pickOne(
          "Activate which plan?",
          drafts.map((p) => ({ label: p.title, description: `${p.id} · ${p.tasks.length} tasks`, value: p.id })),
          "No draft plan to activate.",
        ));
      if (!planId) return;
      const plan = await api.activatePlan(planId);
      void vscode.window.setStatusBarMessage(`$(play-circle) Plan ${plan.id} is active: its tasks can be dispatched`, 3000);
    }),

    command("stoneforge.ui.start", async () => {
      const max = vscode.workspace.getConfiguration("stoneforge").get<number | null>("maxConcurrent");
      const status = await api.status();
      const slots = max ?? status.maxConcurrent;
      const ok = await confirm(
        "Start orchestration?",
        `Up to ${slots} agents start working on this repository's ${status.ready} ready tasks, each in its own checkout, and the merge queue lands checked work on the target branch. Agents run until you stop orchestration.`,
        "Start",
      );
      if (!ok) return;
      await api.serve(max ?? undefined);
      void vscode.window.setStatusBarMessage("$(play) Stoneforge orchestration started", 3000);
    }),

    command("stoneforge.ui.stop", async () => {
      await api.stop();
      void vscode.window.setStatusBarMessage("$(debug-stop) Stoneforge orchestration stopped", 3000);
    }),

    command("stoneforge.ui.approveMerge", async (arg) => {
      const mr = await chooseMr(arg, "Approve which merge request?", ["awaiting_approval"]);
      if (!mr) return;
      const title = (await views.currentBoard()).lean(mr.taskId)?.title ?? mr.taskId;
      const ok = await confirm(
        `Approve ${mr.id} and land “${title}”?`,
        `The checked merge of ${mr.branch} lands on the target branch now (if the target moved since, it is checked again first).`,
        "Approve and Land",
      );
      if (!ok) return;
      const result = await vscode.window.withProgress(
        { location: vscode.ProgressLocation.Notification, title: `Approving ${mr.id} (${mr.branch})…` },
        () => api.approveMerge(mr.id),
      );
      const landed = result.mergedCommit ? ` as ${shortSha(result.mergedCommit)}` : "";
      void vscode.window.showInformationMessage(`Merge request ${result.id}: ${humanize(result.status)}${landed}`);
      return result;
    }),

    command("stoneforge.ui.rejectMerge", async (arg) => {
      const mr = await chooseMr(arg, "Reject which merge request?", ["awaiting_approval", "conflict", "test_failed"]);
      if (!mr) return;
      const reason = await vscode.window.showInputBox({
        title: `Reject ${mr.id} (${mr.branch})`,
        prompt: "Why? The task goes back to an agent with this in its prompt.",
        ignoreFocusOut: true,
        validateInput: (v) => (v.trim() ? undefined : "Give the agent a reason"),
      });
      if (reason === undefined) return;
      const result = await api.rejectMerge(mr.id, reason.trim());
      void vscode.window.showInformationMessage(`Merge request ${result.id}: ${humanize(result.status)}`);
      return result;
    }),

    command("stoneforge.ui.showDiff", async (arg) => {
      const mr = await chooseMr(arg, "Show the diff of which merge request?");
      if (!mr) return;
      const diff = await diffs.diff(mr.id);
      if (!diff.files.length) {
        void vscode.window.showInformationMessage(`${mr.branch} changes no files against the target.`);
        return;
      }
      await openDiff(mr.id, diff, `${mr.id}: ${mr.branch} (${shortSha(diff.base)} ↔ ${shortSha(diff.head)})`);
    }),

    // The link commands of the rendered documents (model/docLinks), also usable on their own.
    command("stoneforge.ui.revealTask", async (taskId) => {
      if (typeof taskId === "string") await views.revealTask(taskId);
    }),

    command("stoneforge.ui.revealMergeRequest", async (mrId) => {
      if (typeof mrId === "string") await views.revealMergeRequest(mrId);
    }),

    command("stoneforge.ui.openFile", async (file, taskId, line) => {
      if (typeof file !== "string") return;
      // The task's checkout while it exists (its version of the file), else the workspace's.
      const task = typeof taskId === "string" ? (await views.currentBoard()).lean(taskId) : undefined;
      const roots = [task?.worktree, server.folderUri.fsPath].filter((r): r is string => !!r && fs.existsSync(r));
      const found = roots.map((r) => path.join(r, file)).find((p) => fs.existsSync(p));
      if (!found) {
        void vscode.window.showInformationMessage(`${file} is not in ${roots.join(" or ") || "the workspace"} (any more).`);
        return;
      }
      const at = typeof line === "number" && line > 0 ? new vscode.Range(line - 1, 0, line - 1, 0) : undefined;
      await vscode.window.showTextDocument(vscode.Uri.file(found), at ? { selection: at } : {});
    }),

    command("stoneforge.ui.showCommit", async (sha) => {
      if (typeof sha !== "string") return;
      const diff = await api.commitDiff(sha);
      if (!diff.files.length) {
        void vscode.window.showInformationMessage(`Commit ${shortSha(diff.commit)} changes no files.`);
        return;
      }
      await openDiff(commitDiffKey(diff.commit), diff, `${shortSha(diff.commit)} ${diff.subject}`);
    }),

    command("stoneforge.ui.showReview", async (arg, reviewArg) => {
      // From the row's click (mrId, reviewId) or its context menu (the row itself).
      const [mrId, reviewId] = isNode(arg) && arg.ref.kind === "review" ? [arg.ref.mrId, arg.ref.id] : [arg, reviewArg];
      if (typeof mrId !== "string") return;
      const mr = (await api.mergeRequests()).find((m) => m.id === mrId);
      const review = mr?.reviews?.find((r) => r.id === reviewId);
      const at = review ? firstCommented(review) : undefined;
      if (!mr || !at) {
        await vscode.commands.executeCommand("stoneforge.ui.showDiff", mrId);
        return;
      }
      // The commented file's diff, at the comment: its thread shows on the modified side.
      const diff = await diffs.diff(mr.id);
      const title = `${at.path} — ${mr.id}: ${mr.branch} (${shortSha(diff.base)} ↔ ${shortSha(diff.head)})`;
      const selection = new vscode.Range(at.line, 0, at.line, 0);
      await vscode.commands.executeCommand(
        "vscode.diff",
        diffs.uri(mr.id, "original", at.path),
        diffs.uri(mr.id, "modified", at.path),
        title,
        { selection },
      );
    }),

    command("stoneforge.ui.showChecks", async (arg) => {
      const checkRow = isNode(arg) && arg.ref.kind === "check" ? arg.ref.mrId : undefined;
      const mrId =
        typeof arg === "string" ? arg : (checkRow ?? argId(arg, "mr") ?? (await chooseMr(undefined, "Show the checks of which merge request?"))?.id);
      if (!mrId) return;
      await panels.show({ kind: "checks", mrId });
    }),

    command("stoneforge.ui.openHandoff", async (arg, handoffKey) => {
      // A click passes (taskId, key); the context menu passes the row.
      const [taskId, key] = isNode(arg) && arg.ref.kind === "handoff" ? [arg.ref.taskId, arg.ref.id] : [arg, handoffKey];
      if (typeof taskId !== "string" || typeof key !== "string") return;
      await panels.show({ kind: "handoff", taskId, handoffKey: key });
    }),

    command("stoneforge.ui.showForecast", async () => {
      await panels.show({ kind: "forecast" });
    }),

    command("stoneforge.ui.openDocumentSource", async () => {
      await panels.openSource();
    }),

    command("stoneforge.ui.openWorktree", async (arg) => {
      const task = await chooseTask(arg, "Open the worktree of which task?", (t) => !!t.worktree);
      if (!task) return;
      if (!task.worktree) {
        void vscode.window.showInformationMessage(`Task ${task.id} has no worktree yet (an agent creates it when it starts).`);
        return;
      }
      await vscode.commands.executeCommand("vscode.openFolder", vscode.Uri.file(task.worktree), { forceNewWindow: true });
    }),

    command("stoneforge.ui.cancelTask", async (arg) => {
      const task = await chooseTask(arg, "Cancel which task?", (t) =>
        ["open", "in_progress", "review", "failed", "budget_exceeded"].includes(t.status),
      );
      if (!task) return;
      const ok = await confirm(
        `Cancel task ${task.id} “${task.title}”?`,
        "Its agent is stopped and its merge request is not landed. Its branch is kept: Retry Task starts it again.",
        "Cancel Task",
      );
      if (ok) await api.cancelTask(task.id);
    }),

    command("stoneforge.ui.retryTask", async (arg) => {
      const task = await chooseTask(arg, "Retry which task?", (t) => ["failed", "cancelled", "budget_exceeded"].includes(t.status));
      if (!task) return;
      if (task.status !== "budget_exceeded") return void (await api.retryTask(task.id));
      // Stopped at its budget: it continues only with a bigger one (a total; what it spent counts).
      const spent = task.cost?.costUsd ?? 0;
      const answer = await vscode.window.showInputBox({
        title: `Retry ${task.id} with a budget of (USD, in total)`,
        prompt: `It has spent $${spent.toFixed(2)} so far.`,
        validateInput: (v) => (Number(v) > spent ? undefined : `A number above ${spent.toFixed(2)}`),
      });
      if (answer !== undefined) await api.retryTask(task.id, Number(answer));
    }),

    command("stoneforge.ui.init", async () => {
      const result = await api.init();
      server.markInitialized();
      const created = result.created.length ? `created ${result.created.join(", ")}` : "it was set up already";
      void vscode.window.showInformationMessage(`Stoneforge is set up in ${result.repository}: ${created}.`);
      return result;
    }),

    command("stoneforge.ui.copyId", async (arg) => {
      if (!isNode(arg) || !("id" in arg.ref)) return;
      await vscode.env.clipboard.writeText(arg.ref.id);
      void vscode.window.setStatusBarMessage(`Copied ${arg.ref.id}`, 2000);
    }),

    command("stoneforge.ui.showFinished", () => views.setShowFinished(true)),

    command("stoneforge.ui.hideFinished", () => views.setShowFinished(false)),

    command("stoneforge.ui.refresh", () => views.refreshAll()),

    command("stoneforge.ui.focus", async () => vscode.commands.executeCommand("workbench.view.extension.stoneforge")),

    command("stoneforge.ui.showLog", async () => server.output.show()),

    command("stoneforge.ui.restartServer", () => server.restart()),
  ];
}
