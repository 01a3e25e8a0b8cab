"""The bad-input corpus: generated bad data files, index directories, CLI options, misbehaving LLM servers
and thread cases, run against the CLI and the API with a watchdog (see docs/reliability.md).

`python -m tests.badinputs.run` generates the corpus into a temp directory, runs it and prints the totals.
"""
