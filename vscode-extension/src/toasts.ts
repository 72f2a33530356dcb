// The server's pop-ups as toasts: failed tasks are gathered for a moment and shown as one toast
// with Show Task and Retry buttons; other messages are shown as they come.
import * as vscode from "vscode";
import { type Failure, failureToast, parseFailure } from "./model/messages";
import { errorText, type ServerMessage, type StoneforgeServer } from "./server";
import type { Views } from "./views/views";

const GATHER_MS = 1500;

export class Toasts implements vscode.Disposable {
  private pending: Failure[] = [];
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly server: StoneforgeServer,
    private readonly views: Views,
  ) {}

  show(m: ServerMessage): void {
    const failure = m.type === 1 ? parseFailure(m.message) : undefined;
    if (failure) {
      this.server.output.appendLine(`[stoneforge] ${m.message}`); // the whole note, every attempt
      this.pending.push(failure);
      this.timer ??= setTimeout(() => this.flush(), GATHER_MS);
      return;
    }
    const show = m.type === 1 ? vscode.window.showErrorMessage : m.type === 2 ? vscode.window.showWarningMessage : vscode.window.showInformationMessage;
    void show(m.message);
  }

  private flush(): void {
    this.timer = undefined;
    const { text, taskIds } = failureToast(this.pending.splice(0));
    const one = taskIds.length === 1;
    const showTask = one ? "Show Task" : "Show Tasks";
    const retry = one ? "Retry Task" : "Retry All";
    void vscode.window.showErrorMessage(text, showTask, retry, "Show Log").then(async (choice) => {
      try {
        if (choice === showTask) await this.views.revealTask(taskIds[0]!);
        else if (choice === retry) for (const id of taskIds) await this.server.api.retryTask(id);
        else if (choice === "Show Log") this.server.output.show();
      } catch (e) {
        void vscode.window.showErrorMessage(`Stoneforge: ${errorText(e)}`);
      }
    });
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
  }
}
