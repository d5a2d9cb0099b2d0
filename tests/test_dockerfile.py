"""The Dockerfile, read as Docker reads it (docker build cannot run here): valid instructions, stages
that exist, declared build arguments, the project set-up and flash-attn installed, and every install
step one the README documents, so the image and the manual install are the same commands."""

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER",
                "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}
# A shell command that installs or fetches something, as opposed to a check or a clean-up.
INSTALL = re.compile(r"apt-get (install|update)|pip (install|wheel)|dpkg -i|make setup|-m venv|\bwget\b")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    flags: dict[str, str]  # --name=value before the arguments (RUN --mount, COPY --from, ...)
    args: str
    line: int


def parse(text: str) -> list[Instruction]:
    """Docker's rules: comment lines dropped (also inside a continuation), a trailing backslash
    continues the line, the first word is the instruction, leading --flags belong to it."""
    instructions, pending, start = [], "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        start = start or number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, rest = (pending + stripped).partition(" ")
        flags = {}
        while (match := re.match(r"--([\w-]+)=(\S+)\s+", rest)):
            flags[match[1]], rest = match[2], rest[match.end():]
        instructions.append(Instruction(keyword.upper(), flags, " ".join(rest.split()), start))
        pending, start = "", 0
    return instructions


def arg_defaults(instructions: list[Instruction]) -> dict[str, str]:
    return dict(i.args.split("=", 1) for i in instructions if i.keyword == "ARG" and "=" in i.args)


def expand(command: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: values.get(m[1], m[0]), command)


def install_steps(instructions: list[Instruction]) -> list[str]:
    values = arg_defaults(instructions)
    steps = []
    for run in (i for i in instructions if i.keyword == "RUN"):
        steps += [p.strip() for p in expand(run.args, values).split("&&") if INSTALL.search(p)]
    return steps


def readme_commands(text: str) -> set[str]:
    """Commands in the README's shell code blocks: one per line and per `&&` part, comments dropped."""
    commands = set()
    for block in re.findall(r"```(?:bash|sh|shell|console)\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = re.sub(r"(^|\s)#.*$", "", line).strip().removeprefix("$ ")
            commands.update(" ".join(part.split()) for part in line.split("&&") if part.strip())
    return commands


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return parse((ROOT / "Dockerfile").read_text())


def test_every_instruction_is_valid_and_every_reference_resolves(dockerfile):
    assert [i.keyword for i in dockerfile if i.keyword not in INSTRUCTIONS] == []
    stages, declared = [], set(arg_defaults(dockerfile)) | {"PATH"}
    for instruction in dockerfile:
        if instruction.keyword == "FROM":
            words = instruction.args.split()
            stages.append(words[2] if len(words) == 3 and words[1].upper() == "AS" else None)
        referenced = instruction.flags.get("from") or dict(
            kv.split("=", 1) for kv in instruction.flags.get("mount", "").split(",") if "=" in kv).get("from")
        if referenced is not None:  # an earlier stage, by name
            assert referenced in stages[:-1], f"line {instruction.line}: no earlier stage {referenced!r}"
        used = set(re.findall(r"\$\{(\w+)\}", instruction.args + " ".join(instruction.flags.values())))
        assert used <= declared, f"line {instruction.line}: undeclared {sorted(used - declared)}"
    assert dockerfile[0].keyword in ("ARG", "FROM") and len(stages) >= 2


def test_the_image_is_debian_12_with_the_project_set_up_and_flash_attn(dockerfile):
    base = expand(next(i for i in dockerfile if i.keyword == "FROM").args.split()[0], arg_defaults(dockerfile))
    assert base.endswith("-bookworm")  # Debian 12: the package names scripts/setup.sh installs
    final = dockerfile[max(n for n, i in enumerate(dockerfile) if i.keyword == "FROM"):]
    final_runs = [i.args for i in final if i.keyword == "RUN"]
    assert "make setup" in final_runs  # apt packages for the quickstart, .venv, torch, codemix
    assert any(re.search(r"pip install \S*flash_attn-\S*\.whl", run) for run in final_runs)
    assert any(i.keyword == "ENV" and "/.venv/bin" in i.args for i in final)
    assert "apt-get install" in (ROOT / "scripts" / "setup.sh").read_text()  # the quickstart's Debian packages


def test_every_install_step_is_a_command_the_readme_documents(dockerfile):
    steps = install_steps(dockerfile)
    assert len(steps) >= 6
    documented = readme_commands((ROOT / "README.md").read_text())
    missing = [step for step in steps if " ".join(step.split()) not in documented]
    assert missing == [], "README.md must document these install commands:\n" + "\n".join(missing)


def test_parser_follows_docker_rules():
    text = "# syntax=docker/dockerfile:1\nARG A=1\nFROM x:${A} AS one\nRUN a \\\n# dropped\n    && b\n" \
           "RUN --mount=type=bind,from=one,target=/w c\n"
    parsed = parse(text)
    assert [(i.keyword, i.args) for i in parsed] == [("ARG", "A=1"), ("FROM", "x:${A} AS one"), ("RUN", "a && b"),
                                                    ("RUN", "c")]
    assert parsed[3].flags == {"mount": "type=bind,from=one,target=/w"}
    assert readme_commands("```bash\nmake setup   # note\n$ a && b\n```\n") == {"make setup", "a", "b"}
    assert install_steps(parse("ARG V=2\nRUN pip install x==${V} && rm -rf y\n")) == ["pip install x==2"]
