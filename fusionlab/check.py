"""Self-checks for the notebooks' TODOs, and the checks the grader runs: one design.

Each TODO in a notebook is followed by a cell such as ::

    from fusionlab import check
    check.bidirectional(BidirectionalCrossAttention)

which prints one line per check, each with a word and a mark (``PASS ✅``, ``FAIL ❌``,
``SKIP ➖``), and returns nothing.

How a check works. ``fusionlab.evidence`` runs the class and records what it did as plain
arrays (its weights, outputs, submodule outputs, gradients); a check is one small function
``check(evidence, facts) -> CheckResult`` that compares that evidence with ``facts``, the
expected values:

- in the self-check (here, in the student's kernel) the module is loaded with known weights
  and run on known inputs, and the facts are the stored known answers of
  ``fusionlab/known_answers/part1.npz``: the reference outputs and the outputs of each known
  mistake (so a verdict can say "it looks like the residual connection is missing"). The
  package holds no implementation of a TODO;
- in the grader (``autograder.verdicts``, a separate trusted process) the evidence comes from
  the graded cells' files, and the facts are computed by the reference formulas on the
  student's own exported weights and the grader's inputs.

``run`` executes a list of checks: every check needs ``implemented`` to pass; otherwise each
check runs on its own (an error in one fails that one only, with its reason) and says ``SKIP``
only when the evidence it needs is missing.

Check names: ``BIDIRECTIONAL_CHECKS`` and ``GATED_CHECKS`` (self-checks), plus ``accuracy``
in the grader.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

import numpy as np

from . import evidence as _evidence

TOLERANCE = 1e-5  # absolute and relative tolerance of the equivalence checks
KNOWN_SEED = 20240601  # the self-checks' inputs and module seed
KNOWN_ANSWERS = "part1.npz"

BIDIRECTIONAL_CHECKS = ("implemented", "attributes", "shapes", "equivalence", "gradients", "no_nan")
GATED_CHECKS = ("implemented", "attributes", "gate", "shapes", "equivalence", "gate_gradient")

# What each known mistake looks like, in words (the grader holds the formulas).
MISTAKES = {
    "no_residual": "the residual connection is missing: add the input before the norm, "
                   "norm(x + attn(x, other))",
    "no_norm": "the LayerNorm is missing: apply norm_txt / norm_img to x + attn(x, other)",
    "swapped_directions": "the two directions are swapped: txt_to_img takes text queries, "
                          "img_to_txt image queries",
    "swapped_norms": "norm_txt and norm_img are swapped: norm_txt normalises the text tokens",
    "mean_of_means": "the pooling averages the two modalities' means: concatenate the tokens "
                     "with torch.cat(..., dim=1), then take one mean over all of them",
    "swapped_alpha": "alpha weights the wrong modality: z = alpha * img_proj(img) + "
                     "(1 - alpha) * txt_proj(txt)",
    "no_sigmoid": "the sigmoid is missing: alpha = torch.sigmoid(self.gate)",
    "ignores_gate": "the output ignores the gate: alpha = torch.sigmoid(self.gate) must weight "
                    "the two projections",
}
MARKS = {"PASS": "✅", "FAIL": "❌", "SKIP": "➖"}


@dataclass
class CheckResult:
    """One verdict: ``name``, ``passed`` and a message with a hint."""

    name: str
    passed: bool
    message: str
    skipped: bool = False  # not run: the evidence it needs is missing

    @property
    def word(self) -> str:
        return "PASS" if self.passed else ("SKIP" if self.skipped else "FAIL")


class Skip(Exception):
    """Raised by a check whose evidence is missing; its message says why."""


# ----------------------------------------------------------------------------- evidence access

def text(ev: dict, key: str, default: str = "") -> str:
    return str(ev[key]) if key in ev else default


def _json(ev: dict, key: str, default):
    try:
        return json.loads(text(ev, key)) if key in ev else default
    except ValueError:
        return default


def _shape(shape) -> str:
    return str(tuple(int(n) for n in shape))


def _output(ev: dict, key: str, what: str) -> np.ndarray:
    """The recorded output ``key``, or Skip/AssertionError with the reason it is missing."""
    if key in ev:
        return np.asarray(ev[key])
    error = text(ev, f"error/{key}")
    if error:
        raise AssertionError(f"{what} raised {error}")
    raise Skip(f"no evidence for {what}")


def close(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.allclose(a, b, atol=TOLERANCE, rtol=TOLERANCE))


# ----------------------------------------------------------------------------- shared checks

def implemented_check(error_key: str, *, wrong_return_is_implemented: bool = False):
    """The ``implemented`` check of an exercise whose first call's error is recorded under
    ``error_key``. With ``wrong_return_is_implemented`` a call that returned something of the
    wrong kind counts as implemented (the shape checks then say what is wrong)."""

    def implemented(ev, facts) -> CheckResult:
        status = text(ev, "status", "no evidence")
        if status.startswith("not implemented"):
            return CheckResult("implemented", False, f"{status}. Replace the "
                               "`raise NotImplementedError()` with your code.")
        if status != "ok":
            return CheckResult("implemented", False, status.removeprefix("error: "))
        error = text(ev, error_key)
        if "NotImplementedError" in error:
            return CheckResult("implemented", False, "not implemented yet: it still raises "
                               "NotImplementedError. Replace it with your code.")
        if error and not (wrong_return_is_implemented and error.startswith("returned")):
            return CheckResult("implemented", False, f"calling it raised {error}")
        return CheckResult("implemented", True, "it can be built and called")

    return implemented


implemented = implemented_check("error/out/shape0", wrong_return_is_implemented=True)


def _gradient_reach(ev, facts, groups: dict[str, str]) -> dict[str, bool]:
    """For each submodule prefix, whether a gradient reaches it (facts first, else evidence)."""
    if facts.get("grad_reach") is not None:
        return facts["grad_reach"]
    if "error/grad" in ev:
        raise AssertionError(text(ev, "error/grad"))
    grads = {k[len("grad/"):]: np.asarray(v) for k, v in ev.items() if k.startswith("grad/")}
    if not grads:
        raise Skip("no gradients were recorded")
    return {prefix: any(k.startswith(prefix) and np.isfinite(g).all() and np.abs(g).sum() > 0
                        for k, g in grads.items()) for prefix in groups}


def accuracy_on(facts, data: str) -> CheckResult:
    """The grader's accuracy verdict on its own ``data`` (words for the feedback):
    ``facts["accuracy"]`` is (accuracy, threshold, what) or the reason it could not be
    measured. Every part's accuracy check is this one."""
    result = facts.get("accuracy")
    if result is None:
        raise Skip("the accuracy is measured by the grader only")
    if isinstance(result, str):
        return CheckResult("accuracy", False, result)
    acc, threshold, what = result
    if not acc >= threshold:  # also catches NaN
        return CheckResult("accuracy", False, f"{what} reached {acc:.3f} on the grader's {data}, "
                           f"below the required {threshold:.2f}")
    return CheckResult("accuracy", True, f"{what} reached {acc:.3f} on the grader's {data} "
                       f"(required {threshold:.2f})")


