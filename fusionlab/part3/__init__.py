"""Part 3, "Who gets to speak": its graded exercises (``fusionlab.part3.exercises``)."""
