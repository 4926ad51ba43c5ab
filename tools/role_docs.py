"""Role READMEs' variable tables, generated from meta/argument_specs.yml; and the check that they agree.

Who runs it: the lint stage of the README test command (`--check`), and whoever changes a role's
variables (`--write`, then commit the READMEs).

  python tools/role_docs.py --check   exit 1, naming each difference, when a README table is not what the
                                      spec gives, or a role's defaults/main.yml and its spec disagree on a default
  python tools/role_docs.py --write   rewrite the tables (between the markers) from the specs

Each role's README carries one generated block per entry point, between
<!-- BEGIN generated variables --> and <!-- END generated variables -->; everything else in the
README is written by hand. defaults/main.yml stays the place users read first; the spec is the
one place for types, choices and descriptions, and the two must agree on every default the spec
gives (a long one, such as a dict of sshd options, may be left to defaults/main.yml alone).
"""

import argparse
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
BEGIN = "<!-- BEGIN generated variables (tools/role_docs.py from meta/argument_specs.yml; do not edit) -->"
END = "<!-- END generated variables -->"


_MARKUP = re.compile(r"\b[COVMI]\(([^()]*)\)")


def _cell(text):
    """One Markdown table cell: one line, Ansible's C()/O()/V()/M() markup as code, pipes escaped."""
    return _MARKUP.sub(r"`\1`", " ".join(str(text).split())).replace("|", "\\|")


def _default(option):
    if "default" not in option:
        return "required" if option.get("required") else "see `defaults/main.yml`"
    value = option["default"]
    if isinstance(value, str):
        return f"`{value!r}`" if value == "" else f"`{value}`"
    return f"`{yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix('...').strip()}`"


def _description(option):
    text = option.get("description", "")
    if isinstance(text, list):
        text = " ".join(text)
    if option.get("choices"):
        text += " Choices: " + ", ".join(f"`{c}`" for c in option["choices"]) + "."
    return _cell(text)


def table(specs):
    """The generated block for one role's argument specs (every entry point)."""
    lines = [BEGIN]
    for entry, spec in specs.items():
        options = spec.get("options") or {}
        lines += ["", f"Entry point `{entry}` ({len(options)} variables):", ""]
        lines += ["| variable | type | default | description |", "|---|---|---|---|"]
        for name in sorted(options):
            option = options[name]
            kind = option.get("type", "str") + (f" of {option['elements']}" if option.get("elements") else "")
            lines.append(f"| `{name}` | {kind} | {_default(option)} | {_description(option)} |")
    lines += ["", END]
    return "\n".join(lines)


def default_differences(role_dir, specs):
    """Sentences for each variable whose default differs between defaults/main.yml and its spec.

    The main entry point's spec decides; a variable only another entry point reads (an operator
    command's, say) is checked against that entry point's spec.
    """
    defaults_file = role_dir / "defaults" / "main.yml"
    defaults = yaml.safe_load(defaults_file.read_text()) if defaults_file.exists() else {}
    options = {}
    for _entry, spec in sorted(specs.items(), key=lambda item: item[0] == "main"):
        options.update((spec or {}).get("options") or {})
    found = []
    for name, value in sorted((defaults or {}).items()):
        if name not in options:
            found.append(f"{role_dir.name}: {name} is in defaults/main.yml but not in meta/argument_specs.yml")
        elif "default" in options[name] and "{{" not in str(value) and options[name]["default"] != value:
            found.append(
                f"{role_dir.name}: the default of {name} is {value!r} in defaults/main.yml but "
                f"{options[name].get('default')!r} in meta/argument_specs.yml; make them the same"
            )
    return found


def render_readme(text, block):
    """``text`` with its generated block replaced by ``block`` (appended under a heading when it has none)."""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        return head + block + rest.split(END, 1)[1]
    return text.rstrip("\n") + "\n\n## Variables\n\n" + block + "\n"


def run(root, write):
    problems = []
    for role_dir in sorted(p.parent.parent for p in (root / "roles").glob("*/meta/argument_specs.yml")):
        specs = yaml.safe_load((role_dir / "meta" / "argument_specs.yml").read_text())["argument_specs"]
        problems += default_differences(role_dir, specs)
        readme = role_dir / "README.md"
        current = readme.read_text() if readme.exists() else f"# ec2ops.stack.{role_dir.name}\n"
        wanted = render_readme(current, table(specs))
        if wanted != current:
            if write:
                readme.write_text(wanted)
            else:
                problems.append(
                    f"{role_dir.name}: README.md's variable table is not what meta/argument_specs.yml gives; "
                    "run python tools/role_docs.py --write and commit it"
                )
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="report differences, change nothing")
    mode.add_argument("--write", action="store_true", help="rewrite the generated tables")
    args = parser.parse_args(argv)
    problems = run(ROOT, write=args.write)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
