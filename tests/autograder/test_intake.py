"""Fast tests of what comes into and goes out of the grader (no autograde run): student ids,
LMS zips and folders, text printed to the terminal, the feedback sanitiser and annotations,
the scan on honest submissions, and the student-facing release. The end-to-end tests through
nbgrader are in test_intake_grading.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from autograder import intake, scan
from autograder import report as grading
from autograder.course import REPO_ROOT, CourseError
from autograder.feedback import (
    AnnotateFeedback,
    SanitizeSubmission,
    cell_title,
    clean_html,
    markdown_to_safe_html,
    shortened_cells,
)
from autograder.intake import IntakeError, load_batch, printable, read_batch, student_id_for

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
NB = "{}"  # file contents do not matter for collection


# ----------------------------------------------------------------------------- student ids

TRICKY = ["Zoë", "Zoé", "Zo", "Zoe", "bob!", "bob", "bob?", "ali ce", "ali_ce", "...", "..",
          "日本", "中文", "José María", "x\x1b[31m", "a/b", "-x-", "x" * 200]


def test_tricky_names_get_distinct_valid_ids():
    ids = [student_id_for(name) for name in TRICKY]
    assert len(set(ids)) == len(TRICKY), dict(zip(TRICKY, ids))
    assert len({i.casefold() for i in ids}) == len(TRICKY)
    for student_id in ids:
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.@-]*", student_id), student_id
        assert len(student_id) <= intake.MAX_ID_SLUG + 9
    assert [student_id_for(name) for name in TRICKY] == ids  # stable


@pytest.mark.parametrize("name, readable", [
    ("alice", "alice"), ("j.doe@uni.edu", "j.doe@uni.edu"), ("Zoë", "Zoe-"), ("bob!", "bob-"),
    ("...", "unnamed-"),
])
def test_ids_stay_readable(name, readable):
    assert student_id_for(name) == readable or (
        readable.endswith("-") and student_id_for(name).startswith(readable))


def _folder(tmp_path, names, contents=NB):
    folder = tmp_path / "subs"
    folder.mkdir()
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(contents)
    return folder


def test_no_submission_is_dropped(tmp_path):
    names = ["Zoë.ipynb", "Zoé.ipynb", "Zo.ipynb", "bob!.ipynb", "bob.ipynb", "中文.ipynb"]
    batch = load_batch(_folder(tmp_path, names), tmp_path / "work", ["toy"])
    assert len(batch.students) == len(names)
    assert sorted(s.files["toy"] for s in batch.submissions.values()) == sorted(names)
    assert {s.entry for s in batch.submissions.values()} == {Path(n).stem for n in names}


@pytest.mark.parametrize("first, second", [
    ("bob!.ipynb", f"{student_id_for('bob!')}.ipynb"),  # a name that is another's id
    ("Alice.ipynb", "alice/toy.ipynb"),  # the same id but for case
])
def test_colliding_ids_refuse_and_name_both_files(tmp_path, first, second):
    with pytest.raises(IntakeError) as error:
        load_batch(_folder(tmp_path, [first, second]), tmp_path / "work", ["toy"])
    assert first in str(error.value) and second in str(error.value)


def test_collision_is_a_course_error_for_the_command(tmp_path):
    from autograder.course import Course, collect

    course = Course(tmp_path / "course", "toy")
    (course.root / "release" / "toy").mkdir(parents=True)
    (course.root / "release" / "toy" / "toy.ipynb").write_text(NB)
    folder = _folder(tmp_path, ["bob!.ipynb", f"{student_id_for('bob!')}.ipynb"])
    with pytest.raises(CourseError, match="share the student id"):
        collect(course, folder)
    assert not (course.root / "submitted").exists()


# ----------------------------------------------------------------------------- zips and folders

def _zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members:
            if isinstance(name, zipfile.ZipInfo):
                zf.writestr(name, data)
            else:
                zf.writestr(name, data)
    return path


def _symlink_member(name, target):
    info = zipfile.ZipInfo(name)
    info.external_attr = 0o120777 << 16
    return info, target


def test_zip_members_are_owned_by_their_entry(tmp_path):
    archive = _zip(tmp_path / "lms.zip", [
        ("alice/toy.ipynb", "alice's"),
        ("alice/bob.ipynb", "alice pretending to be bob"),
        ("bob.ipynb", "bob's"),
        ("carol/toy.ipynb", "carol's"),
        ("carol/more.zip", "PK"),
        ("dave/my work.ipynb", "dave's, not named like the notebook"),
        ("erin/toy.ipynb", "erin's"),
        ("erin/sub/toy.ipynb", "a second copy deeper down"),
        ("nested.zip", "PK"),
        ("notes.txt", "hi"),
        ("__MACOSX/._alice", "mac metadata"),
        ("../escape.ipynb", "traversal"),
        ("/abs/olute.ipynb", "absolute"),
        ("C:\\win\\x.ipynb", "drive letter"),
        ("frank/../../up.ipynb", "traversal inside an entry"),
        _symlink_member("grace/toy.ipynb", "/etc/passwd"),
    ])
    batch = load_batch(archive, tmp_path / "work", ["toy"])
    subs = batch.submissions
    assert sorted(subs) == ["alice", "bob", "carol", "dave", "erin"]
    read = {s: (batch.root / sub.files["toy"]).read_text() for s, sub in subs.items()}
    assert read == {"alice": "alice's", "bob": "bob's", "carol": "carol's",
                    "dave": "dave's, not named like the notebook", "erin": "erin's"}
    assert any("alice/bob.ipynb" in f and "another student" in f for f in subs["alice"].flags)
    assert subs["bob"].flags == []
    assert any("more.zip" in f and "not extracted" in f for f in subs["carol"].flags)
    assert any("erin/sub/toy.ipynb" in f for f in subs["erin"].flags)
    skipped = "\n".join(batch.skipped)
    for name in ("../escape.ipynb", "/abs/olute.ipynb", "C:\\win\\x.ipynb",
                 "frank/../../up.ipynb", "grace/toy.ipynb", "nested.zip", "notes.txt"):
        assert name in skipped, (name, skipped)
    assert "__MACOSX" not in skipped
    # nothing was written outside the extraction folder, no link was created
    assert not (tmp_path / "escape.ipynb").exists() and not (tmp_path / "up.ipynb").exists()
    assert not any(p.is_symlink() for p in (tmp_path / "work").rglob("*"))
    assert not list((tmp_path / "work").rglob("more.zip"))[0].is_dir()  # stays a file


def test_zip_wrapper_folder_is_unwrapped(tmp_path):
    archive = _zip(tmp_path / "lms.zip", [("export/alice.ipynb", "a"),
                                          ("export/bob/toy.ipynb", "b")])
    batch = load_batch(archive, tmp_path / "work", ["toy"])
    assert sorted(batch.students) == ["alice", "bob"]


def test_oversized_zip_member_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(intake, "MAX_MEMBER_BYTES", 10)
    archive = _zip(tmp_path / "lms.zip", [("alice.ipynb", "x" * 11), ("bob.ipynb", "small")])
    batch = load_batch(archive, tmp_path / "work", ["toy"])
    assert batch.students == ["bob"]
    assert any("alice.ipynb" in line and "larger" in line for line in batch.skipped)


def test_folder_symlinks_are_not_followed(tmp_path):
    secret = tmp_path / "secret.ipynb"
    secret.write_text("the instructor's master")
    folder = _folder(tmp_path, ["alice.ipynb"])
    (folder / "mallory.ipynb").symlink_to(secret)
    (folder / "trudy").symlink_to(tmp_path)
    batch = load_batch(folder, tmp_path / "work", ["toy"])
    assert batch.students == ["alice"]
    assert any("mallory.ipynb" in line and "symbolic link" in line for line in batch.skipped)


def test_several_notebooks_need_folders(tmp_path):
    folder = _folder(tmp_path, ["alice.ipynb", "bob/a.ipynb", "bob/b.ipynb", "bob/c.ipynb"])
    batch = read_batch(folder, ["a", "b"])
    assert batch.students == ["bob"]
    assert sorted(batch.submissions["bob"].files) == ["a", "b"]
    assert any("c.ipynb" in f for f in batch.submissions["bob"].flags)
    assert any("alice.ipynb" in line and "several notebooks" in line for line in batch.skipped)


# ----------------------------------------------------------------------------- terminal text

HOSTILE_TEXT = ("AssertionError: \x1b[2J\x1b[31mred\x1b[0m \x1b]0;window title\x07 "
                "\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\ bell\x07 \x9b31m "
                "\u202edesrever\r\b\x00")


def test_printable_removes_escape_sequences_and_control_characters():
    text = printable(HOSTILE_TEXT)
    assert not CONTROL.search(text), repr(text)
    assert "red" in text and "link" in text and "desrever" in text
    assert "window title" not in text  # an OSC sequence is removed whole
    assert printable("Zoë 中文 ✓") == "Zoë 中文 ✓"


def test_summary_and_results_print_no_control_characters(tmp_path):
    from autograder.report import printable_result

    result = grading.StudentResult(
        "mallory", 2.0, 5.0, "graded", flags=[f"scan: {HOSTILE_TEXT}"],
        tests=[grading.TestResult("add_hidden", 0.0, 3.0, HOSTILE_TEXT)],
        submitted_as="mal\x1b[8mlory\x07.ipynb")
    broken = grading.StudentResult("broken", 0.0, 5.0, "not graded", reason=HOSTILE_TEXT)
    report = grading.GradingReport("toy", tmp_path, [result, broken], 1.0,
                           skipped=[printable(f"skipped ../{HOSTILE_TEXT}")])
    summary = grading.format_summary(report)
    assert not CONTROL.search(summary.replace("\n", " ")), repr(summary)
    assert "mallory (mallory\\x07.ipynb)" in summary  # the name as handed in, printable
    from dataclasses import asdict

    decoded = json.loads(json.dumps(printable_result(asdict(result))))
    assert not CONTROL.search(json.dumps(decoded, ensure_ascii=False))


# ----------------------------------------------------------------------------- feedback

class _Tags(HTMLParser):
    """Every element and attribute of an HTML page."""

    def __init__(self):
        super().__init__()
        self.elements: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, {k: v or "" for k, v in attrs}))


ACTIVE_TAGS = {"script", "iframe", "object", "embed", "svg", "math", "form", "base", "link",
               "frame", "frameset", "applet", "audio", "video", "input", "button", "textarea"}


def active_content(page: str, allowed_tags=()) -> list[str]:
    """Every element or attribute of ``page`` that could run code or load something."""
    parser = _Tags()
    parser.feed(page)
    found = []
    for tag, attrs in parser.elements:
        if tag in ACTIVE_TAGS and tag not in allowed_tags:
            found.append(f"<{tag}>")
        if tag == "meta" and attrs.get("http-equiv", "").lower() == "refresh":
            found.append("<meta refresh>")
        for name, value in attrs.items():
            compact = re.sub(r"\s+", "", value).lower()
            if name.startswith("on"):
                found.append(f"<{tag} {name}>")
            if name in ("href", "src", "action", "formaction", "xlink:href", "data") and (
                    compact.startswith(("javascript:", "vbscript:", "data:text"))):
                found.append(f"<{tag} {name}={value[:30]}>")
            if name == "style" and ("url(" in compact or "expression(" in compact):
                found.append(f"<{tag} style>")
    return found


HOSTILE_MARKDOWN = """\
# My notes <script>alert('md')</script>