def accuracy(ev, facts) -> CheckResult:
    """The grader's accuracy verdict on its XOR test data (see ``accuracy_on``)."""
    return accuracy_on(facts, "XOR test data")


# ----------------------------------------------------------------------------- bidirectional

_BIDIR_ATTRS = {"txt_to_img": "CrossAttentionLayer", "img_to_txt": "CrossAttentionLayer",
                "norm_txt": "nn.LayerNorm", "norm_img": "nn.LayerNorm"}
_CROSS_KEYS = tuple(f"{p}_proj.{w}" for p in ("q", "k", "v", "out") for w in ("weight", "bias"))


def bidir_attributes(ev, facts) -> CheckResult:
    d = _evidence.DIM
    state = {k[len("state/"):]: np.asarray(v) for k, v in ev.items() if k.startswith("state/")}
    if not state and "error/state" in ev:
        return CheckResult("attributes", False, f"reading the weights raised "
                           f"{text(ev, 'error/state')}")
    problems, shared = [], set()
    for a, b in _json(ev, "shared", []):
        if {a, b} <= set(_BIDIR_ATTRS):
            problems.append(f"`{a}` and `{b}` are the same layer: create two")
            shared |= {a, b}
    for attr, kind in _BIDIR_ATTRS.items():
        if attr in shared:
            continue
        keys = _CROSS_KEYS if kind == "CrossAttentionLayer" else ("weight", "bias")
        spelled = f"{kind}({d}" + (", num_heads)" if kind == "CrossAttentionLayer" else ")")
        found = [k for k in keys if f"{attr}.{k}" in state]
        if not found:
            problems.append(f"missing attribute `{attr}` (expected {spelled})")
            continue
        shapes_ok = all(f"{attr}.{k}" in state and state[f"{attr}.{k}"].shape ==
                        ((d, d) if k.endswith("weight") and kind != "nn.LayerNorm" else (d,))
                        for k in keys)
        if not shapes_ok:
            problems.append(f"`{attr}` does not have the weights of {spelled}")
            continue
        expected = facts.get("expected", {}).get(f"sub/{attr}")
        key = f"sub/{attr}"
        if expected is not None and key in ev and not close(ev[key], expected):
            problems.append(f"`{attr}` does not compute what {spelled} computes with its "
                            "weights (is it a subclass with another forward?)")
        elif expected is not None and key not in ev:
            problems.append(f"calling `{attr}` raised {text(ev, 'error/' + key, 'an error')}")
    return CheckResult("attributes", not problems, "; ".join(problems) or
                       "txt_to_img, img_to_txt (CrossAttentionLayer), norm_txt, norm_img "
                       "(LayerNorm) found, each computing what its type computes")


