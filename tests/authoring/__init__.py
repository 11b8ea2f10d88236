"""The notebooks: generated from the masters, fresh, following the course's contract, and
quoting their claim tests word for word."""
