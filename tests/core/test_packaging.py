"""Installation: one install path, the tested one. pyproject.toml, environment.yml, the Makefile
and the documentation agree; the student install holds no nbgrader; the wheel carries the
package's data."""

import re
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]


def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def makefile_variable(name):
    match = re.search(rf"^{name}\s*[:?]?=[ \t]*(\S*)[ \t]*$", (ROOT / "Makefile").read_text(), re.M)
    assert match, f"the Makefile sets no {name}"
    return match.group(1)


def environment_requirements():
    """The pip requirements listed in environment.yml (options and the project itself aside)."""
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = lines.index("  - pip:") + 1
    items = [line.strip()[2:] for line in lines[start:] if line.strip().startswith("- ")]
    return [item for item in items if item != "-e ." and not item.startswith("-")]


def normalise(requirement):
    return re.sub(r"\s+", "", requirement).lower()


def test_environment_yml_is_the_student_install_with_the_tested_torch():
    """environment.yml = fusionlab[student] with torch pinned as the tests run it."""
    project = pyproject()
    pin = makefile_variable("TORCH")
    expected = [pin if Requirement(r).name == "torch" else r for r in project["dependencies"]]
    expected += project["optional-dependencies"]["student"]
    assert sorted(map(normalise, environment_requirements())) == sorted(map(normalise, expected))
    torch_requirement = next(Requirement(r) for r in project["dependencies"]
                             if Requirement(r).name == "torch")
    assert Requirement(pin).name == "torch"
    assert torch_requirement.specifier.contains(next(iter(Requirement(pin).specifier)).version)
    cpu_index = makefile_variable("TORCH_INDEX")
    assert cpu_index.endswith("/cpu")
    assert f"--extra-index-url {cpu_index}" in (ROOT / "environment.yml").read_text()


def documented_texts():
    texts = {name: (ROOT / name).read_text() for name in
             ("README.md", "autograder/README.md", "environment.yml", "Makefile")}
    for master in sorted((ROOT / "source").glob("*/*.ipynb")):  # every setup cell's hint
        texts[master.name] = master.read_text()
    return texts


def test_every_documented_install_names_existing_extras_and_the_pinned_torch():
    extras = set(pyproject()["optional-dependencies"])
    pin = makefile_variable("TORCH")
    for name, text in documented_texts().items():
        for used in re.findall(r"\.\[([\w,$()]+)\]", text):
            if "$" in used:  # the Makefile's own variables
                continue
            assert set(used.split(",")) <= extras, (name, used)
        for command in re.findall(r"pip install[^\n`]*torch[^\n`]*", text):
            assert pin in command, (name, command)


def dependency_closure(requirements):
    """Every distribution that installing ``requirements`` brings in, from the metadata of this
    environment (which `make test` installs with every extra, a superset of each one)."""
    seen = {}
    todo = [Requirement(r) for r in requirements]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        extras = set(requirement.extras)
        if name in seen and extras <= seen[name]:
            continue
        seen[name] = seen.get(name, set()) | extras
        distribution = metadata.distribution(name)  # absent: the test env lacks a dependency
        for line in distribution.requires or []:
            dependency = Requirement(line)
            wanted = dependency.marker is None or any(
                dependency.marker.evaluate({"extra": extra}) for extra in {""} | seen[name]
            )
            if wanted:
                todo.append(dependency)
    return set(seen)


def test_the_student_install_has_no_nbgrader_and_so_no_validate_button():
    """nbgrader's Validate button says "Success!" for a notebook that grades 37/50: students
    must not get it from our install. The student extra's whole dependency closure holds no
    nbgrader (nor any of its Jupyter extensions); the instructor's does."""
    student = dependency_closure(["fusionlab[student]"])
    assert {"jupyterlab", "ipywidgets", "torch", "fusionlab"} <= student
    assert not {name for name in student if "nbgrader" in name}, sorted(student)
    assert "nbgrader" in dependency_closure(["fusionlab[instructor]"])


def test_make_lab_installs_the_student_extra_only_in_its_own_environment():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^\$\(STUDENT_STAMP\):.*\n\t\$\(call install,\$\(STUDENT_VENV\),student\)$",
                     makefile, re.M)
    assert re.search(r"^lab: \$\(STUDENT_STAMP\) workspace\n\t\$\(STUDENT_VENV\)/bin/jupyter lab",
                     makefile, re.M)
    assert makefile_variable("VENV") != ".venv-student"


def test_python_version_floor_agrees():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.10"
    assert "python>=3.10" in (ROOT / "environment.yml").read_text()


def test_readme_gives_the_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    assert "make lab" in readme and "make demo" in readme and "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    makefile = (ROOT / "Makefile").read_text()
    for target in ("lab", "workspace", "demo", "test", "notebooks"):
        assert re.search(rf"^{target}:", makefile, re.M), target


def test_the_wheel_carries_each_parts_exercise_table_and_known_answers(tmp_path):
    """A non-editable install (Colab's ``pip install``) reads each part's ``exercises.toml`` and
    ``known_answers.npz`` from the package: the wheel must carry them. Built from a copy, so
    the repository gets no build/ folder."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "fusionlab", source / "fusionlab",
                    ignore=shutil.ignore_patterns("__pycache__"))
    # built as `pip install` builds it: in an isolated environment with pyproject's setuptools
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q",
                    "-w", str(tmp_path / "dist")], check=True)
    (wheel,) = (tmp_path / "dist").glob("fusionlab-*.whl")
    packed = set(zipfile.ZipFile(wheel).namelist())
    parts = sorted(p.parent.name for p in (ROOT / "fusionlab").glob("part*/exercises.py"))
    assert parts == ["part1", "part2", "part3", "part4"]
    for part in parts:
        for data in ("exercises.toml", "known_answers.npz"):
            assert f"fusionlab/{part}/{data}" in packed, (part, data)
