"""The project's tools, one sub-package per job: serving, training, evaluation, corpus, deploy, dev."""
