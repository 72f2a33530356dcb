// Quick-input flows: the steps a person goes through for Create Task and Create Plan.
import * as vscode from "vscode";
import { type Choice, DEFAULT_PRIORITY, PRIORITY_CHOICES, dependencyChoices, planChoices } from "./model/choices";
import type { CreatePlanParams, CreateTaskParams, Plan, Task } from "./protocol";

type Item<T> = vscode.QuickPickItem & { value: T };

function items<T>(choices: Choice<T>[]): Item<T>[] {
  return choices.map((c) => ({ ...c }));
}

/** One quick pick; resolves to the accepted items, or undefined when dismissed. */
function pick<T>(opts: {
  title: string;
  placeholder: string;
  choices: Choice<T>[];
  active?: (c: Choice<T>) => boolean;
  many?: boolean;
}): Promise<T[] | undefined> {
  const qp = vscode.window.createQuickPick<Item<T>>();
  qp.title = opts.title;
  qp.placeholder = opts.placeholder;
  qp.canSelectMany = opts.many ?? false;
  qp.items = items(opts.choices);
  if (opts.active) qp.activeItems = qp.items.filter((i) => opts.active!(i));
  return new Promise((resolve) => {
    let done = false;
    qp.onDidAccept(() => {
      done = true;
      const chosen = qp.canSelectMany ? qp.selectedItems : qp.activeItems.slice(0, 1);
      resolve(chosen.map((i) => i.value));
      qp.hide();
    });
    qp.onDidHide(() => {
      if (!done) resolve(undefined);
      qp.dispose();
    });
    qp.show();
  });
}

export async function askNewTask(
  existing: Task[],
  plans: Array<Pick<Plan, "id" | "title" | "status">>,
  planId?: string,
): Promise<CreateTaskParams | undefined> {
  const deps = dependencyChoices(existing);
  // Steps: title, description, plan (unless started from a plan's row), priority, dependencies (if any).
  const steps = 3 + (planId || !plans.length ? 0 : 1) + (deps.length ? 1 : 0);
  let step = 0;
  const next = (what: string) => `Create Task (${++step}/${steps})${what ? `: ${what}` : ""}`;
  const title = await vscode.window.showInputBox({
    title: next(""),
    prompt: "What should the agent do?",
    placeHolder: "Task title, e.g. Add a config parser",
    ignoreFocusOut: true,
    validateInput: (v) => (v.trim() ? undefined : "A task needs a title"),
  });
  if (title === undefined) return undefined;
  const description = await vscode.window.showInputBox({
    title: next("description"),
    prompt: "Details for the agent: what done looks like, files, constraints (optional: press Enter to skip)",
    ignoreFocusOut: true,
  });
  if (description === undefined) return undefined;
  let plan = planId;
  if (!planId && plans.length) {
    const chosen = await pick({ title: next("plan"), placeholder: "Add it to a plan?", choices: planChoices(plans) });
    if (!chosen) return undefined;
    plan = chosen[0];
  }
  const priority = await pick({
    title: next("priority"),
    placeholder: "Priority, 1 is the most urgent",
    choices: PRIORITY_CHOICES,
    active: (c) => c.value === DEFAULT_PRIORITY,
  });
  if (!priority) return undefined;
  let dependsOn: string[] = [];
  if (deps.length) {
    const chosen = await pick({
      title: next("dependencies"),
      placeholder: "Tasks that must be merged first (none: just press Enter)",
      choices: deps,
      many: true,
    });
    if (!chosen) return undefined;
    dependsOn = chosen;
  }
  return {
    title: title.trim(),
    ...(description.trim() ? { description: description.trim() } : {}),
    priority: priority[0] ?? DEFAULT_PRIORITY,
    ...(dependsOn.length ? { dependsOn } : {}),
    ...(plan ? { planId: plan } : {}),
  };
}

export async function askNewPlan(): Promise<CreatePlanParams | undefined> {
  const title = await vscode.window.showInputBox({
    title: "Create Plan from Goal (1/3)",
    prompt: "Name of the plan",
    placeHolder: "e.g. Sprint 14",
    ignoreFocusOut: true,
    validateInput: (v) => (v.trim() ? undefined : "A plan needs a title"),
  });
  if (title === undefined) return undefined;
  const goal = await vscode.window.showInputBox({
    title: "Create Plan from Goal (2/3)",
    prompt: "The goal: a director agent turns it into tasks (leave empty to add tasks yourself)",
    ignoreFocusOut: true,
  });
  if (goal === undefined) return undefined;
  const activate = await pick({
    title: "Create Plan from Goal (3/3)",
    placeholder: "Dispatch its tasks now?",
    choices: [
      { label: "Activate", description: "its tasks are dispatched to agents", value: true },
      { label: "Keep as draft", description: "activate it later", value: false },
    ],
  });
  if (!activate) return undefined;
  return { title: title.trim(), ...(goal.trim() ? { goal: goal.trim() } : {}), activate: activate[0] ?? false };
}

export async function pickOne<T>(title: string, choices: Choice<T>[], empty: string): Promise<T | undefined> {
  if (!choices.length) {
    void vscode.window.showInformationMessage(empty);
    return undefined;
  }
  return (await pick({ title, placeholder: title, choices }))?.[0];
}
