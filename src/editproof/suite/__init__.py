"""Suites: every scenario of the catalogue on every model of a suite, resumable, with a verdict.

``runner.run_suite`` checks everything cheap first, writes the run directory's state files,
plans the task graph (``plan``), runs it with an executor (``executor``: worker processes,
one per device slot, each keeping its model loaded for all of that model's tasks) and
compiles the final verdict (``editproof.verdict``). It never imports pack code.
"""
