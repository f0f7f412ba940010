"""The README and docs/ kept true to the code (fast: no TensorFlow, no training).

* README.md stays short (at most 220 lines), keeps the two set-up commands, and its relative
  links lead to files that exist (every docs/ page among them).
* docs/sweep-file.md documents exactly the sweep-file keys the validator accepts: the accepted
  keys are read off the validator itself (sweeper/config/: its refusal of an unknown key in each
  mapping lists the keys it allows, checked against the constants that have a name), and every
  documented key is validated in a sweep of its own. Parameter names, aliases, model families
  with their defaults and the vocabulary (datasets, methods, metrics...) are checked the same way.
* docs/architecture.md lists exactly the modules under sweeper/ (read from the filesystem).
* Links between the pages (anchors included) resolve, and ``mkdocs build --strict`` passes
  without a warning (skipped when mkdocs is not installed: the ``test`` extra installs it).
"""

from __future__ import annotations

import copy
import importlib.util
import re
import subprocess
import sys
import unicodedata
from pathlib import Path
from typing import Any

import pytest
import yaml

from sweeper.config import names
from sweeper.config import objectives as objectives_module
from sweeper.config import sections as sections_module
from sweeper.config import spec as spec_module
from sweeper.config.autokeras import BLOCK_TYPES, TUNERS
from sweeper.config.dataset import DATA_KEYS, DATASETS
from sweeper.config.models import BUILTIN, builder_params, resolve_builder
from sweeper.config.params import RULES, check_key
from sweeper.config.spec import spec_from_dict
from sweeper.errors import SpecError

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
SWEEP_FILE = DOCS / "sweep-file.md"
ARCHITECTURE = DOCS / "architecture.md"

SETUP_COMMANDS = (
    "bash scripts/quickstart.sh   # set up .venv, run sweeps/quickstart.yaml, print the report's path",
    "bash scripts/test.sh         # set up .venv, run the test suite",
)


# --------------------------------------------------------------------------- markdown helpers
def prose(text: str) -> str:
    """The text without fenced code blocks (their lines are not tables, headings or links)."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            out.append(line)
    return "\n".join(out)


def tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every pipe table: its header cells and its rows' cells."""
    found: list[tuple[list[str], list[list[str]]]] = []
    block: list[str] = []
    for line in prose(text).splitlines() + [""]:
        if line.startswith("|"):
            block.append(line)
            continue
        if len(block) >= 2 and set(block[1].replace("|", "").strip()) <= set("-: "):
            cells = [[c.strip() for c in row.strip().strip("|").split("|")] for row in block]
            found.append((cells[0], cells[2:]))
        block = []
    return found


