"""The trusted verdict suites, one module per assignment (``part1`` for
``part1_fusion_strategies``), and the reference formulas they use.

Nothing here runs in a student's kernel: the graded cells only export evidence
(``fusionlab.evidence``), and ``autograder.verdicts`` runs these suites in the grader's process.
"""
