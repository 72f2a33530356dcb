"""Which shell commands an agent may not run: git commands that would land code.

Agents cannot push, merge, pull, rebase onto the target branch, check it out, reset to
it or move its ref: only the steward's code path lands work. :meth:`BashPolicy.check`
parses the command the way a shell would split it (``&&``, ``;``, pipes, subshells,
``$(...)``, ``bash -c``, ``env``/``timeout`` wrappers, ``VAR=x`` prefixes, ``git -C dir``)
and returns a reason when any simple command in it is refused. Anything it cannot
parse is refused too. This is a guard against accidents and drift, not a sandbox.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass

_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_SEPARATOR_CHARS = set(";&|()")
_REDIRECTS = {">", ">>", "<", "<<", "<<<", ">&", "<&", "&>", "&>>", ">|", "<>"}
_KEYWORDS = {"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "!", "{", "}"}
_SHELLS = {"bash", "sh", "zsh", "dash", "ksh"}
# Wrappers that run their arguments as a command; options are skipped.
_WRAPPERS = {"command", "builtin", "exec", "nohup", "time", "nice", "ionice", "stdbuf",
             "sudo", "doas", "xargs", "setsid", "chronic", "unbuffer", "flock"}  # fmt: skip
_GIT_OPTS_WITH_VALUE = {"-C", "-c", "--git-dir", "--work-tree", "--namespace", "--exec-path",
                        "--config-env", "--super-prefix", "--attr-source"}  # fmt: skip
_SUBSTITUTION = re.compile(r"\$\(([^()]*(?:\([^()]*\)[^()]*)*)\)|`([^`]*)`")
_REV_SUFFIX = re.compile(r"(@\{[^}]*\}|[~^]\d*)+$")


class UnparsableCommand(ValueError):
    pass


def _split_lines(command: str) -> str:
    """Turn unquoted newlines into `;` (shlex treats them as blanks)."""
    out: list[str] = []
    quote: str | None = None
    escaped = False
    for ch in command.replace("\\\n", " "):
        if escaped:
            escaped = False
        elif ch == "\\" and quote != "'":
            escaped = True
        elif quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "\n":
            out.append(" ; ")
            continue
        out.append(ch)
    return "".join(out)


def simple_commands(command: str, _depth: int = 0) -> Iterator[list[str]]:
    """Yield the argv of every simple command in a shell command line, nested ones too."""
    if _depth > 8:
        raise UnparsableCommand("command nests too deeply")
    # Command substitutions run wherever they appear, quoted or not; each is checked on
    # its own and stands as a plain word in the outer command.
    for match in _SUBSTITUTION.finditer(command):
        yield from simple_commands(match.group(1) or match.group(2) or "", _depth + 1)
    command = _SUBSTITUTION.sub("_", command)
    lexer = shlex.shlex(_split_lines(command), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError as exc:  # unbalanced quotes and the like
        raise UnparsableCommand(str(exc)) from exc
    argv: list[str] = []
    skip_next = False
    for token in tokens:
        if skip_next:
            skip_next = False
        elif token in _REDIRECTS or (token and set(token) <= set("<>&") and ">" in token):
            skip_next = True
        elif token and set(token) <= _SEPARATOR_CHARS | {"<", ">"}:
            if argv:
                yield from _unwrap(argv, _depth)
            argv = []
        else:
            argv.append(token)
    if argv:
        yield from _unwrap(argv, _depth)


def _unwrap(argv: list[str], depth: int) -> Iterator[list[str]]:
    """Strip assignments, keywords and wrappers; descend into `sh -c` and `eval`."""
    i = 0
    while i < len(argv):
        word = argv[i]
        name = os.path.basename(word)
        if _ASSIGNMENT.match(word) or word in _KEYWORDS:
            i += 1
        elif name == "env":
            i += 1
            while i < len(argv) and (argv[i].startswith("-") or _ASSIGNMENT.match(argv[i])):
                i += 2 if argv[i] in ("-u", "-C", "-S") else 1
        elif name in _WRAPPERS:
            i += 1
            while i < len(argv) and argv[i].startswith("-"):
                i += 2 if argv[i] in ("-n", "-I", "-u", "-c", "-g", "-o", "-e") else 1
        elif name == "timeout":
            i += 1
            while i < len(argv) and argv[i].startswith("-"):
                i += 1
            i += 1  # the duration
        elif name in _SHELLS:
            rest = argv[i + 1 :]
            for j, opt in enumerate(rest):
                if opt.startswith("-") and not opt.startswith("--") and "c" in opt:
                    if j + 1 < len(rest):
                        yield from simple_commands(rest[j + 1], depth + 1)
                    return
            yield argv[i:]
            return
        elif name == "eval":
            yield from simple_commands(" ".join(argv[i + 1 :]), depth + 1)
            return
        else:
            yield argv[i:]
            return


@dataclass(frozen=True)
class GitInvocation:
    subcommand: str
    args: list[str]
    config: list[str]  # values of `-c key=value`


def parse_git(argv: list[str]) -> GitInvocation | None:
    if not argv or os.path.basename(argv[0]) != "git":
        return None
    i, config = 1, []
    while i < len(argv) and argv[i].startswith("-"):
        opt = argv[i]
        if opt in _GIT_OPTS_WITH_VALUE:
            if opt == "-c" and i + 1 < len(argv):
                config.append(argv[i + 1])
            i += 2
        else:
            i += 1
    if i >= len(argv):
        return None
    return GitInvocation(argv[i], argv[i + 1 :], config)


@dataclass(frozen=True)
class BashPolicy:
    """Refuses git commands that land code or move the target branch."""

    target_branch: str = "main"

    def check(self, command: str) -> str | None:
        """Return why `command` is refused, or None when it may run."""
        try:
            commands = list(simple_commands(command))
        except UnparsableCommand as exc:
            return f"stoneforge could not parse this command safely ({exc}); simplify it"
        for argv in commands:
            git = parse_git(argv)
            if git is not None and (reason := self._check_git(git)):
                return (
                    f"stoneforge: {reason}. The merge queue lands your work; commit to your branch."
                )
        return None

    def refers_to_target(self, word: str) -> bool:
        target = self.target_branch
        for part in word.lstrip("+").split(":"):
            ref = _REV_SUFFIX.sub("", part)
            if ref == target or ref.endswith("/" + target):
                return True
        return False

    def _mentions_target(self, args: list[str]) -> bool:
        return any(self.refers_to_target(a.split("=", 1)[-1]) for a in args)

    def _check_git(self, git: GitInvocation) -> str | None:
        sub, target = git.subcommand, self.target_branch
        # Words after `--` are paths, never revisions.
        args = git.args[: git.args.index("--")] if "--" in git.args else git.args
        positional = [a for a in args if not a.startswith("-")]
        if any(c.startswith("alias.") for c in git.config):
            return "git aliases are not allowed"
        if sub == "push":
            return "git push is not allowed"
        if sub == "pull":
            return "git pull is not allowed (it merges)"
        if sub == "merge" and not {"--abort", "--quit"} & set(args):
            return "git merge is not allowed"
        if sub == "rebase":
            ongoing = {
                "--abort",
                "--continue",
                "--skip",
                "--quit",
                "--edit-todo",
                "--show-current-patch",
            }
            if ongoing & set(args):
                return None
            if self._mentions_target(args) or not positional:
                return f"git rebase onto {target} is not allowed"
        if sub in ("checkout", "switch") and "-" in args:
            return f"git {sub} - is not allowed (it may switch to {target})"
        if sub in ("checkout", "switch", "worktree", "symbolic-ref") and self._mentions_target(
            args
        ):
            return f"git {sub} of {target} is not allowed"
        if sub in ("reset", "update-ref") and self._mentions_target(args):
            return f"git {sub} to {target} is not allowed"
        if sub == "update-ref" and "--stdin" in args:
            return "git update-ref --stdin is not allowed"
        if sub == "branch" and self._mentions_target(positional):
            moving = {"-f", "--force", "-d", "-D", "--delete", "-m", "-M", "--move", "-c", "-C"}
            if moving & set(args):
                return f"changing branch {target} is not allowed"
        if sub == "fetch" and any(
            ":" in a and self.refers_to_target(a.split(":")[-1]) for a in args
        ):
            return f"fetching into {target} is not allowed"
        if sub == "config" and any(a.startswith("alias.") for a in args):
            return "git aliases are not allowed"
        return None

    def disallowed_tool_rules(self) -> list[str]:
        """The CLI's own deny rules for the plain spellings (defense in depth)."""
        t = self.target_branch
        prefixes = ["git push", "git pull", "git merge", f"git rebase {t}",
                    f"git rebase origin/{t}", f"git checkout {t}", f"git switch {t}",
                    f"git reset --hard {t}", f"git reset --hard origin/{t}",
                    f"git branch -f {t}", f"git update-ref refs/heads/{t}"]  # fmt: skip
        return [f"Bash({p}:*)" for p in prefixes]


