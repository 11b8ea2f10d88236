"""Command line of the autograder; run it from the repository root.

    python -m autograder grade ASSIGNMENT SUBMISSIONS --out DIR
    python -m autograder examples ASSIGNMENT --out DIR
    python -m autograder demo [ASSIGNMENT ...] [--out DIR]
    python -m autograder release --out DIR
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .nbgrader_config import ASSIGNMENTS, CELL_TIMEOUT_S


def _add_grading_options(parser: argparse.ArgumentParser) -> None:
    from .grade import DEFAULT_SUBMISSION_TIMEOUT_S
    from .sandbox import DEFAULT_MEMORY_LIMIT, format_bytes, parse_bytes

    parser.add_argument("--workers", "-j", type=int, default=None,
                        help="submissions graded at once (default: the number of CPUs)")
    parser.add_argument("--cell-timeout", type=int, default=None,
                        help=f"seconds one cell may run (default {CELL_TIMEOUT_S})")
    parser.add_argument("--submission-timeout", type=float, default=DEFAULT_SUBMISSION_TIMEOUT_S,
                        help="seconds one whole submission may take "
                             f"(default {DEFAULT_SUBMISSION_TIMEOUT_S})")
    parser.add_argument("--source", type=Path, default=None,
                        help="folder of instructor masters (default: the repository's source/)")
    parser.add_argument("--memory-limit", type=parse_bytes, default=DEFAULT_MEMORY_LIMIT,
                        help="memory of one submission's kernel, e.g. 4G or 512M "
                             f"(default {format_bytes(DEFAULT_MEMORY_LIMIT)})")
    parser.add_argument("--reseed", action="store_true",
                        help="draw new grading seeds (a new course secret in --out); by "
                             "default a re-grade uses the same seeds and gives the same grades")
    parser.add_argument("--no-sandbox", dest="sandbox", action="store_false",
                        help="run the submissions' kernels WITHOUT the sandbox (bubblewrap), "
                             "with the grader's permissions; the summary and results.json say so")
    # issue 21: a Dask cluster, the preflight (autograder/cluster.py, autograder/preflight.py)
    parser.add_argument("--scheduler", metavar="tcp://HOST:PORT", default=None,
                        help="grade on this Dask distributed scheduler's workers instead of "
                             "local worker processes (see 'Grading a large course' in "
                             "autograder/README.md)")
    parser.add_argument("--skip-preflight", dest="preflight", action="store_false",
                        help="do not first grade the master's solution and the untouched "
                             "notebook (grading refuses unless they score full marks and 0)")
    parser.add_argument("--no-notebook-run", dest="notebook_run", action="store_false",
                        help="do not run each whole notebook for the feedback: the feedback "
                             "shows the notebook as submitted, with the student's own outputs, "
                             "and every verdict; the points are the same (they come from the "
                             "clean room) in about half the time per submission")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    grade_cmd = commands.add_parser("grade", help="grade a folder or zip of submissions")
    grade_cmd.add_argument("assignment", help=f"assignment name, e.g. {ASSIGNMENTS[0]}")
    grade_cmd.add_argument("submissions", type=Path,
                           help="folder of <student_id>.ipynb files, or an LMS zip of them")
    grade_cmd.add_argument("--out", type=Path, required=True,
                           help="output folder: grades.csv, feedback/, results.json, course/")
    _add_grading_options(grade_cmd)

    examples_cmd = commands.add_parser("examples", help="write the example submissions")
    examples_cmd.add_argument("assignment", nargs="?", default=ASSIGNMENTS[0])
    examples_cmd.add_argument("--out", type=Path, required=True)
    examples_cmd.add_argument("--source", type=Path, default=None)

    demo_cmd = commands.add_parser("demo", help="write the example submissions and grade them")
    demo_cmd.add_argument("assignments", nargs="*", metavar="assignment",
                          help="the assignments to grade, each in OUT/<assignment> "
                               "(default: every one)")
    demo_cmd.add_argument("--out", type=Path, default=Path("grading-output"))
    _add_grading_options(demo_cmd)

    release_cmd = commands.add_parser(
        "release", help="write the student-facing copy of the course (no source/, solutions/ "
                        "or hidden tests) into a new folder")
    release_cmd.add_argument("--out", type=Path, required=True,
                             help="a folder that does not exist yet, or is empty")

    rubric_cmd = commands.add_parser(
        "rubric", help="print an assignment's rubric and what each known mistake loses, from "
                       "the exercise registry")
    rubric_cmd.add_argument("assignment", choices=ASSIGNMENTS)

    args = parser.parse_args(argv)
    from .course import SOURCE_ROOT, CourseError

    source = getattr(args, "source", None) or SOURCE_ROOT
    try:
        if args.command == "release":
            from .authoring.release import write_release

            for path in write_release(args.out):
                print(path)
            return 0
        if args.command == "rubric":
            from fusionlab.grading import registry

            from .authoring.rubric import mistakes_table, table

            exercises = registry.exercises(args.assignment)
            print(table(exercises), mistakes_table(exercises), sep="\n\n")
            return 0
        if args.command == "examples":
            from .authoring.examples import write_examples

            for path in write_examples(args.assignment, args.out, source):
                print(path)
            return 0
        from .grade import grade

        options = dict(source_root=source, workers=args.workers, cell_timeout=args.cell_timeout,
                       submission_timeout=args.submission_timeout, use_sandbox=args.sandbox,
                       memory_limit=args.memory_limit, reseed=args.reseed,
                       scheduler=args.scheduler, preflight=args.preflight,
                       notebook_run=args.notebook_run)
        if args.command == "demo":
            from .authoring.examples import write_examples

            unknown = [name for name in args.assignments if name not in ASSIGNMENTS]
            if unknown:
                raise CourseError(f"no assignment named {', '.join(unknown)}; the course has "
                                  f"{', '.join(ASSIGNMENTS)}")
            for assignment in args.assignments or ASSIGNMENTS:
                out = args.out / assignment
                write_examples(assignment, out / "submissions", source)
                grade(assignment, out / "submissions", out, **options)
            return 0
        grade(args.assignment, args.submissions, args.out, **options)
    except CourseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
