"""The grading machinery (fusionlab.grading) and the registry-wide tests of every exercise; the
toy course that the pipeline's tests grade."""
