"""Every code block of the README and docs/*.md works when copied.

Each document's blocks are taken in order into a fresh directory of their own, as a
reader would copy them:

- ``python``: a block whose first line names a file (``# my_ops.py``) is written there
  (and compiled); any other block is run, with the directory as its working directory
  and on its import path, and must exit 0.
- ``toml`` / ``yaml``: parsed. A block whose first comment names a file is written there,
  so that later blocks and commands can use it. A chain file (it has ``services``) must
  pass ``arroyo check``; an arroyopy pipeline file (``blocks``) ``arroyo validate``; a
  service config must pass ``arroyo ROLE -c FILE --check``, its
  role read from its file name (``listener.toml``, ``operator.toml``, ``publisher.toml``).
- ``bash``: the block must parse (``bash -n``). Each ``arroyo`` command in it (variables
  set earlier in the block are expanded; ``PYTHONPATH=.`` is honoured) is checked against
  the CLI: a service command (``listener``, ``operator``, ``publisher``, ``service``) runs
  with ``--check``; ``check`` runs as it is; ``run`` runs as ``check`` with the same
  arguments; ``deploy`` runs, writing to a file of the test's instead of ``-o``'s;
  ``keys generate`` and ``keys chain`` run (a chain file's keys are made before it is
  checked, as ``arroyo run`` and ``arroyo deploy`` make them); the rest (``status``,
  ``demo``) are only parsed by click. Other commands (pip, docker, supervisord,
  redis-server) are only parsed by bash.
- ``dockerfile``: each instruction is one Docker knows, ``FROM`` first, each ``RUN``
  parses (there is no Docker engine to build it; see tests/integration/test_compose.py).
- ``text``, ``hexdump`` and blocks without a language are output or diagrams: skipped.

A block that is deliberately incomplete says ``partial`` in its fence's info string
(`` ```toml partial ``); it is only parsed. Every other block is meant to be complete.

The directory starts as a reader's checkout would have it: with ``deploy/``. A block whose
first line is only the name of a file of the checkout (``# deploy/chain.toml``) must say
what that file says. Absolute key paths in docs/security.md (``/etc/arroyo/keys/``) are
read as ``keys/`` of the directory, where the CURVE examples find the pairs they name, as
a reader makes them with ``arroyo keys generate`` (:func:`ensure_keys`), unless a block
made them.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
import yaml

from services.cli import main as cli

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SKIPPED = {"", "text", "hexdump"}
CHECKED = {"python", "toml", "yaml", "bash", "dockerfile"}
DOCKERFILE_INSTRUCTIONS = {
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}
FENCE = re.compile(r"^```(?P<info>[^`]*)$")
FILE_NAME = re.compile(r"^#[^\n]*?(?<![\w/.-])(?P<name>[\w/.-]+\.(?:py|toml|yaml|yml))\b")
LOADERS = {"toml": (tomllib.loads, tomllib.TOMLDecodeError),
           "yaml": (yaml.safe_load, yaml.YAMLError)}
SERVICE_COMMANDS = {"listener", "operator", "publisher", "service"}
TIMEOUT = 60


@dataclass(frozen=True)
class Snippet:
    document: Path
    line: int  # of the opening fence, 1-based
    language: str
    partial: bool
    text: str

    @property
    def where(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}"

    @property
    def file_name(self) -> str | None:
        """The file the block's first line names (``# operator.toml, on the ... host``)."""
        first = self.text.lstrip().splitlines()[0] if self.text.strip() else ""
        match = FILE_NAME.match(first)
        return match["name"] if match else None


def snippets(document: Path) -> list[Snippet]:
    found, lines = [], document.read_text().splitlines()
    opening: tuple[int, str] | None = None
    body: list[str] = []
    for number, line in enumerate(lines, 1):
        match = FENCE.match(line)
        if match is None:
            if opening is not None:
                body.append(line)
            continue
        if opening is None:
            opening, body = (number, match["info"].strip()), []
        else:
            words = opening[1].split()
            found.append(Snippet(document, opening[0], words[0] if words else "",
                                 "partial" in words[1:], "\n".join(body) + "\n"))
            opening = None
    assert opening is None, f"{document}: a code block opened at line {opening[0]} never closes"
    return found


