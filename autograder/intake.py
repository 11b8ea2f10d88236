"""What comes in: student ids, LMS zips and folders of submissions, and text that goes to a
terminal.

A batch of submissions is a folder, a zip (as an LMS exports it) or one ``.ipynb``. Its
top-level entries are the students' **submission entries**:

- ``alice.ipynb``: alice's copy of the assignment's (only) notebook;
- ``alice/``: alice's folder; ``alice/<notebook>.ipynb`` is her copy of that notebook (for a
  one-notebook assignment, a single other ``.ipynb`` in her folder also counts).

A student's grade comes only from files under their own entry. A zip is extracted here, never
by nbgrader's extractor, member by member: path-traversal members (``../x``, absolute paths,
drive letters), symbolic links, encrypted or oversized members are skipped and flagged, and
archives inside the batch are never extracted. The collected notebooks are written in nbgrader's
layout, ``submitted/<student_id>/<assignment>/<notebook>.ipynb``, where autograde takes them.

Student ids: every entry gets a distinct id (``student_id_for``) that nbgrader, the file
system and ``grades.csv`` accept; a name that is not one already keeps a readable ASCII slug
plus a short stable hash of the name, so ``Zoë`` and ``Zoé`` and ``Zo`` stay three students.
When two entries would still share an id the run refuses and names both.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import stat
import sys
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

ID_CHARS = re.compile(r"[^A-Za-z0-9_.@-]+")
MAX_ID_SLUG = 48
ARCHIVE_SUFFIXES = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar")
IGNORED_PARTS = ("__MACOSX", ".ipynb_checkpoints", ".DS_Store", "Thumbs.db", "desktop.ini")
MAX_MEMBER_BYTES = 64 * 1024 * 1024  # a notebook larger than this is not a submission
MAX_BATCH_BYTES = 4 * 1024 * 1024 * 1024


class IntakeError(RuntimeError):
    """The batch cannot be collected as a whole (e.g. two students would share an id)."""


# ----------------------------------------------------------------------------- terminal text

# CSI (ESC [ ... final byte), OSC (ESC ] ... BEL or ESC \), other two-byte ESC sequences
ANSI_SEQUENCE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC
    r"|\x1b[@-Z\\-_]"  # other ESC sequences
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
)


def printable(text: str, keep_newlines: bool = False) -> str:
    """``text`` safe to print on a terminal: ANSI/OSC sequences removed, every other control
    or format character (C0, C1, DEL, bidi overrides, zero-width) shown as an escape such as
    ``\\x07`` or ``\\u202e``. Tabs become spaces."""
    text = ANSI_SEQUENCE.sub("", str(text))
    out = []
    for char in text:
        if char == "\n" and keep_newlines:
            out.append(char)
        elif char == "\t":
            out.append(" ")
        elif unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"):
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


# ----------------------------------------------------------------------------- student ids

def _slug(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = ID_CHARS.sub("_", ascii_name).strip("._-")
    return slug[:MAX_ID_SLUG].rstrip("._-")


def student_id_for(name: str) -> str:
    """The student id of a submission entry named ``name`` (a file stem or folder name).

    A name that is already a valid id (letters, digits, ``_ . @ -``, not starting or ending
    with ``.``/``_``/``-``) is the id itself. Any other name gets its ASCII slug plus 8 hex
    digits of the SHA-256 of the name, so distinct names give distinct ids: ``Zoë`` ->
    ``Zoe-<hash>``, ``bob!`` -> ``bob-<hash>``, ``...`` -> ``unnamed-<hash>``.
    """
    slug = _slug(name)
    if slug == name and name:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{slug or 'unnamed'}-{digest}"


# ----------------------------------------------------------------------------- the batch

@dataclass
class Submission:
    """One student's collected notebooks."""

    student: str  # the id
    entry: str  # the name of their entry in the batch (file stem or folder name), as handed in
    files: dict[str, str] = field(default_factory=dict)  # notebook -> path in the batch
    flags: list[str] = field(default_factory=list)


@dataclass
class Batch:
    root: Path  # the folder the submissions' paths are relative to
    submissions: dict[str, Submission]  # by student id, sorted
    skipped: list[str] = field(default_factory=list)  # batch-level: nobody's file, or unsafe

    @property
    def students(self) -> list[str]:
        return list(self.submissions)


def _ignored(parts) -> bool:
    return any(part in IGNORED_PARTS or part.startswith("._") for part in parts)


def _unsafe_member_name(name: str) -> str | None:
    """Why a zip member's name must not be extracted, or None."""
    if "\x00" in name:
        return "a NUL byte in its name"
    posix = name.replace("\\", "/")
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix):
        return "an absolute path"
    if ".." in PurePosixPath(posix).parts:
        return "a path that leaves the archive (..)"
    return None


