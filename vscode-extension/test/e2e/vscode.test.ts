// Layer 3: the packaged extension in a real VS Code (code-server 4.100.3) driven through headless
// Chromium, against the real `sf lsp` in a seeded repository. Needs code-server installed
// (scripts/install-code-server.sh) and the .vsix built (npm run package); scripts/extension-test
// does both first.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, type TestContext, test } from "node:test";
import { type Browser, type BrowserServer, type Locator, type Page, chromium } from "playwright-core";
import { extensionRoot } from "../fixtures";
import { CodeServer, codeServerDir, xdgDirs } from "../support/codeServer";
import { alive, descendants, stopTree } from "../support/processes";
import type { Task } from "../../src/protocol";
import { type Seeded, git, isolatedEnv, removeTempDirs, seedWorkspace, sfPath, tempDir, venvPython } from "../support/workspace";

const CHROMIUM = process.env.STONEFORGE_CHROMIUM ?? "/usr/bin/chromium";
const OUT = process.env.STONEFORGE_TEST_OUTPUT ?? path.join(extensionRoot(), "test-output");
const VSIX = path.join(extensionRoot(), "out", "stoneforge.vsix");
const NEW_TASK = "Write the README";
const LONG = 60_000; // a shared 2-core machine under load: the server alone can take 20 s to import