def _no_output(ev, key: str, where: str) -> CheckResult:
    """The shapes verdict when a shape case produced no output: why, from its recorded error."""
    error = text(ev, f"error/{key}", "no output")
    if "returned a NoneType" in error:
        return CheckResult("shapes", False, f"{where} forward returned None: did you forget "
                           "`return`?")
    return CheckResult("shapes", False, f"{where} it raised {error}")


def bidir_shapes(ev, facts) -> CheckResult:
    for i, (d, B, n_img, n_txt) in enumerate(_evidence.BIDIR_SHAPE_CASES):
        where = f"for img_embed {(B, n_img, d)} and txt_embed {(B, n_txt, d)}"
        key = f"out/shape{i}"
        if key not in ev:
            return _no_output(ev, key, where)
        shape = tuple(np.asarray(ev[key]).shape)
        if shape != (B, d):
            hint = ""
            if shape == (B, n_img + n_txt, d):
                hint = ": the tokens are concatenated but not mean-pooled (.mean(dim=1))"
            elif len(shape) == 2 and shape[1] == 2 * d:
                hint = ": concatenate along the token axis (dim=1), then mean-pool"
            return CheckResult("shapes", False, f"expected output shape {(B, d)} {where}, got "
                               f"{shape}{hint}")
    return CheckResult("shapes", True, f"(B, N_img, {_evidence.DIM}) and (B, N_txt, "
                       f"{_evidence.DIM}) give (B, {_evidence.DIM}) for several B, N and dim")


def _equivalence(ev, facts, keys, formula: str, attributes) -> CheckResult | None:
    """None when the outputs ``keys`` equal the expected ones, else the failed verdict."""
    found = attributes(ev, facts)  # the reference formula needs the interface's submodules
    if not found.passed or facts.get("unavailable"):
        return CheckResult("equivalence", False, "cannot compare with the reference: " + (
            facts["unavailable"] if found.passed else found.message))
    outs = {key: _output(ev, key, "the output") for key in keys}
    wrong = [key for key in keys if not close(outs[key], facts["expected"][key])]
    if not wrong:
        return None
    out, expected = outs[wrong[0]], facts["expected"][wrong[0]]
    if out.shape != expected.shape:
        return CheckResult("equivalence", False, f"the output has shape {_shape(out.shape)}, "
                           f"expected {_shape(expected.shape)}: fix the shape first")
    diff = max(float(np.max(np.abs(outs[k] - facts["expected"][k]))) for k in wrong)
    mistake = next((name for name, outputs in facts.get("mistakes", {}).items()
                    if all(k in outputs and close(outs[k], outputs[k]) for k in keys)), None)
    return CheckResult("equivalence", False, f"the output differs from the reference by up to "
                       f"{diff:.3g}: " + (f"it looks like {MISTAKES[mistake]}" if mistake
                                          else f"check {formula}"))


