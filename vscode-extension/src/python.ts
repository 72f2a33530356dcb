// The interpreter selected in the Python extension, if it is installed. Its API is used through a
// minimal structural type rather than a dependency on @vscode/python-extension.
import * as vscode from "vscode";

interface PythonEnvironmentsApi {
  getActiveEnvironmentPath(resource?: vscode.Uri): { path: string };
  resolveEnvironment(env: { path: string }): Promise<{ executable: { uri?: vscode.Uri } } | undefined>;
  onDidChangeActiveEnvironmentPath: vscode.Event<unknown>;
}

async function environmentsApi(): Promise<PythonEnvironmentsApi | undefined> {
  const ext = vscode.extensions.getExtension<{ environments?: PythonEnvironmentsApi }>("ms-python.python");
  if (!ext) return undefined;
  try {
    const exports = ext.isActive ? ext.exports : await ext.activate();
    return exports?.environments;
  } catch {
    return undefined;
  }
}

export async function selectedInterpreter(resource: vscode.Uri): Promise<string | undefined> {
  const api = await environmentsApi();
  if (!api) return undefined;
  try {
    const env = await api.resolveEnvironment(api.getActiveEnvironmentPath(resource));
    return env?.executable.uri?.fsPath;
  } catch {
    return undefined;
  }
}

export async function onInterpreterChanged(listener: () => void): Promise<vscode.Disposable | undefined> {
  return (await environmentsApi())?.onDidChangeActiveEnvironmentPath(listener);
}
