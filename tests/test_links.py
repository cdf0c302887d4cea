"""Links and cross-references hold.

- Every relative link of the repository's Markdown files (``[text](path)``,
  ``![alt](path)``, outside code) names a file or folder that exists, and its
  ``#anchor``, if any, is a heading of that Markdown file (GitHub's anchors:
  lower case, punctuation dropped, spaces to hyphens, ``-1``, ``-2`` for
  repeats).
- Every cross-reference written as ``FILE.md, *Section*`` (the file name in
  backticks or not, the section in asterisks or double quotes, a second one
  after "and" too), in the Markdown files, the docstrings, comments and help
  texts of the Python files and the shell scripts, names a heading of
  FILE.md. FILE.md is taken from the repository root, else beside the
  referring file. "model card, *Section*" means ``weights/README.md``.
- In a Markdown file, a section named alone in parentheses, ``(*Section*)``,
  is one of its own headings.

``docs/history.md`` is a frozen log: its links must resolve, but its
cross-references name sections as they were when it was written, and are
not checked. Nor is this file, whose strings are examples.

Headings are compared with their inline code marks and emphasis removed and
white space (line breaks, a comment's ``#``) folded to one space.
"""
from __future__ import annotations

import fnmatch
import os
import re
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_CARD = "weights/README.md"
FROZEN = {"docs/history.md"}
FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.S)
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$", re.M)
SECTION = r"(?P<q>[*\"])(?P<sec>[A-Z][^*\"]{0,120}?)(?P=q)"
CROSS_REF = re.compile(r"(?P<file>(?<![\w./-])(?:[\w.-]+/)*[\w.-]+\.md|\bmodel card)`{0,2},[ \t]*(?:\n[ \t]*#?[ \t]*)?"
                       + SECTION)
AND_REF = re.compile(r"[ \t]*(?:\n[ \t]*#?)?[ \t]*and[ \t]*(?:\n[ \t]*#?[ \t]*)?" + SECTION)
SELF_REF = re.compile(r"\(\*(?P<sec>[A-Z][^*]{0,120}?)\*\)")


def tracked(*patterns: str) -> list[str]:
    """Files a clone holds (tracked, or new and not ignored) matching ``patterns``;
    outside a git checkout, every such file but those of a virtual environment."""
    try:
        out = subprocess.run(["git", "-C", REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                              "--", *patterns], capture_output=True, check=True).stdout.decode()
        return sorted({f for f in out.split("\0") if f and os.path.isfile(os.path.join(REPO, f))})
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", "runs", "out", "venv", ".venv", "__pycache__", ".pytest_cache"}
        found = []
        for root, dirs, files in os.walk(REPO):
            dirs[:] = [d for d in dirs if d not in skip]
            found += [os.path.relpath(os.path.join(root, f), REPO) for f in files]
        return sorted(f for f in found if any(fnmatch.fnmatch(f, p) for p in patterns))


def prose(markdown: str) -> str:
    """Markdown without fenced code blocks and inline code spans, so that
    what code shows is not taken for a link."""
    return CODE_SPAN.sub("", FENCE.sub("", markdown))


def plain(text: str) -> str:
    """A heading or section name as compared: no code marks or emphasis,
    white space and a comment's ``#`` at a line start folded to one space."""
    text = re.sub(r"\n[ \t]*#?", " ", text)
    return " ".join(re.sub(r"[`*_]", "", text).split())


def headings(markdown: str) -> list[str]:
    return [plain(m.group(2)) for m in HEADING.finditer(FENCE.sub("", markdown))]


def slugs(markdown: str) -> set[str]:
    """GitHub's anchors of the headings."""
    seen: dict[str, int] = {}
    out = set()
    for h in headings(markdown):
        slug = re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def read(rel: str) -> str:
    with open(os.path.join(REPO, rel), encoding="utf-8") as f:
        return f.read()


def broken_links(rel: str, text: str, exists=os.path.exists, heading_text=None) -> list[str]:
    """The relative links of Markdown file ``rel`` (its ``text``) that do
    not resolve: a missing file, or an anchor that is not a heading."""
    heading_text = heading_text or (lambda path: read(os.path.relpath(path, REPO)))
    bad = []
    for target in LINK.findall(prose(text)):
        if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", target):  # http:, mailto: ...
            continue
        file, _, anchor = target.partition("#")
        path = os.path.normpath(os.path.join(REPO, os.path.dirname(rel), file)) if file \
            else os.path.join(REPO, rel)
        if not exists(path):
            bad.append(f"{target} (no such file)")
        elif anchor and path.endswith(".md") and anchor not in slugs(heading_text(path)):
            bad.append(f"{target} (no such heading)")
    return bad