def spans(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def rows_of(text: str, header: str) -> list[list[str]]:
    """The rows of every table whose first header cell starts with ``header``."""
    return [row for head, rows in tables(text) for row in rows if head[0].lower().startswith(header)]


def slug(heading: str) -> str:
    """The anchor Python-Markdown's toc extension (mkdocs) gives a heading; GitHub's agrees for
    the headings used here."""
    text = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(path: Path) -> set[str]:
    return {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*?)\s*#*$", prose(path.read_text()), re.M)}


def links(path: Path) -> list[tuple[str, str]]:
    """Relative links of a markdown file: (target file or '', anchor or '')."""
    out = []
    for target in re.findall(r"\]\(([^)\s]+)\)", prose(path.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # https://..., mailto:
        file, _, anchor = target.partition("#")
        out.append((file, anchor))
    return out


# --------------------------------------------------------------------------- README
def test_readme_is_short_and_keeps_the_two_commands() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 220, f"README.md has {len(text.splitlines())} lines (at most 220)"
    lines = [line.strip() for line in text.splitlines()]
    for command in SETUP_COMMANDS:
        assert command in lines, f"README.md lost the set-up command {command!r}"
        assert (ROOT / command.split()[1]).is_file()
    for tier in ("bash scripts/test.sh tests/unit", "bash scripts/test.sh tests/e2e/", "bash scripts/test.sh -m slow"):
        assert tier in text, f"README.md no longer says how to run one test tier ({tier!r})"


def test_readme_sweep_file_is_the_quickstart() -> None:
    """The README's sweep file is sweeps/quickstart.yaml (with comments of its own)."""
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README.md shows no sweep file"
    assert yaml.safe_load(blocks[0]) == yaml.safe_load((ROOT / "sweeps" / "quickstart.yaml").read_text())


def test_readme_links_every_docs_page() -> None:
    targets = set()
    for file, _ in links(README):
        assert (ROOT / file).exists(), f"README.md links to {file}, which does not exist"
        targets.add((ROOT / file).resolve())
    missing = [p.name for p in sorted(DOCS.glob("*.md")) if p.resolve() not in targets]
    assert not missing, f"README.md does not link these docs pages: {missing}"


def test_links_between_pages_resolve() -> None:
    for page in [README, *sorted(DOCS.glob("*.md"))]:
        for file, anchor in links(page):
            target = (page.parent / file).resolve() if file else page
            assert target.exists(), f"{page.relative_to(ROOT)}: link to missing {file}"
            if anchor and target.suffix == ".md":
                assert anchor in anchors(target), f"{page.relative_to(ROOT)}: no heading #{anchor} in {file or page.name}"


# --------------------------------------------------------------------------- sweep-file keys
# A valid sweep that each probe changes in one place (tpe: it takes sampler options).
BASE: dict[str, Any] = {
    "name": "docs-probe", "data": {"dataset": "digits"}, "model": "mlp", "method": "tpe", "trials": 2,
    "params": {"model__dropout": [0.0, 0.2]},
}
PROBE = "zz_not_a_key"
# How the validator refuses a name it does not know, and where it lists the ones it knows.
REFUSED = re.compile(r"(unknown (key|option|metric|parameter)\b|not an option of)")
LISTED = re.compile(r"\((?:allowed|known|options|a range takes):? ?([^)]*)\)")
# A level whose names are open (any metric, parameter or sampler option) is documented so.
WILDCARDS = {"metric": "<metric>", "parameter": "<parameter>", "not an option": "<option>"}
# A real name for each wildcard, to validate a documented key with.
EXAMPLES = {"<metric>": "accuracy", "<parameter>": "batch_size", "<option>": "n_startup_trials"}
PRUNER_OPTIONS = {k for options in sections_module.PRUNERS.values() for k in options}


def validate(path: tuple[str, ...], value: Any, base: dict[str, Any] | None = None) -> Exception | None:
    """Validate BASE with ``value`` at ``path`` (mappings made on the way); the error, if any."""
    raw = copy.deepcopy(base or BASE)
    node = raw
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[path[-1]] = value
    try:
        spec_from_dict(raw, source="probe")
    except Exception as exc:  # a SpecError; anything else is a bug of its own, but no refusal
        return exc
    return None


def refusal(path: tuple[str, ...], base: dict[str, Any] | None = None) -> SpecError | None:
    """The validator's refusal of the key at ``path`` as unknown (None: not refused as unknown)."""
    exc = validate(path, 1, base)
    if isinstance(exc, SpecError) and exc.path == ".".join(path) and REFUSED.match(exc.message):
        return exc
    return None


def accepted_keys() -> set[str]:
    """Every key path the validator accepts, read off its refusals of an unknown key: each
    mapping that checks its keys lists the ones it allows; wildcard levels are written
    ``<metric>``, ``<parameter>``, ``<option>`` (probed further with one real name)."""
    found: set[str] = set()

    def walk(path: tuple[str, ...], shown: tuple[str, ...]) -> None:
        exc = refusal(path + (PROBE,))
        if exc is None:
            return  # a value, not a mapping of keys
        listed_match = LISTED.search(exc.message)
        assert listed_match, f"{exc}: the refusal no longer lists the names it allows"
        listed = [k.strip() for k in listed_match.group(1).split(",") if k.strip()]
        wildcard = next((w for word, w in WILDCARDS.items() if exc.message.startswith(("unknown " + word, word))), None)
        if wildcard:
            items = [(listed[0], wildcard)]
        elif path == ("pruner",):  # its refusal lists one type's options: take every type's
            items = [(k, k) for k in sorted({"type"} | PRUNER_OPTIONS)]
        else:
            items = [(k, k) for k in listed]
        for real, name in items:
            found.add(".".join(shown + (name,)))
            walk(path + (real,), shown + (name,))

    walk((), ())
    return found


def documented_keys() -> list[str]:
    keys = [k for row in rows_of(SWEEP_FILE.read_text(), "key") for k in spans(row[0])[:1]]
    assert keys, "docs/sweep-file.md has no key tables"
    return keys


def _under(found: set[str], prefix: str) -> set[str]:
    return {k[len(prefix):] for k in found if k.startswith(prefix) and "." not in k[len(prefix):]}


def test_the_key_probe_reads_the_validator_right() -> None:
    """The keys read off the refusals are those of the constants the validator uses, where the
    code names them."""
    found = accepted_keys()
    assert _under(found, "") == spec_module.TOP_KEYS
    assert _under(found, "data.") == DATA_KEYS
    assert _under(found, "validation.") == spec_module.VALIDATION_KEYS
    assert _under(found, "objective.") == objectives_module.OBJECTIVE_KEYS
    assert _under(found, "constraints.<metric>.") == objectives_module.CONSTRAINT_KEYS
    assert _under(found, "latency.") == objectives_module.LATENCY_KEYS
    assert _under(found, "pruner.") == {"type"} | PRUNER_OPTIONS
    assert validate((PROBE,), 1) is not None, "an unknown top-level key must be refused"


def test_every_accepted_key_is_documented() -> None:
    missing = sorted(accepted_keys() - set(documented_keys()))
    assert not missing, f"keys the validator accepts but docs/sweep-file.md does not document: {missing}"


def test_documented_keys_are_unique() -> None:
    keys = documented_keys()
    assert len(keys) == len(set(keys)), sorted(k for k in set(keys) if keys.count(k) > 1)


@pytest.mark.parametrize("key", documented_keys())
def test_every_documented_key_is_accepted(key: str) -> None:
    path = tuple(EXAMPLES.get(part, part) for part in key.split("."))
    parent = path[:-1] + (PROBE,)
    bases = [BASE]
    if path[0] == "pruner" and len(path) == 2:  # an option belongs to some pruner types
        bases = [{**BASE, "pruner": {"type": kind}} for kind in sections_module.PRUNERS]
    ok = [b for b in bases if refusal(path, b) is None and refusal(parent, b) is not None]
    assert ok, f"docs/sweep-file.md documents {key!r}, which the validator refuses as unknown"


def test_parameter_names_match_the_code() -> None:
    text = SWEEP_FILE.read_text()
    documented = {n for row in rows_of(text, "parameter") for n in spans(row[0])}
    routed = set(names.ESTIMATOR_KEYS) | set(RULES) | {f"optimizer__{k}" for k in names.OPTIMIZER_KWARGS}
    assert documented == routed, (f"undocumented: {sorted(routed - documented)}; "
                                  f"documented but unknown: {sorted(documented - routed)}")
    mlp_keys = set(builder_params(resolve_builder("mlp")))
    for name in documented:  # raises SpecError if the validator refuses the name
        check_key("docs", f"params.{name}", name, mlp_keys)


def test_aliases_match_the_code() -> None:
    documented = {}
    for row in rows_of(SWEEP_FILE.read_text(), "alias"):
        (target,) = spans(row[1])
        documented.update({alias: target for alias in spans(row[0])})
    assert documented == names.ALIASES


def test_model_families_and_their_defaults_match_the_builders() -> None:
    documented: dict[str, dict[str, Any]] = {}
    for row in rows_of(SWEEP_FILE.read_text(), "family"):
        (family,) = spans(row[0])
        pairs = [s.split("=", 1) for s in spans(row[1])]
        documented[family] = {k: yaml.safe_load(v) for k, v in pairs}
    actual = {family: builder_params(resolve_builder(family)) for family in BUILTIN}
    assert documented == actual


def test_the_vocabulary_is_documented() -> None:
    """Every dataset, method, metric, pruner, optimizer, activation, initializer, seeding,
    AutoKeras tuner and block type the validator knows appears in the reference."""
    documented = set(spans(prose(SWEEP_FILE.read_text())))
    vocabulary = {
        "datasets": DATASETS, "methods": spec_module.METHODS, "metrics": tuple(objectives_module.OBJECTIVE_METRICS),
        "pruners": tuple(sections_module.PRUNERS), "monitors": sections_module.MONITORS,
        "optimizers": tuple(names.OPTIMIZERS), "activations": names.ACTIVATIONS,
        "initializers": names.INITIALIZERS, "seedings": spec_module.SEEDINGS, "tuners": TUNERS,
        "block types": BLOCK_TYPES,
    }
    for what, values in vocabulary.items():
        missing = [v for v in values if v not in documented]
        assert not missing, f"docs/sweep-file.md does not name these {what}: {missing}"


# --------------------------------------------------------------------------- architecture
def test_architecture_lists_exactly_the_modules() -> None:
    listed = re.findall(r"^- `(sweeper/[\w/]+\.py)`", ARCHITECTURE.read_text(), re.M)
    actual = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "sweeper").rglob("*.py"))
    assert len(listed) == len(set(listed)), "docs/architecture.md lists a module twice"
    missing, gone = sorted(set(actual) - set(listed)), sorted(set(listed) - set(actual))
    assert not missing and not gone, (f"docs/architecture.md's module list: missing {missing}; "
                                      f"no longer in the package {gone}")


# --------------------------------------------------------------------------- the site
def test_every_docs_page_is_in_the_nav() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def pages(nav: Any) -> list[str]:
        if isinstance(nav, str):
            return [nav]
        if isinstance(nav, list):
            return [p for item in nav for p in pages(item)]
        if isinstance(nav, dict):
            return [p for value in nav.values() for p in pages(value)]
        return []

    assert sorted(pages(config["nav"])) == sorted(p.name for p in DOCS.glob("*.md"))


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None,
                    reason="mkdocs is not installed (pip install -e '.[test]' installs it)")
def test_docs_build_as_a_site_without_warnings(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "WARNING" not in output, output
    assert (tmp_path / "site" / "index.html").is_file()