def extract_zip(archive: Path, dest: Path) -> list[str]:
    """Extract the members of ``archive`` that are safe into ``dest``; return flags for those
    skipped (path traversal, absolute paths, symbolic links, encrypted, too large).
    Archives inside are extracted as files, never opened."""
    flags = []
    total = 0
    dest.mkdir(parents=True, exist_ok=True)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise IntakeError(f"{archive.name} is not a readable zip file: {exc}") from exc
    with zf:
        for info in zf.infolist():
            name = info.filename
            shown = printable(name)
            if info.is_dir():
                continue
            why = _unsafe_member_name(name)
            mode = info.external_attr >> 16
            if why is None and stat.S_ISLNK(mode):
                why = "a symbolic link"
            if why is None and info.flag_bits & 0x1:
                why = "encrypted"
            if why is None and info.file_size > MAX_MEMBER_BYTES:
                why = f"larger than {MAX_MEMBER_BYTES // 2**20} MiB"
            if why is None and total + info.file_size > MAX_BATCH_BYTES:
                why = "the archive is too large in all"
            if why is not None:
                flags.append(f"skipped archive member {shown}: {why}")
                continue
            parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("", ".")]
            target = dest.joinpath(*parts)
            if not target.resolve().is_relative_to(dest.resolve()):
                flags.append(f"skipped archive member {shown}: a path that leaves the archive")
                continue
            if target.exists():
                flags.append(f"skipped archive member {shown}: a second member of that name")
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            with zf.open(info) as source, open(target, "wb") as out:
                while chunk := source.read(1 << 20):
                    written += len(chunk)
                    if written > MAX_MEMBER_BYTES:
                        break
                    out.write(chunk)
            total += written
            if written > MAX_MEMBER_BYTES:  # the header lied about its size
                target.unlink()
                flags.append(f"skipped archive member {shown}: larger than "
                             f"{MAX_MEMBER_BYTES // 2**20} MiB")
    return flags


def _walk(root: Path):
    """(relative path, path) of every file under ``root``, sorted, without following links;
    symbolic links come back with path None."""
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_symlink():
            yield rel, None
        elif path.is_file():
            yield rel, path


def _unwrap(root: Path, notebooks: list[str]) -> Path:
    """An LMS zip often wraps everything in one folder: descend while the only top-level entry
    is a folder that is not itself a student's folder (it holds no assignment notebook)."""
    while True:
        entries = [p for p in root.iterdir() if not _ignored([p.name])]
        if len(entries) != 1 or not entries[0].is_dir() or entries[0].is_symlink():
            return root
        if any((entries[0] / f"{name}.ipynb").exists() for name in notebooks):
            return root
        if not any(p.is_dir() for p in entries[0].iterdir()) and len(notebooks) == 1 and \
                len(list(entries[0].glob("*.ipynb"))) == 1:
            return root  # one student's folder with one notebook of another name
        root = entries[0]


