"""The grading pipeline (autograder/): each part through real nbgrader, the intake, the sandbox,
the clean room, the cluster, the gradebook, the preflight, the browser."""
