"""The repository's own docs: every ``docs/<page>.md §N`` citation names a section that
exists, and nothing cites notes that are not in the repository."""

import re
import subprocess

from conftest import ROOT

CITATION = re.compile(r"docs/(paper|design)\.md §(\d+(?:\.\d+)*)")
HEADING = re.compile(r"^#{2,4} (\d+(?:\.\d+)*)\.? ", re.MULTILINE)
#: the engineers' notes the docs replaced (spelled in pieces so this file does not match)
OUTSIDE = re.compile(r"(?<![\w/])(?:" + "|".join(("PAPER", "DESIGN", "STYLE")) + r")\.md"
                     r"|/work/" + "shared" + r"|\.\./" + "shared")


def _tracked_texts():
    names = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in names.splitlines():
        path = ROOT / name
        if not path.is_file():
            continue
        try:
            yield name, path.read_text()
        except UnicodeDecodeError:  # binary files cite nothing
            continue


def _sections(page: str) -> set[str]:
    return set(HEADING.findall((ROOT / "docs" / f"{page}.md").read_text()))


def test_every_citation_names_a_section():
    sections = {page: _sections(page) for page in ("paper", "design")}
    bad = [f"{name}: docs/{page}.md §{sec}"
           for name, text in _tracked_texts()
           for page, sec in CITATION.findall(text) if sec not in sections[page]]
    assert not bad, "citations of missing sections:\n" + "\n".join(bad)


def test_nothing_cites_notes_outside_the_repository():
    bad = [f"{name}: {m.group(0)}" for name, text in _tracked_texts()
           for m in OUTSIDE.finditer(text)]
    assert not bad, "references to files outside the repository:\n" + "\n".join(bad)
