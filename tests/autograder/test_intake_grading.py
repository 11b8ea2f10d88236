"""End-to-end tests of the grader's intake and output hygiene, through real nbgrader on the toy
course (tests/grading/toy_course.py, no torch): one LMS zip with tricky student names,
foreign, nested, traversal and symlink entries and hostile output, graded once for the module.

Asserted: every tricky name gets its own grade; a student's grade comes only from their own
entry; unsafe entries are skipped and flagged while the rest is graded; the summary and
results.json carry no control characters; the feedback pages carry no active content, load
nothing from the network, name every test and label the shortened grading run.
"""

from __future__ import annotations

import json
import re
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell

from autograder.authoring.examples import release, submission
from autograder.course import CourseError
from autograder.grade import grade
from autograder.intake import student_id_for

sys.path.insert(0, str(Path(__file__).parents[1] / "grading"))
import toy_course  # noqa: E402

from tests.autograder.test_intake import CONTROL, active_content  # noqa: E402

pytestmark = pytest.mark.grading

A = toy_course.ASSIGNMENT
FULL, VISIBLE_ONLY = toy_course.MAX_SCORE, 2.0
MATH = r"The sum is $a + b$, and $$\sum_i x_i < \infty$$"
SHORTENED = 'GRADING = "NBGRADER_EXECUTION" in os.environ\nEPOCHS = 2 if GRADING else 30'
DEMO = "print(f'trained for {EPOCHS} epochs')"
LONG = "x" * 400
RAISES = ("def add(a, b):\n    raise ValueError('\\x1b]0;pwned\\x07\\x1b[2J\\x1b[31mboom "
          f"{LONG} end-of-verdict')")
HOSTILE_DISPLAY = toy_course.CORRECT + """
from IPython.display import HTML, Javascript, SVG, Markdown, display
display(HTML("<script>alert('html')</script><img src=x onerror=alert('img')>"))
display(Javascript("alert('js')"))
display(SVG('<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"></svg>'))
display(Markdown("[click](javascript:alert('md'))"))
display(HTML('<p>isolated</p>'), metadata={'isolated': True})
"""
HOSTILE_MARKDOWN = ("<script>alert('md')</script> <img src=x onerror=alert(1)> "
                    "<iframe src='https://evil.example'></iframe> [x](javascript:alert(2))")


def _source(root: Path) -> Path:
    """The toy master plus a math cell and a demonstration shortened under nbgrader."""
    toy_course.write_source(root)  # the master and its exercise declaration beside it
    nb = toy_course.master()
    nb.cells[2:2] = [new_markdown_cell(MATH), new_code_cell(SHORTENED), new_code_cell(DEMO)]
    nbformat.write(nb, root / A / f"{A}.ipynb")
    return root


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("intake")
    source = _source(root / "source")
    masters, released = release(A, source)
    master, student = masters[A], released[A]

    def nb(solution=None, solved=True, edit=None):
        replace = {"add_solution": solution} if solution else None
        return nbformat.writes(submission(master, student, replace=replace, solved=solved,
                                          edit=edit))

    def add_markdown(notebook):
        notebook.cells.insert(2, new_markdown_cell(HOSTILE_MARKDOWN))

    correct, wrong = nb(), nb(toy_course.WRONG)
    members = {
        # tricky names: each its own grade
        "Zoë/toy.ipynb": correct, "Zoé.ipynb": wrong, "Zo.ipynb": correct,
        "bob!.ipynb": wrong, "bob.ipynb": correct, "中文.ipynb": wrong,
        "eve\x1b[31m.ipynb": correct,
        # alice's folder holds a stub named as bob's entry: ignored, bob keeps his grade
        "alice/toy.ipynb": wrong, "alice/bob.ipynb": nb(solved=False),
        # an archive inside: not extracted (it holds a correct notebook)
        "carol/toy.ipynb": wrong, "carol/more.zip": "zip",
        "nested.zip": "zip",
        # unsafe members: skipped, the batch goes on
        "../escape.ipynb": correct, "/abs/olute.ipynb": correct,
        # hostile output and text
        "mallory.ipynb": nb(HOSTILE_DISPLAY, edit=add_markdown),
        "oscar.ipynb": nb(RAISES),
    }
    archive = root / "lms.zip"
    inner = root / "inner.zip"
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("dave.ipynb", correct)
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, inner.read_bytes() if name.endswith(".zip") else data)
        link = zipfile.ZipInfo("grace/toy.ipynb")
        link.external_attr = 0o120777 << 16
        zf.writestr(link, "/etc/passwd")
    lines: list[str] = []
    out = root / "out"
    report = grade(A, archive, out, source_root=source, workers=2, cell_timeout=30,
                   submission_timeout=120, echo=lines.append)
    return report, out, "\n".join(lines)