def env(directory: Path, pythonpath: str | None = None) -> dict[str, str]:
    """The test's environment, with the tree under test (and ``pythonpath``) importable."""
    paths = [str(directory / p) for p in ([pythonpath] if pythonpath else [])]
    paths += [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def arroyo(args: list[str], directory: Path, pythonpath: str | None = None,
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services", *args], cwd=directory,
                          env=env(directory, pythonpath), capture_output=True, text=True,
                          timeout=TIMEOUT)


def ensure_keys(directory: Path) -> None:
    """The key pairs the CURVE examples name, as ``arroyo keys generate`` writes them (if a
    block has not made them already), and an allow-list directory holding the client's."""
    keys = directory / "keys"
    for name in ("detector", "analysis"):
        if not (keys / f"{name}.key").exists():
            done = arroyo(["keys", "generate", name, "--dir", "keys"], directory)
            assert done.returncode == 0, done.stderr
    (keys / "clients").mkdir(exist_ok=True)
    shutil.copy(keys / "analysis.key", keys / "clients" / "analysis.key")


def config_role(name: str) -> str | None:
    return next((role for role in ("listener", "operator", "publisher") if role in name), None)


class Checker:
    """Checks one document's blocks in order in ``directory``; collects what fails."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        shutil.copytree(ROOT / "deploy", directory / "deploy")  # what a checkout has
        self.failures: list[str] = []
        self.checked = 0
        self.variables: dict[str, str] = {}  # set by blocks so far, as in a reader's shell

    def fail(self, snippet: Snippet, what: str, detail: str = "") -> None:
        self.failures.append(f"{snippet.where}: {what}" + (f"\n    {detail.strip()[-1500:]}"
                                                           if detail.strip() else ""))

    def expect_ok(self, snippet: Snippet, what: str,
                  done: subprocess.CompletedProcess[str]) -> None:
        self.checked += 1
        if done.returncode != 0:
            self.fail(snippet, f"{what} exited {done.returncode}", done.stderr + done.stdout)

    def check(self, snippet: Snippet) -> None:
        if snippet.language in LOADERS:
            self.check_config(snippet)
        else:
            getattr(self, f"check_{snippet.language}")(snippet)

    def check_python(self, snippet: Snippet) -> None:
        try:
            compile(snippet.text, snippet.where, "exec")
        except SyntaxError as exc:
            self.fail(snippet, f"does not compile: {exc}")
            return
        name = snippet.file_name
        if name:
            (self.directory / name).write_text(snippet.text)
        elif not snippet.partial:
            script = self.directory / f"snippet_{snippet.line}.py"
            script.write_text(snippet.text)
            done = subprocess.run([sys.executable, script.name], cwd=self.directory,
                                  env=env(self.directory), capture_output=True, text=True,
                                  timeout=TIMEOUT)
            self.expect_ok(snippet, "python", done)

    def check_config(self, snippet: Snippet) -> None:
        suffix = snippet.language
        load, error = LOADERS[suffix]
        try:
            data = load(snippet.text)
        except error as exc:
            self.fail(snippet, f"is not {suffix.upper()}: {exc}")
            return
        name = snippet.file_name or f"snippet-{snippet.line}.{suffix}"
        text = snippet.text.replace("/etc/arroyo/keys/", "keys/")
        if snippet.text.startswith(f"# {name}\n") and (ROOT / name).is_file():  # shows it
            if load((ROOT / name).read_text()) != data:
                self.fail(snippet, f"differs from {name}, which it shows")
        path = self.directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if snippet.partial:
            return
        if "keys/" in text:
            ensure_keys(self.directory)
        if isinstance(data, dict) and "services" in data:
            if any("host" in service for service in data["services"].values()):
                # links across hosts need the chain's keys, which arroyo run and deploy make
                self.expect_ok(snippet, f"arroyo keys chain {name}",
                               arroyo(["keys", "chain", name], self.directory))
            self.expect_ok(snippet, f"arroyo check {name}", arroyo(["check", name],
                                                                    self.directory))
        elif isinstance(data, dict) and "blocks" in data:  # an arroyopy pipeline file
            self.expect_ok(snippet, f"arroyo validate {name}", arroyo(["validate", name],
                                                                       self.directory))
        elif (role := config_role(name)) is not None:
            self.expect_ok(snippet, f"arroyo {role} -c {name} --check",
                           arroyo([role, "-c", name, "--check"], self.directory, "."))
        else:
            self.fail(snippet, "is neither a chain file nor a service config named for its "
                               "role (listener.toml, operator.toml ...); mark it partial?")

    def check_dockerfile(self, snippet: Snippet) -> None:
        """No Docker engine here: every instruction is one Docker knows, FROM comes first,
        and each RUN passes ``bash -n``."""
        self.checked += 1
        instructions = [line.split(None, 1) for line in commands(snippet.text)
                        if not line.lstrip().startswith("#")]
        unknown = [words[0] for words in instructions
                   if words[0].upper() not in DOCKERFILE_INSTRUCTIONS]
        if unknown or not instructions or instructions[0][0].upper() != "FROM":
            self.fail(snippet, f"is not a Dockerfile: unknown instructions {unknown} or no "
                               "FROM first")
        for words in instructions:
            if words[0].upper() == "RUN" and len(words) > 1:
                done = subprocess.run(["bash", "-n"], input=words[1], capture_output=True,
                                      text=True, timeout=TIMEOUT)
                if done.returncode != 0:
                    self.fail(snippet, f"RUN {words[1]!r} does not parse", done.stderr)

    def check_bash(self, snippet: Snippet) -> None:
        done = subprocess.run(["bash", "-n"], input=snippet.text, capture_output=True,
                              text=True, timeout=TIMEOUT)
        if done.returncode != 0:
            self.fail(snippet, "bash -n fails", done.stderr)
            return
        if snippet.partial:
            return
        variables = self.variables
        for command in commands(snippet.text):
            words = expand(shlex.split(command, comments=True), variables)
            assignments = {}
            while words and re.match(r"^[A-Za-z_]\w*=", words[0]):
                key, _, value = words.pop(0).partition("=")
                assignments[key] = value
            if not words:
                variables.update(assignments)
                continue
            if words[-1] == "&":
                words.pop()
            if words[0] == "arroyo":
                self.check_arroyo(snippet, words[1:], assignments.get("PYTHONPATH"))

    def check_arroyo(self, snippet: Snippet, args: list[str], pythonpath: str | None) -> None:
        shown = shlex.join(["arroyo", *args])
        command = args[0] if args else ""
        try:
            parse(args, self.directory)
        except click.ClickException as exc:
            self.fail(snippet, f"{shown}: the CLI refuses it: {exc.format_message()}")
            return
        if command in SERVICE_COMMANDS:
            run = [*args, "--check"]
        elif command == "check":
            run = args
        elif command == "run":
            run = ["check", *args[1:]]
        elif command == "deploy":
            run = redirect_output(args, self.directory / "deployed.conf")
        elif args[:2] in (["keys", "generate"], ["keys", "chain"]):
            run = args
        else:
            self.checked += 1  # parsed, and that is all that can be done without services
            return
        self.expect_ok(snippet, shown, arroyo(run, self.directory, pythonpath))


def commands(text: str) -> list[str]:
    """The block's commands: continuation lines joined, blank lines left out."""
    joined = re.sub(r"\\\n", " ", text)
    return [line for line in joined.splitlines() if line.strip()]


def expand(words: list[str], variables: dict[str, str]) -> list[str]:
    """``$NAME`` and ``${NAME}`` from the block's own assignments; ``$(command -v arroyo)``
    as ``arroyo``."""
    def one(word: str) -> str:
        word = word.replace("$(command -v arroyo)", "arroyo")
        return re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m[1], m[0]), word)

    return [one(word) for word in words]