# -- read-only sessions (the steward's reviewer) ------------------------------------------------

#: Programs that only read (with the options refused below).
_READ_ONLY_PROGRAMS = frozenset(
    {"ls", "cat", "head", "tail", "wc", "grep", "egrep", "fgrep", "rg", "find", "tree", "stat",
     "du", "diff", "cmp", "sort", "cut", "tr", "nl", "echo", "printf", "pwd", "basename",
     "dirname", "realpath", "readlink", "true", "false", "test", "[", "which", "type", "od",
     "hexdump", "md5sum", "sha1sum", "sha256sum", "column", "jq", "git"}
)  # fmt: skip
#: git subcommands that read the repository and write nothing of it.
_READ_ONLY_GIT = frozenset(
    {"log", "show", "diff", "status", "blame", "annotate", "grep", "ls-files", "ls-tree",
     "rev-parse", "rev-list", "cat-file", "merge-base", "describe", "shortlog", "name-rev",
     "for-each-ref", "show-ref", "whatchanged", "count-objects", "diff-tree", "diff-files",
     "diff-index", "range-diff", "cherry", "version", "help", "var", "check-ignore",
     "check-attr", "branch", "tag"}
)  # fmt: skip
#: Options that make a reading program write or run something.
_WRITING_OPTIONS = {
    "find": ("-delete", "-exec", "-execdir", "-ok", "-okdir", "-fprint", "-fprint0", "-fprintf",
             "-fls"),
    "sort": ("-o", "--output", "--compress-program"),
    "tree": ("-o",),
    "rg": ("--pre",),
    "git": ("--output", "-O", "--open-files-in-pager", "--ext-diff", "--textconv"),
}  # fmt: skip
#: git options that set configuration (a pager, an fsmonitor, an external diff runs commands).
_GIT_CONFIG_OPTIONS = ("-c", "--config-env", "--exec-path")
#: `git branch` / `git tag` only list with these (any other word names a ref to make or move).
_GIT_LISTING = {"-a", "-r", "-l", "--list", "-v", "-vv", "--all", "--remotes", "--contains",
                "--merged", "--no-merged", "--points-at", "--sort", "--format", "-n",
                "--show-current", "--column", "--no-column", "--color", "--no-color"}  # fmt: skip
