"""Development tooling: the test tools' installer, the workflow linter, the container test and the requirements files' reader."""
