"""docs/settings.md, the run document's reference, against the engine (pipeline_code/engine/settings.py).

Every key of every section of ``Settings()`` has one table row ``| `section.name` | default | allowed |
what |``, whose default cell is the engine default written as JSON (read back as a settings file is, by
``Settings.merged``), or, for the keys ``resolve`` derives from the data, says "derived from the data"
and names the engine default used when it cannot be derived. The page names no key that does not exist,
and its example settings files are valid.
"""

from __future__ import annotations

import json
import re
from dataclasses import fields
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from pipeline_code.engine.settings import Settings, parse_document, resolve

DOC = Path(__file__).resolve().parents[1] / "docs" / "settings.md"
DERIVED = "derived from the data"
SECTIONS = tuple(f.name for f in fields(Settings))
# A key mentioned anywhere on the page: `section.name`, not part of a path or a longer dotted name.
MENTION = re.compile(rf"(?<![\w/.-])({'|'.join(SECTIONS)})\.([A-Za-z_]\w*)")
ROW = re.compile(r"^\|\s*`(\w+\.\w+)`\s*\|")
CODE = re.compile(r"`([^`]+)`")
# A derived key's cell: "derived from the data (how); else `<engine default>`".
DERIVED_CELL = re.compile(rf"{DERIVED}\b.*; else `([^`]+)`")
JSON_BLOCK = re.compile(r"```json\n(.*?)```", re.S)


def engine_defaults() -> dict[str, Any]:
    settings = Settings()
    return {f"{section.name}.{key.name}": getattr(getattr(settings, section.name), key.name)
            for section in fields(settings) for key in fields(getattr(settings, section.name))}


def derived_keys() -> set[str]:
    """The keys ``resolve`` fills from the data when no layer sets them (ten years of monthly data)."""
    stamps = [date(2000 + i // 12, i % 12 + 1, 1) for i in range(120)]
    return set(resolve([], timestamps=stamps, observations=len(stamps)).derived)


def rows(text: str) -> list[tuple[str, list[str]]]:
    """(key, cells) of every table row whose first cell is a backticked ``section.name``."""
    found = []
    for line in text.splitlines():
        match = ROW.match(line)
        if match:
            found.append((match.group(1), [cell.strip() for cell in line.strip().strip("|").split("|")]))
    return found


def read_default(key: str, code: str) -> Any:
    """``code``, a default as JSON, read as a settings file's value of ``key`` is."""
    try:
        value = json.loads(code)
    except json.JSONDecodeError as err:
        raise AssertionError(f"{key}: the default `{code}` is not JSON ({err})") from None
    section, name = key.split(".")
    merged = Settings().merged({section: {name: value}}, "docs/settings.md", validate=False)
    return getattr(getattr(merged, section), name)


DOC_TEXT = DOC.read_text(encoding="utf-8")
DOC_ROWS = dict(rows(DOC_TEXT))
DEFAULTS = engine_defaults()


def test_the_page_has_one_row_per_key():
    keys = [key for key, _ in rows(DOC_TEXT)]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    assert not repeated, f"keys with more than one row: {repeated}"
    assert all(len(cells) == 4 and all(cells) for cells in DOC_ROWS.values()), \
        [key for key, cells in DOC_ROWS.items() if len(cells) != 4 or not all(cells)]


@pytest.mark.parametrize("key", sorted(DEFAULTS))
def test_every_key_has_a_row_with_its_default(key):
    assert key in DOC_ROWS, f"docs/settings.md has no table row for `{key}`"
    cell = DOC_ROWS[key][1]
    if key in derived_keys():
        match = DERIVED_CELL.fullmatch(cell)
        assert match, (f"{key} is derived from the data when no layer sets it; expected "
                       f"\"{DERIVED} (...); else `<engine default>`\", got {cell!r}")
    else:
        assert DERIVED not in cell, f"{key} is not derived from the data (engine.settings.resolve): {cell!r}"
        match = CODE.fullmatch(cell)
        assert match, f"{key}: the default cell should be one JSON value in backticks, got {cell!r}"
    assert read_default(key, match.group(1)) == DEFAULTS[key], \
        f"{key}: the page's default {cell!r} is not the engine's {json.dumps(DEFAULTS[key])}"


def test_the_page_names_no_key_that_does_not_exist():
    named = {f"{section}.{name}" for section, name in MENTION.findall(DOC_TEXT)}
    unknown = sorted(named - set(DEFAULTS))
    assert not unknown, f"docs/settings.md names keys the run document does not have: {unknown}"
    assert set(DOC_ROWS) <= set(DEFAULTS), sorted(set(DOC_ROWS) - set(DEFAULTS))


def test_the_derived_keys_are_the_ones_the_page_says():
    said = {key for key, cells in DOC_ROWS.items() if cells[1].startswith(DERIVED)}
    assert said == derived_keys()


def test_the_example_settings_files_are_valid():
    blocks = JSON_BLOCK.findall(DOC_TEXT)
    assert blocks, "docs/settings.md has no example settings file"
    for block in blocks:
        Settings.from_dict(parse_document(block.encode(), "docs/settings.md example"))
