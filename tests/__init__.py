"""The test suite, one folder per part of the code (README.md, "How the tests are organised")."""