def redirect_output(args: list[str], path: Path) -> list[str]:
    """``args`` with the value of ``-o``/``--output`` (after ``deploy``) replaced by ``path``."""
    result = list(args)
    for index, word in enumerate(result[:-1]):
        if word in ("-o", "--output"):
            result[index + 1] = str(path)
    return result


def parse(args: list[str], directory: Path) -> None:
    """Parse ``arroyo ARGS`` with click, down to the last subcommand, without running it."""
    cwd = Path.cwd()
    os.chdir(directory)  # click.Path(exists=True) looks relative to the working directory
    try:
        command: click.Command = cli
        context, rest = click.Context(cli, info_name="arroyo"), list(args)
        while isinstance(command, click.Group) and rest:  # our groups take no options
            sub = command.get_command(context, rest[0])
            if sub is None:
                raise click.UsageError(f"no command {rest[0]!r} in {context.command_path!r}")
            context = click.Context(sub, info_name=rest[0], parent=context)
            command, rest = sub, rest[1:]
        command.make_context(context.info_name, rest, parent=context.parent)
    finally:
        os.chdir(cwd)


def test_every_block_has_a_language_the_test_knows():
    for document in DOCUMENTS:
        for snippet in snippets(document):
            assert snippet.language in SKIPPED | CHECKED, (
                f"{snippet.where}: a ```{snippet.language} block; teach {__name__} to check "
                "it, or mark it text")


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_blocks_of(document, tmp_path):
    checker = Checker(tmp_path)
    blocks = [s for s in snippets(document) if s.language in CHECKED]
    for snippet in blocks:
        checker.check(snippet)
    assert not checker.failures, "\n".join(checker.failures)
    if any(s.language in ("bash", "toml", "yaml") and not s.partial for s in blocks):
        assert checker.checked, "no command or config was checked"
