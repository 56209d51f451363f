"""Every Markdown file the repository's code and docs cite exists in the repository (issue 18: no team notes kept
outside the repo). Checked citations: upper-case names (``README``-style, optionally with a folder), ``docs/...``
paths, and relative Markdown links in ``.md`` files. URLs and globs are not citations."""
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {"store", "data", "node_modules", "__pycache__"}
"""Top-level data folders and third-party / generated folders (hidden folders such as .git are skipped too)."""

_START = r"(?<![\w/.:*-])"  # not inside a longer word, path, URL or glob
_END = r"(?![\w-])"
UPPER = re.compile(_START + r"((?:[\w.-]+/)*[A-Z][A-Z0-9_]*\.md)" + _END)
DOCS = re.compile(_START + r"(docs/[\w/.-]*\.md)" + _END)
MD_LINK = re.compile(r"\]\(\s*<?([^)\s#>]+\.md)>?(?:#[^)\s]*)?\s*\)")


def _source_files():
    for dirpath, dirnames, filenames in os.walk(ROOT):
        rel = Path(dirpath).relative_to(ROOT)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS
                             and not (Path(dirpath) / d / "pyvenv.cfg").exists())
        if rel == Path("."):
            dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        for f in sorted(filenames):
            if f.endswith((".py", ".md")):
                yield Path(dirpath) / f


def _exists(name: str, base: Path) -> bool:
    return any((d / name).is_file() for d in (ROOT, ROOT / "docs", base))


def broken_citations() -> list[str]:
    bad = []
    for path in _source_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        rel = path.relative_to(ROOT)
        for lineno, line in enumerate(text.splitlines(), 1):
            found = UPPER.findall(line) + DOCS.findall(line)
            if path.suffix == ".md":
                found += [m for m in MD_LINK.findall(line) if "://" not in m]
            bad += [f"{rel}:{lineno}: {name}" for name in found if not _exists(name, path.parent)]
    return bad


def test_cited_markdown_files_exist():
    bad = broken_citations()
    assert not bad, "citations of Markdown files that are not in the repository:\n" + "\n".join(bad)


def test_the_checker_sees_citations(tmp_path):
    """The patterns catch the citation styles the code uses, and skip URLs and globs."""
    md = ".md"  # the sample names are assembled, so that this file cites no missing file itself
    missing, nested = "NOTES_X" + md, "docs/sub/y" + md
    line = f"see {missing}, docs/method.md section 6, {nested}; not https://h.org/a/B{md}, not docs/*{md} nor *{md}"
    assert UPPER.findall(line) == [missing]
    assert DOCS.findall(line) == ["docs/method.md", nested]
    assert MD_LINK.findall("[n](network.md#voxel) [u](https://x.org/r.md)") == ["network.md", "https://x.org/r.md"]
    assert _exists("docs/method.md", ROOT) and _exists("network.md", ROOT) and not _exists(missing, tmp_path)