def cross_refs(text: str) -> list[tuple[int, str, str]]:
    """``(line, file as written, section)`` of every ``FILE.md, *Section*``
    and "model card, *Section*" in ``text``."""
    refs = []
    for m in CROSS_REF.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        refs.append((line, m.group("file"), plain(m.group("sec"))))
        more = AND_REF.match(text, m.end())
        if more:
            refs.append((line, m.group("file"), plain(more.group("sec"))))
    return refs


def resolve(rel: str, file: str) -> str | None:
    """The repository path a reference's file means, or None."""
    if file == "model card":
        return MODEL_CARD
    for cand in (file, os.path.join(os.path.dirname(rel), file)):
        cand = os.path.normpath(cand)
        if os.path.isfile(os.path.join(REPO, cand)):
            return cand
    return None


def broken_cross_refs(rel: str, text: str) -> list[str]:
    bad = []
    for line, file, sec in cross_refs(text):
        target = resolve(rel, file)
        if target is None:
            bad.append(f"{rel}:{line}: {file} (no such file)")
        elif sec not in headings(read(target)):
            bad.append(f"{rel}:{line}: {file}, *{sec}* (no such heading in {target})")
    if rel.endswith(".md"):
        own = headings(text)
        for m in SELF_REF.finditer(prose(text)):
            if plain(m.group("sec")) not in own:
                bad.append(f"{rel}:{text.count(chr(10), 0, m.start()) + 1}: (*{m.group('sec')}*) "
                           "(no such heading here)")
    return bad


MARKDOWN = tracked("*.md")
SOURCES = [f for f in tracked("*.md", "*.py", "*.sh", ".ci/run")
           if f not in FROZEN and f != os.path.relpath(__file__, REPO)]


@pytest.mark.parametrize("rel", MARKDOWN)
def test_relative_links_and_anchors_resolve(rel):
    bad = broken_links(rel, read(rel))
    assert not bad, f"{rel}: links that do not resolve: {bad}"


def test_cross_references_name_existing_sections():
    bad = [b for rel in SOURCES for b in broken_cross_refs(rel, read(rel))]
    assert not bad, "cross-references to sections that do not exist:\n" + "\n".join(bad)


def test_the_checks_catch_what_they_should():
    """The checks themselves: each kind of broken link or reference is found,
    and the forms used in this repository are read as meant."""
    card = read(MODEL_CARD)
    section = headings(card)[1]
    anchor = sorted(slugs(card))[0]
    assert "model-details" in slugs("# Model card\n## Model details\n")
    assert slugs("## A, b: `c` d\n## A, b: `c` d\n") == {"a-b-c-d", "a-b-c-d-1"}
    text = (f"[ok](weights/README.md#{anchor}) [bad](weights/READ_ME.md) [bad anchor](weights/README.md#nope)\n"
            "![pic](docs/nothing.jpg) [web](https://example.com/x.md) `[code](not/a/link.md)`\n"
            "```\n[block](neither.md)\n```\n[here](#quick-start) [not here](#nowhere)\n")
    assert broken_links("README.md", text) == ["weights/READ_ME.md (no such file)",
                                               "weights/README.md#nope (no such heading)",
                                               "docs/nothing.jpg (no such file)",
                                               "#nowhere (no such heading)"]
    refs = cross_refs(f'(`{MODEL_CARD}`, *{section}*) (model card, *Speed* and *No\nsuch*)\n'
                      f'    # see weights/README.md, "Training\n    # recipe"\n'
                      f'training/face/cuda/README.md, *Several GPUs or machines*; README.md, "Nowhere"\n'
                      f'["README.md", "weights/README.md"]\n')
    assert refs == [(1, MODEL_CARD, section), (1, "model card", "Speed"), (1, "model card", "No such"),
                    (3, MODEL_CARD, "Training recipe"),
                    (5, "training/face/cuda/README.md", "Several GPUs or machines"), (5, "README.md", "Nowhere")]
    bad = broken_cross_refs("common/x.py", f"(model card, *{section}*) (`weights/README.md`, *Gone*)\n"
                                           "(docs/none.md, *X*) (`README.md`, *Quick start*)\n")
    assert bad == ["common/x.py:1: weights/README.md, *Gone* (no such heading in weights/README.md)",
                   "common/x.py:2: docs/none.md (no such file)"]
    assert resolve("weights/README.md", "README.md") == "README.md"      # the root's, not itself
    assert resolve("training/eyes/cpu/README.md", "../../face/cpu/README.md") == "training/face/cpu/README.md"
    bad = broken_cross_refs("docs/x.md", "# X\n## Kept\n(*Kept*) (*Gone*) `(*Code*)`\n")
    assert bad == ["docs/x.md:3: (*Gone*) (no such heading here)"]