<img src=x onerror="alert('img')"> <a href="javascript:alert('a')">click</a>
<a href=" JaVa&#09;Script:alert('entity')">tab</a> [md link](javascript:alert('md-link'))
![image](javascript:alert('md-img')) <iframe src="https://evil.example"></iframe>
<svg onload="alert('svg')"><script>alert('svg-script')</script></svg>
<style>body { display: none }</style> <form action="https://evil.example"><input></form>
<div style="background: url(https://evil.example/track)">styled</div>
<details open ontoggle="alert('toggle')"><summary>x</summary></details>
<meta http-equiv="refresh" content="0; url=https://evil.example">
Math stays TeX: $\\alpha < \\beta$ and $$x^2$$
"""


def _hostile_notebook():
    outputs = [
        new_output("display_data", data={
            "text/html": "<b>bold</b><script>alert('html')</script><img src=x onerror=alert(1)>",
            "text/plain": "<HTML>"}),
        new_output("display_data", data={"application/javascript": "alert('js')"}),
        new_output("display_data", data={"image/svg+xml": "<svg onload=alert('svg')></svg>"}),
        new_output("display_data", data={"text/markdown": "[x](javascript:alert('out-md'))"}),
        new_output("display_data", data={"text/html": "<p>isolated</p>"},
                   metadata={"text/html": {"isolated": True}}),
        new_output("display_data", data={
            "application/vnd.jupyter.widget-view+json": {"model_id": "x", "version_major": 2,
                                                         "version_minor": 0},
            "text/plain": "widget"}),
        new_output("display_data", data={"text/latex": "<script>alert('tex')</script>$x$"}),
    ]
    nb = new_notebook(cells=[
        new_markdown_cell(HOSTILE_MARKDOWN),
        new_code_cell("display(...)", outputs=outputs),
        nbformat.v4.new_raw_cell("<script>alert('raw')</script>"),
    ])
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    return nb


def test_sanitizer_leaves_no_active_content():
    from nbconvert import HTMLExporter

    raw, _ = HTMLExporter(template_name="classic").from_notebook_node(_hostile_notebook())
    found = active_content(raw[raw.index("<body"):])
    for what in ("<script>", "<img onerror>", "<iframe>", "<svg>", "<a href=javascript"):
        assert any(f.startswith(what) for f in found), (what, found)  # the detector sees them
    nb, _ = SanitizeSubmission().preprocess(_hostile_notebook(), {})
    assert "widgets" not in nb.metadata
    outputs = nb.cells[1].outputs
    assert "application/javascript" not in outputs[1].data
    assert "image/svg+xml" not in outputs[2].data
    assert outputs[4].metadata == {}
    page, _ = HTMLExporter(template_name="classic").from_notebook_node(nb)
    body = page[page.index("<body"):]
    assert active_content(body) == []
    for marker in ("alert('md')", "alert('img')", "alert('js')", "alert('raw')"):
        assert f"<script>{marker}" not in body
    assert "$\\alpha &lt; \\beta$" in body  # math left as TeX
    assert "<b>bold</b>" in body and "styled" in body and "click" in body


@pytest.mark.parametrize("html, kept, dropped", [
    ('<a href="https://example.org">x</a>', 'href="https://example.org"', None),
    ('<a href="#top">x</a>', 'href="#top"', None),
    ('<img src="data:image/png;base64,AAAA">', "data:image/png", None),
    ('<img src="data:image/svg+xml;base64,AAAA">', None, "svg"),
    ('<a href="data:text/html,<script>x</script>">x</a>', None, "data:text"),
    ('<a href="java\nscript:alert(1)">x</a>', None, "script:"),
    ('<p onclick="x()">p</p>', "<p>p</p>", "onclick"),
])
def test_clean_html(html, kept, dropped):
    cleaned = clean_html(html)
    if kept:
        assert kept in cleaned
    if dropped:
        assert dropped not in cleaned


def test_markdown_becomes_one_html_block():
    html = markdown_to_safe_html("para one\n\n```\ncode\n\n\nmore\n```\n\npara two")
    assert "\n\n" not in html and html.startswith("<div") and html.endswith("</div>")
    assert "para two" in html


@pytest.mark.parametrize("source, title", [
    ("# Hidden test: the gate receives a gradient (3 points)\n### BEGIN HIDDEN TESTS",
     "the gate receives a gradient"),
    ("# Visible test (3 points): logits of shape (B, num_classes)\nx = 1",
     "logits of shape (B, num_classes)"),
    ("assert add(1, 2) == 3", ""),
])
def test_test_titles(source, title):
    assert cell_title(source) == title


def test_shortened_cells_follow_the_grading_flag():
    nb = new_notebook(cells=[
        new_code_cell('GRADING = "NBGRADER_EXECUTION" in os.environ\nif GRADING:\n    pass\n'
                      "SEED = 0\nSEEDS = [0] if GRADING else [0, 1, 2]"),
        new_code_cell("EPOCHS = 2 if GRADING else 30\nconfig = dict(epochs=EPOCHS)"),
        new_code_cell("x = SEED"),
        new_code_cell("def train(c=config):\n    return c"),
        new_code_cell("train()"),
        new_code_cell("print(x)"),
        new_code_cell("print(SEEDS)"),
    ])
    assert shortened_cells(nb) == [1, 3, 4, 6]


def test_annotations_name_tests_and_label_the_shortened_run():
    grade = {"nbgrader": {"grade": True, "grade_id": "t1", "points": 1, "locked": True,
                          "solution": False, "schema_version": 3}}
    nb = new_notebook(cells=[
        new_code_cell("GRADING = True"),
        new_code_cell("print(2 if GRADING else 30)",
                      outputs=[new_output("stream", name="stdout", text="2\n")]),
        new_code_cell("# Hidden test: adds (1 point)\nassert False", metadata=grade,
                      outputs=[new_output("error", ename="AssertionError", evalue="no\nmore",
                                          traceback=[])]),
    ])
    nb, _ = AnnotateFeedback().preprocess(nb, {})
    assert [c.cell_type for c in nb.cells] == ["code", "markdown", "code", "code"]
    assert "Shortened grading run" in nb.cells[1].source
    assert nb.cells[3].metadata.feedback == {"title": "adds", "verdict": "AssertionError: no"}


# ----------------------------------------------------------------------------- scan

def _nb(*sources):
    return new_notebook(cells=[new_code_cell(s) for s in sources])


@pytest.mark.parametrize("source, flagged", [
    ("model.eval()", False), ("net = torch.compile(net)", False), ("m.eval().train()", False),
    ("eval('1 + 1')", True), ("builtins.eval('x')", True), ("exec(code)", True),
])
def test_scan_flags_the_builtins_only(source, flagged):
    flags = scan.scan_notebook(_nb("import builtins", source), _nb("import builtins", "pass"))
    assert bool(flags) is flagged, flags


def test_scan_compares_without_output_markers():
    released = _nb("# NBVAL_CHECK_OUTPUT\nprint(model.eval())", "pass")
    student = _nb("print(model.eval())\n", "pass")
    assert scan.changed_cells(student, released) == []


def test_honest_submission_from_notebooks_gets_no_flag():
    """The committed student copy (notebooks/, without nbval markers) with the master's
    solutions: only the solution cells count as changed, and nothing is flagged."""
    from autograder.authoring.examples import release, submission

    assignment = "part1_fusion_strategies"
    student_copy = REPO_ROOT / "notebooks" / f"{assignment}.ipynb"
    if not student_copy.exists():
        pytest.skip("no committed student notebook")
    masters, released = release(assignment)
    student = nbformat.read(student_copy, as_version=4)
    honest = submission(masters[assignment], student)
    solution_cells = [i for i, c in enumerate(honest.cells)
                      if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code"]
    assert scan.changed_cells(honest, released[assignment]) == solution_cells
    assert scan.scan_notebook(honest, released[assignment]) == []
    untouched = submission(masters[assignment], student, solved=False)
    assert scan.changed_cells(untouched, released[assignment]) == []


# ----------------------------------------------------------------------------- release

def test_release_is_the_student_facing_course(tmp_path):
    from autograder.authoring.release import write_release

    out = tmp_path / "course"
    write_release(out)
    top = sorted(p.name for p in out.iterdir())
    assert {"notebooks", "fusionlab", "pyproject.toml", "README.md"} <= set(top)
    for name in ("source", "solutions", "autograder", "tests", "benchmarks"):
        assert not (out / name).exists()
    files = [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in files if "__pycache__" in p.parts or p.suffix == ".pyc"]
    for path in files:
        text = path.read_text(errors="replace")
        for secret in ("BEGIN HIDDEN TESTS", "### BEGIN SOLUTION", "from autograder.hidden"):
            assert secret not in text, f"{path} contains {secret}"
    assert sorted(p.name for p in (out / "notebooks").glob("*.ipynb")) == sorted(
        p.name for p in (REPO_ROOT / "notebooks").glob("*.ipynb"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run(
        [sys.executable, "-c", "import fusionlab, fusionlab.models; print(fusionlab.__file__)"],
        cwd=out, env=env, capture_output=True, text=True, timeout=300)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).resolve().is_relative_to(out.resolve())


def test_release_refuses_a_folder_with_work_in_it(tmp_path):
    from autograder.authoring.release import write_release

    out = tmp_path / "course"
    (out / "notebooks").mkdir(parents=True)
    work = out / "notebooks" / "part1_fusion_strategies.ipynb"
    work.write_text("a student's solved notebook")
    with pytest.raises(CourseError, match="not empty"):
        write_release(out)
    assert work.read_text() == "a student's solved notebook"
    completed = subprocess.run([sys.executable, "-m", "autograder", "release", "--out", str(out)],
                               cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2 and "not empty" in completed.stderr


def test_plain_nbgrader_zip_collect_follows_the_same_ownership(tmp_path):
    """``nbgrader zip_collect`` in a course directory uses autograder.course.SubmissionCollector:
    a file in alice's folder never counts for bob."""
    import logging

    from nbgrader.apps.zipcollectapp import ZipCollectApp
    from nbgrader.coursedir import CourseDirectory

    from autograder import nbgrader_config

    root = tmp_path / "course"
    (root / "release" / "toy").mkdir(parents=True)
    (root / "release" / "toy" / "toy.ipynb").write_text(NB)
    extracted = root / "downloaded" / "toy" / "extracted"
    for name, text in {"alice/toy.ipynb": "alice", "alice/bob.ipynb": "fake bob",
                       "bob.ipynb": "bob", "Zoë.ipynb": "zoe"}.items():
        (extracted / name).parent.mkdir(parents=True, exist_ok=True)
        (extracted / name).write_text(text)
    app = ZipCollectApp(config=nbgrader_config.nbgrader_config(root=root))
    app.log_level = logging.ERROR
    app.coursedir = CourseDirectory(parent=app)
    app.coursedir.assignment_id = "toy"
    app.init_plugins()
    app.process_extracted_files()
    collected = {p.parent.parent.name: p.read_text()
                 for p in (root / "submitted").glob("*/toy/toy.ipynb")}
    assert collected == {"alice": "alice", "bob": "bob", student_id_for("Zoë"): "zoe"}
