// Typed calls of the server's custom requests. Takes any JSON-RPC sender, so the extension uses it
// over the LanguageClient and the protocol tests use it over a bare vscode-jsonrpc connection:
// both exercise exactly the same calls.
import {
  type CommitDiff,
  type CreatePlanParams,
  type CreateTaskParams,
  type Forecast,
  type Handoff,
  type MergeDiff,
  type MergeRequest,
  type MergeStatus,
  Methods,
  type Plan,
  type Status,
  type Task,
  type TaskStatus,
  type LeanTaskTree,
  type TaskDetails,
  type InitResult,
  type WorkspaceState,
} from "./protocol";

export interface RequestSender {
  sendRequest<R>(method: string, params: unknown): Promise<R>;
}

export class StoneforgeApi {
  constructor(private readonly sender: RequestSender) {}

  private call<R>(method: string, params: object = {}): Promise<R> {
    return this.sender.sendRequest<R>(method, params);
  }

  createTask(params: CreateTaskParams): Promise<Task> {
    return this.call(Methods.createTask, params);
  }

  createPlan(params: CreatePlanParams): Promise<Plan> {
    return this.call(Methods.createPlan, params);
  }

  activatePlan(planId: string): Promise<Plan> {
    return this.call(Methods.activatePlan, { planId });
  }

  cancelTask(id: string): Promise<Task> {
    return this.call(Methods.cancelTask, { id });
  }

  /** `budgetUsd`: the task's own budget, a total (what it spent counts). */
  retryTask(id: string, budgetUsd?: number): Promise<Task> {
    return this.call(Methods.retryTask, budgetUsd === undefined ? { id } : { id, budgetUsd });
  }

  async listTasks(filter: { planId?: string; status?: TaskStatus } = {}): Promise<Task[]> {
    return (await this.call<{ tasks: Task[] }>(Methods.listTasks, filter)).tasks;
  }

  /** The lean board (a row per task) and its version; details come from {@link task}. */
  taskTree(): Promise<LeanTaskTree> {
    return this.call(Methods.taskTree);
  }

  /** One task in full: sessions, handoffs, merge request with checks, questions, refusals. */
  task(id: string): Promise<TaskDetails> {
    return this.call(Methods.task, { id });
  }

  async handoffs(taskId?: string): Promise<Handoff[]> {
    const params = taskId === undefined ? {} : { taskId };
    return (await this.call<{ handoffs: Handoff[] }>(Methods.handoffs, params)).handoffs;
  }

  async mergeRequests(status?: MergeStatus): Promise<MergeRequest[]> {
    const params = status === undefined ? {} : { status };
    const result = await this.call<{ mergeRequests: MergeRequest[] }>(Methods.mergeRequests, params);
    return result.mergeRequests;
  }

  mergeDiff(id: string): Promise<MergeDiff> {
    return this.call(Methods.mergeDiff, { id });
  }

  /** What one commit changed (a commit linked from a handoff or the checks document). */
  commitDiff(commit: string): Promise<CommitDiff> {
    return this.call(Methods.commitDiff, { commit });
  }

  approveMerge(id: string): Promise<MergeRequest> {
    return this.call(Methods.approveMerge, { id });
  }

  rejectMerge(id: string, reason: string): Promise<MergeRequest> {
    return this.call(Methods.rejectMerge, { id, reason });
  }

  status(): Promise<Status> {
    return this.call(Methods.status);
  }

  serve(maxConcurrent?: number): Promise<{ serving: boolean }> {
    return this.call(Methods.serve, maxConcurrent === undefined ? {} : { maxConcurrent });
  }

  stop(): Promise<{ serving: boolean }> {
    return this.call(Methods.stop);
  }

  forecast(): Promise<Forecast> {
    return this.call(Methods.forecast);
  }

  workspace(): Promise<WorkspaceState> {
    return this.call(Methods.workspace);
  }

  /** `sf init` for the folder the server runs in. */
  init(): Promise<InitResult> {
    return this.call(Methods.init);
  }
}