def read_batch(root: Path, notebooks: list[str]) -> Batch:
    """The submission entries of the batch folder ``root`` (see the module's docstring);
    ``notebooks``: the assignment's notebook names without ``.ipynb``."""
    root = _unwrap(root, notebooks)
    files = list(_walk(root))
    top_files = {rel.parts[0]: path for rel, path in files if len(rel.parts) == 1}
    top_dirs = {rel.parts[0] for rel, _ in files if len(rel.parts) > 1}
    entry_names = {Path(name).stem for name, p in top_files.items() if name.endswith(".ipynb")}
    entry_names |= top_dirs
    entry_names = {n for n in entry_names if not _ignored([n])}
    notebook_files = {f"{name}.ipynb" for name in notebooks}
    entries: dict[str, Submission] = {}
    skipped: list[str] = []

    def flag(entry: str | None, text: str) -> None:
        if entry is None:
            skipped.append(text)
        else:
            entries.setdefault(entry, Submission("", entry)).flags.append(text)

    def take(entry: str, notebook: str, rel: Path) -> None:
        sub = entries.setdefault(entry, Submission("", entry))
        if notebook in sub.files:
            flag(entry, f"second file for {notebook}.ipynb ignored: {printable(rel.as_posix())} "
                        f"(kept {printable(sub.files[notebook])})")
        else:
            sub.files[notebook] = rel.as_posix()

    in_folder: dict[str, list[tuple[Path, Path]]] = {}
    for rel, path in files:
        shown = printable(rel.as_posix())
        if _ignored(rel.parts):
            continue
        owner = rel.parts[0] if len(rel.parts) > 1 else None
        if path is None:
            flag(owner, f"skipped {shown}: a symbolic link")
        elif rel.suffix.lower() in ARCHIVE_SUFFIXES:
            flag(owner, f"skipped {shown}: an archive inside the batch is not extracted")
        elif rel.suffix != ".ipynb":
            flag(owner, f"skipped {shown}: not a notebook (.ipynb)")
        elif owner is None:
            if len(notebooks) != 1:
                flag(None, f"skipped {shown}: the assignment has several notebooks, so a "
                           "submission is a folder <student_id>/<notebook>.ipynb")
            else:
                take(rel.stem, notebooks[0], rel)
        else:
            in_folder.setdefault(owner, []).append((rel, path))
    for owner, members in in_folder.items():
        exact = {}
        for rel, _ in sorted(members, key=lambda m: (len(m[0].parts), m[0].as_posix())):
            if rel.name in notebook_files and rel.name not in exact:
                exact[rel.name] = rel
        others = []
        for rel, _ in members:
            if exact.get(rel.name) == rel:
                take(owner, rel.stem, rel)
            elif rel.name in notebook_files:
                flag(owner, f"second file for {rel.name} ignored: {printable(rel.as_posix())}")
            elif rel.stem in entry_names and rel.stem != owner:
                flag(owner, f"ignored {printable(rel.as_posix())}: it is named as another "
                            f"student's entry ({printable(rel.stem)}), and files count only "
                            "for the entry they are in")
            else:
                others.append(rel)
        if len(notebooks) == 1 and not exact and len(others) == 1:
            take(owner, notebooks[0], others[0])
        else:
            for rel in others:
                flag(owner, f"ignored {printable(rel.as_posix())}: not named "
                            f"{' or '.join(sorted(notebook_files))}")
    # ids
    by_id: dict[str, Submission] = {}
    folded: dict[str, Submission] = {}
    for entry in sorted(entries):
        sub = entries[entry]
        sub.student = student_id_for(entry)
        other = by_id.get(sub.student) or folded.get(sub.student.casefold())
        if other is not None:
            raise IntakeError(
                f"two submissions would share the student id {sub.student!r}: "
                f"{_describe(other)} and {_describe(sub)}; rename one of them and grade again")
        by_id[sub.student] = folded[sub.student.casefold()] = sub
    collected = {}
    for student in sorted(by_id):
        sub = by_id[student]
        if sub.files:
            collected[student] = sub
        else:
            skipped += [f"{printable(sub.entry)}: {f}" for f in sub.flags] or [
                f"{printable(sub.entry)}: no notebook found"]
    return Batch(root, collected, skipped)


def _describe(sub: Submission) -> str:
    paths = sorted(sub.files.values()) or [sub.entry]
    return ", ".join(repr(p) for p in paths)


def submitted_as(sub: Submission) -> str:
    """The batch path(s) the submission was collected from."""
    return ", ".join(sub.files[name] for name in sorted(sub.files))


def load_batch(submissions: Path, workdir: Path, notebooks: list[str]) -> Batch:
    """Bring ``submissions`` (a folder, a zip or one .ipynb) into ``workdir/extracted`` (a zip
    extracted safely, a folder or file copied without following links) and read the batch."""
    submissions = Path(submissions)
    extracted = workdir / "extracted"
    if extracted.exists():
        shutil.rmtree(extracted)
    extracted.mkdir(parents=True)
    flags: list[str] = []
    if submissions.is_dir():
        shutil.copytree(submissions, extracted, symlinks=True, dirs_exist_ok=True)
    elif submissions.is_file() and submissions.suffix == ".zip":
        flags = extract_zip(submissions, extracted)
    elif submissions.is_file() and submissions.suffix == ".ipynb":
        shutil.copy(submissions, extracted / submissions.name)
    else:
        raise IntakeError(f"{submissions} is neither a folder of .ipynb files nor a .zip file")
    batch = read_batch(extracted, notebooks)
    batch.skipped = flags + batch.skipped
    return batch


def collect_batch(submissions: Path, course_root: Path, assignment: str,
                  notebooks: list[str]) -> Batch:
    """Collect ``submissions`` into the nbgrader course at ``course_root``: the input is kept in
    ``downloaded/<assignment>/archive/``, extracted into ``downloaded/<assignment>/extracted/``
    and each student's notebooks are copied to ``submitted/<id>/<assignment>/`` (what
    ``nbgrader zip_collect`` would produce)."""
    submissions = Path(submissions)
    downloaded = course_root / "downloaded" / assignment
    if downloaded.exists():
        shutil.rmtree(downloaded)
    (downloaded / "archive").mkdir(parents=True)
    if submissions.is_file():
        shutil.copy(submissions, downloaded / "archive" / submissions.name)
    batch = load_batch(submissions, downloaded, notebooks)
    for student, sub in batch.submissions.items():
        dest = course_root / "submitted" / student / assignment
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        for notebook, rel in sub.files.items():
            shutil.copyfile(batch.root / rel, dest / f"{notebook}.ipynb")
    for line in batch.skipped:
        print(f"not collected: {line}", file=sys.stderr)
    return batch
