"""The docs a user reads live in the repository and point at what exists."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", REPO / "docs" / "DESIGN.md"]


def test_readme_and_docs_link_only_to_files_inside_the_repository():
    for doc in DOCS:
        text = doc.read_text()
        assert "../shared" not in text, doc
        for target in re.findall(r"\]\(([^)#]+)\)", text):
            if not target.startswith("http"):
                path = (doc.parent / target).resolve()
                assert path.exists() and REPO in path.parents, (doc.name, target)


def test_the_design_doc_describes_every_experiment_with_configs_that_exist():
    text = (REPO / "docs" / "DESIGN.md").read_text()
    for i in range(1, 11):
        assert f"**E{i} " in text, f"E{i}"
    for cfg in re.findall(r"experiments/configs/[\w/.-]+\.toml", text):
        assert (REPO / cfg).exists(), cfg
    assert "docs/DESIGN.md" in (REPO / "README.md").read_text()
