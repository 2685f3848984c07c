"""The documentation stays true to itself and to the code.

- README.md is a front door (at most 10 KB) and says nothing a docs page says
  again: no paragraph of 120 characters or more appears verbatim (whitespace
  aside) in two pages.
- Every relative link in README.md and docs/*.md reaches an existing file,
  and its #anchor an existing heading (GitHub's heading slugs); every
  repository path (``fh_rl/heads/base.py``) and dotted name
  (``fh_rl.envs.evaluate``) in their inline code exists.
- Every command shown for one of fh_rl's command lines (``python -m fh_rl.*``,
  ``torchrun ... -m fh_rl.train``, ``python benchmarks/*.py``) is accepted by
  that command's real argument parser, and its ``--config``/``--set``/``--head``
  settings by the config schema. Usage synopses (``[--flag X]...``) and inline
  fragments only need their flags to exist.
- The README's Python examples run, and its test command is the one .ci/run runs.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import re
import runpy
import shlex
import signal
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md")), REPO / "datasets" / "README.md"]
RUNNABLE = [README, REPO / "docs" / "heads.md"]
"""Pages whose ```python blocks are run (in order, one interpreter per page)."""
MIN_PARAGRAPH = 120
README_MAX_BYTES = 10 * 1024
SHELL_LANGS = {"", "bash", "sh", "shell", "console"}


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


# ----------------------------------------------------------------------------- markdown


@dataclass
class Block:
    """A paragraph of prose or a fenced code block, with the line it starts on."""

    kind: str  # "prose" or "code"
    lang: str
    text: str
    line: int


def blocks(text: str) -> list[Block]:
    """Prose paragraphs (separated by blank lines) and fenced code blocks, in order."""
    out: list[Block] = []
    buf: list[str] = []
    start, lang, fence = 0, "", None

    def flush(kind: str) -> None:
        if buf:
            out.append(Block(kind, lang if kind == "code" else "", "\n".join(buf), start))
            buf.clear()

    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if fence is not None:
            if stripped.startswith(fence):
                flush("code")
                fence = None
            else:
                buf.append(line)
        elif stripped.startswith(("```", "~~~")):
            flush("prose")
            fence, lang, start = stripped[:3], stripped[3:].strip().lower(), number + 1
        elif not stripped:
            flush("prose")
        else:
            if not buf:
                start = number
            buf.append(line)
    flush("code" if fence is not None else "prose")
    return out


def normalize(text: str) -> str:
    return " ".join(text.split())


def strip_inline_code(text: str) -> str:
    return re.sub(r"`[^`\n]*`", "", text)


