// The status-bar item: busy/total agents, ready tasks and the merge queue; click shows the views.
import * as vscode from "vscode";
import { statusBarView } from "./model/statusBarModel";
import type { Status } from "./protocol";
import type { ServerState } from "./server";

export class StatusBar implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem("stoneforge.status", vscode.StatusBarAlignment.Left, 10);

  constructor() {
    this.item.name = "Stoneforge";
    this.item.command = "stoneforge.ui.focus";
    this.showState("starting");
    this.item.show();
  }

  showState(state: ServerState): void {
    if (state === "running") return; // the next status() call fills it in
    this.item.text = state === "starting" ? "$(loading~spin) Stoneforge" : "$(error) Stoneforge";
    this.item.tooltip = state === "starting" ? "Starting the Stoneforge server…" : "The Stoneforge server is not running. Click to show the views.";
    this.item.backgroundColor = state === "failed" ? new vscode.ThemeColor("statusBarItem.errorBackground") : undefined;
  }

  showUninitialized(): void {
    this.item.text = "$(circle-large-outline) Stoneforge: not set up";
    this.item.tooltip = "This repository does not use Stoneforge yet. Click to show the views and initialize it.";
    this.item.backgroundColor = undefined;
  }

  update(status: Status): void {
    const view = statusBarView(status);
    this.item.text = view.text;
    this.item.tooltip = view.tooltip;
    this.item.backgroundColor = view.attention ? new vscode.ThemeColor("statusBarItem.warningBackground") : undefined;
  }

  dispose(): void {
    this.item.dispose();
  }
}