describe("e2e: the extension in code-server", { timeout: 5 * 60_000 }, () => {
  let ws: Seeded;
  let server: CodeServer | undefined;
  let chromiumServer: BrowserServer | undefined;
  let browser: Browser | undefined;
  let page: Page;
  /** The step that failed, if any. */
  let failed: string | undefined;

  before(async () => {
    fs.mkdirSync(OUT, { recursive: true });
    assert.ok(fs.existsSync(VSIX), `no ${VSIX}: run npm run package first`);
    const state = tempDir("sf-e2e-");
    ws = seedWorkspace(path.join(state, "repo"));
    server = await CodeServer.start({
      installDir: codeServerDir(),
      vsix: VSIX,
      workspace: ws.root,
      stateDir: state,
      env: isolatedEnv(),
      logFile: path.join(OUT, "code-server.log"),
      settings: {
        "stoneforge.serverCommand": sfPath(),
        "workbench.startupEditor": "none",
        "workbench.tips.enabled": false,
        "workbench.secondarySideBar.defaultVisibility": "hidden",
        "chat.commandCenter.enabled": false,
        "security.workspace.trust.enabled": false,
        "telemetry.telemetryLevel": "off",
        "extensions.autoCheckUpdates": false,
        "extensions.autoUpdate": false,
        "update.mode": "none",
        "git.openRepositoryInParentFolders": "never",
      },
    });
    // launchServer rather than launch: it hands over the browser's process, to stop it by pid.
    chromiumServer = await chromium.launchServer({
      executablePath: CHROMIUM,
      headless: true,
      env: { ...process.env, ...xdgDirs(state) }, // its profile leftovers (crashpad, dconf) stay in the temp dir
      args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
    });
    browser = await chromium.connect(chromiumServer.wsEndpoint());
    page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    await page.goto(`${server.url}/?folder=${encodeURIComponent(ws.root)}`, { timeout: 2 * LONG });
    await page.locator(".monaco-workbench").waitFor({ timeout: LONG });
  });

  after(async () => {
    if (page && !page.isClosed()) await page.screenshot({ path: path.join(OUT, "workbench-final.png") }).catch(() => {});
    await browser?.close().catch(() => {});
    const pids = chromiumServer ? await stopTree(chromiumServer.process()) : [];
    pids.push(...((await server?.stop()) ?? []));
    const left = pids.filter(alive);
    assert.deepEqual(left, [], "every process started by the test is gone");
    if (!failed) removeTempDirs(); // after a failure the workspace and user-data dir stay, to look into
  });

  /** Steps depend on each other: after a failure the rest are skipped, with a screenshot of the moment. */
  const step = (name: string, body: (t: TestContext) => Promise<void>) =>
    test(name, async (t) => {
      if (failed) return t.skip(`after the failure of "${failed}"`);
      try {
        await body(t);
      } catch (e) {
        failed = name;
        await page?.screenshot({ path: path.join(OUT, "failure.png") }).catch(() => {});
        throw e;
      }
    });

  /** The pane of one of the Stoneforge views. */
  const pane = (title: string): Locator => page.locator(".pane").filter({ has: page.locator(`.pane-header[aria-label^="${title}"]`) });
  const row = (view: Locator, name: RegExp | string): Locator => view.getByRole("treeitem", { name });
  const toast = (text: RegExp): Locator => page.locator(".notifications-toasts .notification-toast").filter({ hasText: text });

  /** The rendered document on top (a webview: an iframe in an iframe). */
  const previewFrame = () => page.frameLocator("iframe.webview.ready").last().frameLocator("#active-frame");

  /** Wait for a text in the rendered document. */
  async function preview(text: string): Promise<void> {
    await previewFrame().getByText(text).first().waitFor({ timeout: LONG });
  }

  /** The multi-file diff editor's entries: file label, status letter (R/A/D/none), struck original. */
  async function diffEntries(): Promise<Array<{ path: string; status: string; original: string }>> {
    const entries = page.locator(".multiDiffEntry .file-path");
    await entries.nth(1).waitFor({ timeout: LONG });
    // Runs in the page: no DOM types in this project, hence `any`.
    const found = await entries.evaluateAll((els: any[]) =>
      els.map((el) => {
        const text = (sel: string): string => (el.querySelector(sel)?.innerText ?? "").trim();
        return { path: text(".title.modified .label-name") || text(".title.modified"), status: text(".status"), original: text(".title.original") };
      }),
    );
    return found.sort((a, b) => a.path.localeCompare(b.path));
  }

  async function runCommand(title: string): Promise<void> {
    await page.keyboard.press("F1");
    const input = page.locator(".quick-input-widget input");
    await input.waitFor();
    await input.fill(`>${title}`);
    await page.locator(".quick-input-list .monaco-list-row").filter({ hasText: title }).first().waitFor();
    await page.keyboard.press("Enter");
  }

  step("the status-bar item opens the Stoneforge views, which show the seeded plan and tasks", async () => {
    // The item reads "<robot> stopped <list> 0 <merge> 1" once the server answered `status`.
    const item = page.locator(".statusbar-item").filter({ hasText: /stopped/ }).first();
    await item.waitFor({ timeout: 3 * LONG }); // the first start of the server, on a shared machine
    await item.click();
    const tasks = pane("Tasks");
    await row(tasks, /Sprint 14/).waitFor({ timeout: LONG });
    await row(tasks, /Add a parser/).waitFor();
    await row(tasks, /Use the parser.*blocked by t1/).waitFor();
    await row(pane("Agents"), /Orchestration is stopped/).waitFor();
  });

  step("Stoneforge: Create Task from the command palette shows the new task in the Tasks view", async () => {
    await runCommand("Stoneforge: Create Task");
    const input = page.locator(".quick-input-widget input");
    await page.locator(".quick-input-widget").filter({ hasText: "Create Task (1/5)" }).waitFor();
    await input.fill(NEW_TASK);
    await page.keyboard.press("Enter");
    await page.locator(".quick-input-widget").filter({ hasText: "description" }).waitFor();
    await input.fill("Say how to run calc.");
    await page.keyboard.press("Enter");
    await page.locator(".quick-input-widget").filter({ hasText: "plan" }).waitFor();
    await page.keyboard.press("Enter"); // No plan
    await page.locator(".quick-input-widget").filter({ hasText: "priority" }).waitFor();
    await page.keyboard.press("Enter"); // P3, the default
    const deps = page.locator(".quick-input-widget").filter({ hasText: "dependencies" });
    await deps.waitFor();
    // Only tasks that can still land: the one in review and the open one.
    const offered = await deps.locator(".quick-input-list .monaco-list-row").allInnerTexts();
    assert.equal(offered.length, 2, offered.join(" | "));
    await page.keyboard.press("Enter"); // none
    // The new row is revealed and selected.
    await pane("Tasks").locator('[role="treeitem"][aria-selected="true"]').filter({ hasText: NEW_TASK }).waitFor({ timeout: LONG });
    // The server has it too: the view showed what the store holds.
    const listed = JSON.parse(execFileSync(sfPath(), ["task", "list", "--json"], { cwd: ws.root, encoding: "utf8" })) as Array<{ title: string; priority: number; description: string }>;
    assert.ok(listed.some((t) => t.title === NEW_TASK && t.priority === 3 && t.description === "Say how to run calc."), JSON.stringify(listed));
  });

  step("selecting a handoff opens it as a readable document", async () => {
    const tasks = pane("Tasks");
    await row(tasks, /Add a parser/).click();
    await page.keyboard.press("ArrowRight"); // expand: sessions and the handoff
    await row(tasks, /handoff h1/).click();
    // Rendered, in a tab named for what it is.
    await page.locator(".tab").filter({ hasText: "Handoff h1 of t1" }).waitFor({ timeout: LONG });
    await preview("Strip whitespace in parse()");
    await preview("Files touched");
    await page.screenshot({ path: path.join(OUT, "handoff-preview.png") });
  });

  step("links in a rendered handoff open the file in the task's checkout and the task's row", async () => {
    await previewFrame().getByRole("link", { name: "calc.py", exact: true }).click();
    // The task's version of calc.py (its checkout's), not the workspace's.
    await page.locator(".tab").filter({ hasText: "calc.py" }).first().waitFor({ timeout: LONG });
    await page.locator(".editor-instance .view-line").filter({ hasText: 'left, right = text.split("+")' }).first().waitFor({ timeout: LONG });
    await row(pane("Tasks"), /^Sprint 14/).click(); // the selection elsewhere first
    await page.locator(".tab").filter({ hasText: "Handoff h1 of t1" }).click();
    await previewFrame().getByRole("link", { name: ws.taskId, exact: true }).first().click();
    await pane("Tasks").locator('[role="treeitem"][aria-selected="true"]').filter({ hasText: "Add a parser" }).waitFor({ timeout: LONG });
  });

  step("a file with conflict markers gets a stoneforge squiggle", async () => {
    await page.keyboard.press("Control+P");
    await page.locator(".quick-input-widget input").fill(ws.conflictFile);
    await page.locator(".quick-input-list .monaco-list-row").filter({ hasText: ws.conflictFile }).first().waitFor();
    await page.keyboard.press("Enter");
    await page.locator(".editor-instance .squiggly-error").first().waitFor({ timeout: LONG });
    await runCommand("View: Focus Problems");
    await page.locator(".markers-panel").filter({ hasText: /merge conflict: ours \(HEAD\) vs theirs/ }).waitFor({ timeout: LONG });
  });

  step("Show Diff and Show Checks from the Merge Queue view", async () => {
    await runCommand("Stoneforge: Show Views");
    const mrRow = row(pane("Merge Queue"), /Add a parser/);
    await mrRow.waitFor({ timeout: LONG });
    await mrRow.hover();
    await mrRow.locator('.action-label[aria-label="Show Diff"]').click();
    // Two files change, so the multi-file diff editor opens, titled with the MR and branch.
    await page.locator(".tab").filter({ hasText: `mr1: ${ws.branch}` }).waitFor({ timeout: LONG });
    await page.locator(".editor-instance").filter({ hasText: "calc.py" }).filter({ hasText: "NotImplementedError" }).first().waitFor({ timeout: LONG });
    // calc.py is modified, test_calc.py added: neither reads as a rename with a struck original path.
    assert.deepEqual(await diffEntries(), [
      { path: "calc.py", status: "", original: "" },
      { path: "test_calc.py", status: "A", original: "" },
    ]);
    await page.screenshot({ path: path.join(OUT, "diff-multi-file.png") });
    await mrRow.hover();
    await mrRow.locator('.action-label[aria-label="Show Checks"]').click();
    await page.locator(".tab").filter({ hasText: "Checks of mr1" }).waitFor({ timeout: LONG });
    await preview("Checks of mr1");
  });

  step("a rendered document's title bar opens its Markdown source beside it", async () => {
    await page.locator('.editor-actions .action-label[aria-label^="Open Markdown Source"]').first().click();
    // The text itself, links as Markdown: what the panel rendered.
    await page.locator(".editor-instance .view-line").filter({ hasText: "# Checks of [mr1](command:" }).first().waitFor({ timeout: LONG });
    await page.keyboard.press("Control+W"); // the source closes; the rendered panel stays
    await page.locator(".tab").filter({ hasText: "Checks of mr1" }).waitFor({ timeout: LONG });
  });

  /** The entries of a row's context menu. */
  async function contextMenu(target: Locator): Promise<string[]> {
    await target.click({ button: "right" });
    const menu = page.locator(".context-view .monaco-menu");
    await menu.waitFor({ timeout: LONG });
    const items = (await menu.locator(".action-label").allInnerTexts()).map((t) => t.trim()).filter(Boolean);
    await page.keyboard.press("Escape");
    return items;
  }

  step("every kind of row has its actions in a context menu", async () => {
    const tasks = pane("Tasks");
    const mq = pane("Merge Queue");
    const menus: Record<string, string[]> = {
      plan: await contextMenu(row(tasks, /^Sprint 14/)),
      task: await contextMenu(row(tasks, /^Add a parser/)),
      session: await contextMenu(row(tasks, /^worker /).first()),
      handoff: await contextMenu(row(tasks, /handoff h1/)),
      "merge request": await contextMenu(row(mq, /Add a parser/)),
      "task's merge request": await contextMenu(row(tasks, /^merge request mr1/)),
    };
    // The task's merge request, a child row of the task: its state, checks and review at a glance.
    assert.match(await row(tasks, /^merge request mr1/).innerText(), /awaiting approval · 1\/1 check passed · review approved/);
    await row(mq, /Add a parser/).click();
    await page.keyboard.press("ArrowRight");
    menus.check = await contextMenu(row(mq, /git --version/));
    const want: Record<string, string[]> = {
      plan: ["Create Task", "Copy ID"],
      task: ["Open Task Worktree", "Cancel Task", "Copy ID"],
      session: ["Copy ID"],
      handoff: ["Open Handoff", "Copy ID"],
      "merge request": ["Show Diff", "Show Checks", "Approve Merge", "Reject Merge", "Copy ID"],
      "task's merge request": ["Show Diff", "Show Checks", "Approve Merge", "Reject Merge", "Copy ID"],
      check: ["Show Checks"],
    };
    for (const [kind, items] of Object.entries(want)) {
      for (const item of items) assert.ok(menus[kind]!.includes(item), `${kind} row menu ${JSON.stringify(menus[kind])} lacks ${item}`);
    }
  });

  step("the stopped-orchestration row asks before it starts agents", async () => {
    await row(pane("Agents"), /Orchestration is stopped/).click();
    const dialog = page.locator(".monaco-dialog-box").filter({ hasText: "Start orchestration?" });
    await dialog.waitFor({ timeout: LONG });
    await page.screenshot({ path: path.join(OUT, "confirm-start.png") });
    await dialog.getByRole("button", { name: "Cancel" }).click();
    await dialog.waitFor({ state: "hidden" });
    const status = JSON.parse(execFileSync(sfPath(), ["status", "--json"], { cwd: ws.root, encoding: "utf8" })) as { orchestrator: unknown };
    assert.equal(status.orchestrator, null, "no orchestrator was started");
  });

  /** Tasks made and stopped by another process, as a `sf serve` would stop them; their ids. */
  function stopTasks(how: Array<[string, "fail" | "budget"]>): string[] {
    const code = [
      "import sys",
      "from pathlib import Path",
      "from stoneforge.lifecycle import TaskEvent",
      "from stoneforge.service import Service",
      `s = Service.open(Path(${JSON.stringify(ws.root)}))`,
      `how = ${JSON.stringify(how)}`,
      "ids = [s.create_task(title).id for title, _ in how]",
      "for task_id in ids: s.store.dispatch_task(task_id)",
      "for task_id, (_, end) in zip(ids, how):",
      "    event = TaskEvent.FAIL if end == 'fail' else TaskEvent.EXCEED_BUDGET",
      "    s.store.transition_task(task_id, event, note=f'{task_id}: tests failed in attempt 1\\nand again in attempt 2')",
      "print(' '.join(ids))",
    ].join("\n");
    return execFileSync(venvPython(), ["-c", code], { env: isolatedEnv(), encoding: "utf8" }).trim().split(" ");
  }

  /** Poll until `ok` holds; on a timeout say what `state` was. */
  async function until(ok: () => Promise<boolean> | boolean, state: () => Promise<string> | string): Promise<void> {
    const deadline = Date.now() + LONG;
    while (!(await ok())) {
      assert.ok(Date.now() < deadline, `still: ${await state()}`);
      await page.waitForTimeout(250);
    }
  }

  /** The activity bar's badge on Stoneforge: how many things need the user. */
  const badge = () => page.locator('.activitybar .action-item:has(a[aria-label^="Stoneforge"]) .badge-content');

  step("a failed task's toast offers Show Task, which selects its row", async () => {
    await runCommand("Notifications: Clear All Notifications");
    const [failed] = stopTasks([["Flaky one", "fail"]]);
    const message = toast(new RegExp(`Stoneforge: task ${failed} failed: ${failed}: tests failed in attempt 1`));
    await message.waitFor({ timeout: LONG });
    for (const button of ["Show Task", "Retry Task", "Show Log"]) await message.getByRole("button", { name: button }).waitFor();
    await message.getByRole("button", { name: "Show Task" }).click();
    await pane("Tasks").locator('[role="treeitem"][aria-selected="true"]').filter({ hasText: "Flaky one" }).waitFor({ timeout: LONG });
  });

  step("failures at once come as one toast whose Retry All retries them all; the status bar and badge count what needs you", async () => {
    await runCommand("Notifications: Clear All Notifications");
    const [a, b, costly] = stopTasks([["Flaky two", "fail"], ["Flaky three", "fail"], ["Costly one", "budget"]]);
    const grouped = toast(new RegExp(`Stoneforge: 2 tasks failed: ${a}, ${b}\\.`));
    await grouped.waitFor({ timeout: LONG });
    assert.equal(await toast(/Stoneforge: (task \S+|\d+ tasks) failed/).count(), 1, "one toast for the burst");
    await page.screenshot({ path: path.join(OUT, "failure-toast.png") });
    // Needs you: mr1 to approve, three failed tasks, one stopped at its budget.
    const item = page.locator(".statusbar-item").filter({ hasText: /Stoneforge stopped/ }).first();
    await until(async () => /\b5$/.test((await item.innerText()).trim()), () => item.innerText());
    await badge().filter({ hasText: /^5$/ }).waitFor({ timeout: LONG });
    await item.hover();
    const hover = page.locator(".monaco-hover, .workbench-hover").filter({ hasText: "Needs you" }).first();
    await hover.waitFor({ timeout: LONG });
    const tip = (await hover.innerText()).replace(/\s+/g, " ");
    assert.match(tip, /3 failed tasks to retry or cancel/);
    assert.match(tip, /1 task stopped at its budget: work committed and handed off: Retry with a bigger budget, or Cancel/);
    assert.match(tip, /1 merge request to approve/);
    await page.mouse.move(700, 400);
    await grouped.getByRole("button", { name: "Retry All" }).click();
    const statuses = () =>
      new Map((JSON.parse(execFileSync(sfPath(), ["task", "list", "--json"], { cwd: ws.root, encoding: "utf8" })) as Task[]).map((t) => [t.id, t.status]));
    await until(() => statuses().get(a) === "open" && statuses().get(b) === "open", () => `not retried: ${JSON.stringify([...statuses()])}`);
    assert.equal(statuses().get(costly), "budget_exceeded", "Retry All retries the failed tasks of the toast only");
    await badge().filter({ hasText: /^3$/ }).waitFor({ timeout: LONG });
  });

  step("a task whose checkout exists offers Open Task Worktree", async () => {
    const taskRow = row(pane("Tasks"), /^Add a parser/);
    await taskRow.hover();
    await taskRow.locator('.action-label[aria-label="Open Task Worktree"]').waitFor({ timeout: LONG });
  });

  step("the steward's review is a child row of the MR, and its comment sits on the right line of the diff", async () => {
    const queue = pane("Merge Queue");
    const mrRow = row(queue, /Add a parser/);
    await mrRow.click();
    if ((await mrRow.getAttribute("aria-expanded")) !== "true") await page.keyboard.press("ArrowRight");
    const reviewRow = row(queue, /Review 1: approved/);
    await reviewRow.waitFor({ timeout: LONG });
    await reviewRow.click(); // opens calc.py's diff at the comment
    await page.locator(".tab").filter({ hasText: "calc.py — mr1" }).waitFor({ timeout: LONG });
    const thread = page.locator(".review-widget").filter({ hasText: ws.reviewComment });
    await thread.waitFor({ timeout: LONG });
    await thread.filter({ hasText: "Review 1: approved" }).waitFor();
    // The thread's zone opens right under line 7 of the branch's calc.py, in the modified side.
    const modified = page.locator(".editor.modified");
    const line7 = modified.locator(".view-line").filter({ hasText: 'left, right = text.split("+")' });
    const line8 = modified.locator(".view-line").filter({ hasText: "return int(left), int(right)" });
    const [l7, l8, zone] = await Promise.all([line7.boundingBox(), line8.boundingBox(), thread.boundingBox()]);
    assert.ok(l7 && l8 && zone, "line 7, line 8 and the thread are all on screen");
    assert.ok(zone.y >= l7.y + l7.height - 2, `the thread (y ${zone.y}) is below line 7 (y ${l7.y})`);
    // (less than a line apart: the zone's own margin and arrow, no other line between them)
    assert.ok(zone.y < l7.y + 2 * l7.height, `the thread (y ${zone.y}) starts right after line 7 (y ${l7.y})`);
    assert.ok(l8.y >= zone.y + zone.height - 2, "line 8 comes after the thread");
  });

  step("approve the merge request from the Merge Queue view", async (t) => {
    const mrRow = row(pane("Merge Queue"), /Add a parser/);
    const branchTip = git(ws.root, "rev-parse", ws.branch); // landing deletes the branch
    await mrRow.hover();
    await mrRow.locator('.action-label[aria-label="Approve Merge"]').click();
    // Landing on main is consequential: a modal asks first.
    const dialog = page.locator(".monaco-dialog-box").filter({ hasText: "Approve mr1 and land" });
    await dialog.waitFor({ timeout: LONG });
    await page.screenshot({ path: path.join(OUT, "confirm-approve.png") });
    await dialog.getByRole("button", { name: "Approve and Land" }).click();
    const outcome = toast(/Merge request mr1: |stoneforge\/approveMerge/);
    await outcome.first().waitFor({ timeout: LONG });
    const text = (await outcome.first().innerText()).replace(/\s+/g, " ");
    const merged = /Merge request mr1: merged as ([0-9a-f]{8})/.exec(text);
    if (merged) {
      // main moved to the merge commit, whose second parent is the task's branch.
      assert.ok(git(ws.root, "rev-parse", "main").startsWith(merged[1]!), text);
      assert.equal(git(ws.root, "rev-parse", "main^2"), branchTip);
      // Finished rows are hidden by default; a row says how many, and shows them when clicked.
      const hidden = row(pane("Merge Queue"), /1 merged or rejected request hidden/);
      await hidden.waitFor({ timeout: LONG });
      assert.equal(await row(pane("Merge Queue"), /mr1 · merged/).count(), 0);
      await pane("Merge Queue").screenshot({ path: path.join(OUT, "merged-hidden.png") });
      await hidden.click();
      await row(pane("Merge Queue"), /mr1 · merged/).waitFor({ timeout: LONG });
      await row(pane("Tasks"), /Add a parser.*merged/).waitFor({ timeout: LONG });
    } else {
      // The request went through the client to the server, and its answer came back and was shown.
      assert.match(text, /stoneforge\/approveMerge/);
      t.diagnostic(`the server does not implement stoneforge/approveMerge yet; its answer was shown: "${text}"`);
    }
  });

  step("a merged merge request's diff comes from its recorded commits; its task offers no worktree", async () => {
    // Landing deleted the branch and removed the task's checkout.
    assert.equal(git(ws.root, "branch", "--list", ws.branch), "");
    assert.ok(!fs.existsSync(ws.worktree));
    await runCommand("View: Close All Editors");
    const mrRow = row(pane("Merge Queue"), /mr1 · merged/);
    await mrRow.hover();
    await mrRow.locator('.action-label[aria-label="Show Diff"]').click();
    await page.locator(".tab").filter({ hasText: `mr1: ${ws.branch}` }).waitFor({ timeout: LONG });
    assert.deepEqual((await diffEntries()).map((e) => [e.path, e.status]), [["calc.py", ""], ["test_calc.py", "A"]]);
    await page.screenshot({ path: path.join(OUT, "diff-merged.png") });
    const taskRow = row(pane("Tasks"), /^Add a parser.*merged/);
    await taskRow.hover();
    await page.waitForTimeout(300);
    assert.equal(await taskRow.locator('.action-label[aria-label="Open Task Worktree"]').count(), 0);
    await taskRow.click({ button: "right" });
    const menu = page.locator(".context-view .monaco-menu");
    await menu.waitFor({ timeout: LONG });
    assert.doesNotMatch(await menu.innerText(), /Open Task Worktree/);
    await page.keyboard.press("Escape");
  });

  step("the Agents view's running times tick; a session whose process died is shown interrupted", async () => {
    // Another stoneforge process runs a session (as a `sf serve` would), then dies without ending it.
    const code = [
      "import sys, time",
      "from pathlib import Path",
      "from stoneforge.models import SessionRole",
      "from stoneforge.service import Service",
      `s = Service.open(Path(${JSON.stringify(ws.root)}))`,
      `print(s.store.start_session(${JSON.stringify(ws.blockedTaskId)}, SessionRole.WORKER).id, flush=True)`,
      "time.sleep(600)",
    ].join("\n");
    const child = spawn(venvPython(), ["-c", code], { env: isolatedEnv(), stdio: ["ignore", "pipe", "inherit"] });
    try {
      const sessionId = await new Promise<string>((resolve) => child.stdout!.once("data", (d: Buffer) => resolve(d.toString().trim())));
      const agents = pane("Agents");
      const agentRow = row(agents, new RegExp(`worker ${sessionId}`));
      await agentRow.waitFor({ timeout: LONG });
      const first = /(\d+)s$/.exec(await agentRow.innerText());
      // No store change happens meanwhile: only the view's own timer can move the time on.
      const seconds = async () => Number(/(\d+)s\s*$/.exec(await agentRow.innerText())?.[1] ?? 0);
      const deadline = Date.now() + LONG;
      while ((await seconds()) < Number(first?.[1] ?? 0) + 2) {
        assert.ok(Date.now() < deadline, `the running time stays at "${await agentRow.innerText()}"`);
        await page.waitForTimeout(250);
      }
      await agents.screenshot({ path: path.join(OUT, "agents-ticking.png") });
      await stopTree(child);
      // Any store change refreshes the view: the dead process's session is no longer "running".
      execFileSync(sfPath(), ["task", "create", "--title", "Nudge"], { cwd: ws.root });
      await row(agents, new RegExp(`worker ${sessionId} · interrupted`)).waitFor({ timeout: LONG });
      await row(agents, /Orchestration is stopped/).waitFor();
      await agents.screenshot({ path: path.join(OUT, "agents-interrupted.png") });
    } finally {
      await stopTree(child);
    }
  });

  step("after the server crashes it is restarted, and the views follow the store again", async () => {
    const lspPids = () =>
      descendants(server!.proc.pid!).filter((pid) => {
        try {
          return /\blsp\0--stdio\b/.test(fs.readFileSync(`/proc/${pid}/cmdline`, "utf8"));
        } catch {
          return false;
        }
      });
    const [before] = lspPids();
    assert.ok(before, "sf lsp runs under code-server");
    process.kill(before, "SIGKILL");
    // A change made elsewhere (the CLI) reaches the view only through the restarted server.
    execFileSync(sfPath(), ["task", "create", "--title", "Made in a terminal"], { cwd: ws.root });
    await row(pane("Tasks"), /Made in a terminal/).waitFor({ timeout: LONG });
    const after = lspPids();
    assert.equal(after.length, 1);
    assert.notEqual(after[0], before);
    // And the new server's stoneforge/changed notifications reach the views.
    execFileSync(sfPath(), ["task", "create", "--title", "Made after the restart"], { cwd: ws.root });
    await row(pane("Tasks"), /Made after the restart/).waitFor({ timeout: LONG });
  });

  step("screenshot of the Tasks view", async () => {
    await page.keyboard.press("Escape");
    await runCommand("Notifications: Clear All Notifications");
    const tasks = pane("Tasks");
    await row(tasks, new RegExp(NEW_TASK)).waitFor();
    // Widen the side bar so the rows' descriptions are readable in the picture.
    const bar = (await page.locator(".part.sidebar").boundingBox())!;
    await page.mouse.move(bar.x + bar.width - 1, bar.y + bar.height / 2);
    await page.mouse.down();
    await page.mouse.move(bar.x + 560, bar.y + bar.height / 2, { steps: 5 });
    await page.mouse.up();
    const file = path.join(OUT, "tasks-view.png");
    await page.locator(".part.sidebar").screenshot({ path: file });
    await page.screenshot({ path: path.join(OUT, "workbench.png") });
    assert.ok(fs.statSync(file).size > 1000);
  });

  step("a server that cannot start says why and how to fix it; fixing the setting brings it back", async () => {
    // A workspace setting, as a person would put in .vscode/settings.json (VS Code watches the
    // workspace's files; code-server does not notice edits to the user settings file).
    const settings = path.join(ws.root, ".vscode", "settings.json");
    const setServerCommand = (value: string) => {
      fs.mkdirSync(path.dirname(settings), { recursive: true });
      fs.writeFileSync(settings, JSON.stringify({ "stoneforge.serverCommand": value }));
    };
    const missing = path.join(path.dirname(sfPath()), "no-such-sf");
    setServerCommand(missing);
    const message = toast(/cannot start the language server/);
    await message.waitFor({ timeout: LONG });
    const text = (await message.innerText()).replace(/\s+/g, " ");
    assert.ok(text.includes(`${missing}\` (from the stoneforge.serverCommand setting) does not exist`), text);
    assert.match(text, /set `stoneforge\.serverCommand` to the path of `sf`/);
    for (const button of ["Open Settings", "Show Log", "Retry"]) await message.getByRole("button", { name: button }).waitFor();
    const failedWelcome = page.locator(".welcome-view-content").filter({ hasText: "The Stoneforge server is not running" }).first();
    await failedWelcome.waitFor({ timeout: LONG });
    // The welcome view offers the setting (the toast above says why).
    await failedWelcome.getByRole("button", { name: "Open Settings" }).waitFor();
    await page.locator(".statusbar-item").filter({ hasText: "Stoneforge" }).first().waitFor();
    await page.screenshot({ path: path.join(OUT, "server-cannot-start.png") });

    setServerCommand(sfPath());
    await row(pane("Tasks"), new RegExp(NEW_TASK)).waitFor({ timeout: LONG });
  });

  step("in a repository that does not use Stoneforge the side bar writes nothing and offers to set it up", async () => {
    const plainRepo = path.join(tempDir("sf-plain-"), "plain");
    fs.mkdirSync(plainRepo);
    git(plainRepo, "init", "-q", "-b", "main");
    fs.writeFileSync(path.join(plainRepo, "README.md"), "# plain\n");
    git(plainRepo, "add", "README.md");
    git(plainRepo, "-c", "user.name=e2e", "-c", "user.email=e2e@stoneforge.invalid", "commit", "-q", "-m", "init");
    await page.goto(`${server!.url}/?folder=${encodeURIComponent(plainRepo)}`, { timeout: 2 * LONG });
    await page.locator(".monaco-workbench").waitFor({ timeout: LONG });
    // Open the side bar as a person would: the Stoneforge icon in the activity bar.
    await page.locator('.activitybar .action-item a[aria-label^="Stoneforge"]').click({ timeout: LONG });
    const welcome = page.locator(".welcome-view-content").filter({ hasText: "does not use Stoneforge yet" });
    await welcome.waitFor({ timeout: LONG });
    await page.locator(".statusbar-item").filter({ hasText: "Stoneforge: not set up" }).first().waitFor({ timeout: LONG });
    // Nothing new in the repository: no .stoneforge/, nothing for Source Control to show.
    assert.ok(!fs.existsSync(path.join(plainRepo, ".stoneforge")));
    assert.equal(git(plainRepo, "status", "--porcelain", "--ignored"), "");
    await page.screenshot({ path: path.join(OUT, "not-set-up.png") });

    await welcome.getByRole("button", { name: "Initialize Stoneforge Here" }).click();
    await toast(/Stoneforge is set up in .*created \.stoneforge\/config\.yaml/).waitFor({ timeout: LONG });
    await page.locator(".welcome-view-content").filter({ hasText: "No tasks yet" }).waitFor({ timeout: LONG });
    assert.ok(fs.existsSync(path.join(plainRepo, ".stoneforge", "config.yaml")));
    await page.locator(".statusbar-item").filter({ hasText: /stopped/ }).first().waitFor({ timeout: LONG });
  });
});