def heading_slugs(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a page: lower case, punctuation dropped, spaces to hyphens, -N for repeats."""
    slugs: set[str] = set()
    seen: dict[str, int] = {}
    for block in blocks(path.read_text()):
        if block.kind != "prose":
            continue
        for line in block.text.splitlines():
            m = re.match(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
            if not m:
                continue
            title = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1)).replace("`", "")
            slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            slugs.add(slug if n == 0 else f"{slug}-{n}")
    return slugs


LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)


def relative_links(path: Path) -> list[tuple[int, str]]:
    """(line, target) of every link in the prose of a page that is not a URL."""
    links = []
    for block in blocks(path.read_text()):
        if block.kind != "prose":
            continue
        text = strip_inline_code(block.text)
        for m in [*LINK.finditer(text), *REFERENCE.finditer(text)]:
            target = m.group(1)
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
                links.append((block.line + text.count("\n", 0, m.start()), target))
    return links


# ----------------------------------------------------------------------------- README and duplication


def test_readme_is_a_front_door():
    size = len(README.read_bytes())
    assert size <= README_MAX_BYTES, (
        f"README.md is {size} bytes (limit {README_MAX_BYTES}): move details to a page under docs/ and link it"
    )


def repeated_paragraphs(pages: list[Path]) -> list[str]:
    """Paragraphs and code blocks of MIN_PARAGRAPH characters or more that appear again, verbatim, in another page."""
    texts = {page: normalize(page.read_text()) for page in pages}
    repeated = []
    for page in pages:
        for block in blocks(page.read_text()):
            para = normalize(block.text)
            if len(para) >= MIN_PARAGRAPH:
                for other in pages:
                    if other != page and para in texts[other]:
                        repeated.append(f"{rel(page)}:{block.line} is repeated in {rel(other)}: {para[:70]!r}...")
    return repeated


def test_no_paragraph_is_said_twice():
    repeated = repeated_paragraphs(PAGES)
    assert not repeated, "say each thing once and link to it:\n" + "\n".join(repeated)


def test_a_repeated_paragraph_is_found_however_it_is_wrapped(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    para = " ".join(f"word{i}" for i in range(30))  # 200 characters
    a, b, c = tmp_path / "a.md", tmp_path / "b.md", tmp_path / "c.md"
    a.write_text(f"# A\n\n{para}\n\nshort\n")
    b.write_text("# B\n\nIntro:\n" + para.replace(" word1", "\n  word1") + " and more.\n")
    c.write_text("# C\n\n" + para.replace("word15", "edited") + "\n")
    assert repeated_paragraphs([a, c]) == []
    assert repeated_paragraphs([a, b]) == [f"a.md:3 is repeated in b.md: {para[:70]!r}..."]


# ----------------------------------------------------------------------------- links


def dead_links(page: Path) -> list[str]:
    broken = []
    for line, target in relative_links(page):
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            broken.append(f"{rel(page)}:{line}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in heading_slugs(dest):
            broken.append(f"{rel(page)}:{line}: {target} (no heading with anchor #{anchor} in {dest.name})")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_relative_links_resolve(page):
    broken = dead_links(page)
    assert not broken, "dead links:\n" + "\n".join(broken)


def test_dead_links_are_found(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    (tmp_path / "other.md").write_text("# Other page\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[ok](other.md#other-page), [self](#page), [web](https://example.org/x.md),\n"
        "[gone](missing.md) and [bad anchor](other.md#nope); `[code](missing.md)` is not a link.\n"
    )
    assert dead_links(page) == [
        "page.md:4: missing.md (no such file)",
        "page.md:4: other.md#nope (no heading with anchor #nope in other.md)",
    ]


def test_heading_slugs_follow_github(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# Add your own head\n\n## `fh_rl.heads`: the API (v2)\n\n## Add your own head\n\n```\n# not a heading\n```\n")
    assert heading_slugs(page) == {"add-your-own-head", "fh_rlheads-the-api-v2", "add-your-own-head-1"}


# ----------------------------------------------------------------------------- names

PATH_NAME = re.compile(r"(?<![\w./-])((?:fh_rl|benchmarks|configs|tests)/[\w./-]*)")
MODULE_NAME = re.compile(r"(?<![\w./-])(fh_rl(?:\.\w+)+)(?![\w/])")


def named_paths_and_modules(path: Path) -> list[tuple[int, str]]:
    """(line, name) of every repository path and dotted fh_rl name in the inline code of a page's prose.

    A path is a file name with an extension or a folder ending in ``/``
    (``fh_rl/pendulum/sac-v0`` is a dataset id, not a path).
    """
    names = []
    for block in blocks(path.read_text()):
        if block.kind == "prose":
            for span in re.finditer(r"`([^`]+)`", block.text):
                line = block.line + block.text.count("\n", 0, span.start())
                names += [(line, m.group(1)) for m in PATH_NAME.finditer(span.group(1))
                          if re.search(r"(/|\.\w+)$", m.group(1))]
                names += [(line, m.group(1)) for m in MODULE_NAME.finditer(span.group(1))]
    return names


def resolves(dotted: str) -> bool:
    """``fh_rl.envs.evaluate`` names a module, or an attribute of the longest module prefix."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            if importlib.util.find_spec(".".join(parts[:i])) is not None:
                break
        except (ImportError, AttributeError, ValueError):
            pass
    else:
        return False
    obj = importlib.import_module(".".join(parts[:i]))
    for attr in parts[i:]:
        if not hasattr(obj, attr):
            return False
        obj = getattr(obj, attr)
    return True


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_named_files_and_modules_exist(page):
    missing = [
        f"{rel(page)}:{line}: {name}"
        for line, name in named_paths_and_modules(page)
        if not ((REPO / name).exists() if "/" in name else resolves(name))
    ]
    assert not missing, "the docs name files or modules the code does not have (renamed? update the page):\n" + "\n".join(missing)


def test_name_checker_sees_renames():
    assert resolves("fh_rl.envs.evaluate") and resolves("fh_rl.heads.base.HeadOutput") and resolves("fh_rl.train")
    assert not resolves("fh_rl.envs.evaluat") and not resolves("fh_rl.no_such_module.x")
    text = "Use `fh_rl/heads/base.py`, `fh_rl.heads.build_head(...)` and `\"fh_rl.checkpoint/1\"`."
    assert [m.group(1) for m in PATH_NAME.finditer(text)] == ["fh_rl/heads/base.py"]
    assert [m.group(1) for m in MODULE_NAME.finditer(text)] == ["fh_rl.heads.build_head"]


# ----------------------------------------------------------------------------- commands


@dataclass
class Command:
    page: Path
    line: int
    kind: str  # "module" or "script"
    name: str  # module name or script path relative to the repository
    args: list[str]
    complete: bool  # a whole command (parsed for real), not a synopsis, an inline fragment or one with placeholders
    inline: bool = False  # named in prose rather than shown in a code block

    def __str__(self) -> str:
        return f"{rel(self.page)}:{self.line}: {self.name} {' '.join(self.args)}"


def parse_command(tokens: list[str], page: Path, line: int, complete: bool) -> Command | None:
    """An fh_rl command line from shell tokens, or None for anything else (pip, pytest, tensorboard...)."""
    while tokens and (re.match(r"^\w+=", tokens[0]) or tokens[0] in ("do", "then", "time")):
        tokens = tokens[1:]  # VAR=value prefixes, shell keywords
    if not tokens or tokens[0] not in ("python", "python3", "torchrun"):
        return None
    if "-m" in tokens:
        i = tokens.index("-m")
        kind, name, args = "module", tokens[i + 1], tokens[i + 2 :]
        if not (name == "fh_rl" or name.startswith(("fh_rl.", "benchmarks"))):
            return None
    elif len(tokens) > 1 and tokens[1].startswith("benchmarks/"):
        kind, name, args = "script", tokens[1], tokens[2:]
    else:
        return None
    if any(is_placeholder(t) for t in args):
        complete = False  # a synopsis such as [--seed S] or --set key=value..., or --seed S
    return Command(page, line, kind, name, args, complete)


def is_placeholder(token: str) -> bool:
    """``S``, ``RUN_DIR``, ``[--seed``, ``key=value...``, ``<game>``: a slot the reader fills, not a value."""
    value = token.partition("=")[2] if "=" in token else token
    return bool(re.fullmatch(r"[A-Z][A-Z0-9_]*", value)) or token.startswith("[") or token.endswith("]") or any(
        s in token for s in ("...", "<", ">"))


def page_commands(page: Path) -> list[Command]:
    found = []
    for block in blocks(page.read_text()):
        if block.kind == "code" and block.lang in SHELL_LANGS:
            variables: dict[str, str] = {}
            text = block.text.replace("\\\n", " ")
            for offset, line in enumerate(text.splitlines()):
                for segment in re.split(r"&&|\|\||;|\|", line):
                    try:
                        tokens = shlex.split(segment, comments=True)
                    except ValueError:
                        continue
                    while tokens and tokens[0] in ("do", "then"):
                        tokens = tokens[1:]
                    if len(tokens) >= 4 and tokens[0] == "for" and tokens[2] == "in":
                        variables[tokens[1]] = tokens[3]  # for head in linear fourier -> $head = linear
                        continue
                    tokens = [re.sub(r"\$\{?(\w+)\}?", lambda m, variables=variables: variables.get(m.group(1), m.group(0)), t) for t in tokens]
                    cmd = parse_command(tokens, page, block.line + offset, complete=True)
                    if cmd is not None:
                        found.append(cmd)
        elif block.kind == "prose":
            for m in re.finditer(r"`([^`\n]+)`", block.text):
                if re.match(r"^(python3? (-m fh_rl|-m benchmarks|benchmarks/)|torchrun )", m.group(1)):
                    try:
                        tokens = shlex.split(m.group(1))
                    except ValueError:
                        continue
                    cmd = parse_command(tokens, page, block.line, complete=False)
                    if cmd is not None:
                        cmd.inline = True
                        found.append(cmd)
    return found


COMMANDS = [cmd for page in PAGES for cmd in page_commands(page)]


class _Parsed(BaseException):
    """Raised in place of parsing, carrying the parser a command line built."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


@functools.cache
def cli_parser(kind: str, name: str) -> argparse.ArgumentParser:
    """Run a command line as ``python -m name`` / ``python name`` would, up to the point where it parses its arguments."""

    def capture(self, args=None, namespace=None):
        raise _Parsed(self)

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with (
        mock.patch.object(argparse.ArgumentParser, "parse_known_args", capture),
        mock.patch.object(sys, "argv", [name]),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", RuntimeWarning)  # runpy: "found in sys.modules" for an imported module
        try:
            if kind == "module":
                runpy.run_module(name, run_name="__main__", alter_sys=True)
            else:
                runpy.run_path(str(REPO / name), run_name="__main__")
        except _Parsed as parsed:
            return parsed.parser
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
    raise AssertionError(f"{name} never parsed its command line")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return {
        choice: sub
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for choice, sub in action.choices.items()
    }


def _reject(self, message):
    raise ValueError(message)


def check_flags(cmd: Command, parser: argparse.ArgumentParser) -> None:
    """Every --flag of a synopsis or fragment is one the parser (or the named sub-command) knows."""
    known = set(parser._option_string_actions)
    subs = _subparsers(parser)
    for token in cmd.args:
        if token in subs:
            known |= set(subs[token]._option_string_actions)
    for token in cmd.args:
        flag = token.strip("[]").split("=")[0].rstrip(".")
        if flag.startswith("--") and flag not in known:
            raise ValueError(f"unrecognized option {flag} (known: {', '.join(sorted(known))})")


def option_values(args: list[str], flag: str, many: bool = False) -> list[str]:
    """The values of ``flag`` in ``args``: one per occurrence, or (``many``) all up to the next option."""
    out = []
    for i, token in enumerate(args):
        if token == flag:
            following = args[i + 1 :]
            end = next((j for j, t in enumerate(following) if t.startswith("-")), len(following))
            out.extend(following[:end] if many else following[:1])
    return out


def check_config(cmd: Command) -> None:
    """The --config file, --set keys and values and --head(s) of a train or sweep command are valid."""
    from fh_rl.config import load_config
    from fh_rl.heads import head_params

    config = option_values(cmd.args, "--config")
    if config and is_placeholder(config[0]):
        return
    path = str(REPO / config[0]) if config else None
    sets = [item for item in option_values(cmd.args, "--set") if not is_placeholder(item)]
    if cmd.name == "fh_rl.sweep":
        heads = option_values(cmd.args, "--heads", many=True) or [load_config(path).head.name]
        for item in sets:
            key, _, raw = item.partition("=")
            items = [raw] if raw.strip().startswith(("[", "{")) else raw.split(",")
            for head in heads:
                if key.startswith("head.") and key[5:] not in head_params(head):
                    continue  # the sweep gives head.<param> only to the heads that take it
                for value in items:
                    load_config(path, overrides=[f"{key}={value}"], head=head)
    elif not option_values(cmd.args, "--resume"):  # a resumed run keeps its saved config
        head = option_values(cmd.args, "--head")
        load_config(path, overrides=sets, head=head[0] if head else None)


@pytest.mark.parametrize("cmd", COMMANDS, ids=str)
def test_documented_command_matches_the_cli(cmd, monkeypatch):
    monkeypatch.chdir(REPO)
    if cmd.kind == "module":
        assert importlib.util.find_spec(cmd.name) is not None, f"{cmd}\n  no module {cmd.name}"
    else:
        assert (REPO / cmd.name).is_file(), f"{cmd}\n  no script {cmd.name}"
    if not cmd.complete and not cmd.args:
        return  # a command named in prose: it exists
    parser = cli_parser(cmd.kind, cmd.name)
    try:
        if cmd.complete:
            with mock.patch.object(argparse.ArgumentParser, "error", _reject):
                parser.parse_args(cmd.args)
        else:
            check_flags(cmd, parser)
        if cmd.name in ("fh_rl.train", "fh_rl.sweep") and not cmd.inline:
            check_config(cmd)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        pytest.fail(f"{cmd}\n  does not match the command line: {exc}")


def test_every_command_line_is_shown():
    shown = {cmd.name for cmd in COMMANDS}
    for name in ("fh_rl.train", "fh_rl.evaluate", "fh_rl.sweep", "fh_rl.compare", "fh_rl.datasets.collect",
                 "fh_rl.datasets.download"):
        assert name in shown, f"no page shows how to run python -m {name}"
    assert any("benchmarks" in name for name in shown), "no page shows how to run a benchmark"


def test_the_command_checker_rejects_a_wrong_flag(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "```bash\nfor s in 0 1; do python -m fh_rl.train --sed $s; done\n"
        "python -m fh_rl.train --seed S --set train.stepz=5\n```\n\nRun `python -m fh_rl.evaluate RUN --episodez 3`.\n"
    )
    bad_flag, bad_key, fragment = page_commands(page)
    assert bad_flag.args == ["--sed", "0"] and fragment.complete is False and fragment.inline
    assert not bad_key.complete and not bad_key.inline  # --seed S: flags only, config still checked
    with mock.patch.object(argparse.ArgumentParser, "error", _reject), pytest.raises(ValueError, match="--sed"):
        cli_parser("module", "fh_rl.train").parse_args(bad_flag.args)
    with pytest.raises(ValueError, match="train.stepz"):
        check_config(bad_key)
    with pytest.raises(ValueError, match="--episodez"):
        check_flags(fragment, cli_parser("module", "fh_rl.evaluate"))


# ----------------------------------------------------------------------------- examples and set-up


RUN_EXAMPLES = """
import json, sys, traceback
for page, code in json.load(sys.stdin).items():
    try:
        exec(compile(code, page, "exec"), {"__name__": "__main__"})
    except BaseException:
        sys.exit(f"the python examples of {page} fail:\\n{traceback.format_exc()[-2000:]}")
"""


def test_python_examples_run(tmp_path):
    """Each page's ```python blocks, in order, in a fresh namespace (one interpreter for all pages)."""
    code = {rel(page): "\n\n".join(b.text for b in blocks(page.read_text()) if b.kind == "code" and b.lang == "python")
            for page in RUNNABLE}
    assert all(code.values()), f"pages without a python example: {[p for p, c in code.items() if not c]}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", RUN_EXAMPLES], input=json.dumps(code), cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_readme_test_command_is_what_ci_runs():
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    ci_test = [line for line in ci if line and not line.startswith("#")][-1]
    setup = [b.text for b in blocks(README.read_text()) if b.kind == "code" and "pytest" in b.text]
    assert len(setup) == 1, "README.md should show exactly one test command"
    after_install = " && ".join(part.strip() for part in setup[0].split("&&") if "ruff" in part or "pytest" in part)
    assert after_install == ci_test, f"README's test command differs from .ci/run's {ci_test!r}"
    assert '".[test]"' in setup[0] and '".[test]"' in "\n".join(ci)
