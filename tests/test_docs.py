"""Docs that work from a fresh clone: every relative link resolves inside the project."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _docs() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_relative_links_resolve_inside_the_project():
    broken = []
    for page in _docs():
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = (page.parent / target.split("#")[0]).resolve()
            if not path.exists() or ROOT not in path.parents:
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert broken == []


def test_readme_keeps_the_two_command_quick_start_and_states_the_licences():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make demo" in text and "make test" in text
    assert "MIT" in text and "research use only" in text and (ROOT / "LICENSE").is_file()
    assert "WILDLINK_DATA" in text and (ROOT / "docs" / "design.md").is_file()
