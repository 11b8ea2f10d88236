"""tests/conftest.py refuses a run whose torch CPU kernel path is not the one asked for, so that
`make claims-cpus` cannot pass "under avx512" on a CPU that quietly ran avx2."""

import torch

from tests.conftest import kernel_path_mismatch, pytest_report_header


def test_a_path_torch_fell_back_from_is_refused(monkeypatch):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx512")
    reason = kernel_path_mismatch()
    assert "ATEN_CPU_CAPABILITY=avx512" in reason and "avx2" in reason


def test_the_active_path_or_none_asked_passes_and_the_header_names_it(monkeypatch):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "AVX2")
    assert kernel_path_mismatch() is None
    assert pytest_report_header(None) == "torch CPU kernel path: AVX2 (ATEN_CPU_CAPABILITY=AVX2)"
    monkeypatch.delenv("ATEN_CPU_CAPABILITY")
    assert kernel_path_mismatch() is None
    assert "the CPU's best" in pytest_report_header(None)
