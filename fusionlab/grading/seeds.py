"""Seeds and random streams: the one home of every number that draws an input.

A self-check draws its inputs from ``SELF_CHECK_SEED``; a grading run from the seeds the grader
derives for one submission (``Seeds``: an HMAC of the course secret, the assignment and the
student, computed by ``autograder`` and never visible to the student's code). Every random
input of an exercise comes from ``generator(seed, exercise, stream)``: a named stream per
exercise, so that two inputs never share draws and adding a stream changes no other.
"""

from __future__ import annotations

import enum
import zlib
from dataclasses import dataclass

import torch

SELF_CHECK_SEED = 20240601  # the self-checks' inputs and module seed (public on purpose)


class Stream(enum.IntEnum):
    """The kinds of draws an exercise makes."""

    INPUTS = 1  # the inputs the student's code is called on
    PERTURB = 2  # the step that moves every parameter off its initial value
    PROJECTION = 3  # the random projection whose sum is the gradient checks' loss
    DRAWS = 4  # a generator handed to the student's code (its draws are part of the spec)
    TOKENS = 5  # a second set of inputs (token sequences)
    TOKEN_DRAWS = 6  # the generator handed over with TOKENS
    TRAINING = 7  # the training data of an accuracy cell
    MODEL = 8  # the initial weights of a model trained for an accuracy cell


def derive(seed: int, exercise: str, stream: Stream) -> int:
    """A 63-bit seed for ``stream`` of ``exercise`` under ``seed`` (stable across runs and
    machines: ``zlib.crc32``, not Python's salted ``hash``)."""
    salt = zlib.crc32(f"{exercise}/{stream.name}".encode())
    return (int(seed) * 0x9E3779B1 + salt) % 2**63


def generator(seed: int, exercise: str, stream: Stream) -> torch.Generator:
    """A fresh CPU generator for ``stream`` of ``exercise`` under ``seed``."""
    return torch.Generator().manual_seed(derive(seed, exercise, stream))


@dataclass(frozen=True)
class Seeds:
    """The seeds of one grading run of one submission.

    ``inputs`` fixes what the clean room draws (inputs, initial weights, training data);
    ``evaluation`` the grader's held-out evaluation data, whose labels never leave the trusted
    process.
    """

    inputs: int
    evaluation: int

    def as_dict(self) -> dict[str, int]:
        return {"inputs": self.inputs, "evaluation": self.evaluation}