def bidir_equivalence(ev, facts) -> CheckResult:
    failed = _equivalence(
        ev, facts, ("out/eq",),
        "txt_upd = norm_txt(txt + txt_to_img(txt, img)), img_upd = norm_img(img + "
        "img_to_txt(img, txt)), then torch.cat([txt_upd, img_upd], dim=1).mean(dim=1)",
        bidir_attributes)
    return failed or CheckResult(
        "equivalence", True,
        "matches norm(x + attn(x, other)) in both directions, concatenated and mean-pooled")


def bidir_gradients(ev, facts) -> CheckResult:
    reach = _gradient_reach(ev, facts, {a: a for a in _BIDIR_ATTRS})
    missing = [a for a in _BIDIR_ATTRS if not reach.get(a)]
    return CheckResult("gradients", not missing,
                       f"no gradient reaches {', '.join(missing)}: is its output part of the "
                       "result?" if missing else
                       "gradients reach txt_to_img, img_to_txt, norm_txt and norm_img")


def bidir_no_nan(ev, facts) -> CheckResult:
    finite = {}
    for i, label in enumerate(_evidence.NAN_PROBES):
        out = _output(ev, f"out/nan{i}", f"the output for {label}")
        finite[label] = bool(np.isfinite(out).all())
    bad = [label for label, ok in finite.items() if not ok]
    return CheckResult("no_nan", not bad, f"the output has NaN or inf for {', '.join(bad)}"
                       if bad else "finite outputs, also for large and all-zero inputs")


# ----------------------------------------------------------------------------- gated

def _gated_state(ev) -> dict:
    return {k[len("state/"):]: np.asarray(v) for k, v in ev.items() if k.startswith("state/")}


def gated_attributes(ev, facts) -> CheckResult:
    s = _evidence.GATED_SIZES
    e, c = s["embed_dim"], s["num_classes"]
    state = _gated_state(ev)
    problems = []
    for attr, in_dim in (("img_proj", s["img_dim"]), ("txt_proj", s["txt_dim"])):
        w = state.get(f"{attr}.weight")
        if w is None:
            problems.append(f"missing attribute `{attr}` (expected nn.Linear({in_dim}, {e}))")
        elif w.shape != (e, in_dim):
            problems.append(f"`{attr}` is nn.Linear({w.shape[-1]}, {w.shape[0]}), expected "
                            f"nn.Linear({in_dim}, {e})")
    if "attr/gate" not in ev and "gate" not in state:
        problems.append("missing attribute `gate` (expected nn.Parameter(torch.zeros(1)))")
    mlp = f"Linear({e}, {e}) -> ReLU -> Linear({e}, {c})"
    if not any(k.startswith("classifier.") for k in state):
        problems.append(f"missing attribute `classifier` (expected the MLP {mlp})")
    elif "classifier.weight" in state:
        w = state["classifier.weight"]
        problems.append(f"the classifier is a single nn.Linear({w.shape[-1]}, {w.shape[0]}): "
                        f"it must be the MLP {mlp} (a linear head cannot learn the XOR task)")
    elif not (state.get("classifier.0.weight", np.empty(0)).shape == (e, e)
              and state.get("classifier.2.weight", np.empty(0)).shape == (c, e)):
        problems.append(f"the classifier does not have the weights of the MLP {mlp}")
    else:
        expected = facts.get("expected", {}).get("sub/classifier")
        if expected is not None and not ("sub/classifier" in ev and
                                         close(ev["sub/classifier"], expected)):
            problems.append(f"the classifier does not compute {mlp} with its weights")
    return CheckResult("attributes", not problems, "; ".join(problems) or
                       f"img_proj, txt_proj, gate and the classifier {mlp} found")


