"""RESULTS.md sections written by the benchmark scripts."""

from __future__ import annotations

from xmodal.bench.results import script_section, write_section

OTHER = "<!-- begin other -->\n### Other\n\nhand-written, kept\n<!-- end other -->"


def test_write_section_keeps_other_sections_and_replaces_its_own(tmp_path, capsys):
    path = tmp_path / "RESULTS.md"
    path.write_text(f"# Results\n\n{OTHER}\n")
    first = write_section(path, "mine", "Mine", "python benchmarks/mine.py --n 1", "| a |\n|---|\n| 1 |", "one run")
    assert first == script_section("Mine", "python benchmarks/mine.py --n 1", "| a |\n|---|\n| 1 |", "one run")
    assert capsys.readouterr().out == f"updated {path}\n"
    assert path.read_text() == f"# Results\n\n{OTHER}\n\n<!-- begin mine -->\n{first}\n<!-- end mine -->\n"

    second = write_section(path, "mine", "Mine", "cmd", "| b |", notes=["- a note"], echo=True, announce=False)
    assert second.endswith("| b |\n\n- a note")
    assert capsys.readouterr().out == second + "\n"
    text = path.read_text()
    assert text == f"# Results\n\n{OTHER}\n\n<!-- begin mine -->\n{second}\n<!-- end mine -->\n"
    assert text.count("<!-- begin mine -->") == text.count("### Mine") == 1 and "| a |" not in text


def test_write_section_starts_a_missing_file(tmp_path):
    path = tmp_path / "RESULTS.md"
    body = write_section(path, "mine", "Mine", "cmd", "| a |", announce=False)
    assert path.read_text() == f"# Results\n\n<!-- begin mine -->\n{body}\n<!-- end mine -->\n"