_OUTPUT_REDIRECT = re.compile(r"(?<![<&0-9])[0-9]*(>>?|>\||&>>?)")


@dataclass(frozen=True)
class ReadOnlyBashPolicy(BashPolicy):
    """Only commands that read: a fixed list of programs, git's reading subcommands, no output
    redirection to a file. For a session that must change nothing (the steward's review)."""

    def check(self, command: str) -> str | None:
        if _writes_by_redirect(command):
            return (
                "stoneforge: this session is read-only: output redirection to a file (`>`, "
                "`>>`, `tee`) is not allowed"
            )
        try:
            commands = list(simple_commands(command))
        except UnparsableCommand as exc:
            return f"stoneforge could not parse this command safely ({exc}); simplify it"
        for argv in commands:
            reason = self._check_argv(argv)
            if reason:
                return f"stoneforge: this session is read-only: {reason}"
        return None

    def _check_argv(self, argv: list[str]) -> str | None:
        name = os.path.basename(argv[0])
        if name not in _READ_ONLY_PROGRAMS:
            return f"`{name}` may change things; use Read, Glob, Grep or a reading command"
        for option in _WRITING_OPTIONS.get(name, ()):
            if any(a == option or a.startswith(option + "=") for a in argv[1:]):
                return f"`{name} {option}` may write files or run commands"
        if name != "git":
            return None
        if any(a in _GIT_CONFIG_OPTIONS or a.startswith("--config-env=") for a in argv[1:]):
            return "git configuration on the command line (`-c`) is not allowed"
        git = parse_git(argv)
        if git is None:
            return None  # `git --version` and the like
        if git.subcommand not in _READ_ONLY_GIT:
            return f"`git {git.subcommand}` changes the repository; only reading git commands run"
        if git.subcommand in ("branch", "tag"):
            words = [a for a in git.args if not a.startswith("-")]
            flags = [a.split("=", 1)[0] for a in git.args if a.startswith("-")]
            listing_args = {"--contains", "--merged", "--no-merged", "--points-at", "--sort",
                            "--format", "-n"}  # fmt: skip
            if any(f not in _GIT_LISTING for f in flags) or (
                words and not (set(flags) & (listing_args | {"-l", "--list"}))
            ):
                return f"`git {git.subcommand}` with these arguments changes refs; list them only"
        return None

    def disallowed_tool_rules(self) -> list[str]:
        return [
            *super().disallowed_tool_rules(),
            *(f"Bash(git {sub}:*)" for sub in ("commit", "reset", "checkout", "switch", "add",
                                                 "rm", "mv", "restore", "stash", "clean",
                                                 "cherry-pick", "revert", "am", "apply",
                                                 "update-ref", "worktree")),
        ]  # fmt: skip


def _writes_by_redirect(command: str) -> bool:
    """Whether ``command`` sends output into a file (`>`, `>>`, `&>`, `>|`) or through `tee`.

    Quoted text is blanked first, so `grep '>' file` reads; `2>/dev/null` and `>&2` stay
    allowed (they write no file of the repository).
    """
    bare = re.sub(r"'[^']*'|\"(?:\\.|[^\"\\])*\"", "''", command)
    for match in _OUTPUT_REDIRECT.finditer(bare):
        rest = bare[match.end() :].lstrip()
        if rest.startswith("&") or rest.startswith("/dev/null"):
            continue
        return True
    return any(os.path.basename(argv[0]) == "tee" for argv in _safe_commands(command))


def _safe_commands(command: str) -> list[list[str]]:
    try:
        return [argv for argv in simple_commands(command) if argv]
    except UnparsableCommand:
        return []