def test_every_tricky_name_gets_its_own_grade(batch):
    report, _, _ = batch
    scores = {(r.submitted_as, r.student): r.score for r in report.students}
    expected = {"Zoë/toy.ipynb": FULL, "Zoé.ipynb": VISIBLE_ONLY, "Zo.ipynb": FULL,
                "bob!.ipynb": VISIBLE_ONLY, "bob.ipynb": FULL, "中文.ipynb": VISIBLE_ONLY,
                "eve\x1b[31m.ipynb": FULL}
    by_file = {name: score for (name, _), score in scores.items()}
    for name, score in expected.items():
        assert by_file.get(name) == score, (name, scores)
    ids = [r.student for r in report.students]
    assert len(ids) == len(set(ids))
    assert student_id_for("Zoë") in ids and student_id_for("Zoé") in ids and "Zo" in ids
    assert "bob" in ids and student_id_for("bob!") in ids


def test_grades_come_only_from_the_students_own_entry(batch):
    report, _, _ = batch
    by = report.by_student()
    assert by["bob"].score == FULL and by["bob"].submitted_as == "bob.ipynb"
    assert by["alice"].score == VISIBLE_ONLY
    assert any("alice/bob.ipynb" in f and "another student" in f for f in by["alice"].flags)
    assert by["carol"].score == VISIBLE_ONLY
    assert any("more.zip" in f and "not extracted" in f for f in by["carol"].flags)
    assert "dave" not in by and "grace" not in by  # inside an archive; a symbolic link


def test_unsafe_entries_are_skipped_and_flagged(batch):
    report, out, summary = batch
    skipped = "\n".join(report.skipped)
    for name in ("../escape.ipynb", "/abs/olute.ipynb", "grace/toy.ipynb", "nested.zip"):
        assert name in skipped, (name, skipped)
        assert name in summary
    assert not (out / "escape.ipynb").exists() and not (out.parent / "escape.ipynb").exists()
    assert json.loads((out / "results.json").read_text())["skipped"] == report.skipped


def test_no_control_characters_reach_the_terminal(batch):
    report, out, summary = batch
    oscar = report.by_student()["oscar"]
    assert oscar.score == 0 and any("boom" in t.reason for t in oscar.tests)
    # the OSC sequence of the message is removed whole; the reason, kept whole, may quote the
    # cell's source line, where the sequence is only text (a backslash, "x1b")
    assert "pwned" not in summary.replace(r"\x1b]0;pwned", "")
    assert not CONTROL.search(summary.replace("\n", " ")), repr(summary)
    data = json.loads((out / "results.json").read_text())
    assert not CONTROL.search(json.dumps(data, ensure_ascii=False))


def _page(out, student):
    return (out / "feedback" / student / f"{A}.html").read_text()


def test_feedback_has_no_active_content(batch):
    report, out, _ = batch
    mallory = _page(out, "mallory")
    assert report.by_student()["mallory"].score == FULL
    body = mallory[mallory.index("<body"):]
    assert active_content(body) == []
    for student in report.by_student():
        page = _page(out, student)
        assert active_content(page) == [], student
        assert "Content-Security-Policy" in page and "default-src 'none'" in page
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.split("<body", 1)[0])
        assert "mathjax" not in page.lower()


def test_feedback_names_tests_and_labels_the_shortened_run(batch):
    report, out, _ = batch
    page = _page(out, "oscar")
    toc = page[page.index('id="toc"'):page.index("</ol>", page.index('id="toc"'))]
    assert "Test cell" not in toc
    assert "<code>add_hidden</code></a>: add works on negatives and floats" in toc
    assert "<code>add_visible</code>" in toc
    assert "end-of-verdict" in toc  # the whole verdict, wrapped by the page's CSS
    assert f"ValueError: boom {LONG} end-of-verdict" in toc  # without escape sequences
    assert "white-space: pre-wrap" in page
    assert "Shortened grading run" in page and "trained for 2 epochs" in page
    assert r"$a + b$" in page and r"\sum_i x_i &lt; \infty" in page  # TeX, no renderer


def test_colliding_ids_refuse_naming_both_files(tmp_path):
    source = toy_course.write_source(tmp_path / "source")
    folder = tmp_path / "subs"
    toy_course.write_submissions(folder, source, names=("correct",))
    (folder / "correct.ipynb").rename(folder / "bob!.ipynb")
    (folder / f"{student_id_for('bob!')}.ipynb").write_text("{}")
    with pytest.raises(CourseError) as error:
        grade(A, folder, tmp_path / "out", source_root=source, workers=1, echo=lambda *_: None)
    assert "bob!.ipynb" in str(error.value)
    assert f"{student_id_for('bob!')}.ipynb" in str(error.value)