def gated_gate(ev, facts) -> CheckResult:
    params = _json(ev, "params", [])
    if "attr/gate" not in ev and "init/gate" not in ev:
        return CheckResult("gate", False, "missing attribute `gate`: add "
                           "self.gate = nn.Parameter(torch.zeros(1))")
    if "gate" not in params:
        kind = text(ev, "attr/gate_type", "tensor")
        return CheckResult("gate", False, f"`gate` is a {kind}, not an nn.Parameter registered "
                           "in the model, so the optimizer never updates it: use "
                           "self.gate = nn.Parameter(torch.zeros(1))")
    value = np.asarray(ev.get("init/gate", ev.get("attr/gate")))
    if value.shape != (1,):
        return CheckResult("gate", False, f"`gate` has shape {_shape(value.shape)}, expected "
                           "(1,): use torch.zeros(1)")
    alpha = float(1 / (1 + np.exp(-float(value[0]))))
    if abs(alpha - 0.5) > 1e-6:
        return CheckResult("gate", False, f"gate starts at {float(value[0]):.3f}, so "
                           f"sigmoid(gate) = {alpha:.3f}, expected 0.500: initialise it with "
                           "torch.zeros(1) so that both modalities start with weight 0.5")
    return CheckResult("gate", True, f"gate starts at 0.0, sigmoid(gate) = {alpha:.3f}: an "
                       "equal mix of both modalities")


def gated_shapes(ev, facts) -> CheckResult:
    s = _evidence.GATED_SIZES
    for i, (classes, B) in enumerate(_evidence.GATED_SHAPE_CASES):
        where = (f"with num_classes={classes}, for img_feat {(B, s['img_dim'])} and txt_feat "
                 f"{(B, s['txt_dim'])}")
        key = f"out/shape{i}"
        if key not in ev:
            return _no_output(ev, key, where)
        shape = tuple(np.asarray(ev[key]).shape)
        if shape != (B, classes):
            return CheckResult("shapes", False, f"{where}, expected output shape "
                               f"{(B, classes)}, got {shape}")
    return CheckResult("shapes", True, f"(B, {s['img_dim']}) and (B, {s['txt_dim']}) give "
                       "(B, num_classes) logits")


def gated_equivalence(ev, facts) -> CheckResult:
    formula = ("alpha = torch.sigmoid(self.gate), z = alpha * img_proj(img) + (1 - alpha) * "
               "txt_proj(txt), return classifier(z)")
    failed = _equivalence(ev, facts, ("out/eq", "out/eq_uneven_gate"), formula,
                          gated_attributes)
    return failed or CheckResult("equivalence", True, "matches classifier(alpha * img_proj(img) "
                                 "+ (1 - alpha) * txt_proj(txt)), alpha = sigmoid(gate)")


def gated_gate_gradient(ev, facts) -> CheckResult:
    if "gate" not in _json(ev, "params", []):
        return CheckResult("gate_gradient", False, "the gate receives no gradient: it is not "
                           "an nn.Parameter of the model (self.gate = nn.Parameter(...))")
    reach = _gradient_reach(ev, facts, {"gate": "gate"})
    if reach.get("gate"):
        return CheckResult("gate_gradient", True, "the gate receives a gradient")
    return CheckResult("gate_gradient", False, "the gate receives no gradient: use "
                       "torch.sigmoid(self.gate) in forward")


BIDIRECTIONAL = {"implemented": implemented, "attributes": bidir_attributes,
                 "shapes": bidir_shapes, "equivalence": bidir_equivalence,
                 "gradients": bidir_gradients, "no_nan": bidir_no_nan, "accuracy": accuracy}
GATED = {"implemented": implemented, "attributes": gated_attributes, "gate": gated_gate,
         "shapes": gated_shapes, "equivalence": gated_equivalence,
         "gate_gradient": gated_gate_gradient, "accuracy": accuracy}


# ----------------------------------------------------------------------------- the runner

