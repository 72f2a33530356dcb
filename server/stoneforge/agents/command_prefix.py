"""The script every command of an agent's CLI starts through, so none of them sees a credential.

Claude Code starts three kinds of processes of its own: the Bash tool's commands, hooks (the
user's and the project's), and stdio MCP servers. It starts all three through
`CLAUDE_CODE_SHELL_PREFIX` (checked against the bundled CLI: the prefix gets each as one shell
command line), so one script is the single choke point. It removes from the environment, decided
at run time (settings files may add variables the orchestrator never saw):

- the CLI's own credentials and endpoint (`CLI_CREDENTIALS`, `ANTHROPIC_BASE_URL`), always;
- every variable whose name says it is a secret (`redact.SECRET_NAME_PATTERN`, the same text
  `redact.is_secret_name` uses), except those a stdio MCP server's own `env` names: the server's
  config carries `SF_KEEP_ENV=NAME,...` (see :mod:`~stoneforge.agents.claude_setup`). The CLI's
  credentials and our `SF_MCP_SECRET_*` carriers are never kept, whatever that list says.

Then it runs the command with bash, or, when the session is contained, in a nested bubblewrap
with a PID namespace of its own (see :mod:`~stoneforge.agents.sandbox`). Variables are removed
with `env -u` on the `exec`, so nothing of the old environment survives in the process that
runs the command (under bubblewrap that process stays PID 1 of the command's namespace).
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Sequence
from pathlib import Path

from stoneforge.redact import AGENT_ONLY_VARS, SECRET_NAME_PATTERN

#: Credentials the CLI itself needs: removed only from the environment of the commands it runs.
CLI_CREDENTIALS = frozenset(
    {"ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"}
)
#: A stdio MCP server's config sets this to the comma-separated names its own `env` gives it.
KEEP_VAR = "SF_KEEP_ENV"
#: Session variables that carry an MCP server's secret env values to the CLI (never on argv and
#: never in a file); the CLI expands `${SF_MCP_SECRET_<n>}` in the server's config.
SECRET_CARRIER_PREFIX = "SF_MCP_SECRET_"

_SCRIPT = """\
#!{bash}
# Written by stoneforge: one command of this agent's CLI (a Bash tool call, a hook or a stdio
# MCP server) without credentials. See stoneforge/agents/command_prefix.py.
keep=",${{{keep}:-}},"
secret={pattern}
drop=()
while IFS= read -r -d '' entry; do
  name=${{entry%%=*}}
  case $name in
    {always}|{keep}|{carrier}*) drop+=(-u "$name"); continue ;;
  esac
  shopt -s nocasematch
  if [[ $name =~ $secret ]]; then hit=1; else hit=0; fi
  shopt -u nocasematch
  if [[ $hit == 1 && $keep != *",$name,"* ]]; then drop+=(-u "$name"); fi
done < <(env -0)
exec env "${{drop[@]}}" {runner} -c "$1"
"""


def render(nested: Sequence[str] = ()) -> str:
    """The prefix script's text; `nested` is the bubblewrap command (ending in `--`) to run each
    command in, or empty to run it directly."""
    bash = shutil.which("bash") or "/bin/bash"
    always = "|".join(sorted({*CLI_CREDENTIALS, *AGENT_ONLY_VARS}))
    return _SCRIPT.format(
        bash=bash,
        keep=KEEP_VAR,
        pattern=shlex.quote(SECRET_NAME_PATTERN),
        always=always,
        carrier=SECRET_CARRIER_PREFIX,
        runner=" ".join(shlex.quote(a) for a in [*nested, bash]),
    )


def write_prefix(dest: Path, nested: Sequence[str] = ()) -> Path:
    """Write the prefix script to `dest` (atomically, mode 0700) and return its path."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.write_text(render(nested))
    tmp.chmod(0o700)
    os.replace(tmp, dest)
    return dest