def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def run_one(checks: dict, name: str, ev: dict, facts: dict) -> CheckResult:
    """One check, never raising: ``implemented`` must pass first; a missing piece of evidence
    is a SKIP, an error inside the check fails that check only."""
    if name in ("attributes", "gate"):  # these read the built module's weights only
        status = text(ev, "status", "no evidence")
        if status != "ok":
            return CheckResult(name, False, f"not checked: {status.removeprefix('error: ')}",
                               skipped=True)
    elif name != "implemented":
        first = run_one(checks, "implemented", ev, facts)
        if not first.passed:
            return CheckResult(name, False, f"not checked: {first.message}", skipped=True)
    try:
        result = checks[name](ev, facts)
    except Skip as reason:
        return CheckResult(name, False, f"not checked: {reason}", skipped=True)
    except AssertionError as error:
        return CheckResult(name, False, str(error))
    except Exception as error:  # noqa: BLE001 (evidence of an unexpected form)
        return CheckResult(name, False, f"the check could not read the evidence: "
                           f"{_describe(error)}")
    result.name = name
    return result


def run(checks: dict, names, ev: dict, facts: dict) -> list[CheckResult]:
    return [run_one(checks, name, ev, facts) for name in names]


# ----------------------------------------------------------------------------- self-checks

def known_answers() -> dict[str, np.ndarray]:
    """The stored known answers (weights, expected outputs, outputs of each mistake)."""
    path = resources.files("fusionlab") / "known_answers" / KNOWN_ANSWERS
    with resources.as_file(path) as file:
        return _evidence.load(file)


def known_facts(ev: dict, answers: dict, exercise: str) -> dict:
    """The facts of a self-check: the stored expected values, valid when the module took all
    the known weights."""
    prefix = f"{exercise}/"
    weights = {k[len(prefix + "weights/"):] for k in answers if k.startswith(prefix + "weights/")}
    facts: dict = {"expected": {}, "mistakes": {}}
    for key, value in answers.items():
        if key.startswith(prefix + "expected/"):
            facts["expected"][key[len(prefix + "expected/"):]] = value
        elif key.startswith(prefix + "mistake/"):
            mistake, out = key[len(prefix + "mistake/"):].split("/", 1)
            facts["mistakes"].setdefault(mistake, {})[out] = value
    missing = sorted(weights - set(_json(ev, "loaded", [])))
    if missing:
        facts["unavailable"] = (f"the module has no weight {', '.join(missing[:4])}"
                                + (" ..." if len(missing) > 4 else "")
                                + " of the interface's shape, so the known test weights "
                                  "cannot be loaded")
    return facts


def _weights(answers: dict, exercise: str) -> dict:
    prefix = f"{exercise}/weights/"
    return {k[len(prefix):]: v for k, v in answers.items() if k.startswith(prefix)}


def bidirectional_results(cls) -> list[CheckResult]:
    """The self-check verdicts on a ``BidirectionalCrossAttention`` class; never raises."""
    answers = known_answers()
    ev = _evidence.collect_bidirectional(cls, KNOWN_SEED, weights=_weights(answers, "bidir"))
    return run(BIDIRECTIONAL, BIDIRECTIONAL_CHECKS, ev, known_facts(ev, answers, "bidir"))


def gated_results(cls) -> list[CheckResult]:
    """The self-check verdicts on a ``GatedFusionModel`` class; never raises."""
    answers = known_answers()
    ev = _evidence.collect_gated(cls, KNOWN_SEED, weights=_weights(answers, "gated"))
    return run(GATED, GATED_CHECKS, ev, known_facts(ev, answers, "gated"))


def report(title: str, results: list[CheckResult]) -> None:
    """Print one line per verdict, then a summary line."""
    print(f"Checking {title}")
    for result in results:
        print(f"  {result.word} {MARKS[result.word]} {result.name}: {result.message}")
    failed = [r for r in results if not r.passed]
    if not failed:
        print(f"All {len(results)} checks passed.")
    elif results[0].name == "implemented" and not results[0].passed:
        print("Not implemented yet: fill in the TODO above, then run this cell again.")
    else:
        print(f"{len(failed)} of {len(results)} checks did not pass: start with the first FAIL.")


def bidirectional(cls) -> None:
    """Print the self-check of a ``BidirectionalCrossAttention`` class."""
    report(getattr(cls, "__name__", repr(cls)), bidirectional_results(cls))


def gated(cls) -> None:
    """Print the self-check of a ``GatedFusionModel`` class."""
    report(getattr(cls, "__name__", repr(cls)), gated_results(cls))

